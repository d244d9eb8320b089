//! The use cases every front end of aitrail shares, over one store: the HTTP server's
//! handlers and the CLI working on a store directly call these, so the two do the same
//! thing by construction. Authorisation stays in core (`Principal::may`), checked by the
//! front end that knows who asks; nothing here does I/O but through the store.
//!
//! A use case a file, each an `impl Trail`: the access log, and changes made offline
//! logged like the API's (`access.rs`); what an export proves (`export.rs`); inclusion and
//! consistency proofs (`proofs.rs`); taking records in through their tenant's
//! policy, and the policies (`policies.rs`); API keys (`keys.rs`); erasure, legal holds
//! and retention runs (`retention.rs`); full verification runs recorded in the system
//! log (`verification.rs`); and signing checkpoints (`log.rs`, `LogSigner`).

mod access;
mod export;
pub mod keys;
mod log;
mod policies;
pub mod proofs;
pub mod retention;
pub mod verification;

use std::sync::Arc;

use aitrail_store::Store;

pub use access::Changed;
pub use keys::{KeyInfo, KeyRequest};
pub use log::{LogSigner, content_key};
pub use policies::IngestError;

/// The shared use cases over one store, with the log key they derive their secrets from.
pub struct Trail {
    store: Arc<dyn Store>,
    signer: Arc<LogSigner>,
    policies: policies::Cache,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").finish_non_exhaustive()
    }
}

impl Trail {
    pub fn new(store: Arc<dyn Store>, signer: Arc<LogSigner>) -> Self {
        Self { store, signer, policies: policies::Cache::default() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn signer(&self) -> &Arc<LogSigner> {
        &self.signer
    }
}
