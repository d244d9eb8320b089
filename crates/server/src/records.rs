//! Record routes: append, list, get, and the conversation-audit-log service's POST /audit/log.

use aitrail_core::ingest::{BodyFormat, FieldError, Parsed, parse_body};
use aitrail_core::{Query, Sent, StoredRecord};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};

use aitrail_core::access::Action;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState, integrity};

/// Bodies above this are parsed off the async workers, so a 10 MiB batch never stalls
/// other requests.
const PARSE_INLINE_MAX: usize = 256 * 1024;

#[derive(Serialize)]
struct BatchReceipts<T> {
    results: Vec<T>,
}

/// A page of records, as listings answer it.
#[derive(Serialize)]
pub(crate) struct PageBody {
    pub records: Vec<StoredRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendQuery {
    wait: Option<Wait>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Wait {
    /// Answer once the records are in a signed checkpoint, with their inclusion proofs.
    Checkpoint,
}

/// POST /v1/records: one record, or a batch (JSON array or NDJSON), all or nothing.
pub(crate) async fn append(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<axum::extract::Query<AppendQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = q.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let parsed = read_records(&app, &headers, body).await?;
    let sent = parsed.sent();
    let one = sent == Sent::One;
    let records = parsed.into_records();
    for r in &records {
        caller.may(Action::Write, Some(&r.tenant_id))?;
    }
    let records = app.trail.kept(records, sent).await?;
    let receipts = app.store.append(records).await?;
    let location = one.then(|| format!("/v1/records/{}", receipts[0].id));
    let body = if q.wait == Some(Wait::Checkpoint) {
        let proven = integrity::prove_receipts(&app, receipts).await?;
        if one {
            serde_json::to_value(&proven[0])
        } else {
            serde_json::to_value(BatchReceipts { results: proven })
        }
    } else if one {
        serde_json::to_value(&receipts[0])
    } else {
        serde_json::to_value(BatchReceipts { results: receipts })
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(location) = location.and_then(|l| l.parse().ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// POST /audit/log: the conversation-audit-log service's payload (one record); answers with the
/// stored record.
pub(crate) async fn audit_log(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Parsed::One(record) = read_records(&app, &headers, body).await? else {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "record",
            "POST /audit/log takes one record object; send batches to POST /v1/records",
        )]));
    };
    caller.may(Action::Write, Some(&record.tenant_id))?;
    let record = app.trail.kept(vec![*record], Sent::One).await?.remove(0);
    let receipt = app.store.append(vec![record.clone()]).await?.remove(0);
    let stored =
        StoredRecord { id: receipt.id, seq: receipt.seq, recorded_at: receipt.recorded_at, record };
    let location = format!("/v1/records/{}", stored.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(stored)).into_response())
}

/// GET /v1/records: filtered, newest first, cursor-paged.
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    pairs: Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let mut query = Query::from_pairs(pairs).map_err(ApiError::BadQuery)?;
    // A key bound to a tenant lists that tenant only.
    query.tenant_id = caller.tenant_for(Action::Read, query.tenant_id.take())?;
    if !query.content_texts.is_empty() {
        // A lookup confirms or refutes a guessed text: it is reading content.
        caller.may(Action::ReadContent, query.tenant_id.as_ref())?;
        query.hash_texts(&app.log.content_hash_secret()).map_err(|_| {
            ApiError::BadQuery(FieldError::new(
                "prompt_text",
                "name tenant_id: texts are looked up by each tenant's own keyed hash",
            ))
        })?;
    }
    let page = app.store.list(&query).await?;
    let records: Vec<_> = page.records.into_iter().map(|r| caller.redact(r)).collect();
    let accessed = Accessed {
        tenant: query.tenant_id.clone(),
        records: records.len() as u64,
        details: Vec::new(),
    };
    let body = PageBody { records, next_cursor: page.next_cursor.map(|c| c.to_string()) };
    Ok(accessed.on(Json(body).into_response()))
}

/// GET /v1/records/{id}: 404 for an unknown id, and for anything that is not an id.
pub(crate) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // The role first, so a key that may not read learns nothing of which ids exist.
    caller.may(Action::Read, None)?;
    let id = id.parse().map_err(|_| ApiError::NotFound)?;
    // Another tenant's record answers exactly as a missing one, and as soon: its tenant is
    // checked before anything of it is decoded.
    let entry = app.store.entry(id).await?.ok_or(ApiError::NotFound)?;
    caller.may(Action::Read, Some(&entry.tenant_id))?;
    let record = entry.to_record()?;
    let accessed = Accessed { tenant: Some(entry.tenant_id), records: 1, details: Vec::new() };
    Ok(accessed.on(Json(caller.redact(record)).into_response()))
}

async fn read_records(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Parsed, ApiError> {
    let format = body_format(headers)?;
    // A compressed body would be read as bytes that are not UTF-8: say what is wrong.
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim());
    if let Some(encoding) = encoding.filter(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {encoding} is not accepted here; send the records uncompressed"
        )));
    }
    let bytes = read_limited(body, app.config.max_body_bytes).await?;
    if bytes.len() <= PARSE_INLINE_MAX {
        return Ok(parse_body(&bytes, format)?);
    }
    tokio::task::spawn_blocking(move || parse_body(&bytes, format))
        .await
        .map_err(|e| ApiError::Internal(format!("parser task failed: {e}")))?
        .map_err(ApiError::from)
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/jsonl" => Ok(BodyFormat::Ndjson),
        "" => Err(ApiError::UnsupportedMediaType(
            "no Content-Type; send application/json or application/x-ndjson".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {other} is not accepted; send application/json or application/x-ndjson"
        ))),
    }
}

pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit })
        }
        Err(e) => {
            Err(ApiError::Malformed(FieldError::new("body", format!("could not be read: {e}"))))
        }
    }
}
