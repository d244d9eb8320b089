//! What only the SQLite store has: migrations of files written by older versions, filter
//! indexes that hold only the rows with a value, and its writer thread's answers to the
//! write probe while another connection holds the lock.

use std::time::{Duration, Instant};

use aitrail_core::seal::ContentKey;
use aitrail_store::Store;
use aitrail_store_sqlite::{
    BUCKET_KEYS_FILE, DB_FILE, KEYS_FILE, MIGRATIONS, ReadMode, SqliteStore,
};

/// The key the tests' stores seal content with (no log key is involved here).
fn key() -> ContentKey {
    ContentKey::new([7; 32])
}

/// The proxy's fail modes closed and strict refuse calls on a failed probe, so it must say
/// no at once while another connection holds the write lock, also while an append of this
/// store waits for that lock in the writer (the probe once queued behind it, for the 10 s
/// of its busy timeout).
#[tokio::test]
async fn the_write_probe_says_no_at_once_while_another_connection_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), key()).unwrap();
    store.probe_write().await.unwrap();
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let record = aitrail_core::ingest::parse_record(r#"{"tenant_id": "t"}"#, "").unwrap();
    let pending = {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![record]).await })
    };
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let asked = Instant::now();
        let probed = store.probe_write().await;
        assert!(probed.is_err(), "the lock is held elsewhere: {probed:?}");
        assert!(asked.elapsed() < Duration::from_secs(1), "took {:?}", asked.elapsed());
    }
    other.execute_batch("COMMIT").unwrap();
    pending.await.unwrap().expect("the append waiting for the lock went through");
    store.probe_write().await.unwrap();
}

#[tokio::test]
async fn entries_stored_before_their_table_existed_survive_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Vec<u8>> = (0..3).map(|i| format!("entry bytes {i}").into_bytes()).collect();
    {
        // The schema as of migration 4, entries still inside records.
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        for m in &MIGRATIONS[..4] {
            conn.execute_batch(m).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        for (i, entry) in entries.iter().enumerate() {
            conn.execute(
                "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, success, entry)
                 VALUES (?1, 't', ?2, '2026-11-23T00:00:00Z', 0, 1, ?3)",
                rusqlite::params![
                    format!("00000000-0000-7000-8000-00000000000{i}"),
                    i as i64,
                    entry
                ],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO logs (tenant_id, size) VALUES ('t', 3)", []).unwrap();
    }
    let (found, now) = SqliteStore::migrate(dir.path(), &key()).unwrap();
    assert_eq!((found, now), (4, MIGRATIONS.len() as i64));
    let store = SqliteStore::open(dir.path(), key()).unwrap();
    let (first, last) = store.pos_span().await.unwrap().unwrap();
    let rows = store.scan(first, last + 1).await.unwrap();
    let moved: Vec<Vec<u8>> = rows.into_iter().map(|r| r.entry).collect();
    assert_eq!(moved, entries);
}

/// The filter indexes of optional columns hold only rows with a value (migration 9), which
/// SQLite uses only where the filter itself rules NULL out: the listing's must. (A
/// temperature range alone walks the records by pos, as it did with a full index.)
#[test]
fn filters_on_optional_columns_walk_their_partial_indexes() {
    use aitrail_core::query::TextField;
    let dir = tempfile::tempdir().unwrap();
    SqliteStore::migrate(dir.path(), &key()).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let filters = TextField::ALL
        .iter()
        .filter(|f| **f != TextField::ExternalId)
        .map(|f| (f.name().to_owned(), format!("records_{}", f.name())))
        .chain([("external_id".to_owned(), "records_external_id".to_owned())]);
    for (param, index) in filters {
        let mut pairs = vec![(param.as_str(), "0.5")];
        if param == "external_id" {
            pairs.push(("tenant_id", "t"));
        }
        let query = aitrail_core::Query::from_pairs(pairs).unwrap();
        let (sql, params) = aitrail_store::sql::list(&query, "r.pos", "", "pos", |_| "?".into());
        let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = plan
            .query_map(rusqlite::params_from_iter(params.iter().map(|_| "0.5")), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            details.iter().any(|d| d.contains(&format!("USING INDEX {index} "))),
            "{param}: {details:?}"
        );
    }
}

/// A store opened to read takes no write, migrates nothing, and reads a database no
/// process had open as it was: should a writer change the file meanwhile, the reads after
/// refuse rather than mix the two states.
#[tokio::test]
async fn a_store_opened_to_read_writes_nothing_and_notices_a_writer() {
    use aitrail_store_sqlite::OpenError;
    let dir = tempfile::tempdir().unwrap();
    let missing = SqliteStore::open_read_only(dir.path(), ReadMode::Mapped, None).unwrap_err();
    assert!(matches!(missing, OpenError::Missing { .. }), "{missing}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a read made a file");

    let record = || aitrail_core::ingest::parse_record(r#"{"tenant_id": "t"}"#, "").unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let old = SqliteStore::open_read_only(dir.path(), ReadMode::Mapped, None).unwrap_err();
    assert!(matches!(old, OpenError::TooOld { found: 1, .. }), "{old}");
    SqliteStore::migrate(dir.path(), &key()).unwrap();
    let writer = SqliteStore::open(dir.path(), key()).unwrap();
    writer.append(vec![record()]).await.unwrap();
    drop(writer);
    // The writer's threads close their connections as they end; wait for the last.
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    let until = Instant::now() + Duration::from_secs(10);
    while wal.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!wal.exists(), "the writer never closed");

    let reader = SqliteStore::open_read_only(dir.path(), ReadMode::Mapped, None).unwrap();
    let refused = reader.append(vec![record()]).await;
    assert!(matches!(refused, Err(aitrail_store::StoreError::ReadOnly)), "{refused:?}");
    assert_eq!(reader.tenants().await.unwrap().len(), 1);
    let files = || {
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    assert_eq!(
        files(),
        [BUCKET_KEYS_FILE, KEYS_FILE, DB_FILE],
        "a read made SQLite's -wal, -shm or a journal"
    );

    // A writer starts, and the file changes under the reader.
    let writer = SqliteStore::open(dir.path(), key()).unwrap();
    for _ in 0..50 {
        writer.append(vec![record()]).await.unwrap();
    }
    drop(writer);
    let until = Instant::now() + Duration::from_secs(10);
    while wal.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stale = reader.tenants().await.unwrap_err().to_string();
    assert!(stale.contains("changed while it was read"), "{stale}");
}

/// Every file of the store is its owner's only, whoever made the data dir and with whatever
/// umask: a dir made 0755 by hand and a database SQLite made 0644 are narrowed at open, and
/// the -wal and -shm files SQLite then makes take the database's 0600.
#[tokio::test]
async fn the_store_is_for_its_owner_only_whoever_made_the_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    // A fresh store, in a dir the operator made wide open.
    std::fs::create_dir(&dir).unwrap();
    set(&dir, 0o755);
    let store = SqliteStore::open(&dir, key()).unwrap();
    let record = aitrail_core::ingest::parse_record(r#"{"tenant_id": "t"}"#, "").unwrap();
    store.append(vec![record.clone()]).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in store_files() {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
    drop(store);

    // A store an older aitrail left 0644 (SQLite's default), in a 0755 dir.
    let dir = parent.path().join("old");
    std::fs::create_dir(&dir).unwrap();
    let old = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    old.execute_batch(MIGRATIONS[0]).unwrap();
    old.pragma_update(None, "user_version", 1).unwrap();
    drop(old);
    set(&dir, 0o755);
    set(&dir.join(DB_FILE), 0o644);
    let store = SqliteStore::open(&dir, key()).unwrap();
    store.append(vec![record]).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in store_files() {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
}

/// The files of a store with a writer open.
fn store_files() -> [String; 5] {
    [
        DB_FILE.to_owned(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
        KEYS_FILE.into(),
        BUCKET_KEYS_FILE.into(),
    ]
}

/// A store an older aitrail wrote (migration 9: content in clear) is sealed by the first
/// open of this one: every record reads back as it was, and no byte of the plaintext
/// stays in the database, its WAL or the key file (the file is rewritten).
#[tokio::test]
async fn content_an_older_version_stored_in_clear_is_sealed_at_open() {
    use aitrail_core::Query;
    let dir = tempfile::tempdir().unwrap();
    let text = |i: usize| {
        format!("prompt {i:02} stored in clear by an older aitrail, {}", "x".repeat(400))
    };
    let listing = Query::from_pairs([("tenant_id", "t"), ("limit", "100")]).unwrap();
    // The store belongs to log A (its content key says so, as a log key's does).
    let of_log = |log: &str| key().of_log(log.to_owned());
    let before = {
        let store = SqliteStore::open(dir.path(), of_log("A")).unwrap();
        let records = (0..30)
            .map(|i| {
                let body = format!(
                    r#"{{"tenant_id": "t", "user_id": "u{}", "session_id": "s{}", "prompt": "{}", "response": "r{i}"}}"#,
                    i % 3,
                    i % 5,
                    text(i)
                );
                aitrail_core::ingest::parse_record(&body, "").unwrap()
            })
            .collect();
        store.append(records).await.unwrap();
        store.list(&listing).await.unwrap().records
    };
    wait_for_close(dir.path()).await;
    store_in_clear_as_migration_9_did(dir.path());
    let files = || {
        [DB_FILE.to_owned(), format!("{DB_FILE}-wal"), KEYS_FILE.to_owned()]
            .map(|f| std::fs::read(dir.path().join(f)).unwrap_or_default())
    };
    let in_files = |needle: &str| {
        files().iter().any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(in_files(&text(7)), "the older layout holds the text in clear");
    // A process with another log key is refused before it seals anything under its key.
    let other = SqliteStore::open(dir.path(), ContentKey::new([9; 32]).of_log("B".into()));
    let refused = other.unwrap_err().to_string();
    assert!(refused.contains("signed with the key A, not B"), "{refused}");
    assert!(in_files(&text(7)), "nothing was sealed");

    let store = SqliteStore::open(dir.path(), of_log("A")).unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before);
    drop(store);
    wait_for_close(dir.path()).await;
    for i in 0..30 {
        assert!(!in_files(&text(i)[..30]), "prompt {i} stayed in clear");
    }
    let store = SqliteStore::open(dir.path(), of_log("A")).unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before, "sealed for good");
}

/// Until the store's threads close their connections (the -wal goes with the last).
async fn wait_for_close(dir: &std::path::Path) {
    let wal = dir.join(format!("{DB_FILE}-wal"));
    let until = Instant::now() + Duration::from_secs(10);
    while wal.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!wal.exists(), "the store never closed");
}

/// Turn a store of this version back into migration 9's layout: content in clear (opened
/// here with the test's key), no key file, no key epochs.
fn store_in_clear_as_migration_9_did(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let keys = key_files(dir);
    // pos, record id, tenant, key id, sealed bytes, keyed hashes.
    type Sealed = (i64, String, String, Vec<u8>, Vec<u8>, [Option<Vec<u8>>; 2]);
    let sealed: Vec<Sealed> = conn
        .prepare("SELECT c.pos, r.id, r.tenant_id, c.key_id, c.sealed, c.prompt_hash, c.response_hash FROM contents c JOIN records r ON r.pos = c.pos")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, [r.get(5)?, r.get(6)?]))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    conn.execute_batch(
        "DROP INDEX contents_prompt_hash; DROP INDEX contents_response_hash; DROP TABLE contents;
         CREATE TABLE contents (pos INTEGER PRIMARY KEY, salt BLOB NOT NULL CHECK (length(salt) = 32),
             prompt TEXT, response TEXT, prompt_variables TEXT,
             prompt_hash BLOB CHECK (length(prompt_hash) = 32),
             response_hash BLOB CHECK (length(response_hash) = 32)) STRICT;
         CREATE INDEX contents_prompt_hash ON contents (prompt_hash) WHERE prompt_hash IS NOT NULL;
         CREATE INDEX contents_response_hash ON contents (response_hash) WHERE response_hash IS NOT NULL;
         ALTER TABLE logs DROP COLUMN key_epoch;
         PRAGMA user_version = 9;",
    )
    .unwrap();
    for (pos, id, tenant, key_id, bytes, [prompt_hash, response_hash]) in sealed {
        let key_id = aitrail_store::uuid::Uuid::from_slice(&key_id).unwrap();
        let data_key = data_key(&keys, &tenant, &key_id);
        let content = data_key.open(&id.parse().unwrap(), &bytes).unwrap();
        let field = |name: &str| content.fields.get(name).cloned();
        conn.execute(
            "INSERT INTO contents (pos, salt, prompt, response, prompt_variables, prompt_hash, response_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                pos,
                content.salt,
                field("prompt"),
                field("response"),
                field("prompt_variables"),
                prompt_hash,
                response_hash
            ],
        )
        .unwrap();
    }
    drop(keys);
    std::fs::remove_file(dir.join(KEYS_FILE)).unwrap();
    std::fs::remove_file(dir.join(BUCKET_KEYS_FILE)).unwrap();
}

/// The key files of the store in `dir`, the bucket keys' attached as `buckets`.
fn key_files(dir: &std::path::Path) -> rusqlite::Connection {
    let keys = rusqlite::Connection::open(dir.join(KEYS_FILE)).unwrap();
    let buckets = dir.join(BUCKET_KEYS_FILE);
    keys.execute("ATTACH ?1 AS buckets", [buckets.to_str().unwrap()]).unwrap();
    keys
}

/// Data key `key_id` of `tenant`, unwrapped (through its bucket key) with the test's key.
fn data_key(
    keys: &rusqlite::Connection,
    tenant: &str,
    key_id: &aitrail_store::uuid::Uuid,
) -> aitrail_core::seal::DataKey {
    let (wrapped, bucket_id, bucket, bucket_wrapped): (Vec<u8>, Vec<u8>, u16, Vec<u8>) = keys
        .query_row(
            "SELECT k.wrapped, b.id, b.bucket, b.wrapped
             FROM data_keys k JOIN buckets.bucket_keys b ON b.id = k.bucket_key WHERE k.id = ?1",
            [key_id.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let bucket_id = aitrail_store::uuid::Uuid::from_slice(&bucket_id).unwrap();
    let bucket_key = key().unwrap_bucket_key(bucket, &bucket_id, &bucket_wrapped).unwrap();
    bucket_key.unwrap(tenant, key_id, &wrapped).unwrap()
}

/// A store whose data keys an older aitrail wrapped under the content key itself (before
/// buckets; no bucket-key file) is brought up at the first open of this one: every key is
/// wrapped under its bucket's key, every record reads back as it was, and the key file is
/// rewritten, so no key wrapped the old way stays in it.
#[tokio::test]
async fn data_keys_an_older_version_wrapped_under_the_content_key_are_rebucketed_at_open() {
    use aitrail_core::Query;
    let dir = tempfile::tempdir().unwrap();
    let listing = Query::from_pairs([("tenant_id", "t"), ("limit", "100")]).unwrap();
    let before = {
        let store = SqliteStore::open(dir.path(), key()).unwrap();
        let records = (0..30)
            .map(|i| {
                let body = format!(
                    r#"{{"tenant_id": "t", "user_id": "u{}", "session_id": "s{}", "prompt": "p{i}"}}"#,
                    i % 7,
                    i % 4
                );
                aitrail_core::ingest::parse_record(&body, "").unwrap()
            })
            .collect();
        store.append(records).await.unwrap();
        store.list(&listing).await.unwrap().records
    };
    wait_for_close(dir.path()).await;
    // Back to the layout before buckets.
    let keys = key_files(dir.path());
    let rows: Vec<(Vec<u8>, String)> = keys
        .prepare("SELECT id, tenant_id FROM data_keys")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 7 * 4, "one key per (user, session)");
    let mut old_wrapped = Vec::new();
    for (id, tenant) in &rows {
        let id = aitrail_store::uuid::Uuid::from_slice(id).unwrap();
        let wrapped = key().wrap(tenant, &id, &data_key(&keys, tenant, &id), [3; 12]);
        keys.execute(
            "UPDATE data_keys SET wrapped = ?2, bucket_key = NULL WHERE id = ?1",
            rusqlite::params![id.as_bytes(), wrapped],
        )
        .unwrap();
        old_wrapped.push(wrapped);
    }
    keys.execute_batch(
        "DROP INDEX data_keys_bucket; ALTER TABLE data_keys DROP COLUMN bucket_key;",
    )
    .unwrap();
    drop(keys);
    std::fs::remove_file(dir.path().join(BUCKET_KEYS_FILE)).unwrap();
    let old = SqliteStore::open_read_only(dir.path(), ReadMode::Mapped, Some(key())).unwrap_err();
    assert!(old.to_string().contains("older than this aitrail's"), "{old}");

    let store = SqliteStore::open(dir.path(), key()).unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before);
    drop(store);
    wait_for_close(dir.path()).await;
    let keys = key_files(dir.path());
    let unbucketed: i64 = keys
        .query_row("SELECT count(*) FROM data_keys WHERE bucket_key IS NULL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unbucketed, 0, "every key wrapped under its bucket's key");
    drop(keys);
    let file = std::fs::read(dir.path().join(KEYS_FILE)).unwrap();
    for wrapped in &old_wrapped {
        assert!(!file.windows(wrapped.len()).any(|w| w == wrapped), "a key wrapped the old way");
    }
    let store = SqliteStore::open_read_only(dir.path(), ReadMode::Mapped, Some(key())).unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before);
}
