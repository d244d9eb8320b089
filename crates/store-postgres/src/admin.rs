//! Every write but appends (those are `write.rs`'s): signed checkpoints, the log key's
//! claim, API keys, policies, legal holds, and the deletions of erasure and retention.

use aitrail_core::access::KeyId;
use aitrail_core::{TenantId, Timestamp};
use aitrail_store::retention::{Hold, Mode, Purged, Selector};
use aitrail_store::{StoreError, StoredCheckpoint, StoredKey};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::read::{HELD, backend, checkpoint};

pub(crate) async fn add_checkpoint(
    c: &impl GenericClient,
    cp: &StoredCheckpoint,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO checkpoints (tenant_id, size, root, note, signed_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, size) DO NOTHING",
        )
        .await
        .map_err(backend)?;
    let params: [&(dyn ToSql + Sync); 5] = [
        &cp.tenant_id.as_str(),
        &(cp.size as i64),
        &cp.root.as_slice(),
        &cp.note,
        &cp.signed_at.datetime(),
    ];
    c.execute(&stmt, &params).await.map_err(backend)?;
    // Either ours, or one signed before (by this node or another): it must be the same root.
    match checkpoint(c, &cp.tenant_id, Some(cp.size)).await? {
        Some(existing) if existing.root == cp.root => Ok(()),
        _ => Err(StoreError::CheckpointConflict { tenant_id: cp.tenant_id.clone(), size: cp.size }),
    }
}

pub(crate) async fn claim_log_key(c: &impl GenericClient, offered: &str) -> Result<(), StoreError> {
    // Two statements, so the second sees a key another node registered meanwhile.
    let claim = "INSERT INTO log_key (verifier) VALUES ($1) ON CONFLICT DO NOTHING";
    c.execute(claim, &[&offered]).await.map_err(backend)?;
    let row = c.query_one("SELECT verifier FROM log_key", &[]).await.map_err(backend)?;
    let registered: String = row.try_get(0).map_err(backend)?;
    if registered == offered {
        Ok(())
    } else {
        Err(StoreError::OtherLogKey { registered, offered: offered.to_owned() })
    }
}

pub(crate) async fn add_key(c: &impl GenericClient, k: &StoredKey) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO api_keys (id, role, tenant_id, digest, label, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(backend)?;
    let params: [&(dyn ToSql + Sync); 8] = [
        &k.id.as_str(),
        &k.role.name(),
        &k.tenant.as_ref().map(TenantId::as_str),
        &k.digest.as_slice(),
        &k.label,
        &k.created_at.datetime(),
        &k.expires_at.map(Timestamp::datetime),
        &k.revoked_at.map(Timestamp::datetime),
    ];
    c.execute(&stmt, &params).await.map_err(backend)?;
    Ok(())
}

pub(crate) async fn revoke_key(
    c: &impl GenericClient,
    id: &KeyId,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached("UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
        .await
        .map_err(backend)?;
    let n = c.execute(&stmt, &[&id.as_str(), &at.datetime()]).await.map_err(backend)?;
    Ok(n > 0)
}

pub(crate) async fn set_policy(
    c: &impl GenericClient,
    tenant: &TenantId,
    policy: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
        )
        .await
        .map_err(backend)?;
    c.execute(&stmt, &[&tenant.as_str(), &policy, &at.datetime()]).await.map_err(backend)?;
    Ok(())
}

pub(crate) async fn purge_content(
    c: &impl GenericClient,
    tenant: &TenantId,
    selector: &Selector,
    mode: Mode,
) -> Result<Purged, StoreError> {
    let picked = Picked::of(tenant, selector);
    let condition = picked.condition;
    let params = picked.params();
    let counts = format!(
        "SELECT count(*) FILTER (WHERE NOT {HELD}), count(*) FILTER (WHERE {HELD}) \
         FROM records r JOIN contents c ON c.id = r.id \
         WHERE r.tenant_id = $1 AND {condition} AND {UNUSED}"
    );
    let row = c.query_one(&counts, &params).await.map_err(backend)?;
    let (records, held): (i64, i64) = (row.get(0), row.get(1));
    if mode == Mode::DryRun || records == 0 {
        return Ok(Purged { records: records as u64, held: held as u64 });
    }
    let delete = format!(
        "DELETE FROM contents WHERE id IN (SELECT r.id FROM records r \
         WHERE r.tenant_id = $1 AND {condition} AND NOT {HELD} AND {UNUSED})"
    );
    let deleted = c.execute(&delete, &params).await.map_err(backend)?;
    Ok(Purged { records: deleted, held: held as u64 })
}

/// Every parameter must appear, typed, in each statement, used or not.
const UNUSED: &str = "($2::text IS NULL OR TRUE) AND ($3::timestamptz IS NULL OR TRUE) \
                      AND ($4::bigint[] IS NULL OR TRUE)";

/// A selector as SQL: its condition on `records r`, and its value among $2 to $4.
struct Picked<'a> {
    tenant: &'a str,
    condition: &'static str,
    text: Option<&'a str>,
    at: Option<time::OffsetDateTime>,
    seqs: Option<Vec<i64>>,
}

impl<'a> Picked<'a> {
    fn of(tenant: &'a TenantId, selector: &'a Selector) -> Self {
        let none =
            Picked { tenant: tenant.as_str(), condition: "", text: None, at: None, seqs: None };
        match selector {
            Selector::User(u) => Picked { condition: "r.user_id = $2", text: Some(u), ..none },
            Selector::Session(s) => {
                Picked { condition: "r.session_id = $2", text: Some(s), ..none }
            }
            Selector::RecordedBefore(t) => {
                Picked { condition: "r.recorded_at < $3", at: Some(t.datetime()), ..none }
            }
            Selector::Seqs(seqs) => Picked {
                condition: "r.seq = ANY($4)",
                seqs: Some(seqs.iter().map(|&s| s as i64).collect()),
                ..none
            },
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.tenant, &self.text, &self.at, &self.seqs]
    }
}

pub(crate) async fn content_seqs(
    c: &impl GenericClient,
    tenant: &TenantId,
    selector: &Selector,
) -> Result<(Vec<u64>, u64), StoreError> {
    let picked = Picked::of(tenant, selector);
    let condition = picked.condition;
    let sql = format!(
        "SELECT r.seq, {HELD} FROM records r JOIN contents c ON c.id = r.id \
         WHERE r.tenant_id = $1 AND {condition} AND {UNUSED} ORDER BY r.seq"
    );
    let rows = c.query(&sql, &picked.params()).await.map_err(backend)?;
    Ok(crate::read::seqs_and_held(rows))
}

pub(crate) async fn add_hold(c: &impl GenericClient, hold: &Hold) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO holds (tenant_id, session_id, placed_at, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, session_id) DO NOTHING",
        &[
            &hold.tenant_id.as_str(),
            &hold.session_id.as_deref().unwrap_or_default(),
            &hold.placed_at.datetime(),
            &hold.reason,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

pub(crate) async fn remove_hold(
    c: &impl GenericClient,
    tenant: &TenantId,
    session: &str,
) -> Result<bool, StoreError> {
    let n = c
        .execute(
            "DELETE FROM holds WHERE tenant_id = $1 AND session_id = $2",
            &[&tenant.as_str(), &session],
        )
        .await
        .map_err(backend)?;
    Ok(n > 0)
}

pub(crate) async fn remove_records(
    c: &mut deadpool_postgres::Client,
    tenant: &TenantId,
    seqs: &[u64],
) -> Result<u64, StoreError> {
    let seqs: Vec<i64> = seqs.iter().map(|&s| s as i64).collect();
    let picked = format!(
        "SELECT r.id FROM records r WHERE r.tenant_id = $1 AND r.seq = ANY($2) AND NOT {HELD}"
    );
    let tx = c.transaction().await.map_err(backend)?;
    tx.execute(&format!("DELETE FROM contents WHERE id IN ({picked})"), &[&tenant.as_str(), &seqs])
        .await
        .map_err(backend)?;
    let n = tx
        .execute(&format!("DELETE FROM records WHERE id IN ({picked})"), &[&tenant.as_str(), &seqs])
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(n)
}
