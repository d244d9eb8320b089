//! Full verification from the API (the dashboard's "verify now"): `aitrail verify`'s check
//! of the whole store, run on this node. Each run is an event in the system log, so the
//! last result and its time are tamper-evident and the same on every node.
//!
//! A key bound to a tenant sees its own log's size and findings only.

use std::collections::BTreeMap;

use aitrail_core::TenantId;
use aitrail_core::access::Action;
use aitrail_core::policy::system_event;
use aitrail_store::verify::{Finding, verify_store};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The system log event a run appends.
const EVENT: &str = "verification";
/// Findings kept per tenant in the event (the count is always whole).
const KEPT_FINDINGS: usize = 100;

/// One tenant's part of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TenantResult {
    /// The log's size when the run started.
    size: u64,
    findings: u64,
    /// The first findings, as `aitrail verify` prints them.
    examples: Vec<String>,
}

/// What a run found, as the system log keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunEvent {
    started_at: String,
    finished_at: String,
    records: u64,
    checkpoints: usize,
    tenants: BTreeMap<String, TenantResult>,
}

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

fn tenant_of(f: &Finding) -> &str {
    match f {
        Finding::Modified { tenant, .. }
        | Finding::Removed { tenant, .. }
        | Finding::Reordered { tenant, .. }
        | Finding::Checkpoint { tenant, .. }
        | Finding::Log { tenant, .. } => tenant.as_str(),
        Finding::Inserted { tenant, .. } => tenant,
    }
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
    let started_at = aitrail_core::Timestamp::now().to_string();
    let mut tenants: BTreeMap<String, TenantResult> = BTreeMap::new();
    for head in app.store.logs().await? {
        tenants.entry(head.tenant_id.to_string()).or_default().size = head.size;
    }
    let report = verify_store(app.store.clone(), &app.log.verifier(), &|_| {}).await?;
    for finding in &report.findings {
        let t = tenants.entry(tenant_of(finding).to_owned()).or_default();
        t.findings += 1;
        if t.examples.len() < KEPT_FINDINGS {
            t.examples.push(finding.to_string());
        }
    }
    let event = RunEvent {
        started_at,
        finished_at: aitrail_core::Timestamp::now().to_string(),
        records: report.records,
        checkpoints: report.checkpoints,
        tenants,
    };
    let attributes = serde_json::to_value(&event).map_err(|e| ApiError::Internal(e.to_string()))?;
    let by = caller.0.key_id.to_string();
    let receipts = app.store.append(vec![system_event(EVENT, None, &by, attributes)]).await?;
    let body = visible(&caller, event, receipts.first().map(|r| r.id.to_string()));
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
    let system = TenantId::system_log().to_string();
    let query = aitrail_core::Query::from_pairs(vec![
        ("tenant_id", system.as_str()),
        ("operation_type", EVENT),
        ("limit", "1"),
    ])
    .map_err(ApiError::BadQuery)?;
    let page = app.store.list(&query).await?;
    let Some(last) = page.records.into_iter().next() else {
        return Err(ApiError::NoVerification);
    };
    let attributes = serde_json::to_value(&last.record.attributes).unwrap_or_default();
    let event: RunEvent = serde_json::from_value(attributes)
        .map_err(|e| ApiError::Internal(format!("a verification event is unreadable: {e}")))?;
    let body = visible(&caller, event, Some(last.id.to_string()));
    let accessed = Accessed { tenant: caller.0.tenant.clone(), records: 0, details: Vec::new() };
    Ok(accessed.on(Json(body).into_response()))
}
