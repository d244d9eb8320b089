//! The use cases every front end of aitrail shares, over one store: the HTTP server's
//! handlers and the CLI working on a store directly call these, so the two do the same
//! thing by construction. Authorisation stays in core (`Principal::may`), checked by the
//! front end that knows who asks; nothing here does I/O but through the store.
//!
//! Here so far: ingest through the tenant's policy (`Trail::append`, `Trail::kept`), the
//! tenant policies themselves, and the checkpoint signer (`LogSigner`).

mod log;
mod policies;

pub use log::LogSigner;
pub use policies::{IngestError, Trail};
