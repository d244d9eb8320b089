//! The embedded SQLite backend: one database file in the data dir, WAL with
//! `synchronous=FULL`, so a committed transaction is on disk before we answer.
//!
//! Writes go through one writer thread that group-commits: it takes every append waiting
//! in its queue, runs them in one transaction and answers them all after the one fsync of
//! the commit (should the group fail, each append is retried alone, so one failing append
//! never takes the others down). Reads
//! use a small pool of their own connections and never wait for the writer (WAL).

mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aitrail_core::query::{Bound, TextField};
use aitrail_core::{Cursor, Query, Receipt, Record, StoredRecord, Timestamp};
use aitrail_store::{Page, Store, StoreError};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use schema::MIGRATIONS;

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "aitrail.db";

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
}

/// A handle on the store; cheap to clone, all clones share the writer and readers.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<write::Job>,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.readers.path).finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store in `data_dir`, applying pending migrations.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        create_private_dir(data_dir)
            .map_err(|source| OpenError::DataDir { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DB_FILE);
        let db_err = |source| OpenError::Database { path: path.clone(), source };
        let mut conn = connect(&path, OpenFlags::default()).map_err(db_err)?;
        let (found, known) = schema::migrate(&mut conn).map_err(db_err)?;
        if found > known {
            return Err(OpenError::TooNew { path, found, known });
        }
        // Checkpoints (copying the WAL back into the database) run on a thread of their own,
        // so the writer spends its time on commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(db_err)?;
        let checkpointer = connect(&path, OpenFlags::default()).map_err(db_err)?;
        let (commits, committed) = std::sync::mpsc::sync_channel(1);
        let spawn_err = |source| OpenError::DataDir { path: data_dir.to_owned(), source };
        std::thread::Builder::new()
            .name("aitrail-sqlite-checkpoint".into())
            .spawn(move || write::checkpoint_loop(checkpointer, committed))
            .map_err(spawn_err)?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("aitrail-sqlite-writer".into())
            .spawn(move || write::run(conn, queue, commits))
            .map_err(spawn_err)?;
        let readers = Arc::new(Readers { path, idle: Mutex::new(Vec::new()) });
        Ok(Self { jobs, readers })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
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
        let rows = records.iter().map(write::Row::new).collect::<Result<_, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.jobs.send(write::Job { rows, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, id: Uuid) -> Result<Option<StoredRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT pos, id, seq, recorded_at, body FROM records WHERE id = ?1",
            )?;
            let mut rows = stmt.query([id.to_string()])?;
            rows.next()?.map(|row| row_to_record(row).map(|(_, r)| r)).transpose()
        })
        .await
    }

    async fn list(&self, query: &Query) -> Result<Page, StoreError> {
        let (sql, params) = list_sql(query);
        let limit = query.limit as usize;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(params))?;
            // One row more than the page tells whether there is a next page.
            let mut records = Vec::with_capacity(limit.min(64) + 1);
            while let Some(row) = rows.next()? {
                records.push(row_to_record(row)?);
            }
            let next_cursor = if records.len() > limit {
                records.truncate(limit);
                records.last().map(|(pos, _)| Cursor(*pos))
            } else {
                None
            };
            Ok(Page { records: records.into_iter().map(|(_, r)| r).collect(), next_cursor })
        })
        .await
    }
}

/// The SELECT for a listing, with its parameters. Column names come from a closed enum, so
/// nothing of the client's reaches the SQL text.
fn list_sql(q: &Query) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(t) = &q.tenant_id {
        clauses.push("tenant_id = ?".into());
        params.push(Value::Text(t.as_str().to_owned()));
    }
    if let Some(t) = q.since {
        clauses.push("event_time >= ?".into());
        params.push(Value::Integer(t.unix_nanos()));
    }
    if let Some(t) = q.until {
        clauses.push("event_time < ?".into());
        params.push(Value::Integer(t.unix_nanos()));
    }
    for field in TextField::ALL {
        if let Some(values) = q.text_values(field) {
            let marks = vec!["?"; values.len()].join(", ");
            clauses.push(format!("{} IN ({marks})", field.name()));
            params.extend(values.iter().map(|v| Value::Text(v.as_str().to_owned())));
        }
    }
    for bound in &q.temperature {
        let (op, v) = match *bound {
            Bound::AtLeast(v) => (">=", v),
            Bound::AtMost(v) => ("<=", v),
            Bound::Above(v) => (">", v),
            Bound::Below(v) => ("<", v),
        };
        clauses.push(format!("temperature {op} ?"));
        params.push(Value::Real(v));
    }
    if let Some(s) = q.success {
        clauses.push("success = ?".into());
        params.push(Value::Integer(i64::from(s)));
    }
    if let Some(Cursor(pos)) = q.cursor {
        clauses.push("pos < ?".into());
        params.push(Value::Integer(pos));
    }
    let mut sql = String::from("SELECT pos, id, seq, recorded_at, body FROM records");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY pos DESC LIMIT ?");
    params.push(Value::Integer(i64::from(q.limit) + 1));
    (sql, params)
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StoredRecord)> {
    let corrupt = |what: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
    };
    let pos: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let seq: i64 = row.get(2)?;
    let recorded_at: String = row.get(3)?;
    let body: String = row.get(4)?;
    let record = StoredRecord {
        id: id.parse().map_err(|e| corrupt(format!("record {pos}: bad id: {e}")))?,
        seq: u64::try_from(seq).map_err(|e| corrupt(format!("record {pos}: bad seq: {e}")))?,
        recorded_at: Timestamp::parse_rfc3339(&recorded_at)
            .map_err(|e| corrupt(format!("record {pos}: bad recorded_at: {e}")))?,
        record: serde_json::from_str(&body)
            .map_err(|e| corrupt(format!("record {pos}: bad body: {e}")))?,
    };
    Ok((pos, record))
}

/// Read connections, opened on demand and kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let backend = |e: rusqlite::Error| StoreError::Backend(e.to_string());
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => connect(&self.path, OpenFlags::default()).map_err(backend)?,
        };
        let result = f(&conn).map_err(backend);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        result
    }
}

fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsync'd at every commit, so a 2xx survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 64 MiB of page cache: the indexes' hot pages stay in memory as the table grows.
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

/// The data dir holds every record: readable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
