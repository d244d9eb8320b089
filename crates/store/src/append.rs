//! What every backend's writer does between claiming seqs and writing rows, in one place:
//! records made ready off the writer (salt, canonical JSON, columns), then, once a
//! transaction has claimed each tenant's seq range, their ids, entries and leaves.

use std::collections::BTreeMap;

use aitrail_core::entry::{self, Content, Prepared, RowColumns};
use aitrail_core::merkle::{self, Hash};
use aitrail_core::{Receipt, Record, Timestamp};
use uuid::Uuid;

use crate::StoreError;

/// A record made ready for a writer: everything that does not depend on the commit (its
/// canonical JSON, content commitments, index columns) is computed by the caller, off the
/// writer.
#[derive(Debug)]
pub struct NewRecord {
    prepared: Prepared,
}

impl NewRecord {
    pub fn new(r: &Record) -> Result<Self, StoreError> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt)
            .map_err(|e| StoreError::Backend(format!("no randomness for a salt: {e}")))?;
        Ok(Self { prepared: entry::prepare(r, salt) })
    }

    pub fn tenant(&self) -> &str {
        &self.prepared.columns.tenant_id
    }
}

/// How many records each tenant gets, by tenant id in sorted order: the order in which a
/// writer claims (and so locks) the tenants' logs, the same on every node, so two writers
/// never wait for each other in a cycle.
pub fn counts<'a>(records: impl IntoIterator<Item = &'a NewRecord>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts.entry(r.tenant().to_owned()).or_default() += 1;
    }
    counts
}

/// One row to write: the record's entry and columns at its claimed seq.
#[derive(Debug)]
pub struct Placed<'a> {
    pub id: Uuid,
    pub entry: Vec<u8>,
    pub columns: RowColumns,
    pub content: Option<&'a Content>,
}

/// Leaves appended to each tenant's log: its size before them, then the leaves.
pub type NewLeaves = BTreeMap<String, (u64, Vec<Hash>)>;

/// Place `records` in their logs, given where each tenant's claimed range starts (the log's
/// size before this append). Gives the rows to write in order, their receipts, and the new
/// leaves of every tenant, to add to its tiles in the same transaction.
pub fn place<'a>(
    records: &'a [NewRecord],
    starts: &BTreeMap<String, u64>,
    recorded_at: Timestamp,
    leaves: &mut NewLeaves,
) -> (Vec<Placed<'a>>, Vec<Receipt>) {
    let mut rows = Vec::with_capacity(records.len());
    let mut receipts = Vec::with_capacity(records.len());
    for r in records {
        let tenant = r.tenant();
        let (start, log) =
            leaves.entry(tenant.to_owned()).or_insert_with(|| (starts[tenant], Vec::new()));
        // An earlier append of the same transaction claimed the range just before ours.
        let seq = *start + log.len() as u64;
        let id = Uuid::now_v7();
        let p = &r.prepared;
        let entry = entry::encode(&id, recorded_at, seq, &p.record_json);
        log.push(merkle::leaf_hash(&entry));
        let columns = RowColumns::new(&id, seq, recorded_at, p.columns.clone());
        rows.push(Placed { id, entry, columns, content: p.content.as_ref() });
        receipts.push(Receipt { id, seq, recorded_at });
    }
    (rows, receipts)
}
