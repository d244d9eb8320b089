//! The writer thread: group commit of every waiting append.

use aitrail_core::query::TextField;
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
/// (its JSON body, its index columns) is computed by the caller, off the writer thread.
pub(crate) struct Row {
    tenant_id: String,
    event_time: Option<i64>,
    text: [Option<String>; TextField::ALL.len()],
    temperature: Option<f64>,
    success: bool,
    body: String,
}

impl Row {
    pub(crate) fn new(r: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            tenant_id: r.tenant_id.as_str().to_owned(),
            event_time: r.event_time.map(Timestamp::unix_nanos),
            text: TextField::ALL.map(|f| f.of(r).map(|v| v.as_str().to_owned())),
            temperature: r.temperature.as_ref().map(|t| t.value()),
            success: r.success,
            body: serde_json::to_string(r).map_err(backend)?,
        })
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
        let receipts = group
            .iter()
            .map(|job| insert_rows(&tx, &job.rows))
            .collect::<rusqlite::Result<Vec<_>>>()?;
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

fn insert_rows(tx: &Transaction<'_>, rows: &[Row]) -> rusqlite::Result<Vec<Receipt>> {
    let recorded_at = Timestamp::now();
    let recorded_at_text = recorded_at.to_string();
    let recorded_at_nanos = recorded_at.unix_nanos();
    // Claim each tenant's seq range with one statement, in the order tenants first appear.
    let mut next_seq: Vec<(&str, i64)> = Vec::new();
    for r in rows {
        match next_seq.iter_mut().find(|(t, _)| *t == r.tenant_id) {
            Some((_, n)) => *n += 1,
            None => next_seq.push((&r.tenant_id, 1)),
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
    let mut receipts = Vec::with_capacity(rows.len());
    for r in rows {
        let slot = next_seq.iter_mut().find(|(t, _)| *t == r.tenant_id).map(|(_, s)| s);
        let seq = slot.map(|s| {
            *s += 1;
            *s - 1
        });
        let seq = seq.expect("every tenant's range was claimed above");
        let id = Uuid::now_v7();
        let [p, n, v, d, s, o, u, a, se, f] = &r.text;
        insert.execute(params![
            id.to_string(),
            r.tenant_id,
            seq,
            recorded_at_text,
            r.event_time.unwrap_or(recorded_at_nanos),
            p,
            n,
            v,
            d,
            s,
            o,
            u,
            a,
            se,
            f,
            r.temperature,
            r.success,
            r.body,
        ])?;
        receipts.push(Receipt { id, seq: seq as u64, recorded_at });
    }
    Ok(receipts)
}

/// Column order matches [`TextField::ALL`].
pub(crate) const INSERT_SQL: &str = "INSERT INTO records (id, tenant_id, seq, recorded_at, \
    event_time, model_provider, model_name, model_version, deployment_id, safety_mode, \
    operation_type, user_id, agent_id, session_id, feature_code, temperature, success, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}
