//! Retention and erasure (docs/PRIVACY.md): what a tenant's policy or a person's request
//! says must go is deleted so that every leaf and proof stays valid. Content and its salt
//! are deleted; the entry (which holds only salted commitments to them) and its leaf stay,
//! so `aitrail verify` still passes and nothing left can confirm a guessed prompt. Every
//! deletion is an event in the system log, itself a signed Merkle log. Legal holds suspend
//! deletion.

use aitrail_core::policy::{Policy, system_event};
use aitrail_core::{TenantId, Timestamp};
use serde::Serialize;
use serde_json::json;

use crate::{Store, StoreError};

/// Which of a tenant's records lose their content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A person's (erasure).
    User(String),
    /// A session's (erasure).
    Session(String),
    /// Those recorded before this time (retention).
    RecordedBefore(Timestamp),
}

/// What a purge did (or, dry, would do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Records whose content was deleted.
    pub records: u64,
    /// Records picked but kept: their session is under a legal hold.
    pub held: u64,
}

/// A legal hold: on a whole tenant, or one session of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub tenant_id: TenantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub placed_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "tenant {0} is under a legal hold: nothing of it is deleted until the hold is released"
    )]
    Held(TenantId),
    #[error("the system log's own records are not erased")]
    Reserved,
    #[error("the stored policy of tenant {0} is unreadable: {1}")]
    Policy(TenantId, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An erasure done: how many records lost their content, how many were held, and the
/// system log event that records it.
#[derive(Clone, Debug, Serialize)]
pub struct Erasure {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub purged: Purged,
    pub event_id: uuid::Uuid,
}

/// Erase a person's or a session's content in one tenant (GDPR Art. 17), and log it. `by`:
/// who asked (a key id).
pub async fn erase(
    store: &dyn Store,
    tenant: &TenantId,
    selector: &Selector,
    by: &str,
) -> Result<Erasure, RetentionError> {
    if tenant.is_reserved() {
        return Err(RetentionError::Reserved);
    }
    if tenant_held(store, tenant).await? {
        return Err(RetentionError::Held(tenant.clone()));
    }
    let purged = store.purge_content(tenant, selector, false).await?;
    let whom = match selector {
        Selector::User(u) => json!({"user_id": u}),
        Selector::Session(s) => json!({"session_id": s}),
        Selector::RecordedBefore(t) => json!({"recorded_before": t.to_string()}),
    };
    let event = system_event(
        "erasure",
        Some(tenant),
        by,
        json!({"selector": whom, "content_purged": purged.records, "held": purged.held}),
    );
    let receipt = store.append(vec![event]).await?.remove(0);
    Ok(Erasure { tenant_id: tenant.clone(), purged, event_id: receipt.id })
}

/// One tenant in a retention run.
#[derive(Clone, Debug, Serialize)]
pub struct TenantRun {
    pub tenant_id: TenantId,
    /// Content recorded before this goes.
    pub content_cutoff: Timestamp,
    /// The whole tenant is held: nothing was looked at.
    pub held: bool,
    #[serde(flatten)]
    pub purged: Purged,
}

/// A retention run over every tenant.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub at: Timestamp,
    pub dry_run: bool,
    pub tenants: Vec<TenantRun>,
    /// The system log event of a run that deleted anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<uuid::Uuid>,
}

/// Apply every tenant's retention at `now`: content older than its
/// content_retention_days is deleted, but for held tenants and sessions. A run that
/// deletes anything appends one event with every tenant's counts and cut-off.
pub async fn run(store: &dyn Store, now: Timestamp, dry_run: bool) -> Result<Run, RetentionError> {
    let holds = store.holds().await?;
    let mut tenants = Vec::new();
    for tenant in store.tenants().await? {
        if tenant.is_reserved() {
            continue;
        }
        let policy = match store.policy(&tenant).await? {
            Some(json) => Policy::parse(&json)
                .map_err(|e| RetentionError::Policy(tenant.clone(), e.to_string()))?,
            None => Policy::default(),
        };
        let days =
            std::time::Duration::from_secs(u64::from(policy.content_retention_days()) * 86_400);
        let cutoff = Timestamp::from_datetime(now.datetime() - days)
            .map_err(|e| RetentionError::Policy(tenant.clone(), e))?;
        let held = holds.iter().any(|h| h.tenant_id == tenant && h.session_id.is_none());
        let purged = if held {
            Purged::default()
        } else {
            store.purge_content(&tenant, &Selector::RecordedBefore(cutoff), dry_run).await?
        };
        tenants.push(TenantRun { tenant_id: tenant, content_cutoff: cutoff, held, purged });
    }
    let mut run = Run { at: now, dry_run, tenants, event_id: None };
    if !dry_run && run.tenants.iter().any(|t| t.purged.records > 0) {
        let summary = serde_json::to_value(&run.tenants).expect("a run is JSON");
        let event = system_event("retention", None, "retention", json!({"tenants": summary}));
        run.event_id = Some(store.append(vec![event]).await?.remove(0).id);
    }
    Ok(run)
}

async fn tenant_held(store: &dyn Store, tenant: &TenantId) -> Result<bool, StoreError> {
    Ok(store.holds().await?.iter().any(|h| &h.tenant_id == tenant && h.session_id.is_none()))
}
