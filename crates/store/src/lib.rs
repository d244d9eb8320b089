//! The storage boundary. Every backend (SQLite, PostgreSQL) implements [`Store`]; nothing
//! above this trait knows which one it talks to, and no backend type leaks through it.
//!
//! Invariants every implementation keeps:
//! - `append` is all-or-nothing per call, and returns only once the records are durable
//!   (committed and flushed to stable storage).
//! - Within a tenant, `seq` starts at 0 and is contiguous: no gap, no duplicate, never reused.
//! - `list` returns newest first (by commit order) and pages with an opaque [`Cursor`].

use aitrail_core::{Cursor, Query, Receipt, Record, StoredRecord};
use async_trait::async_trait;
use uuid::Uuid;

pub use uuid;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, database, corruption). Nothing of the failed call was kept.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Append records, assigning id, seq and recorded_at. All or nothing; durable on `Ok`.
    async fn append(&self, records: Vec<Record>) -> Result<Vec<Receipt>, StoreError>;

    /// One record by id.
    async fn get(&self, id: Uuid) -> Result<Option<StoredRecord>, StoreError>;

    /// A page of records matching the query, newest first.
    async fn list(&self, query: &Query) -> Result<Page, StoreError>;
}
