//! The auditor queries of the conversation-audit-log service are served by indexes on
//! PostgreSQL: over a table of varied records (most with content), after ANALYZE, no plan
//! reads a table whole. The plans are printed (`--nocapture`) and kept in docs/POSTGRES.md.

use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_core::{Query, Record};
use aitrail_store::Store;
use aitrail_store_postgres::PostgresStore;
use aitrail_store_postgres::testing::TestDatabase;
use serde_json::json;

const RECORDS: usize = 20_000;

fn record(i: usize) -> Record {
    let providers = ["openai", "anthropic", "azure", "google", "mistral"];
    let models = ["gpt-4o", "claude-3-haiku", "gpt-35-turbo", "gemini-1.5", "mistral-large"];
    let modes = ["strict", "balanced", "relaxed"];
    let mut body = json!({
        "tenant_id": format!("tenant-{}", i % 7),
        "user_id": format!("user-{}", i % 1000),
        "model_provider": providers[i % 5],
        "model_name": models[(i / 5) % 5],
        "safety_mode": modes[i % 3],
        "temperature": format!("{:.2}", (i % 101) as f64 / 100.0),
        "event_time": format!("2026-{:02}-{:02}T12:00:00Z", 1 + (i / 28) % 12, 1 + i % 28),
    });
    if !i.is_multiple_of(4) {
        body["prompt"] = json!(format!("prompt {i}"));
    }
    parse_body(body.to_string().as_bytes(), BodyFormat::Json).unwrap().into_records().remove(0)
}

#[tokio::test]
async fn auditor_queries_use_indexes() {
    let Some(db) = TestDatabase::create("auditor_queries_use_indexes").await else { return };
    let store = PostgresStore::open(&db.url).await.unwrap();
    for start in (0..RECORDS).step_by(5_000) {
        store.append((start..start + 5_000).map(record).collect()).await.unwrap();
    }
    let client = aitrail_store_postgres::connect(&db.url).await.unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
    for q in [
        "temperature_gt=0.8",
        "model_provider=anthropic&model_provider=openai",
        "model_provider=azure&since=2026-10-01&until=2026-11-01",
        "safety_mode=strict",
        "model_name=claude-3-haiku&safety_mode=strict",
        "tenant_id=tenant-2&user_id=user-998",
        "since=2026-03-01&until=2026-03-02",
    ] {
        let query = Query::from_pairs(q.split('&').map(|kv| kv.split_once('=').unwrap())).unwrap();
        let plan = store.explain(&query).await.unwrap();
        println!("-- {q}\n{plan}\n");
        assert!(!plan.contains("Seq Scan"), "{q} reads a whole table:\n{plan}");
        assert!(plan.contains("Index"), "{q} uses no index:\n{plan}");
        let page = store.list(&query).await.unwrap();
        assert!(!page.records.is_empty(), "{q} should match some records");
    }
}

// ---------------------------------------------------------------------------------------
// TLS: a throwaway cluster of the test's own (Debian's initdb and pg_ctl), with TLS on and
// a certificate authority made for it, and the same cluster without TLS. Not the shared
// server: its TLS settings are not ours to change.

mod tls {
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use aitrail_store_postgres::{PostgresStore, connect};

    /// `program` with `args`, as the postgres user when this process is root (PostgreSQL
    /// refuses to run as root).
    fn run(program: &Path, args: &[&str]) {
        let root = unsafe_is_root();
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = command.args(args).output().unwrap_or_else(|e| panic!("{program:?}: {e}"));
        assert!(
            out.status.success(),
            "{program:?} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn unsafe_is_root() -> bool {
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    /// A certificate authority (`<name>.crt` in `dir`), valid since yesterday: a
    /// certificate made this second may not yet be valid to a clock a second behind.
    fn authority(dir: &Path, name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("aitrail test {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        (params, key)
    }

    /// The server's certificate and key, for `localhost`, signed by `issuer`.
    fn server_certificate(dir: &Path, issuer: &(rcgen::CertificateParams, rcgen::KeyPair)) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&issuer.0, &issuer.1);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    }

    /// PostgreSQL's binaries: the newest Debian installs.
    fn bin() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found.pop()
    }

    struct Cluster {
        dir: tempfile::TempDir,
        bin: PathBuf,
        port: u16,
    }

    impl Cluster {
        fn data(&self) -> PathBuf {
            self.dir.path().join("data")
        }

        fn start(&self, ssl: bool) {
            let conf = format!(
                "port = {}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\nssl = {}\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                self.port,
                self.dir.path().display(),
                if ssl { "on" } else { "off" },
                self.dir.path().join("server.crt").display(),
                self.dir.path().join("server.key").display(),
            );
            std::fs::write(self.data().join("postgresql.auto.conf"), conf).unwrap();
            chown_postgres(&self.data().join("postgresql.auto.conf"));
            let log = self.dir.path().join("log");
            let (data, log) = (self.data(), log);
            run(
                &self.bin.join("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "start"],
            );
        }

        fn stop(&self) {
            let data = self.data();
            run(
                &self.bin.join("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
            );
        }

        fn url(&self, host: &str, params: &str) -> String {
            format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            let data = self.data();
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
        }
    }

    fn chown_postgres(path: &Path) {
        if unsafe_is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status();
            assert!(ok.unwrap().success());
        }
    }

    /// A cluster of its own, TLS material made, not started; `None` after saying why not.
    fn cluster() -> Option<Cluster> {
        aitrail_store_postgres::testing::server("tls_to_postgres_as_sslmode_says")?;
        let Some(bin) = bin() else {
            panic!("PostgreSQL's initdb is not installed (Debian's postgresql package)")
        };
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let path = dir.path();
        let ca = authority(path, "ca");
        authority(path, "other-ca");
        server_certificate(path, &ca);
        std::fs::set_permissions(
            path.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        chown_postgres(path);
        let cluster = Cluster { dir, bin, port };
        let data = cluster.data();
        run(
            &cluster.bin.join("initdb"),
            &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"],
        );
        Some(cluster)
    }

    async fn encrypted(url: &str) -> Result<bool, String> {
        let client = connect(url).await.map_err(|e| e.to_string())?;
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    #[tokio::test]
    async fn tls_to_postgres_as_sslmode_says() {
        let Some(cluster) = cluster() else { return };
        let ca = cluster.dir.path().join("ca.crt");
        let other = cluster.dir.path().join("other-ca.crt");
        let (ca, other) = (ca.to_str().unwrap(), other.to_str().unwrap());
        cluster.start(true);

        // verify-full: the right authority and the host the certificate names.
        let full = cluster.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
        assert_eq!(encrypted(&full).await, Ok(true));
        let store = PostgresStore::open(&full).await.expect("the store over verify-full");
        aitrail_store::Store::logs(&store).await.unwrap();
        // ... and refused with another authority, or another host name.
        let wrong_ca =
            cluster.url("localhost", &format!("sslmode=verify-full&sslrootcert={other}"));
        let refused = encrypted(&wrong_ca).await.unwrap_err();
        assert!(refused.contains("invalid peer certificate: UnknownIssuer"), "{refused}");
        let wrong_host = cluster.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"));
        let refused = encrypted(&wrong_host).await.unwrap_err();
        assert!(
            refused.contains("invalid peer certificate: certificate not valid for name"),
            "{refused}"
        );
        // verify-ca checks the authority, not the name.
        let ca_only = cluster.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"));
        assert_eq!(encrypted(&ca_only).await, Ok(true));
        assert!(
            encrypted(&cluster.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={other}")))
                .await
                .is_err()
        );
        // require and the default (prefer) encrypt; disable does not.
        assert_eq!(encrypted(&cluster.url("127.0.0.1", "sslmode=require")).await, Ok(true));
        assert_eq!(encrypted(&cluster.url("127.0.0.1", "application_name=t")).await, Ok(true));
        assert_eq!(encrypted(&cluster.url("127.0.0.1", "sslmode=disable")).await, Ok(false));
        drop(store);
        cluster.stop();

        // Without TLS: require refuses, prefer goes on in clear.
        cluster.start(false);
        let refused = encrypted(&cluster.url("127.0.0.1", "sslmode=require")).await.unwrap_err();
        assert!(refused.to_lowercase().contains("tls") || refused.contains("ssl"), "{refused}");
        assert!(encrypted(&full).await.is_err());
        assert_eq!(encrypted(&cluster.url("127.0.0.1", "sslmode=prefer")).await, Ok(false));
        cluster.stop();
    }
}
