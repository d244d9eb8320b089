//! Roots and proofs from a store's tiles: ask the core which nodes a proof needs, fetch
//! the tiles holding them in one call, then compute. No work proportional to the log.
//!
//! Reading the log size and then the tiles needs no shared transaction: the hash of a
//! complete subtree never changes, and tiles only grow.

use aitrail_core::TenantId;
use aitrail_core::merkle::{self, Hash, NodeRecorder, NodeSource};
use aitrail_core::tiles::{MissingNode, TileSet, tiles_for};

use crate::{Store, StoreError};

/// Run `f` over the tiles it needs.
async fn with_tiles<T>(
    store: &dyn Store,
    tenant: &TenantId,
    f: impl Fn(&mut dyn FnMut(u8, u64) -> Result<Hash, MissingNode>) -> Result<T, MissingNode>,
) -> Result<T, StoreError> {
    let mut recorder = NodeRecorder::default();
    f(&mut |l, i| Ok(recorder.node(l, i).unwrap_or_else(|never| match never {})))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let tiles = store.tiles(tenant, &tiles_for(&recorder.nodes)).await?;
    let mut set = TileSet::new(tiles);
    f(&mut |l, i| set.node(l, i)).map_err(|e| {
        StoreError::Corrupt(format!("tenant {tenant}: {e}; the log's tiles are incomplete"))
    })
}

/// A [`NodeSource`] over a closure, so the same proof code runs on the recorder and tiles.
struct Fetch<'a>(&'a mut dyn FnMut(u8, u64) -> Result<Hash, MissingNode>);

impl NodeSource for Fetch<'_> {
    type Error = MissingNode;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        (self.0)(level, index)
    }
}

/// The root of a tenant's log at `size`.
pub async fn root(store: &dyn Store, tenant: &TenantId, size: u64) -> Result<Hash, StoreError> {
    with_tiles(store, tenant, |f| merkle::root(&mut Fetch(f), size)).await
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub async fn inclusion(
    store: &dyn Store,
    tenant: &TenantId,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    with_tiles(store, tenant, |f| merkle::inclusion_proof(&mut Fetch(f), index, size)).await
}

/// The consistency proof from the tree of `old` leaves to that of `new` leaves.
pub async fn consistency(
    store: &dyn Store,
    tenant: &TenantId,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, StoreError> {
    with_tiles(store, tenant, |f| merkle::consistency_proof(&mut Fetch(f), old, new)).await
}
