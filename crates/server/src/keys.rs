//! Key routes, for admins: make a key (shown once), list keys, revoke one. A tenant's
//! admin manages its tenant's keys; a global admin, every key.

use aitrail_core::access::{Action, KeyId, Role};
use aitrail_core::ingest::FieldError;
use aitrail_core::{TenantId, Timestamp};
use aitrail_service::keys::{KeyInfo, KeyRequest};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    role: String,
    tenant_id: Option<String>,
    expires_at: Option<String>,
    label: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![FieldError::new(field, message)])
}

/// POST /v1/keys: `{"role", "tenant_id"?, "expires_at"?, "label"?}` → 201 with the key.
pub(crate) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit: crate::SMALL_BODY_BYTES },
        _ => ApiError::Malformed(FieldError::new("body", e.body_text())),
    })?;
    let role: Role = new.role.parse().map_err(|m: String| invalid("role", m))?;
    let tenant = new
        .tenant_id
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|m| invalid("tenant_id", m))?;
    let expires_at = new
        .expires_at
        .as_deref()
        .map(Timestamp::parse_rfc3339)
        .transpose()
        .map_err(|m| invalid("expires_at", m))?;
    if expires_at.is_some_and(|e| e <= Timestamp::now()) {
        return Err(invalid("expires_at", "is in the past"));
    }
    match &tenant {
        Some(t) => caller.may(Action::Administer, Some(t)).map_err(|_| {
            ApiError::Forbidden(format!("this key may not make keys for tenant {t}"))
        })?,
        None if caller.0.tenant.is_some() => {
            return Err(ApiError::Forbidden(
                "only a global admin may make keys without a tenant".into(),
            ));
        }
        None => caller.may(Action::Administer, None)?,
    }
    let request = KeyRequest { role, tenant, expires_at, label: new.label };
    let (key, stored) = app.trail.issue_key(request).await?;
    let body = KeyInfo { key: Some(key.reveal()), ..KeyInfo::from(&stored) };
    let accessed = Accessed { tenant: stored.tenant.clone(), records: 0, details: Vec::new() };
    Ok(accessed.on((StatusCode::CREATED, Json(body)).into_response()))
}

/// GET /v1/keys: the keys this admin manages, oldest first.
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.may(Action::Administer, None)?;
    let keys = app.trail.keys().await?;
    let mine = keys.iter().filter(|k| caller.0.tenant.is_none() || k.tenant == caller.0.tenant);
    Ok(Json(mine.map(KeyInfo::from).collect::<Vec<_>>()).into_response())
}

/// POST /v1/keys/{id}/revoke: the key stops working at once on this node, within a
/// second on the others. It is kept, revoked, for the record.
pub(crate) async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.may(Action::Administer, None)?;
    let id = KeyId::parse(&id).ok_or(ApiError::NotFound)?;
    let key = app.trail.key(&id).await?.ok_or(ApiError::NotFound)?;
    let visible = caller.0.tenant.is_none() || key.tenant == caller.0.tenant;
    if !visible {
        return Err(ApiError::NotFound);
    }
    app.trail.revoke_key(&id).await?;
    app.keys.forget(&id);
    let key = app.trail.key(&id).await?.ok_or(ApiError::NotFound)?;
    let accessed = Accessed { tenant: key.tenant.clone(), records: 0, details: Vec::new() };
    Ok(accessed.on(Json(KeyInfo::from(&key)).into_response()))
}
