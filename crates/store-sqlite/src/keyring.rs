//! The data keys content is sealed under (crypto-shredding, `aitrail_store::sealing`), in
//! a file of their own beside the database (`KEYS_FILE`), so that destroying keys can
//! rewrite it whole (`VACUUM`): no page of it, no journal, keeps a destroyed key. It uses a
//! rollback journal (deleted at each commit), never a WAL that would keep old pages.
//!
//! Every read connection attaches it as `keyring`, so a record read joins its content's
//! wrapped key. The writer thread has a connection of its own to it, on which it finds or
//! adds keys in commits of their own, before the appends that seal under them: a key is
//! always durable before any content needs it.

use std::path::Path;
use std::sync::Arc;

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, KeyedHash, KeyedHashes};
use aitrail_core::seal::{ContentKey, KeyScope};
use aitrail_store::StoreError;
use aitrail_store::append::Placed;
use aitrail_store::retention::Selector;
use aitrail_store::sealing::{SealedContent, WriterKeys};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use uuid::Uuid;

use crate::Access;
use crate::read::backend;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS data_keys (
    id         BLOB PRIMARY KEY CHECK (length(id) = 16),
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,  -- '' when the records have none
    session_id TEXT NOT NULL,  -- '' when the records have none
    wrapped    BLOB NOT NULL,  -- the data key sealed under the content key
    retired    INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1))
) STRICT, WITHOUT ROWID; -- a read joins each row's key by id: one b-tree to descend, not two
CREATE UNIQUE INDEX IF NOT EXISTS data_keys_live
    ON data_keys (tenant_id, user_id, session_id) WHERE retired = 0;
";

/// A connection to the key file alone (the writer's, and migrations').
pub(crate) fn connect(path: &Path, access: Access) -> rusqlite::Result<Connection> {
    let conn = match access {
        Access::ReadWrite => Connection::open(path)?,
        _ => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
    };
    conn.busy_timeout(crate::BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Attach the key file to a read connection as `keyring`, opened as the database is.
pub(crate) fn attach(conn: &Connection, path: &Path, access: Access) -> rusqlite::Result<()> {
    let uri = crate::uri_path(path);
    let uri = match access {
        Access::ReadWrite => format!("file:{uri}"),
        Access::ReadOnly => format!("file:{uri}?mode=ro"),
        Access::Immutable => format!("file:{uri}?immutable=1"),
    };
    conn.execute("ATTACH DATABASE ?1 AS keyring", [uri])?;
    // A listing or a verify looks a key up for each row: as the database, mapped and cached
    // (an attached file has neither unless asked).
    conn.pragma_update(Some("keyring"), "mmap_size", 1i64 << 34)?;
    conn.pragma_update(Some("keyring"), "cache_size", -16384)?;
    if access == Access::ReadWrite {
        conn.pragma_update(Some("keyring"), "secure_delete", true)?;
        conn.pragma_update(Some("keyring"), "synchronous", "FULL")?;
    }
    Ok(())
}

/// The writer's keys: its connection to the key file and the keys it has at hand.
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
    /// it holds the key file's write lock throughout, so no other process adds one of
    /// them meanwhile. A key is at hand only once committed.
    fn find_or_add(&mut self, scopes: Vec<KeyScope>) -> Result<(), StoreError> {
        if scopes.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        let (mut found, mut added) = (Vec::new(), Vec::new());
        for scope in scopes {
            match live_key(&tx, &scope).map_err(backend)? {
                Some((id, wrapped)) => found.push((scope, id, wrapped)),
                None => {
                    let (new, key) = self.keys.create(scope)?;
                    tx.execute(
                        "INSERT INTO data_keys (id, tenant_id, user_id, session_id, wrapped)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            new.id.as_bytes(),
                            new.scope.tenant,
                            new.scope.user,
                            new.scope.session,
                            new.wrapped
                        ],
                    )
                    .map_err(backend)?;
                    added.push((new, key));
                }
            }
        }
        tx.commit().map_err(backend)?;
        for (scope, id, wrapped) in found {
            self.keys.found(scope, id, &wrapped)?;
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

fn live_key(conn: &Connection, scope: &KeyScope) -> rusqlite::Result<Option<(Uuid, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT id, wrapped FROM data_keys
         WHERE tenant_id = ?1 AND user_id = ?2 AND session_id = ?3 AND retired = 0",
    )?
    .query_row(params![scope.tenant, scope.user, scope.session], |r| {
        let id: Vec<u8> = r.get(0)?;
        Ok((Uuid::from_slice(&id).unwrap_or_default(), r.get(1)?))
    })
    .optional()
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

/// Delete these retired keys and rewrite the key file, so that no byte of them remains in
/// it (nor in its journal, which is deleted once the rewrite commits).
pub(crate) fn destroy(c: &Connection, tenant: &TenantId, ids: &[Uuid]) -> Result<u64, StoreError> {
    let mut destroyed = 0;
    {
        let mut delete = c
            .prepare(
                // A session held since the keys were retired keeps its key (and its content,
                // which the erasure then left out): the hold wins.
                "DELETE FROM keyring.data_keys AS k
                 WHERE k.tenant_id = ?1 AND k.id = ?2 AND k.retired = 1 AND NOT EXISTS (
                     SELECT 1 FROM main.holds h
                     WHERE h.tenant_id = k.tenant_id AND h.session_id IN ('', k.session_id))",
            )
            .map_err(backend)?;
        for id in ids {
            destroyed +=
                delete.execute(params![tenant.as_str(), id.as_bytes()]).map_err(backend)?;
        }
    }
    c.execute_batch("VACUUM keyring").map_err(backend)?;
    Ok(destroyed as u64)
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
