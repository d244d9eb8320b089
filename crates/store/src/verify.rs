//! Full verification of a store, over the [`Store`] trait (so of any backend): every row is
//! read as found and checked against its own entry and the leaf the log holds for its seq;
//! every tenant's tree is rebuilt from those leaves and every signed checkpoint checked
//! against it with the public key alone. Each problem is named by tenant, seq and id.
//!
//! First each tenant's logged leaves are read from its tiles (32 bytes a record). The tree
//! they make is then checked against every signed checkpoint on one thread while the rows
//! are read in storage order, in ranges of positions read and checked on every other core
//! at once, each row against the logged leaf at its seq where it is read. Together they
//! cover the log: every row's entry hashes to the leaf at its seq, every leaf below the
//! log's size has exactly one row (or was removed by a retention run that the system log
//! records), and the leaves give every signed root.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use aitrail_core::TenantId;
use aitrail_core::entry::EntryView;
use aitrail_core::merkle::{CompactRange, Hash, leaf_hash};
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_core::tiles::{TILE_WIDTH, TileId};

use crate::retention::ContentRemovals;
use crate::{
    CONTENT_COLUMNS, RowCheck, RowContentRef, RowRef, Store, StoreError, StoredCheckpoint, proofs,
};

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
    /// The record's content is gone, and no erasure or retention event says it went.
    ContentRemoved { tenant: TenantId, seq: u64, id: String },
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
            Finding::ContentRemoved { tenant, seq, id } => write!(
                f,
                "CONTENT REMOVED tenant {tenant} seq {seq} id {id}: its content is gone without an erasure or retention event"
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
    /// Records whose content is sealed and could not be opened (the store was opened
    /// without the content key): their content commitments were not checked.
    pub content_unchecked: u64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One tenant's log as its tiles hold it.
struct Logged {
    tenant: TenantId,
    size: u64,
    /// The logged leaf hashes from seq 0; shorter than `size` when tiles are missing.
    leaves: Vec<Hash>,
    checkpoints: Vec<StoredCheckpoint>,
    /// Whose content the system log says went.
    content_removed: ContentRemovals,
}

/// What each row is checked against: every tenant's logged leaves, by tenant id.
pub struct Logs(Vec<Logged>);

impl Logs {
    fn find(&self, tenant: &str) -> Option<usize> {
        self.0.binary_search_by(|l| l.tenant.as_str().cmp(tenant)).ok()
    }
}

/// A row once checked where it was read: where it sits, and what is wrong with it. Small
/// and without allocations unless something is wrong, as millions pass through.
#[derive(Debug)]
pub struct Checked {
    pos: i64,
    /// Index of its tenant's log; `None` when its tenant has no log or its seq lies
    /// outside it (a finding already says so).
    log: Option<usize>,
    seq: u64,
    /// Its content is sealed and was not opened: its commitments went unchecked.
    content_unchecked: bool,
    findings: Vec<Finding>,
}

/// Verify everything in the store against the log's public key. `progress` is called
/// with the number of rows read so far.
pub async fn verify_store(
    store: Arc<dyn Store>,
    verifier: &Verifier,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut findings = Vec::new();
    let mut logs = Vec::new();
    let system_log_size = |heads: &[crate::LogHead]| {
        heads.iter().find(|h| h.tenant_id == TenantId::system_log()).map_or(0, |h| h.size)
    };
    let events_before = system_log_size(&store.logs().await?);
    let mut content_removals = crate::retention::removals(store.as_ref()).await?.content;
    for head in store.logs().await? {
        let leaves = logged_leaves(store.as_ref(), &head.tenant_id, head.size).await?;
        let checkpoints = store.checkpoints(&head.tenant_id).await?;
        let content_removed = content_removals.remove(&head.tenant_id).unwrap_or_default();
        let tenant = head.tenant_id;
        logs.push(Logged { tenant, size: head.size, leaves, checkpoints, content_removed });
    }
    logs.sort_by(|a, b| a.tenant.as_str().cmp(b.tenant.as_str()));
    let logs = Arc::new(Logs(logs));
    report.tenants = logs.0.len();
    report.checkpoints = logs.0.iter().map(|l| l.checkpoints.len()).sum();

    // The trees, on one thread while the rows are read.
    let trees = tokio::task::spawn_blocking({
        let (logs, verifier) = (logs.clone(), verifier.clone());
        move || {
            let mut findings = Vec::new();
            for log in &logs.0 {
                check_tree(&verifier, log, &mut findings);
            }
            findings
        }
    });

    // Every row, by ranges of positions, several read and checked at once.
    let mut held: Vec<Vec<u64>> =
        logs.0.iter().map(|l| vec![0; l.size.div_ceil(64) as usize]).collect();
    let mut duplicates = Vec::new();
    if let Some((first, last)) = store.pos_span().await? {
        let in_flight = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
        let check: RowCheck = {
            let logs = logs.clone();
            Arc::new(move |row| check_row(&logs, row))
        };
        let mut ranges = (first..=last).step_by(RANGE as usize).map(|from| (from, from + RANGE));
        let mut running = VecDeque::new();
        loop {
            while running.len() < in_flight
                && let Some((from, to)) = ranges.next()
            {
                let (store, check) = (store.clone(), check.clone());
                running.push_back(tokio::spawn(
                    async move { store.check_rows(from, to, check).await },
                ));
            }
            let Some(next) = running.pop_front() else { break };
            let rows = next
                .await
                .map_err(|e| StoreError::Backend(format!("verification task failed: {e}")))??;
            report.records += rows.len() as u64;
            for row in rows {
                report.content_unchecked += u64::from(row.content_unchecked);
                let Some(log) = row.log else {
                    findings.extend(row.findings);
                    continue;
                };
                let bits = &mut held[log];
                if bit(bits, row.seq) {
                    duplicates.push((log, row.seq, row.pos));
                } else {
                    set(bits, row.seq);
                    findings.extend(row.findings);
                }
            }
            progress(report.records);
        }
    }
    for (log, seq, pos) in duplicates {
        let id = store.scan(pos, pos + 1).await?.pop().map(|r| r.columns.id).unwrap_or_default();
        let tenant = logs.0[log].tenant.to_string();
        let why = "a second record at a seq already taken".into();
        findings.push(Finding::Inserted { tenant, seq: seq as i64, id, why });
    }
    // Read again after the scan: a retention run or erasure logged during it accounts for
    // what it deleted meanwhile.
    let grew = system_log_size(&store.logs().await?) > events_before;
    let removals = crate::retention::removals(store.as_ref()).await?;
    // Content found missing while the system log grew may be that event's: checked again.
    if grew {
        let now = &removals.content;
        let mut kept = Vec::with_capacity(findings.len());
        for finding in findings {
            if let Finding::ContentRemoved { tenant, id, .. } = &finding
                && let Some(removals) = now.get(tenant)
                && let Ok(uuid) = id.parse()
                && let Some(entry) = store.entry(uuid).await?
                && entry.to_record().is_ok_and(|r| removals.covers_record(&r))
            {
                continue;
            }
            kept.push(finding);
        }
        findings = kept;
    }
    // A leaf without its row is a finding unless a retention run, in the system log
    // (itself verified here like every log), says it removed that record.
    let retained = &removals.records;
    for (log, held) in logs.0.iter().zip(&held) {
        let removed_by_retention = retained.get(&log.tenant).map_or(&[][..], Vec::as_slice);
        let accounted =
            |seq: u64| removed_by_retention.iter().any(|[from, to]| (*from..*to).contains(&seq));
        let removed = (0..log.size).filter(|&seq| !bit(held, seq) && !accounted(seq));
        findings.extend(removed.map(|seq| Finding::Removed { tenant: log.tenant.clone(), seq }));
    }
    findings.extend(
        trees.await.map_err(|e| StoreError::Backend(format!("verification task failed: {e}")))?,
    );

    // Proofs are served from the stored tiles: they must give the signed root too.
    for log in &logs.0 {
        let Some(latest) = log.checkpoints.last().filter(|c| c.size <= log.size) else { continue };
        let tenant = log.tenant.clone();
        match proofs::root(store.as_ref(), &log.tenant, latest.size).await {
            Ok(root) if root == latest.root => {}
            Ok(_) => findings.push(Finding::Log {
                tenant,
                why: format!(
                    "stored tree hashes give another root than checkpoint {}; proofs would fail",
                    latest.size
                ),
            }),
            Err(e) => findings.push(Finding::Log { tenant, why: e.to_string() }),
        }
    }
    findings.sort_by_key(order);
    report.findings = findings;
    Ok(report)
}

fn bit(bits: &[u64], seq: u64) -> bool {
    bits[(seq / 64) as usize] & (1 << (seq % 64)) != 0
}

fn set(bits: &mut [u64], seq: u64) {
    bits[(seq / 64) as usize] |= 1 << (seq % 64);
}

/// Findings in reading order: by tenant, then seq.
fn order(f: &Finding) -> (String, i64) {
    match f {
        Finding::Modified { tenant, seq, .. }
        | Finding::Removed { tenant, seq }
        | Finding::ContentRemoved { tenant, seq, .. }
        | Finding::Reordered { tenant, seq, .. } => (tenant.to_string(), *seq as i64),
        Finding::Inserted { tenant, seq, .. } => (tenant.clone(), *seq),
        Finding::Checkpoint { tenant, size, .. } => (tenant.to_string(), *size as i64),
        Finding::Log { tenant, .. } => (tenant.to_string(), i64::MAX),
    }
}

/// Check one row against its own entry and the leaf logged at its seq. Pure, so rows are
/// checked in parallel, where they are read.
fn check_row(logs: &Logs, row: &RowRef<'_>) -> Checked {
    let c = &row.columns;
    let inserted = |why: String| Checked {
        pos: row.pos,
        log: None,
        seq: 0,
        content_unchecked: false,
        findings: vec![Finding::Inserted {
            tenant: c.tenant_id.to_owned(),
            seq: c.seq,
            id: c.id.to_owned(),
            why,
        }],
    };
    let Some(index) = logs.find(c.tenant_id) else {
        return inserted("a record of a tenant that has no log".into());
    };
    let log = &logs.0[index];
    let seq = match u64::try_from(c.seq) {
        Ok(seq) if seq < log.size => seq,
        _ => return inserted(format!("beyond the end of the log (size {})", log.size)),
    };
    let tenant = &log.tenant;
    let modified =
        |what: String| Finding::Modified { tenant: tenant.clone(), seq, id: c.id.to_owned(), what };
    let mut findings = Vec::new();
    match EntryView::parse(row.entry) {
        Err(e) => findings.push(modified(format!("entry unreadable: {e}"))),
        // In the wrong place: its leaf is another seq's, which is the finding.
        Ok(entry) if entry.seq != seq => findings.push(Finding::Reordered {
            tenant: tenant.clone(),
            seq,
            id: c.id.to_owned(),
            logged_seq: entry.seq,
        }),
        Ok(entry) => {
            let diffs = c.differences(&entry);
            if !diffs.is_empty() {
                findings
                    .push(modified(format!("{} differ from the logged entry", diffs.join(", "))));
            }
            match row.content {
                RowContentRef::Kept(content) => {
                    let present = CONTENT_COLUMNS.into_iter().zip(content.fields);
                    let fields = present.filter_map(|(name, v)| Some((name, v?)));
                    if let Err(e) = entry.check_stored_content(content.salt, fields) {
                        findings.push(modified(e.to_string()));
                    }
                }
                // Gone: purged, or its data key destroyed; either needs an event.
                RowContentRef::Gone => {
                    if entry.record.commitments.is_some() && !log.content_removed.covers(seq, c) {
                        let id = c.id.to_owned();
                        findings.push(Finding::ContentRemoved { tenant: tenant.clone(), seq, id });
                    }
                }
                // Opened without the content key: the commitments cannot be checked.
                RowContentRef::Sealed => {}
                RowContentRef::Unreadable(why) => findings.push(modified(format!("content {why}"))),
            }
            let logged = log.leaves.get(seq as usize);
            if logged.is_some_and(|logged| *logged != leaf_hash(row.entry)) {
                findings.push(modified("entry differs from the logged leaf hash".into()));
            }
        }
    }
    let content_unchecked = matches!(row.content, RowContentRef::Sealed);
    Checked { pos: row.pos, log: Some(index), seq, content_unchecked, findings }
}

/// A tenant's logged leaves from seq 0, as far as its tiles hold them.
async fn logged_leaves(
    store: &dyn Store,
    tenant: &TenantId,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    let mut leaves = Vec::with_capacity(size as usize);
    let tiles = size.div_ceil(TILE_WIDTH);
    for first in (0..tiles).step_by(TILES_PER_FETCH as usize) {
        let ids: Vec<TileId> = (first..(first + TILES_PER_FETCH).min(tiles))
            .map(|index| TileId { level: 0, index })
            .collect();
        let mut fetched = store.tiles(tenant, &ids).await?;
        fetched.sort_by_key(|t| t.id.index);
        for (want, tile) in ids.iter().zip(&fetched) {
            let full = TILE_WIDTH.min(size - want.index * TILE_WIDTH) as usize;
            if tile.id != *want || tile.hashes.len() < full {
                return Ok(leaves);
            }
            leaves.extend_from_slice(&tile.hashes[..full]);
        }
        if fetched.len() < ids.len() {
            return Ok(leaves);
        }
    }
    Ok(leaves)
}

/// Rebuild a tenant's tree from its logged leaves: it must give every checkpoint's signed
/// root.
fn check_tree(verifier: &Verifier, log: &Logged, findings: &mut Vec<Finding>) {
    let tenant = &log.tenant;
    let mut pending = log.checkpoints.iter().peekable();
    let mut tree = CompactRange::default();
    for leaf in &log.leaves {
        tree.push(*leaf);
        while let Some(cp) = pending.next_if(|cp| cp.size <= tree.size()) {
            if let Some(why) = checkpoint_problem(verifier, tenant, cp, &tree) {
                findings.push(Finding::Checkpoint { tenant: tenant.clone(), size: cp.size, why });
            }
        }
    }
    if (log.leaves.len() as u64) < log.size {
        let seq = log.leaves.len();
        findings.push(Finding::Log {
            tenant: tenant.clone(),
            why: format!("the log has no leaf hash for seq {seq}: its tiles are incomplete"),
        });
        return;
    }
    for cp in pending {
        findings.push(Finding::Checkpoint {
            tenant: tenant.clone(),
            size: cp.size,
            why: format!("signed for a size the log never reached (log size {})", log.size),
        });
    }
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
