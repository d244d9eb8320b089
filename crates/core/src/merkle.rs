//! The RFC 6962 / RFC 9162 Merkle tree over SHA-256: hashes, proofs and their verification.
//!
//! Proofs are built from [`NodeSource`]: anything that can give the hash of a complete,
//! aligned subtree (the store's tiles, or leaves in memory). Verification follows
//! transparency-dev/merkle's `proof/verify.go` step by step.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    leaf_hash_of_parts(&[entry])
}

/// [`leaf_hash`] of an entry given in parts, as if they were one.
pub fn leaf_hash_of_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Where proof hashes come from: the hash of the complete subtree at `level` (0 = leaves)
/// and `index`, covering leaves `[index << level, (index + 1) << level)`.
pub trait NodeSource {
    type Error;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) as RFC 6962 defines it, from complete subtrees.
pub fn range_hash<S: NodeSource>(src: &mut S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let len = end - start;
    debug_assert!(len > 0);
    if len.is_power_of_two() && start.is_multiple_of(len) {
        return src.node(len.trailing_zeros() as u8, start / len);
    }
    let k = split_point(len);
    let left = range_hash(src, start, start + k)?;
    let right = range_hash(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 { Ok(empty_root()) } else { range_hash(src, 0, size) }
}

/// PATH(index, D[0:size]) of RFC 6962 §2.1.1, bottom-up. Requires index < size.
pub fn inclusion_proof<S: NodeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(index < size, "inclusion proof for leaf {index} of a tree of size {size}");
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<S: NodeSource>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// PROOF(old, D[0:new]) of RFC 6962 §2.1.2. Empty when old is 0 or equals new.
pub fn consistency_proof<S: NodeSource>(
    src: &mut S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    assert!(old <= new, "consistency proof from {old} to a smaller {new}");
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(src, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof<S: NodeSource>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("{what} is {len} bytes, not 32")]
    BadHashLength { what: &'static str, len: usize },
    #[error("proof has {got} hashes, expected {want}")]
    WrongProofSize { got: usize, want: usize },
    #[error("tree size {new} is smaller than {old}")]
    SizeShrank { old: u64, new: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    FromEmptyTree,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

fn hash32(what: &'static str, bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::BadHashLength { what, len: bytes.len() })
}

fn hashes32<B: AsRef<[u8]>>(proof: &[B]) -> Result<Vec<Hash>, ProofError> {
    proof.iter().map(|h| hash32("proof hash", h.as_ref())).collect()
}

/// Verify that `leaf` is at `index` in the tree of `size` leaves with root `root`.
pub fn verify_inclusion<B: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[B],
    root: &[u8],
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if computed.as_slice() == root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// The root an inclusion proof leads to.
pub fn root_from_inclusion_proof<B: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[B],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf = hash32("leaf hash", leaf)?;
    let proof = hashes32(proof)?;
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongProofSize { got: proof.len(), want: inner + border });
    }
    let h = chain_inner(leaf, &proof[..inner], index);
    Ok(chain_border_right(h, &proof[inner..]))
}

/// Verify that the tree of `new` leaves with `new_root` extends the tree of `old` leaves
/// with `old_root`.
pub fn verify_consistency<B: AsRef<[u8]>>(
    old: u64,
    new: u64,
    proof: &[B],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    let proof = hashes32(proof)?;
    if new < old {
        return Err(ProofError::SizeShrank { old, new });
    }
    if old == 0 {
        // Every tree extends the empty one: such a proof proves nothing (RFC 9162 §2.1.4).
        return Err(ProofError::FromEmptyTree);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofSize { got: proof.len(), want: 0 });
        }
        return if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongProofSize { got: 0, want: 1 });
    }
    // Roots are only compared above; from here on they are chained, so must be hashes.
    let old_root = hash32("old root", old_root)?;
    let new_root = hash32("new root", new_root)?;
    let (inner, border) = decompose(old - 1, new);
    let shift = old.trailing_zeros() as usize;
    let inner = inner - shift;
    // The proof starts with the root of the subtree of size 2^shift, unless old is that.
    let (seed, rest) =
        if old == 1 << shift { (old_root, &proof[..]) } else { (proof[0], &proof[1..]) };
    let want = (proof.len() - rest.len()) + inner + border;
    if proof.len() != want {
        return Err(ProofError::WrongProofSize { got: proof.len(), want });
    }
    let mask = (old - 1) >> shift;
    let h1 = chain_border_right(chain_inner_right(seed, &rest[..inner], mask), &rest[inner..]);
    if h1 != old_root {
        return Err(ProofError::RootMismatch);
    }
    let h2 = chain_border_right(chain_inner(seed, &rest[..inner], mask), &rest[inner..]);
    if h2 != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many proof hashes are inner (below the split with the right border) and border.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = if inner >= 64 { 0 } else { (index >> inner).count_ones() as usize };
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 { node_hash(&seed, h) } else { node_hash(h, &seed) };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// The right edge of a tree being built leaf by leaf: one hash per set bit of the size,
/// so the root of any prefix is at hand in O(log n) memory. What full verification uses
/// to recompute a log of any length.
#[derive(Debug, Default, Clone)]
pub struct CompactRange {
    size: u64,
    /// Roots of the perfect subtrees the size decomposes into, largest first.
    peaks: Vec<Hash>,
}

impl CompactRange {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut size = self.size;
        // Each trailing one bit of the size is a peak the new leaf completes.
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit");
            h = node_hash(&left, &h);
            size >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&last) = peaks.next() else { return empty_root() };
        peaks.fold(last, |acc, left| node_hash(left, &acc))
    }
}

/// Leaves held in memory, as a [`NodeSource`]: for tests, verification and small trees.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    /// levels[0] are the leaf hashes; levels[l][i] the complete subtree at (l, i).
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self { levels: vec![Vec::new()] }
    }

    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0;
        // Each time a level gains a right child, its parent is complete.
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    pub fn root(&self) -> Hash {
        root(&mut &*self, self.size()).unwrap_or_else(|never| match never {})
    }
}

impl NodeSource for &MemoryTree {
    type Error = std::convert::Infallible;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

/// A [`NodeSource`] that only notes which nodes were asked for: run a proof through it
/// to learn what to fetch, then run it again on the fetched nodes.
#[derive(Debug, Default)]
pub struct NodeRecorder {
    pub nodes: Vec<(u8, u64)>,
}

impl NodeSource for NodeRecorder {
    type Error = std::convert::Infallible;
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.nodes.push((level, index));
        Ok([0; 32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        ::hex::encode(h)
    }

    /// Reference values from transparency-dev/merkle's testonly package (vectors README).
    #[test]
    fn reference_hashes() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let leaves = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let t =
            MemoryTree::from_leaves(leaves.iter().map(|l| leaf_hash(&::hex::decode(l).unwrap())));
        assert_eq!(
            hex(&t.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn proofs_verify_for_small_trees() {
        let mut t = MemoryTree::new();
        for n in 1..=70u64 {
            t.push(leaf_hash(&n.to_be_bytes()));
            let root = t.root();
            for i in 0..n {
                let p = inclusion_proof(&mut &t, i, n).unwrap();
                verify_inclusion(&t.levels[0][i as usize], i, n, &p, &root).unwrap();
            }
            let mut old = MemoryTree::from_leaves([t.levels[0][0]]);
            for m in 1..=n {
                let p = consistency_proof(&mut &t, m, n).unwrap();
                verify_consistency(m, n, &p, &old.root(), &root).unwrap();
                if m < n {
                    old.push(t.levels[0][m as usize]);
                }
            }
            assert_eq!(
                verify_consistency::<Hash>(0, n, &[], &empty_root(), &root),
                Err(ProofError::FromEmptyTree)
            );
        }
    }

    #[test]
    fn compact_range_roots_match() {
        let mut c = CompactRange::default();
        let mut t = MemoryTree::new();
        assert_eq!(c.root(), empty_root());
        for i in 0..300u64 {
            c.push(leaf_hash(&i.to_le_bytes()));
            t.push(leaf_hash(&i.to_le_bytes()));
            assert_eq!(c.root(), t.root(), "size {}", i + 1);
        }
    }

    #[test]
    fn recorder_names_what_a_proof_needs() {
        let mut rec = NodeRecorder::default();
        inclusion_proof(&mut rec, 5, 8).unwrap();
        assert_eq!(rec.nodes, [(0, 4), (1, 3), (2, 0)]);
    }
}
