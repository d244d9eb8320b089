//! The embedded SQLite backend: one database file in the data dir, WAL with
//! `synchronous=FULL`, so a committed transaction is on disk before we answer.
//!
//! Writes go through one writer thread that group-commits: it takes every append waiting
//! in its queue, runs them in one transaction and answers them all after the one fsync of
//! the commit (should the group fail, each append is retried alone, so one failing append
//! never takes the others down). The same transaction appends the records' leaves to the
//! tenant's hash tiles. Reads use a small pool of their own connections and never wait
//! for the writer (WAL).

mod admin;
mod keyring;
mod read;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aitrail_core::Timestamp;
use aitrail_core::access::KeyId;
use aitrail_core::seal::ContentKey;
use aitrail_core::tiles::{Tile, TileId};
use aitrail_core::{Query, Receipt, Record, StoredRecord, TenantId};
use aitrail_store::RowCheck;
use aitrail_store::append::NewRecord;
use aitrail_store::retention::{Hold, Mode, Purged, Selector};
use aitrail_store::sealing::Opener;
use aitrail_store::verify::Checked;
use aitrail_store::{
    EntryPage, EntryRecord, LogHead, RawRow, RowPage, Store, StoreError, StoredCheckpoint,
    StoredKey,
};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use schema::MIGRATIONS;

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "aitrail.db";

/// File name of the data keys' file inside the data dir (`keyring.rs`), apart from the
/// database; its bucket keys are in [`BUCKET_KEYS_FILE`], which erasure rewrites whole.
pub const KEYS_FILE: &str = "aitrail-keys.db";
pub use keyring::BUCKET_KEYS_FILE;

/// How long a connection waits for another's lock before its statement fails.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long `probe_write` waits for the writer's answer before judging by what it is
/// doing, and how many such looks it takes at most before it says no.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
const PROBE_LOOKS: usize = 4;

/// The writer's and the checkpointer's thread names: under 16 bytes, so `top`, `perf` and
/// /proc show them whole (Linux cuts longer names).
pub const WRITER_THREAD: &str = "aitrail-writer";
pub const CHECKPOINT_THREAD: &str = "aitrail-ckpt";

/// How many appends may wait for the writer before callers are made to wait.
const QUEUE_DEPTH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open database {path}: {source}")]
    Database { path: PathBuf, source: rusqlite::Error },
    #[error(
        "database {path} has schema version {found}, newer than this aitrail knows ({known}); upgrade aitrail"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    /// The store belongs to another log key than the one it was opened with.
    #[error("{0}")]
    LogKey(StoreError),
    #[error("cannot seal the content of {path} stored before content was sealed: {why}")]
    Sealing { path: PathBuf, why: String },
    #[error("no store at {path}: give the data dir that holds it (--data-dir)")]
    Missing { path: PathBuf },
    #[error(
        "database {path} has schema version {found}, older than this aitrail's ({known}); a read-only open does not migrate it: run `aitrail migrate` on a writable copy, or read it with the aitrail that wrote it"
    )]
    TooOld { path: PathBuf, found: i64, known: i64 },
}

/// A handle on the store; cheap to clone, all clones share the writer and readers.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<write::Job>,
    /// Opened with [`SqliteStore::open_read_only`]: no writer, every write refused.
    read_only: bool,
    writer: Arc<write::WriterState>,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.readers.path).finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store in `data_dir`, applying pending migrations;
    /// content is sealed and opened with `content_key`.
    pub fn open(data_dir: &Path, content_key: ContentKey) -> Result<Self, OpenError> {
        Self::open_with(data_dir, ReadMode::Mapped, content_key)
    }

    /// [`SqliteStore::open`], reading as `mode` says.
    pub fn open_with(
        data_dir: &Path,
        mode: ReadMode,
        content_key: ContentKey,
    ) -> Result<Self, OpenError> {
        let content_key = Arc::new(content_key);
        Self::migrate(data_dir, &content_key)?;
        let path = data_dir.join(DB_FILE);
        let keys_path = data_dir.join(KEYS_FILE);
        let db_err = |source| OpenError::Database { path: path.clone(), source };
        let conn = connect(&path, Access::ReadWrite).map_err(db_err)?;
        let keys_err = |source| OpenError::Database { path: keys_path.clone(), source };
        let keyring = keyring::Keyring::new(
            keyring::connect(&keys_path, Access::ReadWrite).map_err(keys_err)?,
            content_key.clone(),
        );
        // Checkpoints (copying the WAL back into the database) run on a thread of their own,
        // so the writer spends its time on commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(db_err)?;
        let checkpointer = connect(&path, Access::ReadWrite).map_err(db_err)?;
        let (commits, committed) = std::sync::mpsc::sync_channel(1);
        let spawn_err = |source| OpenError::DataDir { path: data_dir.to_owned(), source };
        let checkpoints = std::thread::Builder::new()
            .name(CHECKPOINT_THREAD.into())
            .spawn(move || write::checkpoint_loop(checkpointer, committed))
            .map_err(spawn_err)?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Arc::new(write::WriterState::default());
        let state = writer.clone();
        let readers =
            Arc::new(Readers::new(path, keys_path, mode, Access::ReadWrite, Some(content_key)));
        let db_file = data_dir.join(DB_FILE);
        readers.fill().map_err(|source| OpenError::Database { path: db_file, source })?;
        let closing = readers.clone();
        std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || {
                let conn = write::run(conn, keyring, queue, commits, &state);
                // Connections closed one after another, the writer's last: SQLite removes
                // the -wal as the last one closes, and two closing at once may each see
                // the other open and both leave it.
                let _ = checkpoints.join();
                drop(closing);
                drop(conn);
            })
            .map_err(spawn_err)?;
        Ok(Self { jobs, read_only: false, writer, readers })
    }

    /// Open the store in `data_dir` to read only: nothing is migrated or written. With no
    /// -wal file no process has the database open, and it is read as immutable: no file is
    /// created or touched, so an auditor reads a copy byte for byte as it was made; should a
    /// writer start meanwhile (its -wal appears, or the file changes), the reads that follow
    /// refuse rather than mix two states. With a -wal (a server running, or a copy made while
    /// one ran), reads go through SQLite's usual locking, whose read marks live in the -shm
    /// file (made if missing): the one file such a read may touch.
    ///
    /// Without `content_key` (no log key at hand) content stays sealed: reads show none,
    /// and verify checks everything but the content commitments.
    pub fn open_read_only(
        data_dir: &Path,
        mode: ReadMode,
        content_key: Option<ContentKey>,
    ) -> Result<Self, OpenError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(OpenError::Missing { path });
        }
        let keys_path = data_dir.join(KEYS_FILE);
        let wal = sibling(&path, "-wal").exists();
        let access = if wal { Access::ReadOnly } else { Access::Immutable };
        // Taken before the first read: a change from here on fails the reads after it.
        let opened_as = if access == Access::Immutable { FileStamp::of(&path) } else { None };
        let db_err = |source| OpenError::Database { path: path.clone(), source };
        let conn = connect(&path, access).map_err(db_err)?;
        let found: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_err)?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(OpenError::TooNew { path, found, known });
        }
        // Content not yet sealed is a migration not yet finished.
        if found < known || keyring::unsealed_remain(&conn).map_err(db_err)? {
            return Err(OpenError::TooOld { path, found: found.min(known - 1), known });
        }
        if !keys_path.is_file() {
            return Err(OpenError::Missing { path: keys_path });
        }
        // Made by the migration that wraps data keys under bucket keys.
        if !keyring::buckets_path(&keys_path).is_file() {
            return Err(OpenError::TooOld { path, found: known - 1, known });
        }
        let content_key = content_key.map(Arc::new);
        let mut readers = Readers::new(path, keys_path, mode, access, content_key);
        readers.opened_as = opened_as;
        // No writer: the queue's far end is dropped, and `append` refuses before it.
        let (jobs, _) = mpsc::channel(1);
        let writer = Arc::new(write::WriterState::default());
        Ok(Self { jobs, read_only: true, writer, readers: Arc::new(readers) })
    }

    /// Apply pending migrations only, sealing content stored before content was sealed
    /// with `content_key`; returns (version found, version now).
    pub fn migrate(data_dir: &Path, content_key: &ContentKey) -> Result<(i64, i64), OpenError> {
        create_private_dir(data_dir)
            .map_err(|source| OpenError::DataDir { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DB_FILE);
        let keys_path = data_dir.join(KEYS_FILE);
        let buckets_path = keyring::buckets_path(&keys_path);
        for file in [
            path.clone(),
            sibling(&path, "-wal"),
            sibling(&path, "-shm"),
            keys_path.clone(),
            buckets_path.clone(),
        ] {
            if file == path || file == keys_path || file == buckets_path || file.exists() {
                create_private_file(&file)
                    .map_err(|source| OpenError::DataDir { path: file.clone(), source })?;
            }
        }
        let db_err = |source| OpenError::Database { path: path.clone(), source };
        let mut conn = connect(&path, Access::ReadWrite).map_err(db_err)?;
        let (found, known) = schema::migrate(&mut conn).map_err(db_err)?;
        if found > known {
            return Err(OpenError::TooNew { path, found, known });
        }
        // Content is sealed under this log's key only: another log key is refused first.
        if let Some(verifier) = content_key.log() {
            admin::claim_log_key(&conn, verifier).map_err(OpenError::LogKey)?;
        }
        let keys_err = |source| OpenError::Database { path: keys_path.clone(), source };
        let mut keys = keyring::connect(&keys_path, Access::ReadWrite).map_err(keys_err)?;
        keyring::create(&keys).map_err(keys_err)?;
        let sealing_err =
            |e: StoreError| OpenError::Sealing { path: path.clone(), why: e.to_string() };
        keyring::rebucket(&mut keys, content_key).map_err(sealing_err)?;
        let mut keyring = keyring::Keyring::new(keys, Arc::new(content_key.clone()));
        keyring::seal_unsealed(&mut conn, &mut keyring)
            .map_err(|e| OpenError::Sealing { path: path.clone(), why: e.to_string() })?;
        keyring::attach(&conn, &keys_path, Access::ReadWrite).map_err(db_err)?;
        keyring::finish_rekeys(&conn, content_key).map_err(sealing_err)?;
        conn.execute_batch("DETACH keyring; DETACH buckets").map_err(db_err)?;
        Ok((found, known))
    }

    /// Refuse a write on a store opened to read, before it reaches the database (whose own
    /// refusal a pooler may not pass on).
    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only { Err(StoreError::ReadOnly) } else { Ok(()) }
    }

    /// `f` on a connection of the pool with an opener of the content it reads.
    async fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut Opener<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = self.readers.content_key.clone();
        self.pooled(move |c| f(c, &mut Opener::new(key.as_deref()))).await
    }

    /// `f` on a connection of the pool, off the async workers: every read, and the writes
    /// that are not appends (`admin.rs`; appends go through the writer thread).
    async fn pooled<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, records: Vec<Record>) -> Result<Vec<Receipt>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let rows = records.iter().map(NewRecord::new).collect::<Result<_, _>>()?;
        let (reply, answer) = oneshot::channel();
        let job = write::Job::Append(write::Append { rows, reply });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, id: Uuid) -> Result<Option<StoredRecord>, StoreError> {
        self.reading(move |c, o| read::get(c, o, id)).await
    }

    async fn list_rows(&self, query: &Query) -> Result<RowPage, StoreError> {
        let query = query.clone();
        self.reading(move |c, o| read::list_rows(c, o, &query)).await
    }

    async fn list_entries(&self, query: &Query) -> Result<EntryPage, StoreError> {
        let query = query.clone();
        self.reading(move |c, o| read::list_entries(c, o, &query)).await
    }

    async fn entry(&self, id: Uuid) -> Result<Option<EntryRecord>, StoreError> {
        self.reading(move |c, o| read::entry(c, o, id)).await
    }

    async fn tiles(&self, tenant: &TenantId, ids: &[TileId]) -> Result<Vec<Tile>, StoreError> {
        let (tenant, ids) = (tenant.clone(), ids.to_vec());
        self.pooled(move |c| read::tiles(c, &tenant, &ids)).await
    }

    async fn logs(&self) -> Result<Vec<LogHead>, StoreError> {
        self.pooled(read::logs).await
    }

    async fn add_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.writable()?;
        let cp = cp.clone();
        self.pooled(move |c| admin::add_checkpoint(c, &cp)).await
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let tenant = tenant.clone();
        self.pooled(move |c| read::checkpoint(c, &tenant, size)).await
    }

    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let tenant = tenant.clone();
        self.pooled(move |c| read::checkpoints(c, &tenant)).await
    }

    async fn pos_span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.pooled(read::pos_span).await
    }

    async fn scan(&self, from: i64, to: i64) -> Result<Vec<RawRow>, StoreError> {
        self.reading(move |c, o| read::scan(c, o, from, to)).await
    }

    async fn check_rows(
        &self,
        from: i64,
        to: i64,
        check: RowCheck,
    ) -> Result<Vec<Checked>, StoreError> {
        self.reading(move |c, o| read::check_rows(c, o, from, to, check)).await
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.pooled(read::tenants).await
    }

    async fn claim_log_key(&self, verifier: &str) -> Result<(), StoreError> {
        self.writable()?;
        let offered = verifier.to_owned();
        self.pooled(move |c| admin::claim_log_key(c, &offered)).await
    }

    async fn add_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.writable()?;
        let key = key.clone();
        self.pooled(move |c| admin::add_key(c, &key)).await
    }

    async fn key(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        let id = id.clone();
        self.pooled(move |c| read::keys(c, Some(&id)).map(|mut k| k.pop())).await
    }

    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.pooled(|c| read::keys(c, None)).await
    }

    async fn revoke_key(&self, id: &KeyId, at: Timestamp) -> Result<bool, StoreError> {
        self.writable()?;
        let id = id.clone();
        self.pooled(move |c| admin::revoke_key(c, &id, at)).await
    }

    async fn policy(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        let tenant = tenant.clone();
        self.pooled(move |c| read::policy(c, &tenant)).await
    }

    async fn purge_content(
        &self,
        tenant: &TenantId,
        selector: &Selector,
        mode: Mode,
    ) -> Result<Purged, StoreError> {
        if mode == Mode::Delete {
            self.writable()?;
        }
        let (tenant, selector) = (tenant.clone(), selector.clone());
        self.pooled(move |c| admin::purge_content(c, &tenant, &selector, mode)).await
    }

    async fn retire_keys(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.writable()?;
        let (tenant, selector) = (tenant.clone(), selector.clone());
        self.pooled(move |c| keyring::retire(c, &tenant, &selector)).await
    }

    async fn destroy_keys(&self, tenant: &TenantId, keys: &[Uuid]) -> Result<u64, StoreError> {
        self.writable()?;
        let (tenant, keys) = (tenant.clone(), keys.to_vec());
        let content_key = self.readers.content_key.clone().ok_or(StoreError::ReadOnly)?;
        self.pooled(move |c| keyring::destroy(c, &content_key, &tenant, &keys)).await
    }

    async fn content_seqs(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        let (tenant, selector) = (tenant.clone(), selector.clone());
        self.pooled(move |c| admin::content_seqs(c, &tenant, &selector)).await
    }

    async fn records_before(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        let tenant = tenant.clone();
        self.pooled(move |c| read::records_before(c, &tenant, cutoff)).await
    }

    async fn remove_records(&self, tenant: &TenantId, seqs: &[u64]) -> Result<u64, StoreError> {
        self.writable()?;
        let (tenant, seqs) = (tenant.clone(), seqs.to_vec());
        self.pooled(move |c| admin::remove_records(c, &tenant, &seqs)).await
    }

    async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        self.pooled(read::holds).await
    }

    async fn add_hold(&self, hold: &Hold) -> Result<(), StoreError> {
        self.writable()?;
        let hold = hold.clone();
        self.pooled(move |c| admin::add_hold(c, &hold)).await
    }

    async fn remove_hold(
        &self,
        tenant: &TenantId,
        session_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let (tenant, session) = (tenant.clone(), session_id.unwrap_or_default().to_owned());
        self.pooled(move |c| admin::remove_hold(c, &tenant, &session)).await
    }

    async fn set_policy(
        &self,
        tenant: &TenantId,
        policy: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let (tenant, policy) = (tenant.clone(), policy.to_owned());
        self.pooled(move |c| admin::set_policy(c, &tenant, &policy, at)).await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let stuck = || {
            StoreError::Backend(
                "the store cannot take a write now: its writer is waiting for the write lock, \
                 which another connection holds"
                    .into(),
            )
        };
        let (reply, answer) = oneshot::channel();
        let mut answer = match self.jobs.try_send(write::Job::Probe(reply)) {
            Ok(()) => Some(answer),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
            // A full queue: the writer is behind, and is judged by what it is doing alone.
            Err(mpsc::error::TrySendError::Full(_)) => None,
        };
        // No answer in time: a writer holding the lock is in a commit that works, a yes; one
        // waiting for it on two looks is behind a lock another connection holds, a no. One
        // between jobs has yet to pick the probe up (the machine is busy): wait on for it.
        let mut waiting_seen = 0;
        for look in 0..PROBE_LOOKS {
            match answer.as_mut() {
                Some(answer) => {
                    if let Ok(answered) = tokio::time::timeout(PROBE_WAIT, answer).await {
                        return answered.map_err(|_| StoreError::Closed)?;
                    }
                }
                // (Without a probe in the queue, the first look is at once.)
                None if look == 0 => {}
                None => tokio::time::sleep(PROBE_WAIT).await,
            }
            match self.writer.activity() {
                write::LockActivity::Holding => return Ok(()),
                write::LockActivity::Waiting if waiting_seen == 1 => return Err(stuck()),
                write::LockActivity::Waiting => waiting_seen += 1,
                write::LockActivity::Between => {}
            }
        }
        Err(StoreError::Backend(
            "the store cannot say whether it can take a write now: its writer did not answer"
                .into(),
        ))
    }
}

/// A read connection's page cache, in KiB as SQLite's `cache_size` takes it (negative).
/// Small: its reads of the database go through the memory map, and what the cache holds
/// is pages of the WAL, which the kernel caches anyway. With 8 MiB, a retention run's WAL
/// filled every reader's cache: a 45 MiB step in the soak.
const READER_CACHE_KIB: i64 = -2048;

/// Read connections open at once, at most: a read that finds all of them busy waits for
/// one. Each keeps its caches (about 12 MiB at most), so the pool's memory is bounded, and
/// reaches its size under a steady load rather than growing at every stall (the soak saw
/// 4 readers become 7 while a retention run held the database, and 36 MiB with them).
const MAX_READERS: usize = 6;

/// Read connections, opened on demand and kept for reuse.
struct Readers {
    path: PathBuf,
    /// The data keys' file, attached to every read connection as `keyring`.
    keys_path: PathBuf,
    content_key: Option<Arc<ContentKey>>,
    mode: ReadMode,
    access: Access,
    /// The database file as an immutable open found it: reads refuse once it changes.
    opened_as: Option<FileStamp>,
    pool: Mutex<Pool>,
    /// Signalled when a connection comes back to the pool.
    returned: std::sync::Condvar,
}

/// The read connections: those idle, and how many are open in all.
#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

/// How a connection opens the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// The store's own: WAL, every commit fsync'd.
    ReadWrite,
    /// Reading while a server may write: SQLite's usual locking, through its -shm file.
    ReadOnly,
    /// Reading a database no process has open: no locks, no -shm, nothing written.
    Immutable,
}

/// What tells that a database changed: its file's inode, length, modification and status
/// change times, and whether a writer's -wal has appeared beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    wal: bool,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            wal: sibling(path, "-wal").exists(),
        })
    }
}

/// How reads reach the database file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Through a memory map (up to 16 GiB): no copy per page, which full scans (verify)
    /// feel most. Mapped pages are the kernel's page cache, but they count in the
    /// process's resident size.
    Mapped,
    /// With a copy of each page, into a small cache: for long streaming reads (exports)
    /// whose resident size should stay that of their buffers.
    Copied,
}

impl Readers {
    fn new(
        path: PathBuf,
        keys_path: PathBuf,
        mode: ReadMode,
        access: Access,
        content_key: Option<Arc<ContentKey>>,
    ) -> Self {
        let (pool, returned) = (Mutex::default(), std::sync::Condvar::new());
        Self { path, keys_path, content_key, mode, access, opened_as: None, pool, returned }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(conn) = pool.idle.pop() {
                    break Some(conn);
                }
                if pool.open < MAX_READERS {
                    pool.open += 1;
                    break None;
                }
                pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        let conn = match idle {
            Some(c) => c,
            None => match self.open().map_err(read::backend) {
                Ok(conn) => conn,
                Err(e) => {
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                    self.returned.notify_one();
                    return Err(e);
                }
            },
        };
        // A read that panics gives its connection's place back (the connection, in the
        // middle of whatever it did, is closed), so the pool never shrinks to nothing.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&conn))) {
            Ok(result) => result,
            Err(panic) => {
                drop(conn);
                self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                self.returned.notify_one();
                std::panic::resume_unwind(panic);
            }
        };
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.push(conn);
        self.returned.notify_one();
        if self.opened_as.is_some() && FileStamp::of(&self.path) != self.opened_as {
            return Err(StoreError::Backend(format!(
                "{} changed while it was read (a server or command started writing to it); run again",
                self.path.display()
            )));
        }
        result
    }

    /// Open every read connection now: a server's pool is the same size from its start,
    /// whatever its load (a stall then makes reads wait, not the pool grow).
    fn fill(&self) -> rusqlite::Result<()> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        while pool.open < MAX_READERS {
            let conn = self.open()?;
            pool.idle.push(conn);
            pool.open += 1;
        }
        Ok(())
    }

    /// A new read connection, with the key files attached.
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = connect(&self.path, self.access)?;
        // Reads go through the memory map; the cache holds what the map cannot show, the
        // pages still in the WAL: a little per reader.
        conn.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
        keyring::attach(&conn, &self.keys_path, self.access)?;
        if self.mode == ReadMode::Copied {
            for schema in ["main", "keyring", "buckets"] {
                conn.pragma_update(Some(schema), "mmap_size", 0)?;
                conn.pragma_update(Some(schema), "cache_size", -2048)?;
            }
        }
        Ok(conn)
    }
}

fn connect(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match access {
        Access::ReadWrite => Connection::open_with_flags(path, OpenFlags::default())?,
        Access::ReadOnly => {
            Connection::open_with_flags(path, read_only | OpenFlags::SQLITE_OPEN_URI)?
        }
        Access::Immutable => Connection::open_with_flags(
            format!("file:{}?immutable=1", uri_path(path)),
            read_only | OpenFlags::SQLITE_OPEN_URI,
        )?,
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if access == Access::ReadWrite {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is fsync'd at every commit, so a 2xx survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 64 MiB of page cache: the indexes' hot pages stay in memory as the table grows.
    conn.pragma_update(None, "cache_size", -65536)?;
    // Reads through a memory map (ReadMode::Mapped, the default).
    conn.pragma_update(None, "mmap_size", 1i64 << 34)?;
    Ok(conn)
}

/// `path` for a `file:` URI: every byte but unreserved ones and `/` percent-encoded.
pub(crate) fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// The data dir holds every record: readable by its owner only, whoever made it. A dir
/// made by hand with a wider mode is narrowed to 0700, and said.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        return std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    }
    owner_only(dir, 0o700)
}

/// The database file, made 0600 before SQLite opens it (SQLite would make it 0644, and
/// gives its -wal and -shm files the database's mode); an existing one is narrowed to 0600.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => owner_only(path, 0o600),
        Err(e) => Err(e),
    }
}

/// Narrow `path` to `mode` if group or others may use it; a warning says so.
fn owner_only(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let found = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if found & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{found:o}"),
            now = format!("{mode:o}"),
            "the store's files are for its owner only: mode narrowed"
        );
    }
    Ok(())
}

/// SQLite's file beside the database: `aitrail.db-wal`, `aitrail.db-shm`.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
