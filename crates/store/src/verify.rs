//! Full verification of a store, over the [`Store`] trait (so of any backend): every row is
//! read as found and checked against its own entry and the leaf the log holds for its seq;
//! every tenant's tree is rebuilt from those leaves and every signed checkpoint checked
//! against it with the public key alone. Each problem is named by tenant, seq and id.
//!
//! Two passes, both sequential reads. Pass 1 reads the rows in storage order, in ranges of
//! positions read and checked on every core at once, and notes each row's leaf hash by its
//! seq (48 bytes a record). Pass 2 walks each tenant's logged leaves in seq order: rows
//! missing or not matching their leaf, and the signed roots. Together they cover the log:
//! every row's entry hashes to the leaf at its seq, every leaf below the log's size has
//! exactly one row, and the leaves give every signed root.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use aitrail_core::TenantId;
use aitrail_core::entry::EntryView;
use aitrail_core::merkle::{CompactRange, Hash, leaf_hash};
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_core::tiles::{TILE_WIDTH, TileId};

use crate::{CONTENT_COLUMNS, RowRef, Store, StoreError, StoredCheckpoint, proofs};

/// Positions per range read by one task.
const RANGE: i64 = 5_000;
/// Leaf tiles fetched per call.
const TILES_PER_FETCH: u64 = 64;

/// One thing verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The row no longer matches what was logged (its entry, columns or content).
    Modified { tenant: TenantId, seq: u64, id: String, what: String },
    /// The log has a leaf at this seq but no row holds it.
    Removed { tenant: TenantId, seq: u64 },
    /// A row the log does not account for.
    Inserted { tenant: String, seq: i64, id: String, why: String },
    /// A row stored at another seq than its entry was logged at.
    Reordered { tenant: TenantId, seq: u64, id: String, logged_seq: u64 },
    /// A checkpoint that is not signed by the key, or disagrees with the log.
    Checkpoint { tenant: TenantId, size: u64, why: String },
    /// Something about the log as a whole.
    Log { tenant: TenantId, why: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Modified { tenant, seq, id, what } => {
                write!(f, "MODIFIED  tenant {tenant} seq {seq} id {id}: {what}")
            }
            Finding::Removed { tenant, seq } => write!(
                f,
                "REMOVED   tenant {tenant} seq {seq}: the log has this leaf but no record holds it"
            ),
            Finding::Inserted { tenant, seq, id, why } => {
                write!(f, "INSERTED  tenant {tenant} seq {seq} id {id}: {why}")
            }
            Finding::Reordered { tenant, seq, id, logged_seq } => write!(
                f,
                "REORDERED tenant {tenant} seq {seq} id {id}: this record was logged at seq {logged_seq}"
            ),
            Finding::Checkpoint { tenant, size, why } => {
                write!(f, "CHECKPOINT tenant {tenant} size {size}: {why}")
            }
            Finding::Log { tenant, why } => write!(f, "LOG       tenant {tenant}: {why}"),
        }
    }
}

/// What a full verification covered and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub tenants: usize,
    pub records: u64,
    pub checkpoints: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One tenant log while its rows stream past: which seqs a row holds, and the leaf hash
/// and id of that row, to compare with the logged leaf in pass 2.
struct TenantLog {
    size: u64,
    /// One bit per seq below `size`: a row holds it.
    held: Vec<u64>,
    /// One bit per seq: the row's leaf is to be compared (not when it is misplaced, which
    /// is its own finding).
    compare: Vec<u64>,
    leaves: Vec<Hash>,
    ids: Vec<String>,
}

fn bit(bits: &[u64], seq: u64) -> bool {
    bits[(seq / 64) as usize] & (1 << (seq % 64)) != 0
}

fn set(bits: &mut [u64], seq: u64) {
    bits[(seq / 64) as usize] |= 1 << (seq % 64);
}

impl TenantLog {
    fn new(size: u64) -> Self {
        let words = size.div_ceil(64) as usize;
        Self {
            size,
            held: vec![0; words],
            compare: vec![0; words],
            leaves: vec![[0; 32]; size as usize],
            ids: vec![String::new(); size as usize],
        }
    }
}

/// A row as pass 1 keeps it, once checked against its own entry.
#[derive(Debug)]
pub struct Checked {
    tenant: String,
    seq: i64,
    id: String,
    leaf: Hash,
    findings: Vec<Finding>,
}

/// Read and check the rows with positions in `from..to`.
async fn read_range(store: Arc<dyn Store>, from: i64, to: i64) -> Result<Vec<Checked>, StoreError> {
    store.check_rows(from, to, check_row).await
}

/// Verify everything in the store against the log's public key. `progress` is called
/// with the number of rows read so far.
pub async fn verify_store(
    store: Arc<dyn Store>,
    verifier: &Verifier,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, StoreError> {
    let mut logs: BTreeMap<TenantId, TenantLog> =
        store.logs().await?.into_iter().map(|h| (h.tenant_id, TenantLog::new(h.size))).collect();
    let mut report = Report::default();
    let mut findings = Vec::new();

    // Pass 1: every row, by ranges of positions, several read and checked at once.
    if let Some((first, last)) = store.pos_span().await? {
        let in_flight = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut ranges = (first..=last).step_by(RANGE as usize).map(|from| (from, from + RANGE));
        let mut running = VecDeque::new();
        loop {
            while running.len() < in_flight
                && let Some((from, to)) = ranges.next()
            {
                running.push_back(tokio::spawn(read_range(store.clone(), from, to)));
            }
            let Some(next) = running.pop_front() else { break };
            let rows = next
                .await
                .map_err(|e| StoreError::Backend(format!("verification task failed: {e}")))??;
            report.records += rows.len() as u64;
            for row in rows {
                place_row(&mut logs, row, &mut findings);
            }
            progress(report.records);
        }
    }

    // Pass 2: each tenant's leaves in seq order: rows missing or not matching, and the
    // signed roots.
    for (tenant, log) in &logs {
        let checkpoints = store.checkpoints(tenant).await?;
        check_tree(store.as_ref(), verifier, tenant, log, &checkpoints, &mut findings).await?;
        report.checkpoints += checkpoints.len();
    }
    report.tenants = logs.len();
    findings.sort_by_key(order);
    report.findings = findings;
    Ok(report)
}

/// Findings in reading order: by tenant, then seq.
fn order(f: &Finding) -> (String, i64) {
    match f {
        Finding::Modified { tenant, seq, .. }
        | Finding::Removed { tenant, seq }
        | Finding::Reordered { tenant, seq, .. } => (tenant.to_string(), *seq as i64),
        Finding::Inserted { tenant, seq, .. } => (tenant.clone(), *seq),
        Finding::Checkpoint { tenant, size, .. } => (tenant.to_string(), *size as i64),
        Finding::Log { tenant, .. } => (tenant.to_string(), i64::MAX),
    }
}

/// Account for one row in its tenant's log.
fn place_row(logs: &mut BTreeMap<TenantId, TenantLog>, row: Checked, findings: &mut Vec<Finding>) {
    let inserted = |row: &Checked, why: String| Finding::Inserted {
        tenant: row.tenant.clone(),
        seq: row.seq,
        id: row.id.clone(),
        why,
    };
    let log = TenantId::parse(&row.tenant).ok().and_then(|t| logs.get_mut(&t));
    let Some(log) = log else {
        findings.push(inserted(&row, "a record of a tenant that has no log".into()));
        return;
    };
    if row.seq < 0 || row.seq as u64 >= log.size {
        findings.push(inserted(&row, format!("beyond the end of the log (size {})", log.size)));
        return;
    }
    let seq = row.seq as u64;
    if bit(&log.held, seq) {
        findings.push(inserted(&row, "a second record at a seq already taken".into()));
        return;
    }
    set(&mut log.held, seq);
    let reordered = row.findings.iter().any(|p| matches!(p, Finding::Reordered { .. }));
    if !reordered {
        set(&mut log.compare, seq);
        log.leaves[seq as usize] = row.leaf;
        log.ids[seq as usize] = row.id;
    }
    findings.extend(row.findings);
}

/// Check one row against its own entry: the leaf its entry hashes to, and what is wrong
/// with the row. Pure, so rows are checked in parallel, where they are read.
fn check_row(row: &RowRef<'_>) -> Checked {
    let c = &row.columns;
    let leaf = leaf_hash(row.entry);
    let checked = |findings| Checked {
        tenant: c.tenant_id.to_owned(),
        seq: c.seq,
        id: c.id.to_owned(),
        leaf,
        findings,
    };
    let Ok(tenant) = TenantId::parse(c.tenant_id) else {
        return checked(Vec::new()); // placed as a row of no log
    };
    let seq = c.seq.max(0) as u64;
    let id = || c.id.to_owned();
    let modified = |what: String| Finding::Modified { tenant: tenant.clone(), seq, id: id(), what };
    let mut findings = Vec::new();
    match EntryView::parse(row.entry) {
        Err(e) => findings.push(modified(format!("entry unreadable: {e}"))),
        Ok(entry) if entry.seq != seq => findings.push(Finding::Reordered {
            tenant: tenant.clone(),
            seq,
            id: id(),
            logged_seq: entry.seq,
        }),
        Ok(entry) => {
            let diffs = c.differences(&entry);
            if !diffs.is_empty() {
                findings
                    .push(modified(format!("{} differ from the logged entry", diffs.join(", "))));
            }
            if let Some(content) = row.content {
                let present = CONTENT_COLUMNS.into_iter().zip(content.fields);
                let fields = present.filter_map(|(name, v)| Some((name, v?)));
                if let Err(e) = entry.check_stored_content(content.salt, fields) {
                    findings.push(modified(e.to_string()));
                }
            }
        }
    }
    checked(findings)
}

/// Walk a tenant's logged leaves: each seq's row must be there and hash to its leaf; the
/// tree rebuilt from them must give every checkpoint's signed root.
async fn check_tree(
    store: &dyn Store,
    verifier: &Verifier,
    tenant: &TenantId,
    log: &TenantLog,
    checkpoints: &[StoredCheckpoint],
    findings: &mut Vec<Finding>,
) -> Result<(), StoreError> {
    let size = log.size;
    let mut pending = checkpoints.iter().peekable();
    let mut tree = CompactRange::default();
    let mut leaves = LeafTiles::default();
    for seq in 0..size {
        let Some(leaf) = leaves.get(store, tenant, seq, size).await? else {
            findings.push(Finding::Log {
                tenant: tenant.clone(),
                why: format!("the log has no leaf hash for seq {seq}: its tiles are incomplete"),
            });
            let removed = (seq..size).filter(|&s| !bit(&log.held, s));
            findings.extend(removed.map(|seq| Finding::Removed { tenant: tenant.clone(), seq }));
            return Ok(());
        };
        if !bit(&log.held, seq) {
            findings.push(Finding::Removed { tenant: tenant.clone(), seq });
        } else if bit(&log.compare, seq) && log.leaves[seq as usize] != leaf {
            findings.push(Finding::Modified {
                tenant: tenant.clone(),
                seq,
                id: log.ids[seq as usize].clone(),
                what: "entry differs from the logged leaf hash".into(),
            });
        }
        tree.push(leaf);
        while let Some(cp) = pending.next_if(|cp| cp.size <= tree.size()) {
            if let Some(why) = checkpoint_problem(verifier, tenant, cp, &tree) {
                findings.push(Finding::Checkpoint { tenant: tenant.clone(), size: cp.size, why });
            }
        }
    }
    for cp in pending {
        findings.push(Finding::Checkpoint {
            tenant: tenant.clone(),
            size: cp.size,
            why: format!("signed for a size the log never reached (log size {size})"),
        });
    }
    // Proofs are served from the stored tiles: they must give the signed root too.
    if let Some(latest) = checkpoints.last().filter(|c| c.size <= size) {
        match proofs::root(store, tenant, latest.size).await {
            Ok(root) if root == latest.root => {}
            Ok(_) => findings.push(Finding::Log {
                tenant: tenant.clone(),
                why: format!(
                    "stored tree hashes give another root than checkpoint {}; proofs would fail",
                    latest.size
                ),
            }),
            Err(e) => findings.push(Finding::Log { tenant: tenant.clone(), why: e.to_string() }),
        }
    }
    Ok(())
}

/// What is wrong with a checkpoint of the tree's current size, if anything.
fn checkpoint_problem(
    verifier: &Verifier,
    tenant: &TenantId,
    cp: &StoredCheckpoint,
    tree: &CompactRange,
) -> Option<String> {
    let signed = match Checkpoint::open(&cp.note, verifier) {
        Err(e) => return Some(format!("signature check failed: {e}")),
        Ok(signed) => signed,
    };
    let origin = format!("{}/{tenant}", verifier.name());
    if signed.origin != origin {
        Some(format!("origin is {}, expected {origin}", signed.origin))
    } else if signed.size != cp.size || signed.root != cp.root {
        Some("stored size or root differ from the signed note".into())
    } else if signed.root != tree.root() {
        Some("the logged leaves do not hash to the signed root".into())
    } else {
        None
    }
}

/// Level-0 tiles (the logged leaf hashes), fetched a run at a time as a scan needs them.
#[derive(Default)]
struct LeafTiles {
    tiles: HashMap<u64, Vec<Hash>>,
}

impl LeafTiles {
    async fn get(
        &mut self,
        store: &dyn Store,
        tenant: &TenantId,
        seq: u64,
        size: u64,
    ) -> Result<Option<Hash>, StoreError> {
        let index = seq / TILE_WIDTH;
        if !self.tiles.contains_key(&index) {
            self.tiles.clear();
            let last = size.saturating_sub(1) / TILE_WIDTH;
            let ids: Vec<TileId> = (index..=(index + TILES_PER_FETCH - 1).min(last))
                .map(|i| TileId { level: 0, index: i })
                .collect();
            for t in store.tiles(tenant, &ids).await? {
                self.tiles.insert(t.id.index, t.hashes);
            }
            self.tiles.entry(index).or_default();
        }
        Ok(self.tiles[&index].get((seq % TILE_WIDTH) as usize).copied())
    }
}
