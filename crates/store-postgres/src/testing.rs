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

/// A throwaway PostgreSQL cluster of a test's own (Debian's `initdb` and `pg_ctl`), for
/// what the shared server cannot give: its own settings (TLS), or its files to read (an
/// erasure test scans every byte of the data directory and its WAL). Stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl Cluster {
    /// A new cluster, initialised, not started; `None` where PostgreSQL tests are skipped
    /// (no `AITRAIL_TEST_POSTGRES`, outside CI). `prepare` runs on its directory before it
    /// is handed to the postgres user (certificates, say).
    pub fn new(test: &str, prepare: impl FnOnce(&std::path::Path)) -> Option<Self> {
        server(test)?;
        let Some(bin) = bin() else {
            panic!("PostgreSQL's initdb is not installed (Debian's postgresql package)")
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        prepare(dir.path());
        chown_postgres(dir.path());
        let cluster = Cluster { dir, bin, port };
        let data = cluster.data();
        cluster.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"]);
        Some(cluster)
    }

    /// Its directory (the data directory is `data` in it).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The data directory: every file PostgreSQL keeps, `pg_wal` included.
    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Start it with these settings added to `postgresql.auto.conf`.
    pub fn start(&self, settings: &str) {
        let conf = format!(
            "port = {}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\n{settings}",
            self.port,
            self.dir.path().display(),
        );
        let file = self.data().join("postgresql.auto.conf");
        std::fs::write(&file, conf).expect("postgresql.auto.conf written");
        chown_postgres(&file);
        let (data, log) = (self.data(), self.dir.path().join("log"));
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start"],
        );
    }

    /// Stop it, cleanly (a checkpoint first).
    pub fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    /// The URL of its `postgres` database at `host`, with query `params`.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }

    /// A PostgreSQL tool of the cluster's version (`pg_dump`, say), run as the postgres
    /// user; its stdout.
    pub fn run(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = command.args(args).output().unwrap_or_else(|e| panic!("{program:?}: {e}"));
        assert!(
            out.status.success(),
            "{program:?} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

/// PostgreSQL's binaries: the newest Debian installs.
fn bin() -> Option<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root: when this process is root, its files go to the
/// postgres user.
fn chown_postgres(path: &std::path::Path) {
    if is_root() {
        let ok = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "chown of {}", path.display());
    }
}
