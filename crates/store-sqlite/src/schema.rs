//! Versioned migrations, applied in order at open. `PRAGMA user_version` holds how many
//! have been applied; each runs in its own transaction.

use rusqlite::Connection;

/// Every migration, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_records.sql"),
    include_str!("../migrations/0002_log_key.sql"),
    include_str!("../migrations/0003_external_id.sql"),
    include_str!("../migrations/0004_api_keys.sql"),
    include_str!("../migrations/0005_entries.sql"),
    include_str!("../migrations/0006_policies.sql"),
    include_str!("../migrations/0007_holds.sql"),
    include_str!("../migrations/0008_keyed_hashes.sql"),
    include_str!("../migrations/0009_partial_indexes.sql"),
    include_str!("../migrations/0010_sealed_contents.sql"),
    include_str!("../migrations/0011_bucket_keys.sql"),
];

/// Apply pending migrations; returns (version found, version known).
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<(i64, i64)> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok((found, known))
}
