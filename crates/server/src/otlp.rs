//! POST /v1/traces: OTLP/HTTP trace exports (protobuf or JSON, gzip or not), with the same
//! API keys as every route. Spans with `gen_ai.*` attributes become records through the
//! same policy and store as POST /v1/records; the answer follows OTLP: 200 with a partial
//! success counting the spans not taken (skipped for lacking gen_ai attributes, or refused,
//! with the first reason), 400 for an export that cannot be read.

use aitrail_capture::otlp::{self, Encoding};
use aitrail_core::access::Action;
use aitrail_core::ingest::{FieldError, MAX_BATCH, parse_record_value};
use aitrail_core::{Record, TenantId};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::records::read_limited;
use crate::{ApiError, AppState};

fn encoding(headers: &HeaderMap) -> Result<(Encoding, bool), ApiError> {
    let text = |h| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().trim();
    let essence = text(header::CONTENT_TYPE).split(';').next().unwrap_or_default().trim();
    let encoding = match essence.to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {other:?} is not OTLP; send application/x-protobuf or application/json"
            )));
        }
    };
    let gzip = match text(header::CONTENT_ENCODING).to_ascii_lowercase().as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {other} is not accepted; send gzip or none"
            )));
        }
    };
    Ok((encoding, gzip))
}

pub(crate) async fn traces(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.may(Action::Write, None)?;
    let (encoding, gzip) = encoding(&headers)?;
    let limit = app.config.max_body_bytes;
    let bytes = read_limited(body, limit).await?;
    let tenant = caller.0.tenant.as_ref().map(TenantId::to_string);
    let mapped = tokio::task::spawn_blocking(move || {
        otlp::decode(&bytes, encoding, gzip, limit).map(|r| otlp::records(&r, tenant.as_deref()))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("OTLP task failed: {e}")))?
    .map_err(|e| match e {
        // Inflated past the limit: as a body sent that large would be.
        otlp::OtlpError::TooLarge(limit) => ApiError::TooLarge { limit },
        e @ (otlp::OtlpError::TooManySpans(_) | otlp::OtlpError::DecodesTooLarge(_)) => {
            ApiError::TooMuch(e.to_string())
        }
        e => ApiError::Malformed(FieldError::new("body", e.to_string())),
    })?;
    // The same per-request bound as POST /v1/records.
    if mapped.records.len() > MAX_BATCH {
        return Err(ApiError::TooMuch(format!(
            "the export holds {} spans with gen_ai.* attributes; at most {MAX_BATCH} records \
             are taken per request: send it in smaller batches",
            mapped.records.len()
        )));
    }

    let mut refused = Refused::default();
    let mut records: Vec<Record> = Vec::with_capacity(mapped.records.len());
    for span in mapped.records {
        // Through the same parser as POST /v1/records, so a span is held to the same rules.
        let record = match parse_record_value(&span.record, "") {
            Ok(r) => r,
            Err(e) => {
                refused.add(&span.span, &e.to_string());
                continue;
            }
        };
        match caller.may(Action::Write, Some(&record.tenant_id)) {
            Ok(()) => records.push(record),
            Err(e) => refused.add(&span.span, &e.to_string()),
        }
    }
    // Each span through its tenant's policy on its own, so one span with a credential
    // does not cost the others.
    let mut kept = Vec::with_capacity(records.len());
    for applied in app.trail.kept_each(records).await? {
        match applied {
            Ok(record) => kept.push(record),
            Err(e) => refused.add("a span", &e.to_string()),
        }
    }
    if !kept.is_empty() {
        app.store.append(kept).await?;
    }
    let mut message = refused.first.unwrap_or_default();
    if mapped.skipped > 0 {
        let skipped = format!("{} spans without gen_ai.* attributes were skipped", mapped.skipped);
        message = if message.is_empty() { skipped } else { format!("{message}; {skipped}") };
    }
    let content_type = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    // Only refused spans are "rejected"; skipped ones are said in the message (OTLP's
    // warning form), so exporters do not count them as failures.
    let answer = otlp::response(refused.count, &message, encoding);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], answer).into_response())
}

/// Spans refused, and why the first was.
#[derive(Default)]
struct Refused {
    count: u64,
    first: Option<String>,
}

impl Refused {
    fn add(&mut self, span: &str, why: &str) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("span {span} refused: {why}"));
        }
    }
}
