//! The writer thread: group commit of every waiting append, and the write probe.

use aitrail_core::tiles::{self, Tile};
use aitrail_core::{Receipt, Timestamp};
use aitrail_store::StoreError;
use aitrail_store::append::{self, NewLeaves, NewRecord};
use rusqlite::{Connection, ToSql, Transaction, TransactionBehavior, params, params_from_iter};
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::{mpsc, oneshot};

use crate::keyring::Keyring;

/// Records one commit may carry before the writer answers and starts the next; bounds the
/// latency a huge group would add for everyone in it.
const MAX_GROUP_RECORDS: usize = 50_000;

/// What the writer thread is asked to do.
pub(crate) enum Job {
    Append(Append),
    /// Whether a commit could start now (`Store::probe_write`). Asked here, between the
    /// writer's commits, so they never make it fail: only another connection holding the
    /// lock (another process, or this store's retention, erasure and admin writes), or a
    /// writer thread that is gone, does.
    Probe(oneshot::Sender<Result<(), StoreError>>),
}

/// What the writer is doing with the write lock: what a probe that gets no answer in time
/// judges by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LockActivity {
    /// Neither waiting for the lock nor holding it: between jobs, or not yet scheduled.
    Between = 0,
    /// Waiting for the lock, for a commit or a probe.
    Waiting = 1,
    /// Holding it, in a commit.
    Holding = 2,
}

#[derive(Debug, Default)]
pub(crate) struct WriterState {
    activity: AtomicU8,
}

impl WriterState {
    pub fn activity(&self) -> LockActivity {
        match self.activity.load(Ordering::Relaxed) {
            1 => LockActivity::Waiting,
            2 => LockActivity::Holding,
            _ => LockActivity::Between,
        }
    }

    fn set(&self, activity: LockActivity) {
        self.activity.store(activity as u8, Ordering::Relaxed);
    }
}

pub(crate) struct Append {
    pub rows: Vec<NewRecord>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// Commits between two nudges of the checkpointer. Each nudge wakes its thread; at a
/// commit every few milliseconds that wake-up competes with the commit's own reply.
const COMMITS_PER_NUDGE: u32 = 8;

/// Runs until every sender is gone, then returns its connection (the last group is
/// committed first), for the caller to close last. Every few commits it nudges the
/// checkpointer, without ever waiting for it.
pub(crate) fn run(
    mut conn: Connection,
    mut keyring: Keyring,
    mut queue: mpsc::Receiver<Job>,
    committed: std::sync::mpsc::SyncSender<()>,
    state: &WriterState,
) -> Connection {
    let mut commits = 0u32;
    while let Some(first) = queue.blocking_recv() {
        let (mut group, mut probes, mut size) = (Vec::new(), Vec::new(), 0);
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Append(append) => {
                    size += append.rows.len();
                    group.push(append);
                }
                Job::Probe(reply) => probes.push(reply),
            }
            next = if size < MAX_GROUP_RECORDS { queue.try_recv().ok() } else { None };
        }
        // Probes first: they must not wait for the commits queued with them.
        if !probes.is_empty() {
            state.set(LockActivity::Waiting);
            let probed = probe_write(&conn);
            state.set(LockActivity::Between);
            for reply in probes {
                let _ = reply.send(probed.clone().map_err(StoreError::Backend));
            }
        }
        if !group.is_empty() {
            commit_group(&mut conn, &mut keyring, group, state);
            commits = commits.wrapping_add(1);
            if commits.is_multiple_of(COMMITS_PER_NUDGE) {
                let _ = committed.try_send(());
            }
        }
    }
    conn
}

/// Take the write lock and give it back at once. Waits for the lock 200 ms at most (a
/// commit holds it for milliseconds).
fn probe_write(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(std::time::Duration::from_millis(200)).map_err(|e| e.to_string())?;
    let probed = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
    if probed.is_err() {
        let _ = conn.execute_batch("ROLLBACK;");
    }
    if let Err(e) = conn.busy_timeout(crate::BUSY_TIMEOUT) {
        // Commits would give up after 200 ms: say so, though SQLite cannot fail here.
        tracing::error!(error = %e, "the writer's busy timeout could not be restored");
    }
    probed.map_err(|e| format!("the store cannot take a write now: {e}"))
}

/// Copies committed WAL frames back into the database, nudged every few commits. PASSIVE:
/// it never blocks the writer or readers. Ends when the writer is gone.
pub(crate) fn checkpoint_loop(conn: Connection, committed: std::sync::mpsc::Receiver<()>) {
    while committed.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Commit every job of the group in one transaction. Should that fail, each job is retried
/// in a transaction of its own, so one failing append never takes the others down.
fn commit_group(
    conn: &mut Connection,
    keyring: &mut Keyring,
    group: Vec<Append>,
    state: &WriterState,
) {
    let together = (|| {
        state.set(LockActivity::Waiting);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        state.set(LockActivity::Holding);
        let mut leaves = NewLeaves::new();
        let mut next_pos: i64 =
            tx.query_row("SELECT coalesce(max(pos), 0) + 1 FROM records", [], |r| r.get(0))?;
        let receipts = group
            .iter()
            .map(|job| insert_rows(&tx, keyring, &job.rows, &mut next_pos, &mut leaves))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        update_tiles(&tx, &leaves)?;
        tx.commit()?;
        Ok::<_, rusqlite::Error>(receipts)
    })();
    state.set(LockActivity::Between);
    if together.is_err() {
        keyring.forget();
    }
    match together {
        Ok(receipts) => {
            for (job, r) in group.into_iter().zip(receipts) {
                let _ = job.reply.send(Ok(r));
            }
        }
        // One append alone, or the lock is held elsewhere (each alone would wait as long).
        Err(e) if group.len() == 1 || is_busy(&e) => {
            if !matches!(refused(&e), StoreError::DuplicateExternalId) {
                tracing::error!(error = %e, "append failed");
            }
            for job in group {
                let _ = job.reply.send(Err(refused(&e)));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "group commit failed; committing one by one");
            for job in group {
                commit_group(conn, keyring, vec![job], state);
            }
        }
    }
}

fn insert_rows(
    tx: &Transaction<'_>,
    keyring: &mut Keyring,
    rows: &[NewRecord],
    next_pos: &mut i64,
    leaves: &mut NewLeaves,
) -> rusqlite::Result<Vec<Receipt>> {
    // Claim each tenant's seq range with one statement, and read its key epoch: the
    // data keys cached at another are dropped (`aitrail_store::sealing`).
    let mut claim = tx.prepare_cached(
        "INSERT INTO logs (tenant_id, size) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO UPDATE SET size = size + excluded.size
         RETURNING size, key_epoch",
    )?;
    let mut starts = append::counts(rows);
    for (tenant, n) in &mut starts {
        let (size, epoch): (i64, i64) =
            claim.query_row(params![tenant, *n as i64], |row| Ok((row.get(0)?, row.get(1)?)))?;
        keyring.at_epoch(tenant, epoch);
        *n = size as u64 - *n;
    }
    let (placed, receipts) = append::place(rows, &starts, Timestamp::now(), leaves);
    // The rows' pos, given here rather than by SQLite, so entries and contents need not
    // wait for each row's rowid and every table takes its rows many to a statement.
    let first_pos = *next_pos;
    *next_pos += placed.len() as i64;
    let pos: Vec<i64> = (first_pos..*next_pos).collect();
    let records: Vec<[&dyn ToSql; 19]> = placed
        .iter()
        .zip(&pos)
        .map(|(row, pos)| {
            let (columns, f) = (&row.columns, &row.columns.fields);
            let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10] = &f.text;
            [
                pos as &dyn ToSql,
                &columns.id,
                &f.tenant_id,
                &columns.seq,
                &columns.recorded_at,
                &columns.event_time,
                t0,
                t1,
                t2,
                t3,
                t4,
                t5,
                t6,
                t7,
                t8,
                t9,
                t10,
                &f.temperature,
                &f.success,
            ]
        })
        .collect();
    insert_all(tx, INSERT_SQL, &records)?;
    let entries: Vec<[&dyn ToSql; 2]> =
        placed.iter().zip(&pos).map(|(row, pos)| [pos as &dyn ToSql, &row.entry]).collect();
    insert_all(tx, "INSERT INTO entries (pos, entry)", &entries)?;
    let sealed = keyring.seal(&placed).map_err(|e| {
        rusqlite::Error::ToSqlConversionFailure(format!("content could not be sealed: {e}").into())
    })?;
    let contents: Vec<_> = sealed
        .iter()
        .zip(&pos)
        .filter_map(|(sealed, pos)| {
            let c = sealed.as_ref()?;
            let hashes = [c.hashes.prompt.map(|h| h.0), c.hashes.response.map(|h| h.0)];
            Some((pos, c.key_id.as_bytes(), &c.sealed, hashes))
        })
        .collect();
    let contents: Vec<[&dyn ToSql; 5]> = contents
        .iter()
        .map(|(pos, key_id, sealed, [prompt_hash, response_hash])| {
            [*pos as &dyn ToSql, key_id, sealed, prompt_hash, response_hash]
        })
        .collect();
    insert_all(
        tx,
        "INSERT INTO contents (pos, key_id, sealed, prompt_hash, response_hash)",
        &contents,
    )?;
    Ok(receipts)
}

/// Rows per multi-row INSERT: SQLite opens the table's and indexes' cursors once for them
/// all, not once a row.
const ROWS_PER_INSERT: usize = 32;

/// `head` (`INSERT INTO t (columns)`) for every row, many rows to a statement.
fn insert_all<const N: usize>(
    tx: &Transaction<'_>,
    head: &str,
    rows: &[[&dyn ToSql; N]],
) -> rusqlite::Result<()> {
    let one = format!("({})", ["?"; N].join(", "));
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if rows.len() >= ROWS_PER_INSERT {
        let many = format!("{head} VALUES {}", vec![one.as_str(); ROWS_PER_INSERT].join(", "));
        let mut insert = tx.prepare_cached(&many)?;
        for chunk in &mut chunks {
            insert.execute(params_from_iter(chunk.iter().flatten()))?;
        }
    }
    let mut insert = tx.prepare_cached(&format!("{head} VALUES {one}"))?;
    for row in chunks.remainder() {
        insert.execute(params_from_iter(row))?;
    }
    Ok(())
}

/// Add the group's new leaves to each tenant's hash tiles.
fn update_tiles(tx: &Transaction<'_>, leaves: &NewLeaves) -> rusqlite::Result<()> {
    let mut read = tx.prepare_cached(
        "SELECT hashes FROM tiles WHERE tenant_id = ?1 AND level = ?2 AND idx = ?3",
    )?;
    let mut write = tx.prepare_cached(
        "INSERT INTO tiles (tenant_id, level, idx, hashes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hashes = excluded.hashes",
    )?;
    for (tenant, (old_size, new)) in leaves {
        let mut edge = Vec::new();
        for id in tiles::partial_edge(*old_size) {
            let bytes: Vec<u8> =
                read.query_row(params![tenant, id.level, id.index as i64], |r| r.get(0))?;
            edge.push(
                Tile::from_bytes(id, &bytes)
                    .ok_or_else(|| corrupt(format!("tile {id:?} of {tenant}")))?,
            );
        }
        let writes = tiles::append(*old_size, new, &edge).map_err(|e| corrupt(e.to_string()))?;
        for t in writes {
            write.execute(params![tenant, t.id.level, t.id.index as i64, t.to_bytes()])?;
        }
    }
    Ok(())
}

fn corrupt(what: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("stored log is corrupt: {what}").into())
}

/// Column order matches `TextField::ALL` (the text columns).
const INSERT_SQL: &str = "INSERT INTO records (pos, id, tenant_id, seq, recorded_at, \
    event_time, model_provider, model_name, model_version, deployment_id, safety_mode, \
    operation_type, user_id, agent_id, session_id, feature_code, external_id, temperature, \
    success)";

/// Whether another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Why an append was refused: a duplicate external_id, or the backend failing.
fn refused(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && msg.contains("records.external_id") =>
        {
            StoreError::DuplicateExternalId
        }
        _ => StoreError::Backend(e.to_string()),
    }
}
