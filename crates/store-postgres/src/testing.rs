//! Fresh databases for tests: each test gets a database of its own on the PostgreSQL
//! named by `AITRAIL_TEST_POSTGRES`, dropped when the test ends.
//!
//! Without that variable the PostgreSQL tests are skipped, and say so on stderr (written
//! straight to the file descriptor, so the test harness does not swallow it). In CI
//! (`CI` set) a missing variable fails the test instead: there, they must run.

use std::io::Write;

/// The variable naming the server: a URL without a database name, such as
/// `postgres://postgres@127.0.0.1:5432`.
pub const ENV: &str = "AITRAIL_TEST_POSTGRES";

/// A database made for one test; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL, to open a store on.
    pub url: String,
    server: String,
    name: String,
}

impl TestDatabase {
    /// A new empty database, or `None` (after a loud line on stderr) where no PostgreSQL
    /// is configured. Panics when one is configured but cannot be used, and in CI.
    pub async fn create(test: &str) -> Option<Self> {
        Some(Self::on(&server(test)?).await)
    }

    /// A new empty database on the server at `server` (a URL without a database name).
    pub async fn on(server: &str) -> Self {
        let server = server.trim_end_matches('/').to_owned();
        let name = format!("aitrail_test_{}", uuid::Uuid::now_v7().simple());
        let admin = admin_client(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database on {server}: {e}"));
        Self { url: format!("{server}/{name}"), server, name }
    }

    /// Its name, for psql.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The configured server URL; `None` after saying that the test is skipped.
pub fn server(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) => Some(url.trim_end_matches('/').to_owned()),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{ENV} is not set: in CI the PostgreSQL tests must run (.ci/run sets it)")
        }
        Err(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test} on PostgreSQL: set {ENV}=postgres://postgres@127.0.0.1:5432 to run it ***"
            );
            None
        }
    }
}

async fn admin_client(server: &str) -> tokio_postgres::Client {
    let url = format!("{server}/postgres");
    crate::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{ENV} is set but PostgreSQL at {server} is unreachable: {e}"))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: drop may run inside (or outside) a test's runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let admin = admin_client(&server).await;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(std::io::stderr(), "could not drop test database {}", self.name);
        }
    }
}
