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
    let scopes = WriterKeys::scopes(rows);
    find_or_add(tx, keys, keys.missing(&scopes)).await?;
    keys.seal_rows(rows, &scopes)
}

/// The live keys of `scopes`: found, else added, in three statements however many. A key
/// another node adds first (its insert waits for that node's commit) is then found.
async fn find_or_add(
    tx: &impl GenericClient,
    keys: &mut WriterKeys,
    scopes: Vec<KeyScope>,
) -> Result<(), StoreError> {
    if scopes.is_empty() {
        return Ok(());
    }
    let mut missing = found(tx, keys, scopes).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let mut new = Vec::with_capacity(missing.len());
    for scope in missing.drain(..) {
        new.push(keys.create(scope)?);
    }
    let column = |f: fn(&aitrail_store::sealing::NewKey) -> String| -> Vec<String> {
        new.iter().map(|(k, _)| f(k)).collect()
    };
    let ids: Vec<Uuid> = new.iter().map(|(k, _)| k.id).collect();
    let wrapped: Vec<Vec<u8>> = new.iter().map(|(k, _)| k.wrapped.clone()).collect();
    let (tenants, users, sessions) = (
        column(|k| k.scope.tenant.clone()),
        column(|k| k.scope.user.clone()),
        column(|k| k.scope.session.clone()),
    );
    let inserted = tx
        .query(
            "INSERT INTO data_keys (id, tenant_id, user_id, session_id, wrapped)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])
             ON CONFLICT DO NOTHING RETURNING id",
            &[&ids, &tenants, &users, &sessions, &wrapped],
        )
        .await
        .map_err(backend)?;
    let inserted: std::collections::HashSet<Uuid> = inserted.iter().map(|r| r.get(0)).collect();
    let mut lost = Vec::new();
    for (k, key) in new {
        if inserted.contains(&k.id) {
            keys.added(k, key);
        } else {
            lost.push(k.scope);
        }
    }
    if !found(tx, keys, lost).await?.is_empty() {
        return Err(StoreError::Backend("a data key was neither added nor found".into()));
    }
    Ok(())
}

/// Take the live keys of `scopes` the table holds; the scopes that have none.
async fn found(
    tx: &impl GenericClient,
    keys: &mut WriterKeys,
    scopes: Vec<KeyScope>,
) -> Result<Vec<KeyScope>, StoreError> {
    if scopes.is_empty() {
        return Ok(scopes);
    }
    let column = |f: fn(&KeyScope) -> &String| -> Vec<&str> {
        scopes.iter().map(|s| f(s).as_str()).collect()
    };
    let (tenants, users, sessions) =
        (column(|s| &s.tenant), column(|s| &s.user), column(|s| &s.session));
    let rows = tx
        .query(
            "SELECT k.tenant_id, k.user_id, k.session_id, k.id, k.wrapped FROM data_keys k
             JOIN unnest($1::text[], $2::text[], $3::text[]) AS want (tenant_id, user_id, session_id)
               ON k.tenant_id = want.tenant_id AND k.user_id = want.user_id
              AND k.session_id = want.session_id
             WHERE NOT k.retired",
            &[&tenants, &users, &sessions],
        )
        .await
        .map_err(backend)?;
    let mut have = std::collections::HashSet::new();
    for row in rows {
        let scope = KeyScope {
            tenant: row.try_get(0).map_err(backend)?,
            user: row.try_get(1).map_err(backend)?,
            session: row.try_get(2).map_err(backend)?,
        };
        let wrapped: Vec<u8> = row.try_get(4).map_err(backend)?;
        have.insert(scope.clone());
        keys.found(scope, row.try_get(3).map_err(backend)?, &wrapped)?;
    }
    Ok(scopes.into_iter().filter(|s| !have.contains(s)).collect())
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
    let Some((column, value)) = selector.subject() else {
        return Err(StoreError::Refused("data keys are retired by user or session".into()));
    };
    let tx = client.transaction().await.map_err(backend)?;
    let sql = format!(
        "UPDATE data_keys k SET retired = true
         WHERE k.tenant_id = $1 AND k.{column} = $2 AND NOT EXISTS (
             SELECT 1 FROM holds h
             WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))
         RETURNING id"
    );
    let rows = tx.query(&sql, &[&tenant.as_str(), &value]).await.map_err(backend)?;
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
            // A session held since the keys were retired keeps its key (and its content,
            // which the erasure then left out): the hold wins.
            "DELETE FROM data_keys k WHERE k.tenant_id = $1 AND k.id = ANY($2) AND k.retired
             AND NOT EXISTS (SELECT 1 FROM holds h
                             WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))",
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
            find_or_add(&tx, keys, vec![scope.clone()]).await?;
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
