//! Tenant policies, and records taken in through them: the policy applied (content kept,
//! secrets refused or redacted, keyed hashes) before anything is appended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aitrail_core::ingest::FieldError;
use aitrail_core::policy::{Policy, tenant_hash_key};
use aitrail_core::{Receipt, Record, Sent, TenantId, Timestamp};
use aitrail_store::StoreError;

use crate::Trail;

/// How long a node trusts a policy it read: a change made on another node applies here
/// within this time (on the node that made it, at once).
const CACHED_FOR: Duration = Duration::from_secs(1);

/// How long the policy last read stands in for one the store cannot give (the proxy in
/// fail mode open must keep answering while the store is down).
const STALE_FOR: Duration = Duration::from_secs(60);

/// Why records were not appended.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The tenants' policies refuse them: every refusal, each naming its field.
    #[error("refused by the tenant's policy: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Policies read recently, by tenant.
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<TenantId, (Instant, Policy)>>);

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, Policy)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Trail {
    /// The tenant's policy (the default if it never set one), as read at most
    /// [`CACHED_FOR`] ago.
    pub async fn policy(&self, tenant: &TenantId) -> Result<Policy, StoreError> {
        if let Some((at, policy)) = self.policies.lock().get(tenant)
            && at.elapsed() < CACHED_FOR
        {
            return Ok(policy.clone());
        }
        let policy = match aitrail_store::policy_of(self.store.as_ref(), tenant).await {
            Ok(policy) => policy,
            Err(e) => match self.policies.lock().get(tenant) {
                Some((at, policy)) if at.elapsed() < STALE_FOR => {
                    tracing::warn!(error = %e, %tenant, "the store cannot be read; using the policy last read");
                    return Ok(policy.clone());
                }
                _ => return Err(e),
            },
        };
        self.policies.lock().insert(tenant.clone(), (Instant::now(), policy.clone()));
        Ok(policy)
    }

    /// The tenant's policy as the store holds it now.
    pub async fn current_policy(&self, tenant: &TenantId) -> Result<Policy, StoreError> {
        self.policies.lock().remove(tenant);
        self.policy(tenant).await
    }

    /// Set the tenant's whole policy; it applies on this node at once.
    pub async fn set_policy(&self, tenant: &TenantId, policy: &Policy) -> Result<(), StoreError> {
        self.store.set_policy(tenant, &policy.to_json(), Timestamp::now()).await?;
        self.policies.lock().remove(tenant);
        Ok(())
    }

    /// Records as their tenants' policies keep them, or every refusal of the batch at once
    /// (named as `sent` says).
    pub async fn kept(&self, records: Vec<Record>, sent: Sent) -> Result<Vec<Record>, IngestError> {
        let tenants = self.tenant_policies(&records).await?;
        aitrail_core::policy::apply_all(records, sent, |t| tenants.of(t))
            .map_err(IngestError::Refused)
    }

    /// As [`Trail::kept`], each record on its own: a refusal drops only its record.
    pub async fn kept_each(
        &self,
        records: Vec<Record>,
    ) -> Result<Vec<Result<Record, FieldError>>, StoreError> {
        let tenants = self.tenant_policies(&records).await?;
        Ok(aitrail_core::policy::apply_each(records, |t| tenants.of(t)))
    }

    /// Take records in: through their tenants' policies, then appended, all or nothing;
    /// durable when it returns.
    pub async fn append(
        &self,
        records: Vec<Record>,
        sent: Sent,
    ) -> Result<Vec<Receipt>, IngestError> {
        let records = self.kept(records, sent).await?;
        Ok(self.store.append(records).await?)
    }

    /// The policy and content-hash key of each tenant among some records.
    async fn tenant_policies(&self, records: &[Record]) -> Result<TenantPolicies, StoreError> {
        let secret = self.signer.content_hash_secret();
        let mut tenants = HashMap::new();
        for r in records {
            if !tenants.contains_key(&r.tenant_id) {
                let policy = self.policy(&r.tenant_id).await?;
                let key = tenant_hash_key(&secret, &r.tenant_id);
                tenants.insert(r.tenant_id.clone(), (policy, key));
            }
        }
        Ok(TenantPolicies(tenants))
    }
}

/// The policy and content-hash key of each tenant among some records.
struct TenantPolicies(HashMap<TenantId, (Policy, [u8; 32])>);

impl TenantPolicies {
    fn of(&self, tenant: &TenantId) -> (&Policy, [u8; 32]) {
        let (policy, key) = &self.0[tenant];
        (policy, *key)
    }
}
