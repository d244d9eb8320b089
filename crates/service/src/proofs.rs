//! Inclusion and consistency proofs against signed checkpoints, for the server's proof
//! routes and the CLI on a store alike. Free functions over a store: proving needs no key.

use aitrail_core::TenantId;
use aitrail_core::merkle::Hash;
use aitrail_store::{EntryRecord, Store, StoreError, StoredCheckpoint, proofs};

/// Why no proof was given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The record is newer than the log's latest signed checkpoint.
    #[error("the record is not yet in a signed checkpoint")]
    NotYetCheckpointed,
    /// The log has no signed checkpoint at all.
    #[error("the log has no signed checkpoint yet")]
    NoCheckpoint,
    /// A size was asked for that no checkpoint of the log has.
    #[error("no signed checkpoint of size {0}")]
    NoCheckpointOfSize(u64),
    /// The record is not inside the tree of the size asked for.
    #[error("the record is at seq {seq}, not inside a tree of size {size}")]
    OutsideTree { seq: u64, size: u64 },
    /// Every log extends the empty one: a consistency proof starts at size 1 or more.
    #[error("must be at least 1 (every log extends the empty one)")]
    FromEmpty,
    /// The older size is beyond the checkpoint's: history was rewritten or truncated, or
    /// the size is wrong.
    #[error("{from} is beyond the checkpoint's size {size}")]
    FromBeyond { from: u64, size: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record's inclusion proof: its leaf at `entry.seq` is in the tree of `checkpoint`.
#[derive(Debug)]
pub struct Inclusion {
    pub checkpoint: StoredCheckpoint,
    pub audit_path: Vec<Hash>,
}

/// A consistency proof: the tree of `checkpoint` extends the tree of size `from`.
#[derive(Debug)]
pub struct Consistency {
    pub from: u64,
    pub checkpoint: StoredCheckpoint,
    pub proof: Vec<Hash>,
}

/// `entry`'s inclusion in its log's latest signed checkpoint, or in the one of `tree_size`.
pub async fn inclusion(
    store: &dyn Store,
    entry: &EntryRecord,
    tree_size: Option<u64>,
) -> Result<Inclusion, ProofError> {
    let checkpoint = match (store.checkpoint(&entry.tenant_id, tree_size).await?, tree_size) {
        (Some(cp), _) if cp.size > entry.seq => cp,
        (Some(_), Some(size)) => return Err(ProofError::OutsideTree { seq: entry.seq, size }),
        (None, Some(size)) => return Err(ProofError::NoCheckpointOfSize(size)),
        (_, None) => return Err(ProofError::NotYetCheckpointed),
    };
    let audit_path = proofs::inclusion(store, &entry.tenant_id, entry.seq, checkpoint.size).await?;
    Ok(Inclusion { checkpoint, audit_path })
}

/// That `tenant`'s log at its latest signed checkpoint (or the one of size `to`) extends
/// the log of size `from`.
pub async fn consistency(
    store: &dyn Store,
    tenant: &TenantId,
    from: u64,
    to: Option<u64>,
) -> Result<Consistency, ProofError> {
    if from == 0 {
        return Err(ProofError::FromEmpty);
    }
    let checkpoint = store.checkpoint(tenant, to).await?.ok_or(match to {
        Some(size) => ProofError::NoCheckpointOfSize(size),
        None => ProofError::NoCheckpoint,
    })?;
    if from > checkpoint.size {
        return Err(ProofError::FromBeyond { from, size: checkpoint.size });
    }
    let proof = proofs::consistency(store, tenant, from, checkpoint.size).await?;
    Ok(Consistency { from, checkpoint, proof })
}
