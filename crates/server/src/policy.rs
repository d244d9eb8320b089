//! Tenant policies: GET/PUT /v1/tenants/{id}/policy, and applying a tenant's policy to
//! the records it sends (secrets, content mode) before they are logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aitrail_core::access::Action;
use aitrail_core::ingest::FieldError;
use aitrail_core::policy::{Policy, tenant_hash_key};
use aitrail_core::{Record, Sent, TenantId, Timestamp};
use aitrail_store::Store;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// How long a node trusts a policy it read: a change made on another node applies here
/// within this time (on the node that made it, at once).
const CACHED_FOR: Duration = Duration::from_secs(1);

/// Policies read recently, by tenant.
#[derive(Default)]
pub(crate) struct Policies {
    read: Mutex<HashMap<TenantId, (Instant, Policy)>>,
}

impl Policies {
    /// The tenant's policy (the default if it never set one).
    pub(crate) async fn of(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
    ) -> Result<Policy, ApiError> {
        if let Some((at, policy)) = self.lock().get(tenant)
            && at.elapsed() < CACHED_FOR
        {
            return Ok(policy.clone());
        }
        let policy = match aitrail_store::policy_of(store, tenant).await {
            Ok(policy) => policy,
            // The store cannot be read: the policy last read stands for up to a minute (the
            // proxy in fail mode open must keep answering while the store is down).
            Err(e) => match self.lock().get(tenant) {
                Some((at, policy)) if at.elapsed() < crate::auth::STALE_FOR => {
                    tracing::warn!(error = %e, %tenant, "the store cannot be read; using the policy last read");
                    return Ok(policy.clone());
                }
                _ => return Err(e.into()),
            },
        };
        self.lock().insert(tenant.clone(), (Instant::now(), policy.clone()));
        Ok(policy)
    }

    fn forget(&self, tenant: &TenantId) {
        self.lock().remove(tenant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, Policy)>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Records as their tenants' policies keep them; every refusal of the batch at once.
pub(crate) async fn apply(
    app: &AppState,
    records: Vec<Record>,
    sent: Sent,
) -> Result<Vec<Record>, ApiError> {
    let tenants = tenant_policies(app, &records).await?;
    aitrail_core::policy::apply_all(records, sent, |t| tenants.of(t)).map_err(ApiError::Invalid)
}

/// As [`apply`], each record on its own: a refusal drops only its record.
pub(crate) async fn apply_each(
    app: &AppState,
    records: Vec<Record>,
) -> Result<Vec<Result<Record, FieldError>>, ApiError> {
    let tenants = tenant_policies(app, &records).await?;
    Ok(aitrail_core::policy::apply_each(records, |t| tenants.of(t)))
}

/// The policy and content-hash key of each tenant among some records.
struct TenantPolicies(HashMap<TenantId, (Policy, [u8; 32])>);

impl TenantPolicies {
    fn of(&self, tenant: &TenantId) -> (&Policy, [u8; 32]) {
        let (policy, key) = &self.0[tenant];
        (policy, *key)
    }
}

async fn tenant_policies(app: &AppState, records: &[Record]) -> Result<TenantPolicies, ApiError> {
    let secret = app.log.content_hash_secret();
    let mut tenants = HashMap::new();
    for r in records {
        if !tenants.contains_key(&r.tenant_id) {
            let policy = app.policies.of(app.store.as_ref(), &r.tenant_id).await?;
            let key = tenant_hash_key(&secret, &r.tenant_id);
            tenants.insert(r.tenant_id.clone(), (policy, key));
        }
    }
    Ok(TenantPolicies(tenants))
}

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
    app.policies.forget(&tenant);
    let policy = app.policies.of(app.store.as_ref(), &tenant).await?;
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
    app.store.set_policy(&tenant, &policy.to_json(), Timestamp::now()).await?;
    app.policies.forget(&tenant);
    Ok(answer(tenant, &policy))
}
