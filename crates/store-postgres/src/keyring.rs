//! The data keys content is sealed under (crypto-shredding, `aitrail_store::sealing`), in
//! the `data_keys` table. The writer finds or adds keys in the append's own transaction
//! (a key rolled back with it is forgotten); erasure retires keys, then destroys them and
//! rewrites the table (`VACUUM FULL`), which stays small: one row per live (user, session).

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, KeyedHash, KeyedHashes};
use aitrail_core::seal::KeyScope;
use aitrail_store::StoreError;
use aitrail_store::append::Placed;
use aitrail_store::retention::Selector;
use aitrail_store::sealing::{SealedContent, WriterKeys};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::read::backend;

/// Each row's content sealed under its scope's live key, found or added in `tx` first.
pub(crate) async fn seal(
    tx: &impl GenericClient,
    keys: &mut WriterKeys,
    rows: &[Placed<'_>],
) -> Result<Vec<Option<SealedContent>>, StoreError> {
    for scope in keys.missing(rows) {
        find_or_add(tx, keys, scope).await?;
    }
    rows.iter().map(|r| keys.seal(r)).collect()
}

async fn find_or_add(
    tx: &impl GenericClient,
    keys: &mut WriterKeys,
    scope: KeyScope,
) -> Result<(), StoreError> {
    if let Some((id, wrapped)) = live_key(tx, &scope).await? {
        return keys.found(scope, id, &wrapped);
    }
    let (new, key) = keys.create(scope)?;
    // Another node may add the scope's key first: this waits for its commit, then it is
    // the one.
    let added = tx
        .execute(
            "INSERT INTO data_keys (id, tenant_id, user_id, session_id, wrapped)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&new.id, &new.scope.tenant, &new.scope.user, &new.scope.session, &new.wrapped],
        )
        .await
        .map_err(backend)?;
    if added == 1 {
        keys.added(new, key);
        return Ok(());
    }
    match live_key(tx, &new.scope).await? {
        Some((id, wrapped)) => keys.found(new.scope, id, &wrapped),
        None => Err(StoreError::Backend("a data key was neither added nor found".into())),
    }
}

async fn live_key(
    c: &impl GenericClient,
    scope: &KeyScope,
) -> Result<Option<(Uuid, Vec<u8>)>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT id, wrapped FROM data_keys
             WHERE tenant_id = $1 AND user_id = $2 AND session_id = $3 AND NOT retired",
        )
        .await
        .map_err(backend)?;
    let row =
        c.query_opt(&stmt, &[&scope.tenant, &scope.user, &scope.session]).await.map_err(backend)?;
    row.map(|r| Ok((r.try_get(0).map_err(backend)?, r.try_get(1).map_err(backend)?))).transpose()
}

/// Retire the keys `selector` picks (a user's or a session's, but for held sessions), and
/// bump the tenant's key epoch in the same transaction: the `logs` row's lock makes it
/// wait for every append of the tenant in progress. From then on no writer seals under
/// them, and all that was sealed under them is committed.
pub(crate) async fn retire(
    client: &mut deadpool_postgres::Client,
    tenant: &TenantId,
    selector: &Selector,
) -> Result<Vec<Uuid>, StoreError> {
    let (column, value) = match selector {
        Selector::User(u) => ("user_id", u),
        Selector::Session(s) => ("session_id", s),
        _ => return Err(StoreError::Refused("data keys are retired by user or session".into())),
    };
    let tx = client.transaction().await.map_err(backend)?;
    let sql = format!(
        "UPDATE data_keys k SET retired = true
         WHERE k.tenant_id = $1 AND k.{column} = $2 AND NOT EXISTS (
             SELECT 1 FROM holds h
             WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))
         RETURNING id"
    );
    let rows = tx.query(&sql, &[&tenant.as_str(), value]).await.map_err(backend)?;
    let ids = rows.iter().map(|r| r.try_get(0).map_err(backend)).collect::<Result<_, _>>()?;
    tx.execute(
        "UPDATE logs SET key_epoch = key_epoch + 1 WHERE tenant_id = $1",
        &[&tenant.as_str()],
    )
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(ids)
}

/// Delete these retired keys and rewrite the table (`VACUUM FULL`): its old file, with
/// every deleted key in it, is removed. (Its WAL keeps them until the segments are
/// recycled: docs/PRIVACY.md.)
pub(crate) async fn destroy(
    c: &impl GenericClient,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<u64, StoreError> {
    let destroyed = c
        .execute(
            "DELETE FROM data_keys WHERE tenant_id = $1 AND id = ANY($2) AND retired",
            &[&tenant.as_str(), &ids],
        )
        .await
        .map_err(backend)?;
    c.batch_execute("VACUUM FULL data_keys").await.map_err(backend)?;
    Ok(destroyed)
}

/// Seal the content stored before content was sealed (migration 6 kept it aside in
/// `contents_plain`), then drop that table: in one transaction, under the migrations'
/// lock, so nodes starting together seal it once.
pub(crate) async fn seal_unsealed(
    client: &mut deadpool_postgres::Client,
    keys: &mut WriterKeys,
    lock: i64,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]).await.map_err(backend)?;
    let pending = tx
        .query_one("SELECT to_regclass('contents_plain') IS NOT NULL", &[])
        .await
        .map_err(backend)?;
    if !pending.get::<_, bool>(0) {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT p.id, r.tenant_id, r.user_id, r.session_id, p.salt, p.prompt, p.response,
                    p.prompt_variables, p.prompt_hash, p.response_hash
             FROM contents_plain p JOIN records r ON r.id = p.id",
            &[],
        )
        .await
        .map_err(backend)?;
    for row in rows {
        let get_err = |e: tokio_postgres::Error| backend(e);
        let id: Uuid = row.try_get(0).map_err(get_err)?;
        let scope = KeyScope {
            tenant: row.try_get(1).map_err(get_err)?,
            user: row.try_get::<_, Option<String>>(2).map_err(get_err)?.unwrap_or_default(),
            session: row.try_get::<_, Option<String>>(3).map_err(get_err)?.unwrap_or_default(),
        };
        let salt: Vec<u8> = row.try_get(4).map_err(get_err)?;
        let mut fields = std::collections::BTreeMap::new();
        for (i, name) in [(5, "prompt"), (6, "response"), (7, "prompt_variables")] {
            if let Some(v) = row.try_get::<_, Option<String>>(i).map_err(get_err)? {
                fields.insert(name.to_owned(), v);
            }
        }
        let hash = |i| -> Result<Option<KeyedHash>, StoreError> {
            let h: Option<Vec<u8>> = row.try_get(i).map_err(backend)?;
            Ok(h.and_then(|h| h.try_into().ok()).map(KeyedHash))
        };
        let hashes = KeyedHashes { prompt: hash(8)?, response: hash(9)? };
        let content = Content { salt: salt.try_into().unwrap_or([0; 32]), fields, hashes };
        if !keys.has(&scope) {
            find_or_add(&tx, keys, scope.clone()).await?;
        }
        let sealed = keys.seal_content(&scope, &id, &content)?;
        let hashes = [
            sealed.hashes.prompt.map(|h| h.0.to_vec()),
            sealed.hashes.response.map(|h| h.0.to_vec()),
        ];
        tx.execute(
            "INSERT INTO contents (id, key_id, sealed, prompt_hash, response_hash)
             VALUES ($1, $2, $3, $4, $5)",
            &[&id, &sealed.key_id, &sealed.sealed, &hashes[0], &hashes[1]],
        )
        .await
        .map_err(backend)?;
    }
    tx.batch_execute("DROP TABLE contents_plain").await.map_err(backend)?;
    tx.commit().await.map_err(backend)
}
