//! What the store knows of retention and erasure (docs/PRIVACY.md): which records lose
//! their content (`Selector`), what a purge did, legal holds, and which seqs retention runs
//! removed (from the system log, for `aitrail verify`). The use cases themselves, erasure,
//! holds and retention runs, are `aitrail_service::retention`'s.

use aitrail_core::{TenantId, Timestamp};
use serde::Serialize;

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

/// Whether a purge or a retention run deletes, or only counts what it would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Delete,
    /// Count what would go; delete nothing, log nothing.
    DryRun,
}

/// The operation of a retention run's system log event.
pub const RETENTION_EVENT: &str = "retention";

/// Sorted seqs as `[from, to)` ranges.
pub fn ranges(seqs: &[u64]) -> Vec<[u64; 2]> {
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    for &seq in seqs {
        match ranges.last_mut() {
            Some(last) if last[1] == seq => last[1] += 1,
            _ => ranges.push([seq, seq + 1]),
        }
    }
    ranges
}

/// The seqs retention runs removed, by tenant, as the system log's events say: the only
/// rows `aitrail verify` accepts as missing.
pub async fn removed(
    store: &dyn Store,
) -> Result<std::collections::BTreeMap<TenantId, Vec<[u64; 2]>>, StoreError> {
    let mut removed: std::collections::BTreeMap<TenantId, Vec<[u64; 2]>> = Default::default();
    let system = TenantId::system_log().to_string();
    let mut query = aitrail_core::Query::from_pairs(vec![
        ("tenant_id", system.as_str()),
        ("operation_type", RETENTION_EVENT),
        ("limit", "1000"),
    ])
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    loop {
        let page = store.list(&query).await?;
        for event in &page.records {
            let attributes = serde_json::to_value(&event.record.attributes).unwrap_or_default();
            let Some(tenants) = attributes["tenants"].as_array() else { continue };
            for t in tenants {
                let Some(tenant) = t["tenant_id"].as_str().and_then(|t| TenantId::parse(t).ok())
                else {
                    continue;
                };
                let ranges: Vec<[u64; 2]> =
                    serde_json::from_value(t["removed_seqs"].clone()).unwrap_or_default();
                removed.entry(tenant).or_default().extend(ranges);
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(removed),
        }
    }
}
