//! Retention and erasure (docs/PRIVACY.md): what a tenant's policy or a person's request
//! says must go is deleted so that every leaf and proof stays valid. Content and its salt
//! are deleted; the entry (which holds only salted commitments to them) and its leaf stay,
//! so `aitrail verify` still passes and nothing left can confirm a guessed prompt. Every
//! deletion is an event in the system log, itself a signed Merkle log, appended before
//! anything is deleted. Legal holds suspend deletion.
//!
//! What the store needs to know of them (selectors, holds, what a purge did, the system
//! log's record of removed seqs) is `aitrail_store::retention`'s.

use aitrail_core::policy::system_event;
use aitrail_core::value::keyed_hash;
use aitrail_core::{TenantId, Timestamp};
use aitrail_store::retention::{
    ERASURE_EVENT, Hold, Mode, Purged, RETENTION_EVENT, Selector, ranges,
};
use aitrail_store::{Store, StoreError};
use serde::Serialize;
use serde_json::json;

use aitrail_core::access::Actor;

use crate::Trail;

impl Trail {
    /// Erase a person's or a session's content in one tenant (GDPR Art. 17), logged first
    /// as done by `actor`.
    pub async fn erase(
        &self,
        tenant: &TenantId,
        selector: &Selector,
        actor: Actor<'_>,
    ) -> Result<Erasure, RetentionError> {
        let secret = self.signer.content_hash_secret();
        erase(self.store.as_ref(), &secret, tenant, selector, actor.id()).await
    }

    /// Every tenant's retention at `now` (see [`run`]).
    pub async fn retention_run(&self, now: Timestamp, mode: Mode) -> Result<Run, RetentionError> {
        run(self.store.as_ref(), now, mode).await
    }

    /// Place a legal hold, logged as placed by `actor`.
    pub async fn place_hold(&self, hold: &Hold, actor: Actor<'_>) -> Result<(), StoreError> {
        place_hold(self.store.as_ref(), hold, actor.id()).await
    }

    /// Lift a legal hold, logged as lifted by `actor`; whether there was one.
    pub async fn release_hold(
        &self,
        tenant: &TenantId,
        session_id: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<bool, StoreError> {
        release_hold(self.store.as_ref(), tenant, session_id, actor.id()).await
    }

    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        self.store.holds().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "tenant {0} is under a legal hold: nothing of it is deleted until the hold is released"
    )]
    Held(TenantId),
    #[error("the system log's own records are not erased")]
    Reserved,
    #[error("tenant {0}: its retention reaches back before what a timestamp holds: {1}")]
    Cutoff(TenantId, String),
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
    /// Data keys destroyed: the erased content's, which nothing can open from now on.
    pub data_keys_destroyed: u64,
    pub event_id: uuid::Uuid,
}

/// Erase a person's or a session's content in one tenant (GDPR Art. 17) by destroying the
/// data keys it is sealed under (crypto-shredding, docs/PRIVACY.md). First the keys are
/// retired, so nothing more is sealed under them; then the system log event names the
/// seqs sealed under them and the subject by pseudonym ([`subject_pseudonym`]), never in
/// plain text; then exactly those seqs' content is deleted, and the keys destroyed. A crash
/// on the way leaves content the event names still there, or retired keys not yet
/// destroyed (run the erasure again to finish: it destroys them too), never a deletion no
/// event covers. `secret`: the content-hash secret; `by`: who asked (a key id, or `cli`).
pub async fn erase(
    store: &dyn Store,
    secret: &[u8; 32],
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
    // An empty id would pick the records that have none: never a person or a session.
    if matches!(selector, Selector::User(id) | Selector::Session(id) if id.trim().is_empty()) {
        return Err(RetentionError::Store(StoreError::Refused(
            "an erasure names a person or a session: the id is empty".into(),
        )));
    }
    let subject = match selector {
        Selector::User(u) => json!({"user": subject_pseudonym(secret, tenant, "user", u)}),
        Selector::Session(s) => {
            json!({"session": subject_pseudonym(secret, tenant, "session", s)})
        }
        Selector::RecordedBefore(_) | Selector::Seqs(_) => {
            return Err(RetentionError::Store(StoreError::Refused(
                "an erasure names a person or a session".into(),
            )));
        }
    };
    let retired = store.retire_keys(tenant, selector).await?;
    let (seqs, held) = store.content_seqs(tenant, selector).await?;
    let event = system_event(
        ERASURE_EVENT,
        Some(tenant),
        by,
        json!({
            "subject": subject,
            "content_seqs": ranges(&seqs),
            "content_purged": seqs.len(),
            "data_keys": retired.len(),
            "held": held,
        }),
    );
    let receipt = store.append(vec![event]).await?.remove(0);
    // Also with nothing named: a purge that finds nothing still finishes an earlier one
    // whose write-ahead log could not be emptied.
    let purged = store.purge_content(tenant, &Selector::Seqs(seqs), Mode::Delete).await?;
    let purged = Purged { records: purged.records, held: held + purged.held };
    let data_keys_destroyed = store.destroy_keys(tenant, &retired).await?;
    Ok(Erasure { tenant_id: tenant.clone(), purged, data_keys_destroyed, event_id: receipt.id })
}

/// Who an erasure was about, as its event names them: a keyed hash under the tenant's
/// content-hash key, so the system log never holds the person's id, yet whoever holds the
/// key (the server, an auditor told the id) can tell which erasure was whose.
pub fn subject_pseudonym(secret: &[u8; 32], tenant: &TenantId, kind: &str, id: &str) -> String {
    let key = aitrail_core::policy::tenant_hash_key(secret, tenant);
    keyed_hash(&key, &format!("aitrail.erasure-subject.v1\0{kind}\0{id}")).to_string()
}

/// One tenant in a retention run.
#[derive(Clone, Debug, Serialize)]
pub struct TenantRun {
    pub tenant_id: TenantId,
    /// The whole tenant is held: nothing was looked at.
    pub held: bool,
    /// Content recorded before this goes...
    pub content_cutoff: Timestamp,
    /// ... this many records' (of records kept; and held ones).
    #[serde(flatten)]
    pub purged: Purged,
    /// Records recorded before this go, but for their leaves...
    pub records_cutoff: Timestamp,
    /// ... these (seq ranges, `[from, to)`), which `aitrail verify` accepts as removed
    /// only because this event says so.
    pub removed_seqs: Vec<[u64; 2]>,
    pub records_removed: u64,
    /// Records past the cut-off kept for a held session.
    pub records_held: u64,
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

/// Apply every tenant's retention at `now`: records older than its retention_days are
/// removed (their leaves stay), and content older than its content_retention_days is
/// deleted, but for held tenants and sessions. What a run will delete is appended to the
/// system log first, in one event with every tenant's cut-offs, counts and removed seqs;
/// then it is deleted.
pub async fn run(store: &dyn Store, now: Timestamp, mode: Mode) -> Result<Run, RetentionError> {
    let holds = store.holds().await?;
    let mut tenants = Vec::new();
    for tenant in store.tenants().await? {
        if tenant.is_reserved() {
            continue;
        }
        let policy = aitrail_store::policy_of(store, &tenant).await?;
        let before = |days: u32| {
            let age = std::time::Duration::from_secs(u64::from(days) * 86_400);
            Timestamp::from_datetime(now.datetime() - age)
                .map_err(|e| RetentionError::Cutoff(tenant.clone(), e))
        };
        let (content_cutoff, records_cutoff) =
            (before(policy.content_retention_days())?, before(policy.retention_days())?);
        let held = holds.iter().any(|h| h.tenant_id == tenant && h.session_id.is_none());
        let mut run = TenantRun {
            tenant_id: tenant.clone(),
            held,
            content_cutoff,
            purged: Purged::default(),
            records_cutoff,
            removed_seqs: Vec::new(),
            records_removed: 0,
            records_held: 0,
        };
        if !held {
            run.purged = store
                .purge_content(&tenant, &Selector::RecordedBefore(content_cutoff), Mode::DryRun)
                .await?;
            let (seqs, records_held) = store.records_before(&tenant, records_cutoff).await?;
            run.records_removed = seqs.len() as u64;
            run.records_held = records_held;
            run.removed_seqs = ranges(&seqs);
        }
        tenants.push(run);
    }
    let dry_run = mode == Mode::DryRun;
    let mut run = Run { at: now, dry_run, tenants, event_id: None };
    let anything = run.tenants.iter().any(|t| t.purged.records > 0 || t.records_removed > 0);
    if dry_run || !anything {
        return Ok(run);
    }
    let summary = serde_json::to_value(&run.tenants).expect("a run is JSON");
    let event = system_event(RETENTION_EVENT, None, "retention", json!({"tenants": summary}));
    run.event_id = Some(store.append(vec![event]).await?.remove(0).id);
    for t in &mut run.tenants {
        let seqs: Vec<u64> = t.removed_seqs.iter().flat_map(|[from, to]| *from..*to).collect();
        if !seqs.is_empty() {
            t.records_removed = store.remove_records(&t.tenant_id, &seqs).await?;
        }
        if t.purged.records > 0 {
            let cutoff = Selector::RecordedBefore(t.content_cutoff);
            t.purged = store.purge_content(&t.tenant_id, &cutoff, Mode::Delete).await?;
        }
    }
    Ok(run)
}

/// Place a legal hold, and log it in the system log. `by`: who (a key id).
pub async fn place_hold(store: &dyn Store, hold: &Hold, by: &str) -> Result<(), StoreError> {
    store.add_hold(hold).await?;
    let event = system_event("hold.add", Some(&hold.tenant_id), by, json!({ "hold": hold }));
    store.append(vec![event]).await?;
    Ok(())
}

/// Lift a legal hold, and log it; whether there was one.
pub async fn release_hold(
    store: &dyn Store,
    tenant: &TenantId,
    session_id: Option<&str>,
    by: &str,
) -> Result<bool, StoreError> {
    if !store.remove_hold(tenant, session_id).await? {
        return Ok(false);
    }
    let hold = json!({"tenant_id": tenant, "session_id": session_id});
    store
        .append(vec![system_event("hold.remove", Some(tenant), by, json!({ "hold": hold }))])
        .await?;
    Ok(true)
}

async fn tenant_held(store: &dyn Store, tenant: &TenantId) -> Result<bool, StoreError> {
    Ok(store.holds().await?.iter().any(|h| &h.tenant_id == tenant && h.session_id.is_none()))
}
