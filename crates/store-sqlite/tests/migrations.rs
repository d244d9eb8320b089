//! A store written by an older aitrail opens with a newer one and keeps every byte of its
//! log: the migration that moves entries into their own table loses none.

use aitrail_store::Store;
use aitrail_store_sqlite::{DB_FILE, MIGRATIONS, SqliteStore};

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
    let (found, now) = SqliteStore::migrate(dir.path()).unwrap();
    assert_eq!((found, now), (4, MIGRATIONS.len() as i64));
    let store = SqliteStore::open(dir.path()).unwrap();
    let (first, last) = store.pos_span().await.unwrap().unwrap();
    let rows = store.scan(first, last + 1).await.unwrap();
    let moved: Vec<Vec<u8>> = rows.into_iter().map(|r| r.entry).collect();
    assert_eq!(moved, entries);
}
