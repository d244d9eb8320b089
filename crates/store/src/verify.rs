//! Full verification of a store, over the [`Store`] trait (so of any backend): every row is
//! read as found, its leaf recomputed from its entry, every tenant's tree rebuilt, and
//! every signed checkpoint checked against the rebuilt roots and the public key alone.
//! Each problem is named by tenant, seq and id.

use std::collections::HashMap;
use std::fmt;

use aitrail_core::TenantId;
use aitrail_core::entry::{Entry, RowColumns};
use aitrail_core::merkle::{CompactRange, Hash, leaf_hash};
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_core::tiles::{TILE_WIDTH, TileId};

use crate::{RawRow, Store, StoreError, StoredCheckpoint, proofs};

/// Rows read per call.
const PAGE: u32 = 10_000;
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
    Inserted { tenant: TenantId, seq: i64, id: String, why: String },
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
            Finding::Removed { tenant, seq } => {
                write!(
                    f,
                    "REMOVED   tenant {tenant} seq {seq}: the log has this leaf but no record holds it"
                )
            }
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

/// Verify everything in the store against the log's public key. `progress` is called
/// with the number of rows read so far.
pub async fn verify_store(
    store: &dyn Store,
    verifier: &Verifier,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, StoreError> {
    let sizes: HashMap<TenantId, u64> =
        store.logs().await?.into_iter().map(|h| (h.tenant_id, h.size)).collect();
    let mut report = Report::default();
    for tenant in store.tenants().await? {
        let size = sizes.get(&tenant).copied().unwrap_or(0);
        verify_tenant(store, verifier, &tenant, size, &mut report, progress).await?;
        report.tenants += 1;
    }
    Ok(report)
}

async fn verify_tenant(
    store: &dyn Store,
    verifier: &Verifier,
    tenant: &TenantId,
    size: u64,
    report: &mut Report,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StoreError> {
    let checkpoints = store.checkpoints(tenant).await?;
    let mut pending = checkpoints.iter().peekable();
    let mut leaves = LeafTiles::default();
    let mut tree = CompactRange::default();
    let mut findings = Vec::new();
    let mut after = None;
    loop {
        let rows = store.scan(tenant, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.columns.seq, last.pos));
        for row in &rows {
            let seq = row.columns.seq;
            if seq < tree.size() as i64 {
                findings.push(Finding::Inserted {
                    tenant: tenant.clone(),
                    seq,
                    id: row.columns.id.clone(),
                    why: "a second record at a seq already taken".into(),
                });
                continue;
            }
            if seq as u64 >= size {
                findings.push(Finding::Inserted {
                    tenant: tenant.clone(),
                    seq,
                    id: row.columns.id.clone(),
                    why: format!("beyond the end of the log (size {size})"),
                });
                continue;
            }
            while tree.size() < seq as u64 {
                let missing = tree.size();
                findings.push(Finding::Removed { tenant: tenant.clone(), seq: missing });
                // Keep the rebuilt tree aligned with the logged leaf, so one removal does
                // not also fail every later checkpoint.
                let logged = leaves.get(store, tenant, missing, size).await?;
                tree.push(logged.unwrap_or([0; 32]));
                check_checkpoints(verifier, tenant, &tree, &mut pending, &mut findings);
            }
            let logged = leaves.get(store, tenant, seq as u64, size).await?;
            let leaf = check_row(tenant, row, logged, &mut findings);
            tree.push(leaf);
            check_checkpoints(verifier, tenant, &tree, &mut pending, &mut findings);
        }
        report.records += rows.len() as u64;
        progress(report.records);
    }
    while tree.size() < size {
        let missing = tree.size();
        findings.push(Finding::Removed { tenant: tenant.clone(), seq: missing });
        let logged = leaves.get(store, tenant, missing, size).await?;
        tree.push(logged.unwrap_or([0; 32]));
        check_checkpoints(verifier, tenant, &tree, &mut pending, &mut findings);
    }
    for cp in pending {
        findings.push(Finding::Checkpoint {
            tenant: tenant.clone(),
            size: cp.size,
            why: format!("signed for a size the log never reached (log size {size})"),
        });
    }
    // Proofs are served from the stored tiles: they must give the signed root too.
    if let Some(latest) = checkpoints.last().filter(|c| c.size <= size && c.size > 0) {
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
    report.checkpoints += checkpoints.len();
    report.findings.extend(findings);
    Ok(())
}

/// Check one row against its entry and the logged leaf; returns the leaf its entry hashes to.
fn check_row(
    tenant: &TenantId,
    row: &RawRow,
    logged: Option<Hash>,
    findings: &mut Vec<Finding>,
) -> Hash {
    let seq = row.columns.seq as u64;
    let id = row.columns.id.clone();
    let leaf = leaf_hash(&row.entry);
    let modified =
        |what: String| Finding::Modified { tenant: tenant.clone(), seq, id: id.clone(), what };
    match Entry::decode(&row.entry) {
        Err(e) => findings.push(modified(format!("entry unreadable: {e}"))),
        Ok(entry) if entry.seq != seq => {
            findings.push(Finding::Reordered {
                tenant: tenant.clone(),
                seq,
                id: id.clone(),
                logged_seq: entry.seq,
            });
            return leaf;
        }
        Ok(entry) => {
            let diffs = row.columns.differences(&RowColumns::expected(&entry));
            if !diffs.is_empty() {
                findings
                    .push(modified(format!("{} differ from the logged entry", diffs.join(", "))));
            }
            if let Some(content) = &row.content
                && let Err(e) = entry.check_content(content)
            {
                findings.push(modified(e.to_string()));
            }
        }
    }
    match logged {
        Some(l) if l == leaf => {}
        Some(_) => findings.push(modified("entry differs from the logged leaf hash".into())),
        None => findings.push(modified("the log has no leaf hash for this seq".into())),
    }
    leaf
}

/// Check every checkpoint whose size the rebuilt tree has just reached.
fn check_checkpoints<'a>(
    verifier: &Verifier,
    tenant: &TenantId,
    tree: &CompactRange,
    pending: &mut std::iter::Peekable<impl Iterator<Item = &'a StoredCheckpoint>>,
    findings: &mut Vec<Finding>,
) {
    while let Some(cp) = pending.next_if(|cp| cp.size <= tree.size()) {
        let bad = |why: String| Finding::Checkpoint { tenant: tenant.clone(), size: cp.size, why };
        if cp.size < tree.size() {
            findings.push(bad("out of order".into()));
            continue;
        }
        match Checkpoint::open(&cp.note, verifier) {
            Err(e) => findings.push(bad(format!("signature check failed: {e}"))),
            Ok(signed) => {
                let origin = format!("{}/{tenant}", verifier.name());
                if signed.origin != origin {
                    findings.push(bad(format!("origin is {}, expected {origin}", signed.origin)));
                } else if signed.size != cp.size || signed.root != cp.root {
                    findings.push(bad("stored size or root differ from the signed note".into()));
                } else if signed.root != tree.root() {
                    findings.push(bad("the records do not hash to the signed root".into()));
                }
            }
        }
    }
}

/// Level-0 tiles (the logged leaf hashes), fetched a few at a time as the scan needs them.
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
