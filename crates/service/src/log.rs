//! The signing side of the log: a background task signs a checkpoint of every tenant log
//! that has grown, at most once per interval, and wakes requests waiting for one.

use std::sync::Arc;
use std::time::Duration;

use aitrail_core::note::{Checkpoint, NoteSigner, Verifier};
use aitrail_core::{TenantId, Timestamp};
use aitrail_store::{Store, StoreError, StoredCheckpoint, proofs};
use tokio::sync::watch;

/// The log key and how often to sign.
pub struct LogSigner {
    signer: NoteSigner,
    interval: Duration,
    /// Bumped after every signing round, so waiters know to look again.
    signed: watch::Sender<u64>,
}

impl LogSigner {
    /// `signer`'s key name is the log name: checkpoints have origin `<name>/<tenant_id>`.
    pub fn new(signer: NoteSigner, interval: Duration) -> Self {
        Self { signer, interval, signed: watch::Sender::new(0) }
    }

    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    /// The log key, for what else it signs (export manifests).
    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The secret API key digests are made with: derived from the log key, so the nodes
    /// that share one share the other.
    pub fn api_key_secret(&self) -> [u8; 32] {
        self.signer.derive_secret("api-keys")
    }

    /// The key content is sealed under, through data keys (crypto-shredding): derived from
    /// the log key, so every node that shares the log key opens the same content, and it
    /// is in no database.
    pub fn content_key(&self) -> aitrail_core::seal::ContentKey {
        content_key(&self.signer)
    }

    /// The secret tenants' content-hash keys derive from (`policy::tenant_hash_key`),
    /// shared the same way.
    pub fn content_hash_secret(&self) -> [u8; 32] {
        self.signer.derive_secret("content-hashes")
    }

    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/{tenant}", self.signer.verifier().name())
    }

    /// Sign a checkpoint for every log that grew since its last one; returns how many.
    pub async fn sign_pending(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let mut signed = 0;
        for head in store.logs().await? {
            if head.size <= head.checkpointed {
                continue;
            }
            let root = proofs::root(store, &head.tenant_id, head.size).await?;
            let body = Checkpoint { origin: self.origin(&head.tenant_id), size: head.size, root };
            let note = self
                .signer
                .sign(&body.to_text())
                .map_err(|e| StoreError::Backend(format!("signing failed: {e}")))?;
            store
                .add_checkpoint(&StoredCheckpoint {
                    tenant_id: head.tenant_id,
                    size: head.size,
                    root,
                    note,
                    signed_at: Timestamp::now(),
                })
                .await?;
            signed += 1;
        }
        self.signed.send_modify(|n| *n += 1);
        Ok(signed)
    }

    /// Sign every interval until the process ends.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.sign_pending(store.as_ref()).await {
                tracing::error!(error = %e, "signing checkpoints failed; will retry");
            }
        }
    }

    /// The first checkpoint of `tenant`'s log covering `size` leaves, waiting up to
    /// `patience` for the signer to make one.
    pub async fn wait_for(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        size: u64,
        patience: Duration,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut rounds = self.signed.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            rounds.borrow_and_update();
            if let Some(cp) = store.checkpoint(tenant, None).await?.filter(|cp| cp.size >= size) {
                return Ok(Some(cp));
            }
            if tokio::time::timeout_at(deadline, rounds.changed()).await.is_err() {
                return Ok(None);
            }
        }
    }
}

/// [`LogSigner::content_key`] of a log key, for opening a store before the signer exists: a
/// store opened with it is claimed for this log key (`Store::claim_log_key`) before it
/// seals anything.
pub fn content_key(signer: &NoteSigner) -> aitrail_core::seal::ContentKey {
    aitrail_core::seal::ContentKey::new(signer.derive_secret("content-keys"))
        .of_log(signer.verifier().to_string())
}
