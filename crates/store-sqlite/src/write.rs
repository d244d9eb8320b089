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
    pub records: Vec<Record>,
    pub reply: oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
}

/// Runs until every sender is gone, then returns (the last group is committed first).
pub(crate) fn run(mut conn: Connection, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        let mut size = group[0].records.len();
        while size < MAX_GROUP_RECORDS {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.records.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, group);
    }
}

fn commit_group(conn: &mut Connection, group: Vec<Job>) {
    let outcome = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let results: Vec<_> = group
            .iter()
            .map(|job| append_one(&tx, &job.records))
            .collect();
        tx.commit()?;
        Ok::<_, rusqlite::Error>(results)
    })();
    match outcome {
        Ok(results) => {
            for (job, result) in group.into_iter().zip(results) {
                let _ = job.reply.send(result.map_err(backend));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; every append in the group is refused");
            for job in group {
                let _ = job.reply.send(Err(backend(&e)));
            }
        }
    }
}

/// One append inside the group's transaction, under its own savepoint: all or nothing.
fn append_one(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<Vec<Receipt>> {
    tx.execute_batch("SAVEPOINT append")?;
    match insert_records(tx, records) {
        Ok(receipts) => {
            tx.execute_batch("RELEASE append")?;
            Ok(receipts)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO append; RELEASE append")?;
            Err(e)
        }
    }
}

fn insert_records(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<Vec<Receipt>> {
    let recorded_at = Timestamp::now();
    let recorded_at_text = recorded_at.to_string();
    let mut next_seq = std::collections::HashMap::new();
    let mut claim = tx.prepare_cached(
        "INSERT INTO logs (tenant_id, size) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO UPDATE SET size = size + excluded.size
         RETURNING size",
    )?;
    // Claim each tenant's seq range in one statement, in the order tenants first appear.
    let mut counts: Vec<(&str, i64)> = Vec::new();
    for r in records {
        match counts.iter_mut().find(|(t, _)| *t == r.tenant_id.as_str()) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.tenant_id.as_str(), 1)),
        }
    }
    for (tenant, n) in counts {
        let size: i64 = claim.query_row(params![tenant, n], |row| row.get(0))?;
        next_seq.insert(tenant, size - n);
    }
    let mut insert = tx.prepare_cached(INSERT_SQL)?;
    let mut receipts = Vec::with_capacity(records.len());
    for r in records {
        let seq_slot = next_seq
            .get_mut(r.tenant_id.as_str())
            .expect("claimed above");
        let seq = *seq_slot;
        *seq_slot += 1;
        let id = Uuid::now_v7();
        let body = serde_json::to_string(r)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let text = |f: TextField| f.of(r).map(|t| t.as_str());
        insert.execute(params![
            id.to_string(),
            r.tenant_id.as_str(),
            seq,
            recorded_at_text,
            r.event_time.unwrap_or(recorded_at).unix_nanos(),
            text(TextField::ModelProvider),
            text(TextField::ModelName),
            text(TextField::ModelVersion),
            text(TextField::DeploymentId),
            text(TextField::SafetyMode),
            text(TextField::OperationType),
            text(TextField::UserId),
            text(TextField::AgentId),
            text(TextField::SessionId),
            text(TextField::FeatureCode),
            r.temperature.as_ref().map(|t| t.value()),
            r.success,
            body,
        ])?;
        receipts.push(Receipt {
            id,
            seq: seq as u64,
            recorded_at,
        });
    }
    Ok(receipts)
}

pub(crate) const INSERT_SQL: &str = "INSERT INTO records (id, tenant_id, seq, recorded_at, \
    event_time, model_provider, model_name, model_version, deployment_id, safety_mode, \
    operation_type, user_id, agent_id, session_id, feature_code, temperature, success, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}
