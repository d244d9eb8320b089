//! The data keys content is sealed under (crypto-shredding, `aitrail_store::sealing`), in
//! the `data_keys` table, each wrapped under its bucket's key (`bucket_keys`, at most a few
//! thousand rows, wrapped under the content key). The writer finds or adds keys in the
//! append's own transaction (a key rolled back with it is forgotten); erasure retires
//! keys, then destroys them: each bucket they are in is rekeyed in one transaction (a new
//! current bucket key, the destroyed keys deleted, the others rewrapped, the old bucket
//! key deleted), and `bucket_keys` is rewritten (`VACUUM FULL`). Whatever copy of a
//! destroyed key remains in dead tuples of `data_keys` can then no longer be unwrapped.
//!
//! A writer takes the current bucket key `FOR KEY SHARE` before it wraps a key under it
//! (and the key's reference to it holds it so until commit); a rekey takes it `FOR
//! UPDATE` first. So a rekey waits for every add under the old key in progress and
//! rewraps it, and an add that comes after finds the new key.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, KeyedHash, KeyedHashes};
use aitrail_core::seal::{BucketKey, ContentKey, KeyScope};
use aitrail_store::StoreError;
use aitrail_store::append::Placed;
use aitrail_store::retention::Selector;
use aitrail_store::sealing::{
    self, KeyToRewrap, NewKey, SealedContent, StoredBucketKey, Wrapping, WriterKeys,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
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

/// The live keys of `scopes`: found, else added, in a few statements however many. A key
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
    let content_key = keys.content_key().clone();
    let mut buckets: HashMap<u16, (Uuid, BucketKey)> = HashMap::new();
    let mut new = Vec::with_capacity(missing.len());
    for scope in missing.drain(..) {
        let bucket = scope.bucket();
        if let Entry::Vacant(e) = buckets.entry(bucket) {
            e.insert(current_bucket_key(tx, &content_key, bucket).await?);
        }
        let (bucket_id, bucket_key) = &buckets[&bucket];
        new.push(keys.create(scope, Some((*bucket_id, bucket_key)))?);
    }
    let column =
        |f: fn(&NewKey) -> String| -> Vec<String> { new.iter().map(|(k, _)| f(k)).collect() };
    let ids: Vec<Uuid> = new.iter().map(|(k, _)| k.id).collect();
    let wrapped: Vec<Vec<u8>> = new.iter().map(|(k, _)| k.wrapped.clone()).collect();
    let bucket_keys: Vec<Option<Uuid>> = new.iter().map(|(k, _)| k.bucket_key).collect();
    let (tenants, users, sessions) = (
        column(|k| k.scope.tenant.clone()),
        column(|k| k.scope.user.clone()),
        column(|k| k.scope.session.clone()),
    );
    let inserted = tx
        .query(
            "INSERT INTO data_keys (id, tenant_id, user_id, session_id, wrapped, bucket_key)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                                  $6::uuid[])
             ON CONFLICT DO NOTHING RETURNING id",
            &[&ids, &tenants, &users, &sessions, &wrapped, &bucket_keys],
        )
        .await
        .map_err(backend)?;
    let inserted: HashSet<Uuid> = inserted.iter().map(|r| r.get(0)).collect();
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
            "SELECT k.tenant_id, k.user_id, k.session_id, k.id, k.wrapped,
                    k.bucket_key, b.bucket, b.wrapped
             FROM data_keys k
             JOIN unnest($1::text[], $2::text[], $3::text[]) AS want (tenant_id, user_id, session_id)
               ON k.tenant_id = want.tenant_id AND k.user_id = want.user_id
              AND k.session_id = want.session_id
             LEFT JOIN bucket_keys b ON b.id = k.bucket_key
             WHERE NOT k.retired",
            &[&tenants, &users, &sessions],
        )
        .await
        .map_err(backend)?;
    let content_key = keys.content_key().clone();
    let mut bucket_keys: HashMap<Uuid, BucketKey> = HashMap::new();
    let mut have = HashSet::new();
    for row in rows {
        let scope = KeyScope {
            tenant: row.try_get(0).map_err(backend)?,
            user: row.try_get(1).map_err(backend)?,
            session: row.try_get(2).map_err(backend)?,
        };
        let wrapped: Vec<u8> = row.try_get(4).map_err(backend)?;
        let bucket_key = match row.try_get::<_, Option<Uuid>>(5).map_err(backend)? {
            None => None,
            Some(id) => {
                if let Entry::Vacant(e) = bucket_keys.entry(id) {
                    // Gone from under a live key (it cannot be, but for tampering): an
                    // empty row, which then fails to unwrap as corrupt.
                    let bucket = row.try_get::<_, Option<i32>>(6).map_err(backend)?.unwrap_or(-1);
                    let wrapped: Option<Vec<u8>> = row.try_get(7).map_err(backend)?;
                    let stored = StoredBucketKey {
                        id,
                        bucket: sealing::bucket_number(i64::from(bucket))?,
                        wrapped: wrapped.as_deref().unwrap_or_default(),
                    };
                    e.insert(stored.open(&content_key)?);
                }
                bucket_keys.get(&id)
            }
        };
        have.insert(scope.clone());
        keys.found(scope, row.try_get(3).map_err(backend)?, &wrapped, bucket_key)?;
    }
    Ok(scopes.into_iter().filter(|s| !have.contains(s)).collect())
}

/// The current key of `bucket`, held (`FOR KEY SHARE`) until the transaction ends; added
/// if the bucket has none (another node adding one first, its key is taken).
async fn current_bucket_key(
    tx: &impl GenericClient,
    content_key: &ContentKey,
    bucket: u16,
) -> Result<(Uuid, BucketKey), StoreError> {
    let number = i32::from(bucket);
    for _ in 0..3 {
        let row = tx
            .query_opt(
                "SELECT id, wrapped FROM bucket_keys WHERE bucket = $1 AND current FOR KEY SHARE",
                &[&number],
            )
            .await
            .map_err(backend)?;
        if let Some(row) = row {
            let (id, wrapped): (Uuid, Vec<u8>) = (row.get(0), row.get(1));
            return Ok((id, StoredBucketKey { id, bucket, wrapped: &wrapped }.open(content_key)?));
        }
        let (new, key) = sealing::new_bucket_key(content_key, bucket)?;
        let added = tx
            .execute(
                "INSERT INTO bucket_keys (id, bucket, wrapped) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&new.id, &number, &new.wrapped],
            )
            .await
            .map_err(backend)?;
        if added == 1 {
            return Ok((new.id, key));
        }
    }
    Err(StoreError::Backend(format!("bucket {bucket} has no current key, nor could one be added")))
}

/// Retire the keys `selector` picks (a user's or a session's, but for held sessions), and
/// bump the tenant's key epoch in the same transaction: the `logs` row's lock makes it
/// wait for every append of the tenant in progress, and the next wait for it. From then on no writer seals under
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
    // The tenant's `logs` row first, as appends lock it before they add keys: so a rekey
    // waiting on an append never waits, through it, on this.
    tx.execute(
        "UPDATE logs SET key_epoch = key_epoch + 1 WHERE tenant_id = $1",
        &[&tenant.as_str()],
    )
    .await
    .map_err(backend)?;
    let sql = format!(
        "UPDATE data_keys k SET retired = true
         WHERE k.tenant_id = $1 AND k.{column} = $2 AND NOT EXISTS (
             SELECT 1 FROM holds h
             WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))
         RETURNING id"
    );
    let rows = tx.query(&sql, &[&tenant.as_str(), &value]).await.map_err(backend)?;
    let ids = rows.iter().map(|r| r.try_get(0).map_err(backend)).collect::<Result<_, _>>()?;
    tx.commit().await.map_err(backend)?;
    Ok(ids)
}

/// The deletion of retired keys: a session held since the keys were retired keeps its key
/// (and its content, which the erasure then left out): the hold wins.
const DELETE_RETIRED: &str = "DELETE FROM data_keys k
     WHERE k.tenant_id = $1 AND k.id = ANY($2) AND k.retired AND k.bucket_key IS NOT DISTINCT FROM $3
       AND NOT EXISTS (SELECT 1 FROM holds h
                       WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))";

/// Destroy these retired keys: rekey each bucket they are in, deleting them on the way,
/// then rewrite `bucket_keys` (`VACUUM FULL`): its old file, with every deleted bucket key
/// in it, is removed. (Its WAL keeps them until the segments are recycled:
/// docs/PRIVACY.md.)
pub(crate) async fn destroy(
    client: &mut deadpool_postgres::Client,
    content_key: &ContentKey,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<u64, StoreError> {
    let mut destroyed = 0;
    // A concurrent rekey of the same bucket (another erasure) moves keys to a new bucket
    // key: look again, a few times.
    for _ in 0..5 {
        let rows = client
            .query(
                "SELECT bucket_key, array_agg(id) FROM data_keys
                 WHERE tenant_id = $1 AND id = ANY($2) AND retired GROUP BY bucket_key",
                &[&tenant.as_str(), &ids],
            )
            .await
            .map_err(backend)?;
        let groups: BTreeMap<Option<Uuid>, Vec<Uuid>> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut moved = false;
        for (bucket_key, ids) in &groups {
            match bucket_key {
                Some(old) => match rekey(client, content_key, *old, Some((tenant, ids))).await? {
                    Some(n) => destroyed += n,
                    None => moved = true,
                },
                None => {
                    // Keys wrapped under the content key itself (added by a node of an
                    // older version): only a rewrite of the whole table takes them away.
                    let gone = client
                        .execute(DELETE_RETIRED, &[&tenant.as_str(), ids, &None::<Uuid>])
                        .await
                        .map_err(backend)?;
                    Rewrite::DataKeys.owe(&*client).await?;
                    destroyed += gone;
                }
            }
        }
        if !moved {
            break;
        }
    }
    // Every rekey above owed a rewrite of `bucket_keys` in its transaction: run it (and
    // any other still owed) once.
    finish_rewrites(client).await?;
    Ok(destroyed)
}

/// How long a rewrite waits for transactions older than the change it should take away.
const UNSEEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Rewrite `table` (`VACUUM FULL`) once no transaction of the cluster can still see rows
/// deleted or updated before now: `VACUUM FULL` keeps a dead row that an older snapshot
/// may still read (a long export, say), and such a row would outlive the rewrite. Waits
/// for them up to [`UNSEEN_WAIT`]; past that it rewrites anyway and warns, and the rewrite
/// stays owed (`pending_rewrites`): the next erasure, or the next start, runs it again.
async fn rewrite_once_unseen(
    client: &deadpool_postgres::Client,
    table: Rewrite,
) -> Result<(), StoreError> {
    let table = table.name();
    let now: i64 = client.query_one("SELECT txid_current()", &[]).await.map_err(backend)?.get(0);
    let until = std::time::Instant::now() + UNSEEN_WAIT;
    let clean = loop {
        let older: i64 = client
            .query_one(
                // Any backend of the cluster, and any replication slot: which of them
                // holds a database's horizon back is PostgreSQL's business, not ours.
                "WITH now (xid) AS (SELECT ($1 % 4294967296)::text::xid)
                 SELECT (SELECT count(*) FROM pg_stat_activity, now
                         WHERE pid <> pg_backend_pid()
                           AND (age(backend_xmin) >= age(now.xid)
                                OR age(backend_xid) >= age(now.xid)))
                      + (SELECT count(*) FROM pg_replication_slots, now
                         WHERE age(xmin) >= age(now.xid))",
                &[&now],
            )
            .await
            .map_err(backend)?
            .get(0);
        if older == 0 {
            break true;
        }
        if std::time::Instant::now() >= until {
            tracing::warn!(
                table,
                transactions = older,
                "rewriting while older transactions may still see deleted keys; the rewrite stays owed and runs again at the next erasure or start"
            );
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    client.batch_execute(&format!("VACUUM FULL {table}")).await.map_err(backend)?;
    if clean {
        client
            .execute("DELETE FROM pending_rewrites WHERE relation = $1", &[&table])
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// A table whose rewrite takes deleted keys out of its file.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rewrite {
    DataKeys,
    BucketKeys,
}

impl Rewrite {
    fn name(self) -> &'static str {
        match self {
            Rewrite::DataKeys => "data_keys",
            Rewrite::BucketKeys => "bucket_keys",
        }
    }

    /// Note the rewrite as owed, in the transaction that makes it needed.
    async fn owe(self, tx: &impl GenericClient) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO pending_rewrites (relation) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&self.name()],
        )
        .await
        .map(drop)
        .map_err(backend)
    }
}

/// Run the rewrites still owed (a crash, or older transactions, kept one from finishing).
pub(crate) async fn finish_rewrites(client: &deadpool_postgres::Client) -> Result<(), StoreError> {
    let owed = client.query("SELECT relation FROM pending_rewrites", &[]).await.map_err(backend)?;
    for row in owed {
        let table = match row.get::<_, &str>(0) {
            "data_keys" => Rewrite::DataKeys,
            _ => Rewrite::BucketKeys,
        };
        rewrite_once_unseen(client, table).await?;
    }
    Ok(())
}

/// Rekey the bucket of bucket key `old` in one transaction, destroying on the way the keys
/// `destroy` names: a new current key for the bucket, those keys deleted, every other key
/// under `old` rewrapped under the new one, and `old` deleted. How many keys it destroyed;
/// `None` if `old` was gone already (another rekey took the bucket first).
async fn rekey(
    client: &mut deadpool_postgres::Client,
    content_key: &ContentKey,
    old: Uuid,
    destroy: Option<(&TenantId, &[Uuid])>,
) -> Result<Option<u64>, StoreError> {
    match rekey_once(client, content_key, old, destroy).await {
        // Two erasures rekeying rows of one bucket can deadlock; PostgreSQL rolls one back,
        // which then runs again.
        Err(Rekey::Database(e)) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => Ok(None),
        Err(Rekey::Database(e)) => Err(backend(e)),
        Err(Rekey::Store(e)) => Err(e),
        Ok(destroyed) => Ok(destroyed),
    }
}

/// Why a rekey failed: the database (which may say "run again"), or the keys.
enum Rekey {
    Database(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Rekey {
    fn from(e: tokio_postgres::Error) -> Self {
        Rekey::Database(e)
    }
}

impl From<StoreError> for Rekey {
    fn from(e: StoreError) -> Self {
        Rekey::Store(e)
    }
}

async fn rekey_once(
    client: &mut deadpool_postgres::Client,
    content_key: &ContentKey,
    old: Uuid,
    destroy: Option<(&TenantId, &[Uuid])>,
) -> Result<Option<u64>, Rekey> {
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt("SELECT bucket, wrapped FROM bucket_keys WHERE id = $1 FOR UPDATE", &[&old])
        .await?
    else {
        return Ok(None);
    };
    let (bucket, wrapped): (i32, Vec<u8>) = (row.get(0), row.get(1));
    let bucket = sealing::bucket_number(i64::from(bucket))?;
    let old_key = StoredBucketKey { id: old, bucket, wrapped: &wrapped }.open(content_key)?;
    tx.execute("UPDATE bucket_keys SET current = false WHERE id = $1", &[&old]).await?;
    let (new_id, new_key) = current_bucket_key(&tx, content_key, bucket).await?;
    let destroyed = match destroy {
        Some((tenant, ids)) => {
            tx.execute(DELETE_RETIRED, &[&tenant.as_str(), &ids, &Some(old)]).await?
        }
        None => 0,
    };
    let keys = tx
        .query("SELECT id, tenant_id, wrapped FROM data_keys WHERE bucket_key = $1", &[&old])
        .await?
        .iter()
        .map(|r| KeyToRewrap { id: r.get(0), tenant: r.get(1), wrapped: r.get(2) })
        .collect::<Vec<_>>();
    let (ids, wrapped): (Vec<Uuid>, Vec<Vec<u8>>) =
        sealing::rewrap(Wrapping::Bucket(&old_key), &new_key, &keys)?.into_iter().unzip();
    store_rewrapped(&tx, &ids, &wrapped, new_id).await?;
    tx.execute("DELETE FROM bucket_keys WHERE id = $1", &[&old]).await?;
    Rewrite::BucketKeys.owe(&tx).await?;
    tx.commit().await?;
    Ok(Some(destroyed))
}

/// Keys `ids`, rewrapped as `wrapped`, now under bucket key `bucket_key`.
async fn store_rewrapped(
    tx: &impl GenericClient,
    ids: &[Uuid],
    wrapped: &[Vec<u8>],
    bucket_key: Uuid,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "UPDATE data_keys k SET wrapped = n.wrapped, bucket_key = $3
         FROM unnest($1::uuid[], $2::bytea[]) AS n (id, wrapped) WHERE k.id = n.id",
        &[&ids, &wrapped, &bucket_key],
    )
    .await
}

/// Wrap the data keys stored before buckets (under the content key) under their buckets'
/// keys, under the migrations' lock, and owe a rewrite of `data_keys` so that no copy
/// wrapped under the content key stays in its file (its WAL keeps them until the
/// segments are recycled). Nothing to do, nothing owed.
pub(crate) async fn rebucket(
    client: &mut deadpool_postgres::Client,
    content_key: &ContentKey,
    lock: i64,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]).await.map_err(backend)?;
    let rows = tx
        .query(
            "SELECT id, tenant_id, user_id, session_id, wrapped FROM data_keys
             WHERE bucket_key IS NULL",
            &[],
        )
        .await
        .map_err(backend)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut by_bucket: BTreeMap<u16, Vec<KeyToRewrap>> = BTreeMap::new();
    for r in &rows {
        let scope = KeyScope { tenant: r.get(1), user: r.get(2), session: r.get(3) };
        let key = KeyToRewrap { id: r.get(0), tenant: scope.tenant.clone(), wrapped: r.get(4) };
        by_bucket.entry(scope.bucket()).or_default().push(key);
    }
    for (bucket, keys) in by_bucket {
        let (bucket_id, bucket_key) = current_bucket_key(&tx, content_key, bucket).await?;
        let (ids, wrapped): (Vec<Uuid>, Vec<Vec<u8>>) =
            sealing::rewrap(Wrapping::Content(content_key), &bucket_key, &keys)?
                .into_iter()
                .unzip();
        store_rewrapped(&tx, &ids, &wrapped, bucket_id).await.map_err(backend)?;
    }
    // The rewrite that takes the old wrappings out of the table's file: owed here, run
    // by `finish_rewrites` as the store opens.
    Rewrite::DataKeys.owe(&tx).await?;
    tx.commit().await.map_err(backend)
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
