//! The storage boundary. Every backend (SQLite, PostgreSQL) implements [`Store`]; nothing
//! above this trait knows which one it talks to, and no backend type leaks through it.
//!
//! Invariants every implementation keeps:
//! - `append` is all-or-nothing per call, and returns only once the records are durable
//!   (committed and flushed to stable storage).
//! - Within a tenant, `seq` starts at 0 and is contiguous: no gap, no duplicate, never reused.
//!   A record's seq is its leaf index; its entry (docs/FORMAT.md) is the leaf's data, and
//!   the log's hash tiles are updated in the same transaction as the records.
//! - `list` returns newest first (by commit order) and pages with an opaque [`Cursor`].
//! - Checkpoints are only added, never changed: one per (tenant, size).

pub mod append;
pub mod proofs;
pub mod retention;
pub mod sealing;
pub mod sql;
pub mod verify;

use aitrail_core::access::{KeyId, Role};
use aitrail_core::entry::{ColumnsRef, Content, Entry, EntryError, RowColumns};
use aitrail_core::merkle::Hash;
use aitrail_core::tiles::{Tile, TileId};
use aitrail_core::{Cursor, Query, Receipt, Record, StoredRecord, TenantId, Timestamp};
use async_trait::async_trait;
use uuid::Uuid;

pub use sealing::RowContent;

pub use uuid;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// One page of a listing, as stored rows (for exports, which carry entries as logged).
#[derive(Debug, Clone, PartialEq)]
pub struct RowPage {
    pub rows: Vec<RawRow>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// A record as exports carry it: where it is, its entry as logged, its kept content.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    pub pos: i64,
    pub id: String,
    pub seq: i64,
    pub entry: Vec<u8>,
    /// `None` once purged.
    pub content: Option<Content>,
}

/// One page of a listing as [`EntryRow`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryPage {
    pub rows: Vec<EntryRow>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// A record's entry as logged, and its content if still kept.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRecord {
    pub tenant_id: TenantId,
    pub seq: u64,
    pub entry: Vec<u8>,
    pub content: Option<Content>,
}

impl EntryRecord {
    /// The record: its entry with its content; corrupt if they do not hold together.
    pub fn to_record(&self) -> Result<StoredRecord, StoreError> {
        let corrupt = |e: EntryError| {
            StoreError::Corrupt(format!("record {} seq {}: {e}", self.tenant_id, self.seq))
        };
        Entry::decode(&self.entry).and_then(|e| e.to_stored(self.content.as_ref())).map_err(corrupt)
    }
}

/// A signed checkpoint of a tenant's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    pub tenant_id: TenantId,
    pub size: u64,
    pub root: Hash,
    /// The whole signed note, as published.
    pub note: String,
    pub signed_at: Timestamp,
}

/// A tenant log's size and its latest checkpoint's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub tenant_id: TenantId,
    pub size: u64,
    pub checkpointed: u64,
}

/// An API key as stored: never its secret, only its digest (aitrail_core::access).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub id: KeyId,
    pub role: Role,
    /// `None`: a global admin, acting across tenants.
    pub tenant: Option<TenantId>,
    pub digest: [u8; 32],
    pub label: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl StoredKey {
    /// A key from a backend's columns; what does not parse is corrupt.
    pub fn from_columns(
        id: &str,
        role: &str,
        tenant: Option<&str>,
        digest: &[u8],
        label: Option<String>,
        times: [Option<Timestamp>; 3],
    ) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::Corrupt(format!("API key {id}: {what}"));
        let [created_at, expires_at, revoked_at] = times;
        Ok(Self {
            id: KeyId::parse(id).ok_or_else(|| bad("not a key id".into()))?,
            role: role.parse().map_err(bad)?,
            tenant: tenant.map(TenantId::parse).transpose().map_err(|e| bad(e.to_string()))?,
            digest: digest.try_into().map_err(|_| bad("digest is not 32 bytes".into()))?,
            label,
            created_at: created_at.ok_or_else(|| bad("no created_at".into()))?,
            expires_at,
            revoked_at,
        })
    }

    /// Usable at `now`: not revoked, not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The tenant's policy in force: the one it set, or the default.
pub async fn policy_of(
    store: &dyn Store,
    tenant: &TenantId,
) -> Result<aitrail_core::policy::Policy, StoreError> {
    match store.policy(tenant).await? {
        Some(json) => aitrail_core::policy::Policy::parse(&json).map_err(|e| {
            StoreError::Corrupt(format!("the stored policy of tenant {tenant} is unreadable: {e}"))
        }),
        None => Ok(aitrail_core::policy::Policy::default()),
    }
}

/// A stored row exactly as found, for verification: nothing here is trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// Where the row sits in the backend's own order (for naming and paging).
    pub pos: i64,
    pub columns: RowColumns,
    pub entry: Vec<u8>,
    pub content: RowContent,
}

/// A stored row borrowed from wherever it is read (a backend's buffers, a [`RawRow`]),
/// for verification, which must not copy millions of rows to check them.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub pos: i64,
    pub columns: ColumnsRef<'a>,
    pub entry: &'a [u8],
    pub content: RowContentRef<'a>,
}

/// A row's content as [`RowRef`] borrows it: [`RowContent`] with the kept content borrowed.
#[derive(Debug, Clone, Copy)]
pub enum RowContentRef<'a> {
    Kept(ContentRef<'a>),
    Gone,
    Sealed,
    Unreadable(&'a str),
}

impl<'a> RowContentRef<'a> {
    /// The content `content` holds, borrowed.
    pub fn of(content: &'a RowContent) -> Self {
        match content {
            RowContent::Kept(c) => {
                let field = |name: &str| c.fields.get(name).map(|v| v.as_bytes());
                RowContentRef::Kept(ContentRef {
                    salt: c.salt.as_slice(),
                    fields: CONTENT_COLUMNS.map(field),
                })
            }
            RowContent::Gone => RowContentRef::Gone,
            RowContent::Sealed => RowContentRef::Sealed,
            RowContent::Unreadable(why) => RowContentRef::Unreadable(why),
        }
    }
}

/// A record's content as stored: its salt, and its fields in [`CONTENT_COLUMNS`] order.
#[derive(Debug, Clone, Copy)]
pub struct ContentRef<'a> {
    pub salt: &'a [u8],
    pub fields: [Option<&'a [u8]>; 3],
}

/// What verification does with each row, where the row is read.
pub type RowCheck =
    std::sync::Arc<dyn for<'a, 'b> Fn(&'a RowRef<'b>) -> verify::Checked + Send + Sync>;

/// The content fields in the order [`RowRef::content`] holds them.
pub const CONTENT_COLUMNS: [&str; 3] = ["prompt", "response", "prompt_variables"];

impl RawRow {
    pub fn borrow(&self) -> RowRef<'_> {
        let content = RowContentRef::of(&self.content);
        RowRef { pos: self.pos, columns: self.columns.borrow(), entry: &self.entry, content }
    }

    /// The row as a record: its entry with its content. A row that does not hold together
    /// is reported as corrupt rather than shown.
    pub fn to_record(&self) -> Result<StoredRecord, StoreError> {
        let corrupt =
            |e: EntryError| StoreError::Corrupt(format!("record {}: {e}", self.columns.id));
        if let RowContent::Unreadable(why) = &self.content {
            return Err(StoreError::Corrupt(format!(
                "record {}: its content {why}",
                self.columns.id
            )));
        }
        Entry::decode(&self.entry).and_then(|e| e.to_stored(self.content.kept())).map_err(corrupt)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, database, corruption). Nothing of the failed call was kept.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
    /// The store was opened to read only: a read changes nothing, not even the files.
    #[error("this store was opened read-only; a read changes nothing in it")]
    ReadOnly,
    /// A checkpoint of that size exists with another root: the log forked.
    #[error("a different checkpoint of size {size} already exists for tenant {tenant_id}")]
    CheckpointConflict { tenant_id: TenantId, size: u64 },
    /// Stored data is not what the log says it should be.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The request is not one the store can carry out, for the reason given.
    #[error("{0}")]
    Refused(String),
    /// A record carries an external_id its tenant already has (or the append repeats one).
    /// Nothing of the append was kept.
    #[error(
        "external_id already logged: the tenant has a record with that external_id, or the batch repeats one"
    )]
    DuplicateExternalId,
    /// The store's checkpoints are signed with another key than the one offered.
    #[error(
        "this store's checkpoints are signed with the key {registered}, not {offered}: give every node the same log key (AITRAIL_LOG_KEY)"
    )]
    OtherLogKey { registered: String, offered: String },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Append records, assigning id, seq and recorded_at. All or nothing; durable on `Ok`.
    async fn append(&self, records: Vec<Record>) -> Result<Vec<Receipt>, StoreError>;

    /// One record by id.
    async fn get(&self, id: Uuid) -> Result<Option<StoredRecord>, StoreError>;

    /// A page of records matching the query, newest first (oldest first if it says so).
    async fn list(&self, query: &Query) -> Result<Page, StoreError> {
        let page = self.list_rows(query).await?;
        let records = page.rows.iter().map(RawRow::to_record).collect::<Result<_, _>>()?;
        Ok(Page { records, next_cursor: page.next_cursor })
    }

    /// The same page as [`Store::list`], as stored rows.
    async fn list_rows(&self, query: &Query) -> Result<RowPage, StoreError>;

    /// The same page again, only the entries and content: what an export streams. A
    /// backend may read just those columns.
    async fn list_entries(&self, query: &Query) -> Result<EntryPage, StoreError> {
        let page = self.list_rows(query).await?;
        let rows = page.rows.into_iter().map(|r| {
            Ok(EntryRow {
                content: r.content.into_kept(&r.columns.id)?,
                pos: r.pos,
                id: r.columns.id,
                seq: r.columns.seq,
                entry: r.entry,
            })
        });
        Ok(EntryPage {
            rows: rows.collect::<Result<_, StoreError>>()?,
            next_cursor: page.next_cursor,
        })
    }

    /// A record's entry and content, by id.
    async fn entry(&self, id: Uuid) -> Result<Option<EntryRecord>, StoreError>;

    /// The stored hash tiles among `ids` of a tenant's log (missing ones are left out).
    async fn tiles(&self, tenant: &TenantId, ids: &[TileId]) -> Result<Vec<Tile>, StoreError>;

    /// Every tenant log with its size and latest checkpoint size.
    async fn logs(&self) -> Result<Vec<LogHead>, StoreError>;

    /// Keep a signed checkpoint. Adding the same one again is a no-op; another root for
    /// the same size is [`StoreError::CheckpointConflict`].
    async fn add_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;

    /// The checkpoint of a tenant's log at `size`, or the latest when `size` is `None`.
    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Every checkpoint of a tenant's log, smallest first.
    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The smallest and largest `pos` of the stored rows; `None` when there is none.
    async fn pos_span(&self) -> Result<Option<(i64, i64)>, StoreError>;

    /// Every stored row, of every tenant, with `from <= pos < to`, in `pos` order.
    async fn scan(&self, from: i64, to: i64) -> Result<Vec<RawRow>, StoreError>;

    /// `check` of every row [`Store::scan`] gives, in order. A backend may run it where it
    /// reads, on borrowed data, which is what makes verifying millions of rows fast.
    async fn check_rows(
        &self,
        from: i64,
        to: i64,
        check: RowCheck,
    ) -> Result<Vec<verify::Checked>, StoreError> {
        let rows = self.scan(from, to).await?;
        let checked = move || rows.iter().map(|r| check(&r.borrow())).collect();
        tokio::task::spawn_blocking(checked)
            .await
            .map_err(|e| StoreError::Backend(format!("verification task failed: {e}")))
    }

    /// Every tenant id that has rows or a log, even where the two disagree.
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    /// Register `verifier` as the key this store's checkpoints are signed with, or check
    /// that it is the one registered ([`StoreError::OtherLogKey`] if not), so that nodes
    /// with different keys never sign one log.
    async fn claim_log_key(&self, verifier: &str) -> Result<(), StoreError>;

    /// Keep a new API key.
    async fn add_key(&self, key: &StoredKey) -> Result<(), StoreError>;

    /// One API key by id, live or not.
    async fn key(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError>;

    /// Every API key, oldest first.
    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Revoke a key from `at` on; false when there is no such key. Revoking again keeps
    /// the first time.
    async fn revoke_key(&self, id: &KeyId, at: Timestamp) -> Result<bool, StoreError>;

    /// The tenant's policy as its JSON; `None` if never set (the default applies).
    async fn policy(&self, tenant: &TenantId) -> Result<Option<String>, StoreError>;

    /// Delete the content and salts of the tenant's records `selector` picks, but for
    /// those in a held session (in [`retention::Mode::DryRun`], only count them). Entries,
    /// leaves and every proof stay.
    async fn purge_content(
        &self,
        tenant: &TenantId,
        selector: &retention::Selector,
        mode: retention::Mode,
    ) -> Result<retention::Purged, StoreError>;

    /// The seqs, in order, of the tenant's records with content that `selector` picks, but
    /// for those in held sessions; and how many were held. What an erasure names in its
    /// event before it deletes.
    async fn content_seqs(
        &self,
        tenant: &TenantId,
        selector: &retention::Selector,
    ) -> Result<(Vec<u64>, u64), StoreError>;

    /// Retire the data keys of the tenant's records `selector` picks (a user or a session),
    /// but for those of held sessions: no content is sealed under them from now on, and
    /// every append under them has committed when this returns. Their ids, with those of
    /// keys an erasure retired but did not get to destroy.
    async fn retire_keys(
        &self,
        tenant: &TenantId,
        selector: &retention::Selector,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// Destroy these retired data keys of the tenant for good: deleted, and the key table
    /// compacted so that no copy of them remains in its files. How many were destroyed.
    async fn destroy_keys(&self, tenant: &TenantId, keys: &[Uuid]) -> Result<u64, StoreError>;

    /// The seqs of the tenant's records recorded before `cutoff`, but for those in held
    /// sessions, in order; and how many were held.
    async fn records_before(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
    ) -> Result<(Vec<u64>, u64), StoreError>;

    /// Delete the tenant's records at these seqs (row, entry, content), but for held ones;
    /// their leaves stay in the log's tiles, so every proof of the others stays valid. How
    /// many were deleted.
    async fn remove_records(&self, tenant: &TenantId, seqs: &[u64]) -> Result<u64, StoreError>;

    /// Every legal hold in place.
    async fn holds(&self) -> Result<Vec<retention::Hold>, StoreError>;

    /// Place a hold (placing one already in place changes nothing).
    async fn add_hold(&self, hold: &retention::Hold) -> Result<(), StoreError>;

    /// Release a hold; whether there was one.
    async fn remove_hold(
        &self,
        tenant: &TenantId,
        session_id: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Whether the store would take a write now, without writing: the logging proxy asks
    /// before a call whose record must not go missing (fail modes closed and strict).
    /// Quick: it waits for a lock or a connection a fraction of a second at most, and this
    /// store's own commits never make it fail.
    async fn probe_write(&self) -> Result<(), StoreError>;

    /// Set the tenant's policy (its JSON), replacing any.
    async fn set_policy(
        &self,
        tenant: &TenantId,
        policy: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// Usage (records, tokens, cost by provider, model, time, user and feature) of the records
/// `query` selects, summed from their entries page by page.
pub async fn usage(
    store: &dyn Store,
    query: &Query,
    bucket: aitrail_core::usage::Bucket,
) -> Result<aitrail_core::usage::Report, StoreError> {
    let mut query = Query { limit: aitrail_core::query::MAX_LIMIT, cursor: None, ..query.clone() };
    let mut usage = aitrail_core::usage::Usage::new(bucket);
    loop {
        let page = store.list_entries(&query).await?;
        for row in &page.rows {
            usage.add_entry(&row.entry).map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(usage.report()),
        }
    }
}
