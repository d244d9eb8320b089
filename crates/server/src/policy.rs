//! Tenant policies: GET/PUT /v1/tenants/{id}/policy (applying them to records is the
//! service's `Trail::kept`).

use aitrail_core::TenantId;
use aitrail_core::access::Action;
use aitrail_core::ingest::FieldError;
use aitrail_core::policy::Policy;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The tenant of the path: the system's own logs have no policy.
fn tenant(id: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(id).ok().filter(|t| !t.is_reserved()).ok_or(ApiError::NotFound)
}

fn answer(tenant: TenantId, policy: &Policy) -> Response {
    let body = Json(serde_json::json!({ "tenant_id": tenant.as_str(), "policy": policy }));
    Accessed {
        tenant: Some(tenant),
        records: 0,
        details: vec![("policy".into(), policy.to_json())],
    }
    .on(body.into_response())
}

/// GET /v1/tenants/{id}/policy: auditors and admins of the tenant.
pub(crate) async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant(&id)?;
    caller.may(Action::Audit, Some(&tenant))?;
    let policy = app.trail.current_policy(&tenant).await?;
    Ok(answer(tenant, &policy))
}

/// PUT /v1/tenants/{id}/policy: admins of the tenant. The body is the whole policy (a
/// setting left out takes its default); the answer, the policy now in force.
pub(crate) async fn put(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant(&id)?;
    caller.may(Action::Administer, Some(&tenant))?;
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if json.is_some_and(|t| !t.starts_with("application/json")) {
        return Err(ApiError::Malformed(FieldError::new(
            "body",
            "send the policy as application/json",
        )));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::Malformed(FieldError::new("body", "not UTF-8")))?;
    let policy = Policy::parse(text).map_err(|e| ApiError::Invalid(vec![e]))?;
    app.trail.set_policy(&tenant, &policy).await?;
    Ok(answer(tenant, &policy))
}
