//! Erasure (POST /v1/erasure), legal holds (/v1/holds) and the retention job `serve`
//! runs; the work itself is the service's (`aitrail_service::retention`), shared with the
//! CLI.

use std::sync::Arc;
use std::time::Duration;

use aitrail_core::access::{Action, Actor};
use aitrail_core::ingest::FieldError;
use aitrail_core::{TenantId, Timestamp};
use aitrail_service::retention::{self, RetentionError};
use aitrail_store::Store;
use aitrail_store::retention::{Hold, Mode, Selector};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::Held(_) => ApiError::Held(e.to_string()),
            RetentionError::Reserved => ApiError::NotFound,
            RetentionError::Cutoff(..) => ApiError::Internal(e.to_string()),
            RetentionError::Store(e) => e.into(),
        }
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: crate::SMALL_BODY_BYTES },
        _ => ApiError::Malformed(FieldError::new("body", e.body_text())),
    })
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(field, message)])
}

/// The tenant a request names (or the key's own), which the caller must administer.
fn administered(caller: &Caller, named: Option<&str>) -> Result<TenantId, ApiError> {
    let named = named.map(TenantId::parse).transpose().map_err(|e| invalid("tenant_id", &e))?;
    caller
        .tenant_for(Action::Administer, named)?
        .ok_or_else(|| invalid("tenant_id", "a global key must name the tenant"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureRequest {
    tenant_id: Option<String>,
    user_id: Option<String>,
    session_id: Option<String>,
}

/// POST /v1/erasure `{"user_id"}` or `{"session_id"}` (and `tenant_id` for a global
/// key): delete that person's or session's content, keeping every leaf; logged in the
/// system log.
pub(crate) async fn erase(
    State(app): State<AppState>,
    caller: Caller,
    request: Result<Json<ErasureRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let tenant = administered(&caller, request.tenant_id.as_deref())?;
    let selector = match (request.user_id, request.session_id) {
        (Some(u), None) if !u.is_empty() => Selector::User(u),
        (None, Some(s)) if !s.is_empty() => Selector::Session(s),
        _ => return Err(invalid("user_id", "give exactly one of user_id and session_id")),
    };
    let erased = app.trail.erase(&tenant, &selector, Actor::Key(&caller.0)).await?;
    let accessed =
        Accessed { tenant: Some(tenant), records: erased.purged.records, details: Vec::new() };
    Ok(accessed.on(Json(erased).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    tenant_id: Option<String>,
    session_id: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldsQuery {
    tenant_id: Option<String>,
}

/// GET /v1/holds: the holds on the caller's tenant (a global key: on every tenant, or
/// `?tenant_id=`). Auditors and admins.
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    query: Result<Query<HoldsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let named = query.tenant_id.as_deref().map(TenantId::parse).transpose();
    let named = named.map_err(|e| ApiError::BadQuery(FieldError::new("tenant_id", e)))?;
    let tenant = caller.tenant_for(Action::Audit, named)?;
    let holds: Vec<Hold> = app
        .store
        .holds()
        .await?
        .into_iter()
        .filter(|h| tenant.as_ref().is_none_or(|t| &h.tenant_id == t))
        .collect();
    let accessed = Accessed { tenant, records: 0, details: Vec::new() };
    Ok(accessed.on(Json(json!({ "holds": holds })).into_response()))
}

/// POST /v1/holds `{"tenant_id"?, "session_id"?, "reason"?}`: suspend deletion of the
/// tenant, or of one session. Admins.
pub(crate) async fn place(
    State(app): State<AppState>,
    caller: Caller,
    request: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let tenant = administered(&caller, request.tenant_id.as_deref())?;
    let hold = Hold {
        tenant_id: tenant.clone(),
        session_id: request.session_id.filter(|s| !s.is_empty()),
        placed_at: Timestamp::now(),
        reason: request.reason,
    };
    app.trail.place_hold(&hold, Actor::Key(&caller.0)).await?;
    let accessed = Accessed { tenant: Some(tenant), records: 0, details: Vec::new() };
    Ok(accessed.on((StatusCode::CREATED, Json(hold)).into_response()))
}

/// POST /v1/holds/release `{"tenant_id"?, "session_id"?}`: lift a hold. Admins.
pub(crate) async fn release(
    State(app): State<AppState>,
    caller: Caller,
    request: Result<Json<HoldRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let tenant = administered(&caller, request.tenant_id.as_deref())?;
    let session = request.session_id.filter(|s| !s.is_empty());
    if !app.trail.release_hold(&tenant, session.as_deref(), Actor::Key(&caller.0)).await? {
        return Err(ApiError::NotFound);
    }
    let hold = json!({"tenant_id": tenant, "session_id": session});
    let accessed = Accessed { tenant: Some(tenant), records: 0, details: Vec::new() };
    Ok(accessed.on(Json(hold).into_response()))
}

/// Apply every tenant's retention every `interval`, for as long as the server runs.
pub async fn run_job(store: Arc<dyn Store>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        match retention::run(store.as_ref(), Timestamp::now(), Mode::Delete).await {
            Ok(run) => {
                let purged: u64 = run.tenants.iter().map(|t| t.purged.records).sum();
                tracing::info!(purged, tenants = run.tenants.len(), "retention run");
            }
            Err(e) => tracing::error!(error = %e, "retention run failed; retrying next interval"),
        }
    }
}
