use aitrail_store_postgres::PostgresStore;
use aitrail_store_sqlite::SqliteStore;

use crate::Global;

/// Applies pending migrations to the store (--database, else --data-dir) and says what it
/// did. `serve` migrates at start as well; this is for doing it ahead of a rollout.
pub async fn run(global: &Global) -> anyhow::Result<()> {
    let (found, now, at) = match &global.database {
        Some(url) => {
            let (found, now) = PostgresStore::migrate(url).await?;
            (found, now, "PostgreSQL".to_owned())
        }
        None => {
            let (found, now) = SqliteStore::migrate(&global.data_dir)?;
            (found, now, global.data_dir.display().to_string())
        }
    };
    if found == now {
        println!("{at}: schema is at version {now}, nothing to do");
    } else {
        println!("{at}: schema migrated from version {found} to {now}");
    }
    Ok(())
}
