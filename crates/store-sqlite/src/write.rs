//! The writer thread: group commit of every waiting append.

use std::collections::HashMap;

use aitrail_core::entry::{self, Prepared, RowColumns};
use aitrail_core::merkle::{self, Hash};
use aitrail_core::tiles::{self, Tile};
use aitrail_core::{Receipt, Record, Timestamp};
use aitrail_store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Records one commit may carry before the writer answers and starts the next; bounds the
/// latency a huge group would add for everyone in it.
const MAX_GROUP_RECORDS: usize = 50_000;

pub(crate) struct Job {
    pub rows: Vec<Row>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// A record made ready for the writer: everything that does not depend on the commit
/// (its canonical JSON, content commitments, index columns) is computed by the caller,
/// off the writer thread.
pub(crate) struct Row {
    prepared: Prepared,
}

impl Row {
    pub(crate) fn new(r: &Record) -> Result<Self, StoreError> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt)
            .map_err(|e| backend(format!("no randomness for a salt: {e}")))?;
        Ok(Self { prepared: entry::prepare(r, salt) })
    }

    fn tenant(&self) -> &str {
        &self.prepared.columns.tenant_id
    }
}

/// Runs until every sender is gone, then returns (the last group is committed first).
/// After each commit it nudges the checkpointer, without ever waiting for it.
pub(crate) fn run(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    committed: std::sync::mpsc::SyncSender<()>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        let mut size = group[0].rows.len();
        while size < MAX_GROUP_RECORDS {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.rows.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, group);
        let _ = committed.try_send(());
    }
}

/// WAL frames worth a checkpoint (SQLite's own default for auto-checkpoints).
const CHECKPOINT_FRAMES: i64 = 1000;

/// Copies committed WAL frames back into the database once enough have piled up. PASSIVE:
/// it never blocks the writer or readers. Ends when the writer is gone.
pub(crate) fn checkpoint_loop(conn: Connection, committed: std::sync::mpsc::Receiver<()>) {
    let mut backlog = 0;
    while committed.recv().is_ok() {
        backlog += 1;
        if backlog < 8 {
            continue; // a cheap look every few commits
        }
        backlog = 0;
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            Ok((log, done)) if log - done >= CHECKPOINT_FRAMES => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Commit every job of the group in one transaction. Should that fail, each job is retried
/// in a transaction of its own, so one failing append never takes the others down.
fn commit_group(conn: &mut Connection, group: Vec<Job>) {
    let together = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut leaves = NewLeaves::new();
        let receipts = group
            .iter()
            .map(|job| insert_rows(&tx, &job.rows, &mut leaves))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        update_tiles(&tx, &leaves)?;
        tx.commit()?;
        Ok::<_, rusqlite::Error>(receipts)
    })();
    match together {
        Ok(receipts) => {
            for (job, r) in group.into_iter().zip(receipts) {
                let _ = job.reply.send(Ok(r));
            }
        }
        Err(e) if group.len() == 1 => {
            tracing::error!(error = %e, "append failed");
            for job in group {
                let _ = job.reply.send(Err(backend(&e)));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "group commit failed; committing one by one");
            for job in group {
                commit_group(conn, vec![job]);
            }
        }
    }
}

/// Leaves appended in one group, per tenant: the log size before them, then the leaves.
type NewLeaves = HashMap<String, (u64, Vec<Hash>)>;

fn insert_rows(
    tx: &Transaction<'_>,
    rows: &[Row],
    leaves: &mut NewLeaves,
) -> rusqlite::Result<Vec<Receipt>> {
    let recorded_at = Timestamp::now();
    // Claim each tenant's seq range with one statement, in the order tenants first appear.
    let mut next_seq: Vec<(&str, i64)> = Vec::new();
    for r in rows {
        match next_seq.iter_mut().find(|(t, _)| *t == r.tenant()) {
            Some((_, n)) => *n += 1,
            None => next_seq.push((r.tenant(), 1)),
        }
    }
    let mut claim = tx.prepare_cached(
        "INSERT INTO logs (tenant_id, size) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO UPDATE SET size = size + excluded.size
         RETURNING size",
    )?;
    for (tenant, n) in &mut next_seq {
        let size: i64 = claim.query_row(params![*tenant, *n], |row| row.get(0))?;
        *n = size - *n;
    }
    let mut insert = tx.prepare_cached(INSERT_SQL)?;
    let mut insert_content = tx.prepare_cached(
        "INSERT INTO contents (pos, salt, prompt, response, prompt_variables) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut receipts = Vec::with_capacity(rows.len());
    for r in rows {
        let slot = next_seq.iter_mut().find(|(t, _)| *t == r.tenant()).map(|(_, s)| s);
        let seq = slot.map(|s| {
            *s += 1;
            *s - 1
        });
        let seq = seq.expect("every tenant's range was claimed above") as u64;
        let id = Uuid::now_v7();
        let p = &r.prepared;
        let entry = entry::encode(&id, recorded_at, seq, &p.record_json);
        let columns = RowColumns::new(&id, seq, recorded_at, p.columns.clone());
        let f = &columns.fields;
        let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9] = &f.text;
        insert.execute(params![
            columns.id,
            f.tenant_id,
            columns.seq,
            columns.recorded_at,
            columns.event_time,
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
            f.temperature,
            f.success,
            entry,
        ])?;
        if let Some(c) = &p.content {
            let field = |name: &str| c.fields.get(name);
            insert_content.execute(params![
                tx.last_insert_rowid(),
                c.salt.as_slice(),
                field("prompt"),
                field("response"),
                field("prompt_variables"),
            ])?;
        }
        leaves
            .entry(f.tenant_id.clone())
            .or_insert((seq, Vec::new()))
            .1
            .push(merkle::leaf_hash(&entry));
        receipts.push(Receipt { id, seq, recorded_at });
    }
    Ok(receipts)
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
pub(crate) const INSERT_SQL: &str = "INSERT INTO records (id, tenant_id, seq, recorded_at, \
    event_time, model_provider, model_name, model_version, deployment_id, safety_mode, \
    operation_type, user_id, agent_id, session_id, feature_code, temperature, success, entry) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}
