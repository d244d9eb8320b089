//! What the store knows of retention and erasure (docs/PRIVACY.md): which records lose
//! their content (`Selector`), what a purge did, legal holds, and which seqs retention runs
//! removed and whose content erasures and retention runs took (from the system log, for
//! `aitrail verify`). The use cases themselves, erasure,
//! holds and retention runs, are `aitrail_service::retention`'s.

use std::collections::BTreeMap;

use aitrail_core::entry::ColumnsRef;
use aitrail_core::query::TextField;
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
    /// Those at these seqs (an erasure deletes what its event named).
    Seqs(Vec<u64>),
}

impl Selector {
    /// The column a person or a session is picked by (`user_id`, `session_id`: the same in
    /// records and in data keys), and its value; `None` for the other selectors.
    pub fn subject(&self) -> Option<(&'static str, &str)> {
        match self {
            Selector::User(u) => Some(("user_id", u)),
            Selector::Session(s) => Some(("session_id", s)),
            Selector::RecordedBefore(_) | Selector::Seqs(_) => None,
        }
    }
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

/// The operation of an erasure's system log event.
pub const ERASURE_EVENT: &str = "erasure";

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

/// What the system log says may be missing of one tenant's content: the seqs erasures named,
/// the subjects erasures from before they named seqs gave in plain text, and the latest
/// content cut-off of a retention run. Content gone any other way is a finding of `verify`.
#[derive(Clone, Debug, Default)]
pub struct ContentRemovals {
    pub seqs: Vec<[u64; 2]>,
    /// A field, its value, and when the erasure that named it was recorded.
    pub named: Vec<(TextField, String, Timestamp)>,
    pub content_cutoff: Option<Timestamp>,
}

impl ContentRemovals {
    /// Whether the content of the record at `seq`, with these columns, may be missing.
    pub fn covers(&self, seq: u64, columns: &ColumnsRef<'_>) -> bool {
        let recorded_at = Timestamp::parse_rfc3339(columns.recorded_at).ok();
        self.covers_fields(seq, recorded_at, |field| {
            let index = TextField::ALL.iter().position(|f| *f == field)?;
            columns.text[index]
        })
    }

    /// [`ContentRemovals::covers`], for a record read whole.
    pub fn covers_record(&self, record: &aitrail_core::StoredRecord) -> bool {
        self.covers_fields(record.seq, Some(record.recorded_at), |field| {
            field.of(&record.record).map(|t| t.as_str())
        })
    }

    fn covers_fields<'v>(
        &self,
        seq: u64,
        recorded_at: Option<Timestamp>,
        value: impl Fn(TextField) -> Option<&'v str>,
    ) -> bool {
        if self.seqs.iter().any(|[from, to]| (*from..*to).contains(&seq)) {
            return true;
        }
        let Some(recorded_at) = recorded_at else { return false };
        if self.content_cutoff.is_some_and(|cutoff| recorded_at < cutoff) {
            return true;
        }
        self.named
            .iter()
            .any(|(field, named, at)| value(*field) == Some(named.as_str()) && recorded_at <= *at)
    }
}

/// What the system log says was deleted, by tenant: the only gaps `aitrail verify`
/// accepts.
#[derive(Clone, Debug, Default)]
pub struct Removals {
    /// Records retention runs removed, as seq ranges `[from, to)`.
    pub records: BTreeMap<TenantId, Vec<[u64; 2]>>,
    pub content: BTreeMap<TenantId, ContentRemovals>,
}

/// [`Removals`], read in one pass over the system log's retention and erasure events.
pub async fn removals(store: &dyn Store) -> Result<Removals, StoreError> {
    let mut removals = Removals::default();
    let system = TenantId::system_log().to_string();
    let mut query = aitrail_core::Query::from_pairs(vec![
        ("tenant_id", system.as_str()),
        ("operation_type", RETENTION_EVENT),
        ("operation_type", ERASURE_EVENT),
        ("limit", "1000"),
    ])
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    loop {
        let page = store.list(&query).await?;
        for event in &page.records {
            let attributes = serde_json::to_value(&event.record.attributes).unwrap_or_default();
            let operation = event.record.operation_type.as_ref().map(|o| o.as_str());
            if operation == Some(RETENTION_EVENT) {
                for t in attributes["tenants"].as_array().into_iter().flatten() {
                    let Some(tenant) =
                        t["tenant_id"].as_str().and_then(|t| TenantId::parse(t).ok())
                    else {
                        continue;
                    };
                    let ranges: Vec<[u64; 2]> =
                        serde_json::from_value(t["removed_seqs"].clone()).unwrap_or_default();
                    removals.records.entry(tenant.clone()).or_default().extend(ranges);
                    // A held tenant's run purged nothing: its cut-off covers nothing.
                    let cutoff = t["content_cutoff"].as_str();
                    let cutoff = cutoff.and_then(|c| Timestamp::parse_rfc3339(c).ok());
                    if let (false, Some(cutoff)) = (t["held"] == true, cutoff) {
                        let latest =
                            &mut removals.content.entry(tenant).or_default().content_cutoff;
                        *latest = Some(latest.map_or(cutoff, |l| l.max(cutoff)));
                    }
                }
                continue;
            }
            let tenant = event.record.session_id.as_ref().map(|s| s.as_str());
            let Some(tenant) = tenant.and_then(|t| TenantId::parse(t).ok()) else { continue };
            let entry = removals.content.entry(tenant).or_default();
            let seqs: Vec<[u64; 2]> =
                serde_json::from_value(attributes["content_seqs"].clone()).unwrap_or_default();
            entry.seqs.extend(seqs);
            // Erasures before they named seqs named their subject in plain text.
            let selector = &attributes["selector"];
            for (name, field) in
                [("user_id", TextField::UserId), ("session_id", TextField::SessionId)]
            {
                if let Some(value) = selector[name].as_str() {
                    entry.named.push((field, value.to_owned(), event.recorded_at));
                }
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(removals),
        }
    }
}
