//! The writer task: group commit of every waiting append, rows sent with binary COPY.

use std::pin::pin;

use aitrail_core::query::TextField;
use aitrail_core::tiles::{self, TileId};
use aitrail_core::{Receipt, Timestamp};
use aitrail_store::StoreError;
use aitrail_store::append::{self, NewLeaves, NewRecord, Placed};
use aitrail_store::sealing::{SealedContent, WriterKeys};
use deadpool_postgres::{Pool, Transaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::read;

/// Records one commit may carry before the writer answers and starts the next.
const MAX_GROUP_RECORDS: usize = 50_000;
/// Tries of a group that failed for a reason worth retrying (a deadlock or serialisation
/// failure, which PostgreSQL resolves by aborting one side).
const TRIES: usize = 5;

pub(crate) struct Job {
    pub records: Vec<NewRecord>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// Runs until every sender is gone.
pub(crate) async fn run(pool: Pool, mut keys: WriterKeys, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut size = first.records.len();
        let mut group = vec![first];
        while size < MAX_GROUP_RECORDS {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.records.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&pool, &mut keys, group).await;
    }
}

/// Commit every job of the group in one transaction. Should that fail, each job is retried
/// in a transaction of its own, so one failing append never takes the others down.
async fn commit_group(pool: &Pool, keys: &mut WriterKeys, group: Vec<Job>) {
    match commit_with_retries(pool, keys, &group).await {
        Ok(receipts) => {
            for (job, r) in group.into_iter().zip(receipts) {
                let _ = job.reply.send(Ok(r));
            }
        }
        Err(e) if group.len() == 1 => {
            if !matches!(e, WriteError::DuplicateExternalId) {
                tracing::error!(error = %e, "append failed");
            }
            for job in group {
                let _ = job.reply.send(Err(e.clone().into()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "group commit failed; committing one by one");
            for job in group {
                let result = commit_with_retries(pool, keys, std::slice::from_ref(&job)).await;
                let _ = job.reply.send(result.map(|mut r| r.remove(0)).map_err(Into::into));
            }
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
enum WriteError {
    #[error("PostgreSQL: {0}")]
    Database(String, Option<SqlState>),
    #[error("stored log is corrupt: {0}")]
    Corrupt(String),
    #[error("duplicate external_id")]
    DuplicateExternalId,
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.as_db_error().and_then(|d| d.constraint()) == Some("records_external_id") {
            return WriteError::DuplicateExternalId;
        }
        WriteError::Database(e.to_string(), e.code().cloned())
    }
}

impl From<deadpool_postgres::PoolError> for WriteError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        WriteError::Database(e.to_string(), None)
    }
}

impl From<WriteError> for StoreError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Database(..) => StoreError::Backend(e.to_string()),
            WriteError::Corrupt(what) => StoreError::Corrupt(what),
            WriteError::DuplicateExternalId => StoreError::DuplicateExternalId,
        }
    }
}

impl WriteError {
    fn worth_retrying(&self) -> bool {
        matches!(
            self,
            WriteError::Database(_, Some(code))
                if *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
        )
    }
}

async fn commit_with_retries(
    pool: &Pool,
    keys: &mut WriterKeys,
    jobs: &[Job],
) -> Result<Vec<Vec<Receipt>>, WriteError> {
    let mut tries = 1;
    loop {
        let committed = commit(pool, keys, jobs).await;
        // Keys added in a transaction that failed are gone with it.
        if committed.is_err() {
            keys.forget();
        }
        match committed {
            Err(e) if e.worth_retrying() && tries < TRIES => tries += 1,
            result => return result,
        }
    }
}

/// One transaction: claim each tenant's seq range (locking its log row until commit),
/// place the records, COPY them in, add their leaves to the tiles, commit.
async fn commit(
    pool: &Pool,
    keys: &mut WriterKeys,
    jobs: &[Job],
) -> Result<Vec<Vec<Receipt>>, WriteError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let claim = tx
        .prepare_cached(
            "INSERT INTO logs (tenant_id, size) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET size = logs.size + excluded.size
             RETURNING size, key_epoch",
        )
        .await?;
    let mut starts = append::counts(jobs.iter().flat_map(|j| &j.records));
    for (tenant, n) in &mut starts {
        // The key epoch: data keys cached at another are dropped (`aitrail_store::sealing`).
        let claimed = tx.query_one(&claim, &[tenant, &(*n as i64)]).await?;
        let size: i64 = claimed.try_get(0)?;
        keys.at_epoch(tenant, claimed.try_get(1)?);
        *n = size as u64 - *n;
    }
    let mut leaves = NewLeaves::new();
    let mut rows = Vec::new();
    let mut receipts = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (placed, r) = append::place(&job.records, &starts, Timestamp::now(), &mut leaves);
        rows.extend(placed);
        receipts.push(r);
    }
    copy_records(&tx, &rows).await?;
    let sealed = crate::keyring::seal(&tx, keys, &rows).await.map_err(|e| match e {
        StoreError::Corrupt(what) => WriteError::Corrupt(what),
        other => WriteError::Database(other.to_string(), None),
    })?;
    copy_contents(&tx, &rows, &sealed).await?;
    update_tiles(&tx, &leaves).await?;
    tx.commit().await?;
    Ok(receipts)
}

fn micros(nanos: i64) -> OffsetDateTime {
    // Whole microseconds (timestamptz's precision), rounded down as `verify` compares.
    let nanos = i128::from(nanos.div_euclid(1000) * 1000);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn copy_records(tx: &Transaction<'_>, rows: &[Placed<'_>]) -> Result<(), WriteError> {
    let sink = tx
        .copy_in(
            "COPY records (id, tenant_id, seq, recorded_at, event_time, model_provider, \
             model_name, model_version, deployment_id, safety_mode, operation_type, user_id, \
             agent_id, session_id, feature_code, external_id, temperature, success, entry) \
             FROM STDIN BINARY",
        )
        .await?;
    let mut types = vec![Type::UUID, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ];
    types.extend([Type::TEXT; TextField::ALL.len()]);
    types.extend([Type::FLOAT8, Type::BOOL, Type::BYTEA]);
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for row in rows {
        let (c, f) = (&row.columns, &row.columns.fields);
        let recorded_at = Timestamp::parse_rfc3339(&c.recorded_at)
            .map_err(|e| WriteError::Corrupt(format!("recorded_at {}: {e}", c.recorded_at)))?
            .datetime();
        let event_time = micros(c.event_time);
        let mut values: Vec<&(dyn ToSql + Sync)> =
            vec![&row.id, &f.tenant_id, &c.seq, &recorded_at, &event_time];
        values.extend(f.text.iter().map(|t| t as &(dyn ToSql + Sync)));
        values.extend([&f.temperature as &(dyn ToSql + Sync), &f.success, &row.entry]);
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn copy_contents(
    tx: &Transaction<'_>,
    rows: &[Placed<'_>],
    sealed: &[Option<SealedContent>],
) -> Result<(), WriteError> {
    if sealed.iter().all(Option::is_none) {
        return Ok(());
    }
    let sink = tx
        .copy_in("COPY contents (id, key_id, sealed, prompt_hash, response_hash) FROM STDIN BINARY")
        .await?;
    let types = [Type::UUID, Type::UUID, Type::BYTEA, Type::BYTEA, Type::BYTEA];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for (row, c) in rows.iter().zip(sealed) {
        let Some(c) = c else { continue };
        let hash = |h: Option<aitrail_core::entry::KeyedHash>| h.map(|h| h.0.to_vec());
        let (prompt_hash, response_hash) = (hash(c.hashes.prompt), hash(c.hashes.response));
        writer
            .as_mut()
            .write(&[&row.id, &c.key_id, &c.sealed, &prompt_hash, &response_hash])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Add the group's new leaves to each tenant's hash tiles.
async fn update_tiles(tx: &Transaction<'_>, leaves: &NewLeaves) -> Result<(), WriteError> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO tiles (tenant_id, level, idx, hashes)
             SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])
             ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hashes = excluded.hashes",
        )
        .await?;
    for (tenant, (old_size, new)) in leaves {
        let want: Vec<TileId> = tiles::partial_edge(*old_size);
        let edge = read::tiles(tx, tenant, &want).await?.map_err(|e| match e {
            StoreError::Corrupt(what) => WriteError::Corrupt(what),
            other => WriteError::Corrupt(other.to_string()),
        })?;
        let writes = tiles::append(*old_size, new, &edge)
            .map_err(|e| WriteError::Corrupt(format!("tenant {tenant}: {e}")))?;
        let mut columns: (Vec<i16>, Vec<i64>, Vec<Vec<u8>>) = Default::default();
        for t in &writes {
            columns.0.push(i16::from(t.id.level));
            columns.1.push(t.id.index as i64);
            columns.2.push(t.to_bytes());
        }
        tx.execute(&upsert, &[tenant, &columns.0, &columns.1, &columns.2]).await?;
    }
    Ok(())
}
