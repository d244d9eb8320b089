//! Every write but appends (those are `write.rs`'s): signed checkpoints, the log key's
//! claim, API keys, policies, legal holds, and the deletions of erasure and retention.

use aitrail_core::access::KeyId;
use aitrail_core::{TenantId, Timestamp};
use aitrail_store::retention::{Hold, Mode, Purged, Selector};
use aitrail_store::{StoreError, StoredCheckpoint, StoredKey};
use rusqlite::{Connection, params};

use crate::read::{HELD, backend, checkpoint};

pub(crate) fn add_checkpoint(c: &Connection, cp: &StoredCheckpoint) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO checkpoints (tenant_id, size, root, note, signed_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant_id, size) DO NOTHING",
        params![cp.tenant_id.as_str(), cp.size as i64, cp.root.as_slice(), cp.note, cp.signed_at.to_string()],
    )
    .map_err(backend)?;
    // Either ours, or one signed before (by us or another node): it must be the same root.
    match checkpoint(c, &cp.tenant_id, Some(cp.size))? {
        Some(existing) if existing.root == cp.root => Ok(()),
        _ => Err(StoreError::CheckpointConflict { tenant_id: cp.tenant_id.clone(), size: cp.size }),
    }
}

pub(crate) fn claim_log_key(c: &Connection, offered: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO log_key (only_one, verifier) VALUES (1, ?1) ON CONFLICT DO NOTHING",
        [offered],
    )
    .map_err(backend)?;
    let registered: String =
        c.query_row("SELECT verifier FROM log_key", [], |r| r.get(0)).map_err(backend)?;
    if registered == offered {
        Ok(())
    } else {
        Err(StoreError::OtherLogKey { registered, offered: offered.to_owned() })
    }
}

pub(crate) fn add_key(c: &Connection, k: &StoredKey) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO api_keys (id, role, tenant_id, digest, label, created_at, expires_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            k.id.as_str(),
            k.role.name(),
            k.tenant.as_ref().map(TenantId::as_str),
            k.digest.as_slice(),
            k.label,
            k.created_at.to_string(),
            k.expires_at.map(|t| t.to_string()),
            k.revoked_at.map(|t| t.to_string()),
        ],
    )
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn revoke_key(c: &Connection, id: &KeyId, at: Timestamp) -> Result<bool, StoreError> {
    c.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
        params![id.as_str(), at.to_string()],
    )
    .map(|n| n > 0)
    .map_err(backend)
}

pub(crate) fn set_policy(
    c: &Connection,
    tenant: &TenantId,
    policy: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO policies (tenant_id, policy, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
        params![tenant.as_str(), policy, at.to_string()],
    )
    .map_err(backend)?;
    Ok(())
}

/// Records of the tenant picked by the selector (?1 tenant, ?2 its value), and whether
/// each is in a held session.
fn picked(selector: &Selector) -> (&'static str, String) {
    match selector {
        Selector::User(u) => ("r.user_id = ?2", u.clone()),
        Selector::Session(s) => ("r.session_id = ?2", s.clone()),
        Selector::RecordedBefore(t) => ("julianday(r.recorded_at) < julianday(?2)", t.to_string()),
        Selector::Seqs(seqs) => (
            "r.seq IN (SELECT value FROM json_each(?2))",
            serde_json::to_string(seqs).expect("numbers serialise"),
        ),
    }
}

pub(crate) fn content_seqs(
    c: &Connection,
    tenant: &TenantId,
    selector: &Selector,
) -> Result<(Vec<u64>, u64), StoreError> {
    let (condition, value) = picked(selector);
    let sql = format!(
        "SELECT r.seq, {HELD} FROM records r JOIN contents c ON c.pos = r.pos \
         WHERE r.tenant_id = ?1 AND {condition} ORDER BY r.seq"
    );
    let mut statement = c.prepare(&sql).map_err(backend)?;
    crate::read::seqs_and_held(&mut statement, params![tenant.as_str(), value])
}

/// Records whose content one statement of a purge deletes, at most.
const PURGE_BATCH: usize = 10_000;

pub(crate) fn purge_content(
    c: &Connection,
    tenant: &TenantId,
    selector: &Selector,
    mode: Mode,
) -> Result<Purged, StoreError> {
    let (condition, value) = picked(selector);
    let counts = format!(
        "SELECT count(*) - coalesce(sum({HELD}), 0), coalesce(sum({HELD}), 0) \
         FROM records r JOIN contents c ON c.pos = r.pos WHERE r.tenant_id = ?1 AND {condition}"
    );
    let (records, held): (i64, i64) = c
        .query_row(&counts, params![tenant.as_str(), value], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?;
    let purged = Purged { records: records as u64, held: held as u64 };
    if mode == Mode::DryRun {
        return Ok(purged);
    }
    if records == 0 {
        // Nothing left to delete, but an earlier erasure that could not empty the WAL
        // (readers held it) is finished by this one.
        truncate_wal(c)?;
        return Ok(purged);
    }
    // Overwrite the deleted bytes in the database file, then fold the WAL (which holds
    // the pages as they were) into it and empty it: none of the text stays on disk.
    // `main` only: a pragma without a schema resets the attached key files too, whose
    // deletes must always overwrite.
    c.pragma_update(Some("main"), "secure_delete", true).map_err(backend)?;
    // In batches, each its own commit: a retention run may purge hundreds of thousands of
    // records, and one statement would hold the write lock (and memory) for all of them.
    let delete = format!(
        "DELETE FROM contents WHERE pos IN (SELECT r.pos FROM records r \
         JOIN contents c ON c.pos = r.pos \
         WHERE r.tenant_id = ?1 AND {condition} AND NOT {HELD} LIMIT {PURGE_BATCH})"
    );
    let deleted = (|| {
        let mut deleted = 0;
        loop {
            let n = c.execute(&delete, params![tenant.as_str(), value])?;
            deleted += n;
            if n < PURGE_BATCH {
                return Ok(deleted);
            }
        }
    })()
    .map_err(backend);
    c.pragma_update(Some("main"), "secure_delete", false).map_err(backend)?;
    let deleted = deleted?;
    truncate_wal(c)?;
    Ok(Purged { records: deleted as u64, held: purged.held })
}

/// Checkpoint the WAL into the database and truncate it, waiting for readers of older
/// snapshots to finish (they hold frames the checkpoint must not drop). A checkpoint that
/// waits for readers holds the write lock meanwhile, so it waits a few milliseconds at a
/// time and lets writers in between: a long read (an export) delays the erasure, not
/// every append.
fn truncate_wal(c: &Connection) -> Result<(), StoreError> {
    const ATTEMPT: std::time::Duration = std::time::Duration::from_millis(10);
    const BETWEEN: std::time::Duration = std::time::Duration::from_millis(40);
    const AT_MOST: std::time::Duration = std::time::Duration::from_secs(120);
    c.busy_timeout(ATTEMPT).map_err(backend)?;
    let until = std::time::Instant::now() + AT_MOST;
    let truncated = loop {
        let busy = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
        match busy {
            Ok(0) => break Ok(true),
            Ok(_) if std::time::Instant::now() < until => std::thread::sleep(BETWEEN),
            Ok(_) => break Ok(false),
            Err(e) => break Err(backend(e)),
        }
    };
    c.busy_timeout(crate::BUSY_TIMEOUT).map_err(backend)?;
    if truncated? {
        return Ok(());
    }
    Err(StoreError::Backend(
        "the deleted content is gone from the database, but the write-ahead log could not be \
         emptied while readers held it; run the erasure again when the store is quieter"
            .into(),
    ))
}

pub(crate) fn add_hold(c: &Connection, hold: &Hold) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO holds (tenant_id, session_id, placed_at, reason) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant_id, session_id) DO NOTHING",
        params![
            hold.tenant_id.as_str(),
            hold.session_id.as_deref().unwrap_or_default(),
            hold.placed_at.to_string(),
            hold.reason
        ],
    )
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn remove_hold(
    c: &Connection,
    tenant: &TenantId,
    session: &str,
) -> Result<bool, StoreError> {
    c.execute(
        "DELETE FROM holds WHERE tenant_id = ?1 AND session_id = ?2",
        params![tenant.as_str(), session],
    )
    .map(|n| n > 0)
    .map_err(backend)
}

pub(crate) fn remove_records(
    c: &Connection,
    tenant: &TenantId,
    seqs: &[u64],
) -> Result<u64, StoreError> {
    let seqs = serde_json::to_string(seqs).map_err(|e| StoreError::Backend(e.to_string()))?;
    let picked = format!(
        "SELECT r.pos FROM records r WHERE r.tenant_id = ?1 \
         AND r.seq IN (SELECT value FROM json_each(?2)) AND NOT {HELD}"
    );
    c.pragma_update(Some("main"), "secure_delete", true).map_err(backend)?;
    // IMMEDIATE: take the write lock first (waiting for the writer thread), rather than
    // fail when a read transaction cannot become a write one.
    let removed = (|| {
        c.execute_batch("BEGIN IMMEDIATE")?;
        let done = (|| {
            c.execute(
                &format!("CREATE TEMP TABLE gone AS {picked}"),
                params![tenant.as_str(), seqs],
            )?;
            c.execute("DELETE FROM contents WHERE pos IN (SELECT pos FROM gone)", [])?;
            c.execute("DELETE FROM entries WHERE pos IN (SELECT pos FROM gone)", [])?;
            let n = c.execute("DELETE FROM records WHERE pos IN (SELECT pos FROM gone)", [])?;
            c.execute("DROP TABLE gone", [])?;
            Ok::<_, rusqlite::Error>(n)
        })();
        c.execute_batch(if done.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
        done
    })()
    .map_err(backend);
    c.pragma_update(Some("main"), "secure_delete", false).map_err(backend)?;
    let removed = removed?;
    truncate_wal(c)?;
    Ok(removed as u64)
}
