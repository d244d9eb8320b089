//! The PostgreSQL backend: every node is stateless, the database holds everything, so
//! several `aitrail serve` processes can share one database (and its replicas).
//!
//! Writes go through one writer task per process that group-commits, as the SQLite
//! backend does: every append waiting in its queue goes into one transaction. That
//! transaction claims each tenant's seq range by bumping the tenant's `logs` row, which
//! row-locks it until commit, so writers of one tenant on any node take turns: seq stays
//! contiguous and the hash tiles (updated in the same transaction) have one history.
//! Tenants are claimed in sorted order, the same on every node, so two groups never wait
//! for each other in a cycle. Reads use a pool of connections.

mod admin;
mod keyring;
mod read;
mod schema;
pub mod testing;
mod tls;
mod write;

use std::sync::Arc;

use aitrail_core::Timestamp;
use aitrail_core::access::KeyId;
use aitrail_core::seal::ContentKey;
use aitrail_core::tiles::{Tile, TileId};
use aitrail_core::{Query, Receipt, Record, StoredRecord, TenantId};
use aitrail_store::append::NewRecord;
use aitrail_store::retention::{Hold, Mode, Purged, Selector};
use aitrail_store::sealing::{Opener, WriterKeys};
use aitrail_store::{
    EntryRecord, LogHead, RawRow, RowPage, Store, StoreError, StoredCheckpoint, StoredKey,
};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

pub use schema::MIGRATIONS;

/// How many appends may wait for the writer before callers are made to wait.
const QUEUE_DEPTH: usize = 4096;
/// Connections per process: the writer's, and the readers'.
const POOL_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not a PostgreSQL URL (postgres://user@host:port/database): {0}")]
    Url(tokio_postgres::Error),
    #[error("{0}")]
    Tls(String),
    #[error("cannot use PostgreSQL at {at}: {}", with_causes(source))]
    Database { at: String, source: tokio_postgres::Error },
    #[error("cannot connect to PostgreSQL at {at}: {}", with_causes(source))]
    Pool { at: String, source: deadpool_postgres::PoolError },
    /// The database belongs to another log key than the one it was opened with.
    #[error("{0}")]
    LogKey(StoreError),
    #[error(
        "cannot seal the content of PostgreSQL at {at} stored before content was sealed: {why}"
    )]
    Sealing { at: String, why: String },
    #[error(
        "database at {at} has schema version {found}, newer than this aitrail knows ({known}); upgrade aitrail"
    )]
    TooNew { at: String, found: i64, known: i64 },
    #[error(
        "database at {at} has schema version {found}, older than this aitrail's ({known}); a read-only open does not migrate it: run `aitrail migrate`, or read it with the aitrail that wrote it"
    )]
    TooOld { at: String, found: i64, known: i64 },
}

/// A handle on the store; cheap to clone, all clones share the writer and the pool.
#[derive(Clone)]
pub struct PostgresStore {
    jobs: mpsc::Sender<write::Job>,
    /// Opened with [`PostgresStore::open_read_only`]: no writer, every session read-only.
    read_only: bool,
    pool: Pool,
    at: String,
    /// What content is sealed and opened with; `None`: opened to read without it.
    content_key: Option<Arc<ContentKey>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("at", &self.at).finish()
    }
}

impl PostgresStore {
    /// Connect to `url`, apply pending migrations, and start the writer task (on the
    /// current Tokio runtime); content is sealed and opened with `content_key`.
    pub async fn open(url: &str, content_key: ContentKey) -> Result<Self, OpenError> {
        let (config, tls) = tls::connection(url)?;
        let (pool, at) = pool(config, tls);
        let content_key = Arc::new(content_key);
        let (found, known) = migrate_pool(&pool, &at, &content_key).await?;
        if found > known {
            return Err(OpenError::TooNew { at, found, known });
        }
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write::run(pool.clone(), WriterKeys::new(content_key.clone()), queue));
        Ok(Self { jobs, read_only: false, pool, at, content_key: Some(content_key) })
    }

    /// Connect to `url` to read only: nothing is migrated, every session is read-only
    /// (`default_transaction_read_only`), there is no writer, and every write is refused.
    /// Without `content_key` content stays sealed: reads show none, and verify checks
    /// everything but the content commitments.
    pub async fn open_read_only(
        url: &str,
        content_key: Option<ContentKey>,
    ) -> Result<Self, OpenError> {
        let (mut config, tls) = tls::connection(url)?;
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options} -c default_transaction_read_only=on").trim());
        let (pool, at) = pool(config, tls);
        let client =
            pool.get().await.map_err(|source| OpenError::Pool { at: at.clone(), source })?;
        let found = schema::version(&client)
            .await
            .map_err(|source| OpenError::Database { at: at.clone(), source })?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(OpenError::TooNew { at, found, known });
        }
        let unsealed = client
            .query_one("SELECT to_regclass('contents_plain') IS NOT NULL", &[])
            .await
            .map_err(|source| OpenError::Database { at: at.clone(), source })?;
        // Content not yet sealed is a migration not yet finished.
        if found < known || unsealed.get::<_, bool>(0) {
            return Err(OpenError::TooOld { at, found: found.min(known - 1), known });
        }
        // No writer: the queue's far end is dropped, and `append` refuses before it.
        let (jobs, _) = mpsc::channel(1);
        let content_key = content_key.map(Arc::new);
        Ok(Self { jobs, read_only: true, pool, at, content_key })
    }

    /// Apply pending migrations only, sealing content stored before content was sealed
    /// with `content_key`; returns (version found, version now).
    pub async fn migrate(url: &str, content_key: &ContentKey) -> Result<(i64, i64), OpenError> {
        let (config, tls) = tls::connection(url)?;
        let (pool, at) = pool(config, tls);
        let content_key = Arc::new(content_key.clone());
        let (found, known) = migrate_pool(&pool, &at, &content_key).await?;
        if found > known {
            return Err(OpenError::TooNew { at, found, known });
        }
        Ok((found, known))
    }

    /// Where the database is, without credentials (for messages).
    pub fn location(&self) -> &str {
        &self.at
    }

    /// The plan PostgreSQL chooses for a listing (`EXPLAIN`), to check that the auditor
    /// queries are served by indexes.
    pub async fn explain(&self, query: &Query) -> Result<String, StoreError> {
        read::explain(&self.client().await?, query).await
    }

    /// An opener of the content a read finds.
    fn opener(&self) -> Opener<'_> {
        Opener::new(self.content_key.as_deref())
    }

    /// Refuse a write on a store opened to read, before it reaches the database (whose own
    /// refusal a pooler may not pass on).
    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only { Err(StoreError::ReadOnly) } else { Ok(()) }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("PostgreSQL: {}", with_causes(&e))))
    }
}

fn pool(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> (Pool, String) {
    let at = location(&config);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime builds");
    (pool, at)
}

async fn migrate_pool(
    pool: &Pool,
    at: &str,
    content_key: &Arc<ContentKey>,
) -> Result<(i64, i64), OpenError> {
    let mut client =
        pool.get().await.map_err(|source| OpenError::Pool { at: at.to_owned(), source })?;
    let versions = schema::migrate(&mut client)
        .await
        .map_err(|source| OpenError::Database { at: at.to_owned(), source })?;
    if versions.0 <= versions.1 {
        // Content is sealed under this log's key only: another log key is refused first.
        if let Some(verifier) = content_key.log() {
            admin::claim_log_key(&client, verifier).await.map_err(OpenError::LogKey)?;
        }
        let mut keys = WriterKeys::new(content_key.clone());
        let sealing_err =
            |e: StoreError| OpenError::Sealing { at: at.to_owned(), why: e.to_string() };
        keyring::rebucket(&mut client, content_key, schema::MIGRATION_LOCK)
            .await
            .map_err(sealing_err)?;
        keyring::seal_unsealed(&mut client, &mut keys, schema::MIGRATION_LOCK)
            .await
            .map_err(sealing_err)?;
        keyring::finish_rewrites(&client).await.map_err(sealing_err)?;
    }
    Ok(versions)
}

/// One connection to `url`, secured as its `sslmode` says (the store's pools connect the
/// same way), for tools that read or write PostgreSQL beside the store (`import
/// --from-postgres`, tests); the connection runs on a task of its own.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, OpenError> {
    let (config, tls) = tls::connection(url)?;
    let at = location(&config);
    let (client, connection) =
        config.connect(tls).await.map_err(|source| OpenError::Database { at, source })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "a PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// An error with what caused it (a TLS handshake's "invalid peer certificate: …"):
/// tokio-postgres's own text stops at "error performing TLS handshake".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `user@host:port/database`: enough to tell which database, never the password.
fn location(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("");
    let db = c.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, records: Vec<Record>) -> Result<Vec<Receipt>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let records = records.iter().map(NewRecord::new).collect::<Result<_, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.jobs.send(write::Job { records, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn get(&self, id: Uuid) -> Result<Option<StoredRecord>, StoreError> {
        let raw = read::raw_by_id(&self.client().await?, &mut self.opener(), id).await?;
        raw.as_ref().map(RawRow::to_record).transpose()
    }

    async fn list_rows(&self, query: &Query) -> Result<RowPage, StoreError> {
        read::list_rows(&self.client().await?, &mut self.opener(), query).await
    }

    async fn entry(&self, id: Uuid) -> Result<Option<EntryRecord>, StoreError> {
        read::entry(&self.client().await?, &mut self.opener(), id).await
    }

    async fn tiles(&self, tenant: &TenantId, ids: &[TileId]) -> Result<Vec<Tile>, StoreError> {
        read::tiles(&self.client().await?, tenant.as_str(), ids).await.map_err(read::backend)?
    }

    async fn logs(&self) -> Result<Vec<LogHead>, StoreError> {
        read::logs(&self.client().await?).await
    }

    async fn add_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.writable()?;
        admin::add_checkpoint(&self.client().await?, cp).await
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        read::checkpoint(&self.client().await?, tenant, size).await
    }

    async fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<StoredCheckpoint>, StoreError> {
        read::checkpoints(&self.client().await?, tenant).await
    }

    async fn pos_span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        read::pos_span(&self.client().await?).await
    }

    async fn scan(&self, from: i64, to: i64) -> Result<Vec<RawRow>, StoreError> {
        read::scan(&self.client().await?, &mut self.opener(), from, to).await
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        read::tenants(&self.client().await?).await
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        // A connection within a second, to a primary (a standby in recovery takes no write).
        let client = tokio::time::timeout(std::time::Duration::from_secs(1), self.client())
            .await
            .map_err(|_| StoreError::Backend("PostgreSQL: no connection within 1 s".into()))??;
        let row =
            client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(read::backend)?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::Backend(
                "PostgreSQL is a standby in recovery: it takes no write".into(),
            ));
        }
        Ok(())
    }

    async fn claim_log_key(&self, verifier: &str) -> Result<(), StoreError> {
        self.writable()?;
        admin::claim_log_key(&self.client().await?, verifier).await
    }

    async fn add_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.writable()?;
        admin::add_key(&self.client().await?, key).await
    }

    async fn key(&self, id: &KeyId) -> Result<Option<StoredKey>, StoreError> {
        read::keys(&self.client().await?, Some(id)).await.map(|mut k| k.pop())
    }

    async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        read::keys(&self.client().await?, None).await
    }

    async fn revoke_key(&self, id: &KeyId, at: Timestamp) -> Result<bool, StoreError> {
        self.writable()?;
        admin::revoke_key(&self.client().await?, id, at).await
    }

    async fn policy(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        read::policy(&self.client().await?, tenant).await
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
        admin::purge_content(&self.client().await?, tenant, selector, mode).await
    }

    async fn retire_keys(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.writable()?;
        keyring::retire(&mut self.client().await?, tenant, selector).await
    }

    async fn destroy_keys(&self, tenant: &TenantId, keys: &[Uuid]) -> Result<u64, StoreError> {
        self.writable()?;
        let content_key = self.content_key.clone().ok_or(StoreError::ReadOnly)?;
        keyring::destroy(&mut self.client().await?, &content_key, tenant, keys).await
    }

    async fn content_seqs(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        admin::content_seqs(&self.client().await?, tenant, selector).await
    }

    async fn records_before(
        &self,
        tenant: &TenantId,
        cutoff: Timestamp,
    ) -> Result<(Vec<u64>, u64), StoreError> {
        read::records_before(&self.client().await?, tenant, cutoff).await
    }

    async fn remove_records(&self, tenant: &TenantId, seqs: &[u64]) -> Result<u64, StoreError> {
        self.writable()?;
        admin::remove_records(&mut self.client().await?, tenant, seqs).await
    }

    async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        read::holds(&self.client().await?).await
    }

    async fn add_hold(&self, hold: &Hold) -> Result<(), StoreError> {
        self.writable()?;
        admin::add_hold(&self.client().await?, hold).await
    }

    async fn remove_hold(
        &self,
        tenant: &TenantId,
        session_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        admin::remove_hold(&self.client().await?, tenant, session_id.unwrap_or_default()).await
    }

    async fn set_policy(
        &self,
        tenant: &TenantId,
        policy: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.writable()?;
        admin::set_policy(&self.client().await?, tenant, policy, at).await
    }
}
