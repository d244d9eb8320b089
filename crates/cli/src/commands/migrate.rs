use aitrail_store_postgres::PostgresStore;
use aitrail_store_sqlite::SqliteStore;

use crate::Global;

/// Applies pending migrations to the store (--database, else --data-dir) and says what it
/// did. `serve` migrates at start as well; this is for doing it ahead of a rollout. Content
/// stored before content was sealed is sealed now, under the log key's content key.
pub async fn run(global: &Global) -> anyhow::Result<()> {
    let (found, now, at) = match &global.database {
        Some(url) => {
            let (found, now) =
                PostgresStore::migrate(url, &crate::target::change_key(&global.data_dir)?).await?;
            (found, now, "PostgreSQL".to_owned())
        }
        None => {
            let key = crate::target::change_key(&global.data_dir)?;
            let (found, now) = SqliteStore::migrate(&global.data_dir, &key)?;
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
