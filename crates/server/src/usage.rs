//! GET /v1/usage: records, tokens and cost by provider, model, time, user and feature, for
//! the dashboard's charts. Takes the listing's filters (and `bucket=hour|day`); without a
//! time range it covers the last 30 days.

use aitrail_core::access::Action;
use aitrail_core::ingest::FieldError;
use aitrail_core::usage::{Bucket, Report};
use aitrail_core::{Query, Timestamp};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The window covered when the request names no `since`.
const DEFAULT_DAYS: i64 = 30;

/// The report and the window it covers, so a reader is told when `since` was the default.
#[derive(Serialize)]
struct UsageBody {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    #[serde(flatten)]
    report: Report,
}

pub(crate) async fn usage(
    State(app): State<AppState>,
    caller: Caller,
    pairs: Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut pairs =
        pairs.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let mut bucket = None;
    pairs.retain(|(k, v)| {
        if k != "bucket" {
            return true;
        }
        bucket = Some(v.clone());
        false
    });
    for refused in ["limit", "cursor", "prompt_text", "response_text"] {
        if pairs.iter().any(|(k, _)| k == refused) {
            return Err(ApiError::BadQuery(FieldError::new(
                refused,
                "usage covers every record the filters select",
            )));
        }
    }
    let mut query = Query::from_pairs(pairs).map_err(ApiError::BadQuery)?;
    query.tenant_id = caller.tenant_for(Action::Read, query.tenant_id.take())?;
    if query.since.is_none() {
        let from = Timestamp::now().unix_nanos() - DEFAULT_DAYS * 86_400 * 1_000_000_000;
        query.since = Timestamp::from_unix_nanos(from);
    }
    let bucket = match bucket.as_deref() {
        Some(b) => b.parse().map_err(|m| ApiError::BadQuery(FieldError::new("bucket", m)))?,
        None => default_bucket(&query),
    };
    let report = aitrail_store::usage(app.store.as_ref(), &query, bucket).await?;
    let accessed = Accessed {
        tenant: query.tenant_id.clone(),
        records: report.totals.records,
        details: Vec::new(),
    };
    let body = UsageBody { since: query.since, until: query.until, report };
    Ok(accessed.on(Json(body).into_response()))
}

/// Hours for a window of up to two days, else days.
fn default_bucket(query: &Query) -> Bucket {
    let until = query.until.unwrap_or_else(Timestamp::now).unix_nanos();
    let since = query.since.map_or(0, Timestamp::unix_nanos);
    if until.saturating_sub(since) <= 2 * 86_400 * 1_000_000_000 {
        Bucket::Hour
    } else {
        Bucket::Day
    }
}
