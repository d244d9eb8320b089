//! Full verification from the API (the dashboard's "verify now"): `aitrail verify`'s check
//! of the whole store, run on this node and recorded in the system log by the service
//! (`Trail::verify_recorded`); here, one run at a time, and what a caller may see of it.
//!
//! A key bound to a tenant sees its own log's size and findings only.

use std::collections::BTreeMap;

use aitrail_core::access::{Action, Actor};
use aitrail_service::verification::{KEPT_FINDINGS, LastRunError, RunEvent, TenantResult};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// A run as one caller may see it.
#[derive(Serialize)]
struct RunBody {
    ok: bool,
    started_at: String,
    finished_at: String,
    /// The system log record that keeps this run.
    event_id: Option<String>,
    /// The tenant whose logs the caller sees (a tenant's key); absent: every log, aitrail's
    /// own system and access logs included.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// Records in the logs the caller may see.
    records: u64,
    findings: u64,
    examples: Vec<String>,
    tenants: BTreeMap<String, TenantResult>,
}

fn visible(caller: &Caller, event: RunEvent, event_id: Option<String>) -> RunBody {
    let tenants: BTreeMap<String, TenantResult> = event
        .tenants
        .into_iter()
        .filter(|(t, _)| caller.0.tenant.as_ref().is_none_or(|own| own.as_str() == t))
        .collect();
    let mut tenants = tenants;
    if let Some(own) = &caller.0.tenant
        && !tenants.contains_key(own.as_str())
    {
        // Said, rather than a silent "0 records, no problem".
        let note = "this tenant had no log when the run started".to_owned();
        tenants
            .insert(own.to_string(), TenantResult { size: 0, findings: 0, examples: vec![note] });
    }
    let findings = tenants.values().map(|t| t.findings).sum();
    RunBody {
        ok: findings == 0,
        started_at: event.started_at,
        finished_at: event.finished_at,
        event_id,
        tenant: caller.0.tenant.as_ref().map(ToString::to_string),
        records: tenants.values().map(|t| t.size).sum(),
        findings,
        examples: tenants
            .values()
            .flat_map(|t| t.examples.iter().cloned())
            .take(KEPT_FINDINGS)
            .collect(),
        tenants,
    }
}

/// POST /v1/verification: verify the whole store now (auditors and admins); one run at a
/// time on a node.
pub(crate) async fn run(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.may(Action::Audit, None)?;
    // It reads the whole store: one run at a time on a node, and a tenant's key may start
    // one at most every `verification_cooldown` (a global key any time).
    let Ok(mut started) = app.verifying.try_lock() else {
        return Err(ApiError::Busy(
            "a full verification is running on this node; retry when it ends".into(),
        ));
    };
    if let Some(tenant) = &caller.0.tenant {
        let cooldown = app.config.verification_cooldown;
        if let Some(at) = started.get(tenant).filter(|at| at.elapsed() < cooldown) {
            let retry_after = (cooldown - at.elapsed()).as_secs().max(1);
            return Err(ApiError::TooManyRequests { retry_after });
        }
        started.insert(tenant.clone(), std::time::Instant::now());
    }
    let (event, id) = app.trail.verify_recorded(Actor::Key(&caller.0)).await?;
    let body = visible(&caller, event, id.map(|id| id.to_string()));
    let accessed =
        Accessed { tenant: caller.0.tenant.clone(), records: body.records, details: Vec::new() };
    Ok(accessed.on(Json(body).into_response()))
}

/// GET /v1/verification: the last full verification run through the API (by any node),
/// or 404 if none ran yet.
pub(crate) async fn latest(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.may(Action::Read, None)?;
    let last = app.trail.last_verification().await.map_err(|e| match e {
        LastRunError::Store(e) => e.into(),
        e => ApiError::Internal(e.to_string()),
    })?;
    let Some((event, id)) = last else { return Err(ApiError::NoVerification) };
    let body = visible(&caller, event, Some(id.to_string()));
    let accessed = Accessed { tenant: caller.0.tenant.clone(), records: 0, details: Vec::new() };
    Ok(accessed.on(Json(body).into_response()))
}
