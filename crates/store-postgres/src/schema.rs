//! Versioned migrations, applied in order at open (and by `aitrail migrate`). The
//! `aitrail_schema` row holds how many have been applied. PostgreSQL's DDL is
//! transactional: all pending migrations apply in one transaction, under an advisory lock,
//! so nodes starting together never apply one twice.

use tokio_postgres::Client;

/// Every migration, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_records.sql"),
    include_str!("../migrations/0002_api_keys.sql"),
    include_str!("../migrations/0003_policies.sql"),
    include_str!("../migrations/0004_holds.sql"),
    include_str!("../migrations/0005_keyed_hashes.sql"),
    include_str!("../migrations/0006_sealed_contents.sql"),
    include_str!("../migrations/0007_bucket_keys.sql"),
];

/// Key of the advisory lock that serialises migrations ("aitrail" in ASCII).
pub(crate) const MIGRATION_LOCK: i64 = 0x0061_6974_7261_696c;

/// Apply pending migrations; returns (version found, version known).
/// How many migrations the database has had (0: none, or no aitrail schema at all).
pub(crate) async fn version(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let table = client.query_one("SELECT to_regclass('aitrail_schema') IS NOT NULL", &[]).await?;
    if !table.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM aitrail_schema", &[]).await?;
    Ok(row.map_or(0, |row| i64::from(row.get::<_, i32>(0))))
}

pub(crate) async fn migrate(client: &mut Client) -> Result<(i64, i64), tokio_postgres::Error> {
    let known = MIGRATIONS.len() as i64;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS aitrail_schema (
             only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
             version  integer NOT NULL
         )",
    )
    .await?;
    let found = tx
        .query_opt("SELECT version FROM aitrail_schema", &[])
        .await?
        .map_or(0, |row| i64::from(row.get::<_, i32>(0)));
    for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(usize::MAX)) {
        tx.batch_execute(sql).await?;
    }
    if found < known {
        tx.execute(
            "INSERT INTO aitrail_schema (version) VALUES ($1)
             ON CONFLICT (only_one) DO UPDATE SET version = excluded.version",
            &[&(known as i32)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((found, known))
}
