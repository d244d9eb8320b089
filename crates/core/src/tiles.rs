//! Hash tiles: how a log's interior hashes are stored, so a proof costs a few reads and no
//! work proportional to the log's size (the layout of C2SP tlog-tiles).
//!
//! A tile at tile-level `L`, index `N` holds the hashes of the tree nodes at height `8L`
//! with indexes `256N ..= 256N + width - 1` (height 0 = leaf hashes). A tile is partial
//! (width < 256) only at the right edge of the tree. Any complete subtree whose height is
//! between `8L` and `8L + 7` is the root of 1 to 128 consecutive hashes of one tile.

use std::collections::HashMap;

use crate::merkle::{Hash, NodeSource, node_hash};

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels a tile spans.
pub const TILE_HEIGHT: u8 = 8;

/// Where a tile sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
}

/// A tile and its hashes (1 to 256 of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub id: TileId,
    pub hashes: Vec<Hash>,
}

impl Tile {
    /// The hashes as stored: 32 bytes each, concatenated.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// Parse stored bytes; `None` unless a whole number (1 to 256) of hashes.
    pub fn from_bytes(id: TileId, bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty()
            || !bytes.len().is_multiple_of(32)
            || bytes.len() > 32 * TILE_WIDTH as usize
        {
            return None;
        }
        let hashes = bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        Some(Self { id, hashes })
    }
}

/// The tile holding the tree node at (`level`, `index`), and that node's span inside it:
/// (tile, first hash, number of hashes).
pub fn locate(level: u8, index: u64) -> (TileId, usize, usize) {
    let tile_level = level / TILE_HEIGHT;
    let rise = level % TILE_HEIGHT;
    let first = index << rise; // position at the tile's base height
    let id = TileId { level: tile_level, index: first / TILE_WIDTH };
    (id, (first % TILE_WIDTH) as usize, 1usize << rise)
}

/// The tiles a set of nodes lives in.
pub fn tiles_for(nodes: &[(u8, u64)]) -> Vec<TileId> {
    let mut ids: Vec<TileId> = nodes.iter().map(|&(l, i)| locate(l, i).0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Root of a complete run of 2^k hashes.
fn subtree_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let mut level: Vec<Hash> = hashes.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
    while level.len() > 1 {
        level = level.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

/// A node the tiles at hand cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree node at level {level}, index {index} is not in the stored tiles")]
pub struct MissingNode {
    pub level: u8,
    pub index: u64,
}

/// Tiles fetched for a proof, as a [`NodeSource`].
#[derive(Debug, Default)]
pub struct TileSet {
    tiles: HashMap<TileId, Vec<Hash>>,
}

impl TileSet {
    pub fn new(tiles: impl IntoIterator<Item = Tile>) -> Self {
        Self { tiles: tiles.into_iter().map(|t| (t.id, t.hashes)).collect() }
    }
}

impl NodeSource for TileSet {
    type Error = MissingNode;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let (id, first, count) = locate(level, index);
        self.tiles
            .get(&id)
            .and_then(|h| h.get(first..first + count))
            .map(subtree_root)
            .ok_or(MissingNode { level, index })
    }
}

/// The right-edge tiles a log of `size` leaves has that are partial, one per tile-level
/// (the ones [`append`] must read before adding to them).
pub fn partial_edge(size: u64) -> Vec<TileId> {
    let mut ids = Vec::new();
    let mut count = size; // nodes at this tile-level's base height
    let mut level = 0;
    while count > 0 {
        if !count.is_multiple_of(TILE_WIDTH) {
            ids.push(TileId { level, index: count / TILE_WIDTH });
        }
        count /= TILE_WIDTH;
        level += 1;
    }
    ids
}

/// The tiles to write when `leaves` are appended to a log of `old_size` leaves. `edge`
/// must hold the tiles [`partial_edge`]`(old_size)` names.
pub fn append(old_size: u64, leaves: &[Hash], edge: &[Tile]) -> Result<Vec<Tile>, MissingNode> {
    let mut writes = Vec::new();
    let mut new_nodes: Vec<Hash> = leaves.to_vec();
    let mut count = old_size; // nodes already at this tile-level's base height
    let mut level = 0u8;
    while !new_nodes.is_empty() {
        let first_tile = count / TILE_WIDTH;
        let mut hashes: Vec<Hash> = if count.is_multiple_of(TILE_WIDTH) {
            Vec::new()
        } else {
            let id = TileId { level, index: first_tile };
            let tile = edge
                .iter()
                .find(|t| t.id == id)
                .ok_or(MissingNode { level: level * TILE_HEIGHT, index: count - 1 })?;
            tile.hashes[..(count % TILE_WIDTH) as usize].to_vec()
        };
        hashes.extend_from_slice(&new_nodes);
        // Tiles that became full give the next tile-level its new nodes.
        let mut next = Vec::new();
        for (i, chunk) in hashes.chunks(TILE_WIDTH as usize).enumerate() {
            if chunk.len() == TILE_WIDTH as usize {
                next.push(subtree_root(chunk));
            }
            let id = TileId { level, index: first_tile + i as u64 };
            writes.push(Tile { id, hashes: chunk.to_vec() });
        }
        // The next level already holds one node per tile that was full before; the tiles
        // completed now are its new nodes.
        count /= TILE_WIDTH;
        new_nodes = next;
        level += 1;
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, inclusion_proof, leaf_hash, root};

    /// Tiles built by appending in uneven batches serve the same nodes as a tree in memory.
    #[test]
    fn appended_tiles_agree_with_memory_tree() {
        let mut store: HashMap<TileId, Tile> = HashMap::new();
        let mut mem = MemoryTree::new();
        let mut size = 0u64;
        for batch in [1usize, 2, 255, 1, 300, 65_536 - 559, 7, 70_000] {
            let leaves: Vec<Hash> =
                (size..size + batch as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let edge: Vec<Tile> = partial_edge(size).iter().map(|id| store[id].clone()).collect();
            for t in append(size, &leaves, &edge).unwrap() {
                store.insert(t.id, t);
            }
            for l in &leaves {
                mem.push(*l);
            }
            size += batch as u64;
            let mut tiles = TileSet::new(store.values().cloned());
            assert_eq!(root(&mut tiles, size).unwrap(), mem.root(), "size {size}");
            for i in [0, size / 3, size - 1] {
                assert_eq!(
                    inclusion_proof(&mut tiles, i, size).unwrap(),
                    inclusion_proof(&mut &mem, i, size).unwrap()
                );
            }
        }
        // 65,536 + ... leaves: three tile-levels exist, the second holds full-tile roots.
        assert!(store.contains_key(&TileId { level: 2, index: 0 }));
    }

    #[test]
    fn locate_spans() {
        assert_eq!(locate(0, 300), (TileId { level: 0, index: 1 }, 44, 1));
        assert_eq!(locate(3, 1), (TileId { level: 0, index: 0 }, 8, 8));
        assert_eq!(locate(8, 2), (TileId { level: 1, index: 0 }, 2, 1));
        assert_eq!(locate(9, 200), (TileId { level: 1, index: 1 }, 144, 2));
    }

    #[test]
    fn partial_edges() {
        assert!(partial_edge(0).is_empty());
        assert_eq!(partial_edge(256), vec![TileId { level: 1, index: 0 }]);
        assert_eq!(
            partial_edge(257),
            vec![TileId { level: 0, index: 1 }, TileId { level: 1, index: 0 }]
        );
    }
}
