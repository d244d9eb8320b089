//! The data keys content is sealed under (crypto-shredding, `aitrail_store::sealing`), in
//! a file of their own beside the database (`KEYS_FILE`), each wrapped under its bucket's
//! key; and the bucket keys, wrapped under the content key, in a small file of their own
//! (`BUCKET_KEYS_FILE`, at most a few thousand rows). Destroying data keys rekeys their
//! buckets and then rewrites the small file whole (`VACUUM`): no page of it, no journal,
//! keeps a destroyed bucket key, so no leftover copy of a destroyed data key in the big
//! file's pages can be unwrapped, and an erasure costs the keys of its buckets, not every
//! key the store holds. Both files use a rollback journal (deleted at each commit), never
//! a WAL that would keep old pages.
//!
//! Every read connection attaches them as `keyring` and `buckets`, so a record read joins
//! its content's wrapped key and that key's bucket key. The writer thread has a connection
//! of its own to them, on which it finds or adds keys in commits of their own, before the
//! appends that seal under them: a key is always durable before any content needs it.
//!
//! Rekeying a bucket and adding keys to it serialise on the key files' write locks: a new
//! data key is wrapped under the bucket key that is current in the transaction that adds
//! it, and a rekey makes a new key current (one commit) before it rewraps the old key's
//! data keys (the next): every key added under the old one is committed by then, and none
//! is added under it after.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, KeyedHash, KeyedHashes};
use aitrail_core::seal::{BucketKey, ContentKey, KeyScope};
use aitrail_store::StoreError;
use aitrail_store::append::Placed;
use aitrail_store::retention::Selector;
use aitrail_store::sealing::{
    self, KeyToRewrap, SealedContent, StoredBucketKey, Wrapping, WriterKeys, bucket_number,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use uuid::Uuid;

use crate::Access;
use crate::read::backend;

/// File name of the bucket keys' file inside the data dir.
pub const BUCKET_KEYS_FILE: &str = "aitrail-bucket-keys.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS data_keys (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,  -- '' when the records have none
    session_id TEXT NOT NULL,  -- '' when the records have none
    wrapped    BLOB NOT NULL,  -- the data key sealed under its bucket key
    retired    INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1))
) STRICT, WITHOUT ROWID; -- a read joins each row's key by id: one b-tree to descend, not two
CREATE UNIQUE INDEX IF NOT EXISTS data_keys_live
    ON data_keys (tenant_id, user_id, session_id) WHERE retired = 0;
";

/// Added to a key file made before buckets (whose keys were wrapped under the content key,
/// `bucket_key` NULL, until `rebucket` rewraps them).
const BUCKET_COLUMN: &str = "
ALTER TABLE data_keys ADD COLUMN bucket_key BLOB CHECK (bucket_key IS NULL OR length(bucket_key) = 16);
";

const BUCKET_INDEX: &str = "
CREATE INDEX IF NOT EXISTS data_keys_bucket ON data_keys (bucket_key);
";

const BUCKET_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buckets.bucket_keys (
    id      BLOB PRIMARY KEY CHECK (length(id) = 16),
    bucket  INTEGER NOT NULL CHECK (bucket BETWEEN 0 AND 4095),
    wrapped BLOB NOT NULL,  -- the bucket key sealed under the content key
    current INTEGER NOT NULL DEFAULT 1 CHECK (current IN (0, 1))
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS buckets.bucket_keys_current
    ON bucket_keys (bucket) WHERE current = 1;
";

/// The bucket keys' file beside the key file `keys_path`.
pub(crate) fn buckets_path(keys_path: &Path) -> PathBuf {
    keys_path.with_file_name(BUCKET_KEYS_FILE)
}

/// A connection to the key files alone (the writer's, and migrations'): the data keys'
/// as `main`, the bucket keys' attached as `buckets`.
pub(crate) fn connect(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    let conn = match access {
        Access::ReadWrite => Connection::open(path)?,
        _ => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
    };
    conn.busy_timeout(crate::BUSY_TIMEOUT)?;
    conn.execute("ATTACH DATABASE ?1 AS buckets", [buckets_path(path).to_string_lossy()])?;
    for schema in ["main", "buckets"] {
        conn.pragma_update(Some(schema), "journal_mode", "DELETE")?;
        conn.pragma_update(Some(schema), "synchronous", "FULL")?;
        conn.pragma_update(Some(schema), "secure_delete", true)?;
    }
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Create the key tables, or bring a key file made before buckets up to them.
pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let has_buckets: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('data_keys') WHERE name = 'bucket_key'",
        [],
        |r| r.get(0),
    )?;
    if !has_buckets {
        conn.execute_batch(BUCKET_COLUMN)?;
    }
    conn.execute_batch(BUCKET_INDEX)?;
    conn.execute_batch(BUCKET_SCHEMA)
}

/// Attach the key files to a read connection as `keyring` and `buckets`, opened as the
/// database is.
pub(crate) fn attach(conn: &Connection, path: &Path, access: Access) -> rusqlite::Result<()> {
    for (file, schema) in [(path.to_owned(), "keyring"), (buckets_path(path), "buckets")] {
        let uri = crate::uri_path(&file);
        let uri = match access {
            Access::ReadWrite => format!("file:{uri}"),
            Access::ReadOnly => format!("file:{uri}?mode=ro"),
            Access::Immutable => format!("file:{uri}?immutable=1"),
        };
        conn.execute(&format!("ATTACH DATABASE ?1 AS {schema}"), [uri])?;
        // A listing or a verify looks a key up for each row: as the database, mapped (an
        // attached file is not unless asked); with no WAL, every read goes through the
        // map, and the cache holds only what a connection writes.
        conn.pragma_update(Some(schema), "mmap_size", 1i64 << 34)?;
        conn.pragma_update(Some(schema), "cache_size", -2048)?;
        if access == Access::ReadWrite {
            conn.pragma_update(Some(schema), "secure_delete", true)?;
            conn.pragma_update(Some(schema), "synchronous", "FULL")?;
        }
    }
    Ok(())
}

/// The writer's keys: its connection to the key files and the keys it has at hand.
pub(crate) struct Keyring {
    conn: Connection,
    keys: WriterKeys,
}

impl Keyring {
    pub(crate) fn new(conn: Connection, content_key: Arc<ContentKey>) -> Self {
        Self { conn, keys: WriterKeys::new(content_key) }
    }

    /// The tenant's key epoch as the append's transaction read it.
    pub(crate) fn at_epoch(&mut self, tenant: &str, epoch: i64) {
        self.keys.at_epoch(tenant, epoch);
    }

    pub(crate) fn forget(&mut self) {
        self.keys.forget();
    }

    /// Each row's content sealed under its scope's live key, found or added first.
    pub(crate) fn seal(
        &mut self,
        rows: &[Placed<'_>],
    ) -> Result<Vec<Option<SealedContent>>, StoreError> {
        let scopes = WriterKeys::scopes(rows);
        self.find_or_add(self.keys.missing(&scopes))?;
        self.keys.seal_rows(rows, &scopes)
    }

    /// The live keys of `scopes`, found, or added in one commit (one fsync however many):
    /// it holds the key files' write locks throughout, so no other process adds one of
    /// them, nor rekeys their buckets, meanwhile. A key is at hand only once committed.
    fn find_or_add(&mut self, scopes: Vec<KeyScope>) -> Result<(), StoreError> {
        if scopes.is_empty() {
            return Ok(());
        }
        let content_key = self.keys.content_key().clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let (mut found, mut added) = (Vec::new(), Vec::new());
        let mut buckets: HashMap<u16, (Uuid, BucketKey)> = HashMap::new();
        for scope in scopes {
            match live_key(&tx, &scope).map_err(backend)? {
                Some((id, wrapped, bucket_key)) => {
                    let bucket_key = match bucket_key {
                        Some((id, bucket, wrapped)) => {
                            let bucket = bucket_number(bucket)?;
                            Some(
                                StoredBucketKey { id, bucket, wrapped: &wrapped }
                                    .open(&content_key)?,
                            )
                        }
                        None => None,
                    };
                    found.push((scope, id, wrapped, bucket_key));
                }
                None => {
                    let bucket = scope.bucket();
                    let (bucket_id, bucket_key) = match buckets.entry(bucket) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(current_bucket_key(&tx, &content_key, bucket)?)
                        }
                    };
                    let (new, key) = self.keys.create(scope, Some((*bucket_id, bucket_key)))?;
                    tx.execute(
                        "INSERT INTO data_keys
                             (id, tenant_id, user_id, session_id, wrapped, bucket_key)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            new.id.as_bytes(),
                            new.scope.tenant,
                            new.scope.user,
                            new.scope.session,
                            new.wrapped,
                            bucket_id.as_bytes()
                        ],
                    )
                    .map_err(backend)?;
                    added.push((new, key));
                }
            }
        }
        tx.commit().map_err(backend)?;
        for (scope, id, wrapped, bucket_key) in found {
            self.keys.found(scope, id, &wrapped, bucket_key.as_ref())?;
        }
        for (new, key) in added {
            self.keys.added(new, key);
        }
        Ok(())
    }

    fn seal_one(
        &mut self,
        scope: &KeyScope,
        id: &str,
        content: &Content,
    ) -> Result<SealedContent, StoreError> {
        if !self.keys.has(scope) {
            self.find_or_add(vec![scope.clone()])?;
        }
        let id =
            Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(format!("record {id}: {e}")))?;
        self.keys.seal_content(scope, &id, content)
    }
}

/// A live data key's row: id, wrapped, and its bucket key's row (id, bucket, wrapped;
/// `None`: wrapped under the content key, as before buckets).
type LiveKey = (Uuid, Vec<u8>, Option<(Uuid, i64, Vec<u8>)>);

fn live_key(conn: &Connection, scope: &KeyScope) -> rusqlite::Result<Option<LiveKey>> {
    conn.prepare_cached(
        "SELECT k.id, k.wrapped, k.bucket_key, b.bucket, b.wrapped
         FROM data_keys k LEFT JOIN buckets.bucket_keys b ON b.id = k.bucket_key
         WHERE k.tenant_id = ?1 AND k.user_id = ?2 AND k.session_id = ?3 AND k.retired = 0",
    )?
    .query_row(params![scope.tenant, scope.user, scope.session], |r| {
        let id: Vec<u8> = r.get(0)?;
        let bucket_key = match r.get::<_, Option<Vec<u8>>>(2)? {
            None => None,
            // A bucket key gone from under a live key reads as an empty one: it then fails
            // to unwrap, as corrupt, rather than passing for "wrapped under the content key".
            Some(b) => Some((
                uuid(&b),
                r.get::<_, Option<i64>>(3)?.unwrap_or(-1),
                r.get::<_, Option<Vec<u8>>>(4)?.unwrap_or_default(),
            )),
        };
        Ok((uuid(&id), r.get(1)?, bucket_key))
    })
    .optional()
}

fn uuid(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// The current key of `bucket`, added if it has none (in the caller's transaction, which
/// must hold the bucket-key file's write lock).
fn current_bucket_key(
    tx: &Connection,
    content_key: &ContentKey,
    bucket: u16,
) -> Result<(Uuid, BucketKey), StoreError> {
    let current = tx
        .prepare_cached(
            "SELECT id, wrapped FROM buckets.bucket_keys WHERE bucket = ?1 AND current = 1",
        )
        .and_then(|mut s| {
            s.query_row([bucket], |r| Ok((uuid(&r.get::<_, Vec<u8>>(0)?), r.get::<_, Vec<u8>>(1)?)))
                .optional()
        })
        .map_err(backend)?;
    if let Some((id, wrapped)) = current {
        let key = StoredBucketKey { id, bucket, wrapped: &wrapped }.open(content_key)?;
        return Ok((id, key));
    }
    let (new, key) = sealing::new_bucket_key(content_key, bucket)?;
    tx.execute(
        "INSERT INTO buckets.bucket_keys (id, bucket, wrapped) VALUES (?1, ?2, ?3)",
        params![new.id.as_bytes(), bucket, new.wrapped],
    )
    .map_err(backend)?;
    Ok((new.id, key))
}

/// Retire the keys `selector` picks (a user's or a session's, but for held sessions): mark
/// them retired in the key file (its own commit), then bump the tenant's key epoch in the
/// database, a write that waits for the append in progress. From then on the writer seals
/// nothing under them, and all it sealed under them is committed.
pub(crate) fn retire(
    c: &Connection,
    tenant: &TenantId,
    selector: &Selector,
) -> Result<Vec<Uuid>, StoreError> {
    let Some((column, value)) = selector.subject() else {
        return Err(StoreError::Refused("data keys are retired by user or session".into()));
    };
    let sql = format!(
        "UPDATE keyring.data_keys AS k SET retired = 1
         WHERE k.tenant_id = ?1 AND k.{column} = ?2 AND NOT EXISTS (
             SELECT 1 FROM main.holds h
             WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))
         RETURNING id"
    );
    let mut retire = c.prepare(&sql).map_err(backend)?;
    let ids = retire
        .query_map(params![tenant.as_str(), value], |r| r.get::<_, Vec<u8>>(0))
        .map_err(backend)?
        .map(|id| Ok(Uuid::from_slice(&id.map_err(backend)?).unwrap_or_default()))
        .collect::<Result<Vec<_>, StoreError>>()?;
    c.execute("UPDATE logs SET key_epoch = key_epoch + 1 WHERE tenant_id = ?1", [tenant.as_str()])
        .map_err(backend)?;
    Ok(ids)
}

/// Destroy these retired keys: rekey each bucket they are in, deleting them on the way,
/// then rewrite the bucket-key file: no byte of a destroyed key's bucket key remains in
/// it (nor in its journal, which is deleted once the rewrite commits), so whatever copy of
/// a destroyed data key remains in the key file's free pages can no longer be unwrapped.
/// A crash part way leaves an old bucket key that is no longer current: the next open
/// finishes its rekey ([`finish_rekeys`]), and the erasure run again destroys the rest.
pub(crate) fn destroy(
    c: &Connection,
    content_key: &ContentKey,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<u64, StoreError> {
    let mut destroyed = 0;
    // Another erasure rekeying the same bucket meanwhile moves keys to its new bucket
    // key, where a delete under the old one no longer finds them: look again.
    for _ in 0..5 {
        let by_bucket_key = retired_by_bucket_key(c, tenant, ids)?;
        if by_bucket_key.is_empty() {
            break;
        }
        for (bucket_key, ids) in &by_bucket_key {
            destroyed += match bucket_key {
                Some(old) => rekey(c, content_key, *old, Some((tenant, ids)))?,
                None => {
                    // Keys wrapped under the content key itself (a store not yet
                    // rebucketed): only a rewrite of the whole key file takes them away.
                    let n = delete_keys(c, tenant, ids, None)?;
                    c.execute_batch("VACUUM keyring").map_err(backend)?;
                    n
                }
            };
        }
    }
    c.execute_batch("VACUUM buckets").map_err(backend)?;
    Ok(destroyed)
}

/// Those of these keys of `tenant` that are retired and not held, by the bucket key they
/// are wrapped under.
fn retired_by_bucket_key(
    c: &Connection,
    tenant: &TenantId,
    ids: &[Uuid],
) -> Result<std::collections::BTreeMap<Option<Uuid>, Vec<Uuid>>, StoreError> {
    let mut find = c
        .prepare_cached(
            "SELECT k.bucket_key FROM keyring.data_keys AS k
             WHERE k.tenant_id = ?1 AND k.id = ?2 AND k.retired = 1 AND NOT EXISTS (
                 SELECT 1 FROM main.holds h
                 WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))",
        )
        .map_err(backend)?;
    let mut by_bucket_key: std::collections::BTreeMap<Option<Uuid>, Vec<Uuid>> = Default::default();
    for id in ids {
        let found = find
            .query_row(params![tenant.as_str(), id.as_bytes()], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()
            .map_err(backend)?;
        if let Some(bucket_key) = found {
            by_bucket_key.entry(bucket_key.map(|b| uuid(&b))).or_default().push(*id);
        }
    }
    Ok(by_bucket_key)
}

/// Delete these retired keys of `tenant` still wrapped under `bucket_key` (`None`: under
/// the content key); how many went.
fn delete_keys(
    c: &Connection,
    tenant: &TenantId,
    ids: &[Uuid],
    bucket_key: Option<Uuid>,
) -> Result<u64, StoreError> {
    let mut delete = c
        .prepare_cached(
            // A session held since the keys were retired keeps its key (and its content,
            // which the erasure then left out): the hold wins.
            "DELETE FROM keyring.data_keys AS k
             WHERE k.tenant_id = ?1 AND k.id = ?2 AND k.retired = 1 AND k.bucket_key IS ?3
               AND NOT EXISTS (
                 SELECT 1 FROM main.holds h
                 WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))",
        )
        .map_err(backend)?;
    let bucket_key = bucket_key.map(|b| b.as_bytes().to_vec());
    let mut deleted = 0;
    for id in ids {
        deleted +=
            delete.execute(params![tenant.as_str(), id.as_bytes(), bucket_key]).map_err(backend)?;
    }
    Ok(deleted as u64)
}

/// Rekey the bucket of bucket key `old`, destroying on the way the keys `destroy` names:
/// a new current key for the bucket (one commit); those keys deleted and every other key
/// under `old` rewrapped under the new one (the next); then `old` deleted once no key
/// names it. How many keys it destroyed.
fn rekey(
    c: &Connection,
    content_key: &ContentKey,
    old: Uuid,
    destroy: Option<(&TenantId, &[Uuid])>,
) -> Result<u64, StoreError> {
    // IMMEDIATE: take every write lock first, in the order the writer takes them (the
    // database's, then the key files'), rather than fail to upgrade a read.
    // A COMMIT that fails (a reader kept the key file's lock past the busy timeout) leaves
    // the transaction open: roll it back, or the pooled connection keeps every lock.
    let immediate = |f: &mut dyn FnMut() -> Result<(), StoreError>| -> Result<(), StoreError> {
        c.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        let done = f().and_then(|()| c.execute_batch("COMMIT").map_err(backend));
        if done.is_err() && !c.is_autocommit() {
            c.execute_batch("ROLLBACK").map_err(backend)?;
        }
        done
    };
    let row: Option<(i64, Vec<u8>)> = c
        .query_row(
            "SELECT bucket, wrapped FROM buckets.bucket_keys WHERE id = ?1",
            [old.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((bucket, wrapped)) = row else {
        // Another erasure's rekey took it first: its keys are under the new one now, where
        // the caller looks again. (A data key naming a bucket key that no rekey removed
        // is for verify to report: its content does not open.)
        return Ok(0);
    };
    let bucket = bucket_number(bucket)?;
    let old_key = StoredBucketKey { id: old, bucket, wrapped: &wrapped }.open(content_key)?;
    immediate(&mut || {
        c.execute("UPDATE buckets.bucket_keys SET current = 0 WHERE id = ?1", [old.as_bytes()])
            .map_err(backend)?;
        current_bucket_key(c, content_key, bucket).map(drop)
    })?;
    let mut destroyed = 0;
    immediate(&mut || {
        if let Some((tenant, ids)) = destroy {
            destroyed = delete_keys(c, tenant, ids, Some(old))?;
        }
        let (new_id, new_key) = current_bucket_key(c, content_key, bucket)?;
        let keys = c
            .prepare("SELECT id, tenant_id, wrapped FROM keyring.data_keys WHERE bucket_key = ?1")
            .and_then(|mut s| {
                s.query_map([old.as_bytes()], |r| {
                    Ok(KeyToRewrap {
                        id: uuid(&r.get::<_, Vec<u8>>(0)?),
                        tenant: r.get(1)?,
                        wrapped: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)?;
        let mut update = c
            .prepare("UPDATE keyring.data_keys SET wrapped = ?2, bucket_key = ?3 WHERE id = ?1")
            .map_err(backend)?;
        for (id, wrapped) in sealing::rewrap(Wrapping::Bucket(&old_key), &new_key, &keys)? {
            update.execute(params![id.as_bytes(), wrapped, new_id.as_bytes()]).map_err(backend)?;
        }
        Ok(())
    })?;
    immediate(&mut || {
        c.execute(
            "DELETE FROM buckets.bucket_keys WHERE id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM keyring.data_keys WHERE bucket_key = ?1)",
            [old.as_bytes()],
        )
        .map_err(backend)
        .map(drop)
    })?;
    Ok(destroyed)
}

/// Finish the rekeys a crash interrupted (bucket keys no longer current), then rewrite the
/// bucket-key file if any were: on a connection with the key files attached.
pub(crate) fn finish_rekeys(c: &Connection, content_key: &ContentKey) -> Result<(), StoreError> {
    let stale = c
        .prepare("SELECT id FROM buckets.bucket_keys WHERE current = 0")
        .and_then(|mut s| {
            s.query_map([], |r| Ok(uuid(&r.get::<_, Vec<u8>>(0)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend)?;
    for old in &stale {
        rekey(c, content_key, *old, None)?;
    }
    if !stale.is_empty() {
        c.execute_batch("VACUUM buckets").map_err(backend)?;
    }
    Ok(())
}

/// Data keys rewrapped per transaction when a key file made before buckets is brought up.
const REBUCKET_BATCH: usize = 10_000;

/// Wrap the data keys stored before buckets (under the content key) under their buckets'
/// keys, then rewrite the key file, so that no copy wrapped under the content key stays in
/// it: on the key files' own connection. Nothing to do, nothing rewritten.
pub(crate) fn rebucket(conn: &mut Connection, content_key: &ContentKey) -> Result<(), StoreError> {
    let mut any = false;
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let keys = tx
            .prepare(
                "SELECT id, tenant_id, user_id, session_id, wrapped FROM data_keys
                 WHERE bucket_key IS NULL LIMIT ?1",
            )
            .and_then(|mut s| {
                s.query_map([REBUCKET_BATCH as i64], |r| {
                    let scope = KeyScope { tenant: r.get(1)?, user: r.get(2)?, session: r.get(3)? };
                    let key = KeyToRewrap {
                        id: uuid(&r.get::<_, Vec<u8>>(0)?),
                        tenant: scope.tenant.clone(),
                        wrapped: r.get(4)?,
                    };
                    Ok((scope.bucket(), key))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(backend)?;
        if keys.is_empty() {
            break;
        }
        any = true;
        let mut by_bucket: std::collections::BTreeMap<u16, Vec<KeyToRewrap>> = Default::default();
        for (bucket, key) in keys {
            by_bucket.entry(bucket).or_default().push(key);
        }
        for (bucket, keys) in by_bucket {
            let (bucket_id, bucket_key) = current_bucket_key(&tx, content_key, bucket)?;
            for (id, wrapped) in
                sealing::rewrap(Wrapping::Content(content_key), &bucket_key, &keys)?
            {
                tx.execute(
                    "UPDATE data_keys SET wrapped = ?2, bucket_key = ?3 WHERE id = ?1",
                    params![id.as_bytes(), wrapped, bucket_id.as_bytes()],
                )
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
    }
    if any {
        conn.execute_batch("VACUUM main").map_err(backend)?;
    }
    Ok(())
}

/// Whether content stored before sealing is still waiting to be sealed.
pub(crate) fn unsealed_remain(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'contents_plain'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Rows sealed per transaction of the migration.
const SEAL_BATCH: i64 = 1000;

/// Seal the content stored before content was sealed (migration 0010 kept it aside in
/// `contents_plain`), batch by batch; then drop that table and rewrite the database, so
/// no plaintext stays in its free pages.
pub(crate) fn seal_unsealed(conn: &mut Connection, keyring: &mut Keyring) -> rusqlite::Result<()> {
    if !unsealed_remain(conn)? {
        return Ok(());
    }
    // What is deleted is overwritten as it goes; the rewrite at the end takes the rest.
    conn.pragma_update(None, "secure_delete", true)?;
    conn.execute("DELETE FROM contents_plain WHERE pos NOT IN (SELECT pos FROM records)", [])?;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows = {
            let mut stmt = tx.prepare(
                "SELECT p.pos, r.id, r.tenant_id, r.user_id, r.session_id, p.salt, p.prompt,
                        p.response, p.prompt_variables, p.prompt_hash, p.response_hash
                 FROM contents_plain p JOIN records r ON r.pos = p.pos ORDER BY p.pos LIMIT ?1",
            )?;
            stmt.query_map([SEAL_BATCH], |r| {
                let salt: Vec<u8> = r.get(5)?;
                let mut fields = std::collections::BTreeMap::new();
                for (i, name) in [(6, "prompt"), (7, "response"), (8, "prompt_variables")] {
                    if let Some(v) = r.get::<_, Option<String>>(i)? {
                        fields.insert(name.to_owned(), v);
                    }
                }
                let hash = |i| -> rusqlite::Result<Option<KeyedHash>> {
                    let h: Option<Vec<u8>> = r.get(i)?;
                    Ok(h.and_then(|h| h.try_into().ok()).map(KeyedHash))
                };
                let content = Content {
                    salt: salt.try_into().unwrap_or([0; 32]),
                    fields,
                    hashes: KeyedHashes { prompt: hash(9)?, response: hash(10)? },
                };
                let scope = KeyScope {
                    tenant: r.get(2)?,
                    user: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    session: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                };
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, scope, content))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        if rows.is_empty() {
            break;
        }
        for (pos, id, scope, content) in &rows {
            let sealed = keyring.seal_one(scope, id, content).map_err(to_sqlite)?;
            tx.execute(
                "INSERT INTO contents (pos, key_id, sealed, prompt_hash, response_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    pos,
                    sealed.key_id.as_bytes(),
                    sealed.sealed,
                    sealed.hashes.prompt.map(|h| h.0),
                    sealed.hashes.response.map(|h| h.0)
                ],
            )?;
            tx.execute("DELETE FROM contents_plain WHERE pos = ?1", [pos])?;
        }
        tx.commit()?;
    }
    // The file rewritten while the (now empty) old table still says "not finished": a
    // crash here, before its drop, makes the next open rewrite it again. Then its WAL,
    // which held the old pages, emptied.
    conn.execute_batch("VACUUM; DROP TABLE contents_plain;")?;
    for _ in 0..200 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    Err(rusqlite::Error::ToSqlConversionFailure(
        "the write-ahead log, which holds the content as stored before sealing, could not be \
         emptied while other readers held it; open the store again when it is quieter"
            .into(),
    ))
}

fn to_sqlite(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}
