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
    let store =
        PostgresStore::open(&db.url, aitrail_core::seal::ContentKey::new([7; 32])).await.unwrap();
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

/// A database an older aitrail wrote (migration 5: content in clear) is sealed by the first
/// open of this one, under the migrations' lock: every record reads back as it was, the
/// old table is gone, and the content sits in `contents` only sealed.
#[tokio::test]
async fn content_an_older_version_stored_in_clear_is_sealed_at_open() {
    let test = "content_an_older_version_stored_in_clear_is_sealed_at_open";
    let Some(db) = TestDatabase::create(test).await else { return };
    let key = || aitrail_core::seal::ContentKey::new([7; 32]);
    let listing = Query::from_pairs([("limit", "100")]).unwrap();
    let before = {
        let store = PostgresStore::open(&db.url, key()).await.unwrap();
        store.append((0..40).map(record).collect()).await.unwrap();
        store.list(&listing).await.unwrap().records
    };
    assert_eq!(before.iter().filter(|r| r.record.prompt.is_some()).count(), 30);
    // Back to migration 5's layout, the content in clear (opened here with the key).
    let client = aitrail_store_postgres::connect(&db.url).await.unwrap();
    let rows = client
        .query(
            "SELECT c.id, r.tenant_id, c.key_id, c.sealed, k.wrapped, c.prompt_hash, c.response_hash,
                    b.id, b.bucket, b.wrapped
             FROM contents c JOIN records r ON r.id = c.id JOIN data_keys k ON k.id = c.key_id
             JOIN bucket_keys b ON b.id = k.bucket_key",
            &[],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "DROP TABLE contents; DROP TABLE data_keys; DROP TABLE bucket_keys; DROP TABLE pending_rewrites;
             ALTER TABLE logs DROP COLUMN key_epoch;
             CREATE TABLE contents (id uuid PRIMARY KEY REFERENCES records (id),
                 salt bytea NOT NULL CHECK (length(salt) = 32), prompt text, response text,
                 prompt_variables text, prompt_hash bytea CHECK (length(prompt_hash) = 32),
                 response_hash bytea CHECK (length(response_hash) = 32));
             CREATE INDEX contents_prompt_hash ON contents (prompt_hash) WHERE prompt_hash IS NOT NULL;
             CREATE INDEX contents_response_hash ON contents (response_hash) WHERE response_hash IS NOT NULL;
             UPDATE aitrail_schema SET version = 5;",
        )
        .await
        .unwrap();
    for row in rows {
        let (id, tenant, key_id): (uuid::Uuid, String, uuid::Uuid) =
            (row.get(0), row.get(1), row.get(2));
        let data_key = data_key(&row, 4, 7, &tenant, &key_id);
        let content = data_key.open(&id, row.get(3)).unwrap();
        let field = |name: &str| content.fields.get(name).cloned();
        let hashes: (Option<Vec<u8>>, Option<Vec<u8>>) = (row.get(5), row.get(6));
        client
            .execute(
                "INSERT INTO contents VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &id,
                    &content.salt.to_vec(),
                    &field("prompt"),
                    &field("response"),
                    &field("prompt_variables"),
                    &hashes.0,
                    &hashes.1,
                ],
            )
            .await
            .unwrap();
    }
    let old = PostgresStore::open_read_only(&db.url, Some(key())).await.unwrap_err();
    assert!(old.to_string().contains("older than this aitrail's"), "{old}");

    let store = PostgresStore::open(&db.url, key()).await.unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before);
    let left = client.query_one("SELECT to_regclass('contents_plain') IS NULL", &[]).await.unwrap();
    assert!(left.get::<_, bool>(0), "the table of content in clear is gone");
    let clear = client
        .query_one(
            "SELECT count(*) FROM contents WHERE position('prompt '::bytea IN sealed) > 0",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(clear.get::<_, i64>(0), 0, "content in clear in the sealed table");
}

/// The data key `key_id` of `tenant` from a row holding its wrapped form at `wrapped` and
/// its bucket key's id, bucket and wrapped form from `bucket` on.
fn data_key(
    row: &tokio_postgres::Row,
    wrapped: usize,
    bucket: usize,
    tenant: &str,
    key_id: &uuid::Uuid,
) -> aitrail_core::seal::DataKey {
    let key = aitrail_core::seal::ContentKey::new([7; 32]);
    let (bucket_id, number): (uuid::Uuid, i32) = (row.get(bucket), row.get(bucket + 1));
    let bucket_key = key.unwrap_bucket_key(number as u16, &bucket_id, row.get(bucket + 2)).unwrap();
    bucket_key.unwrap(tenant, key_id, row.get(wrapped)).unwrap()
}

/// A database whose data keys an older aitrail wrapped under the content key itself
/// (migration 6, before buckets) is brought up by the first open of this one, under the
/// migrations' lock: every key is wrapped under its bucket's key, every record reads back
/// as it was, and `data_keys` is rewritten, so its file holds no key wrapped the old way.
#[tokio::test]
async fn data_keys_an_older_version_wrapped_under_the_content_key_are_rebucketed_at_open() {
    let test = "data_keys_an_older_version_wrapped_under_the_content_key_are_rebucketed";
    let Some(db) = TestDatabase::create(test).await else { return };
    let key = || aitrail_core::seal::ContentKey::new([7; 32]);
    let listing = Query::from_pairs([("limit", "100")]).unwrap();
    let before = {
        let store = PostgresStore::open(&db.url, key()).await.unwrap();
        store.append((0..40).map(record).collect()).await.unwrap();
        store.list(&listing).await.unwrap().records
    };
    let client = aitrail_store_postgres::connect(&db.url).await.unwrap();
    let rows = client
        .query(
            "SELECT k.id, k.tenant_id, k.wrapped, b.id, b.bucket, b.wrapped
             FROM data_keys k JOIN bucket_keys b ON b.id = k.bucket_key",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 30, "one key per (user, session) with content");
    let mut old_wrapped = Vec::new();
    for row in &rows {
        let (id, tenant): (uuid::Uuid, String) = (row.get(0), row.get(1));
        let wrapped = key().wrap(&tenant, &id, &data_key(row, 2, 3, &tenant, &id), [3; 12]);
        client
            .execute(
                "UPDATE data_keys SET wrapped = $2, bucket_key = NULL WHERE id = $1",
                &[&id, &wrapped],
            )
            .await
            .unwrap();
        old_wrapped.push(wrapped);
    }
    client
        .batch_execute(
            "ALTER TABLE data_keys DROP COLUMN bucket_key; DROP TABLE bucket_keys;
             DROP TABLE pending_rewrites;
             UPDATE aitrail_schema SET version = 6;",
        )
        .await
        .unwrap();
    let old = PostgresStore::open_read_only(&db.url, Some(key())).await.unwrap_err();
    assert!(old.to_string().contains("older than this aitrail's"), "{old}");

    let store = PostgresStore::open(&db.url, key()).await.unwrap();
    assert_eq!(store.list(&listing).await.unwrap().records, before);
    let owed = client.query_one("SELECT count(*) FROM pending_rewrites", &[]).await.unwrap();
    assert_eq!(owed.get::<_, i64>(0), 0, "the rewrite ran, and is no longer owed");
    let unbucketed = client
        .query_one("SELECT count(*) FROM data_keys WHERE bucket_key IS NULL", &[])
        .await
        .unwrap();
    assert_eq!(unbucketed.get::<_, i64>(0), 0, "every key wrapped under its bucket's key");
    // The table's file, as rewritten: none of the keys as the older version wrapped them.
    client.batch_execute("CHECKPOINT").await.unwrap();
    let file = client
        .query_one(
            "SELECT current_setting('data_directory') || '/' || pg_relation_filepath('data_keys')",
            &[],
        )
        .await
        .unwrap();
    let bytes = std::fs::read(file.get::<_, String>(0)).unwrap();
    assert!(!bytes.is_empty(), "the table's file is read");
    for wrapped in &old_wrapped {
        assert!(!bytes.windows(wrapped.len()).any(|w| w == wrapped), "a key wrapped the old way");
    }
}

// ---------------------------------------------------------------------------------------
// TLS: a throwaway cluster of the test's own (Debian's initdb and pg_ctl), with TLS on and
// a certificate authority made for it, and the same cluster without TLS. Not the shared
// server: its TLS settings are not ours to change.

mod tls {
    use std::path::Path;

    use aitrail_store_postgres::testing::Cluster;
    use aitrail_store_postgres::{PostgresStore, connect};

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
        std::fs::set_permissions(
            dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }

    /// A cluster of its own, TLS material made, not started; `None` after saying why not.
    fn cluster() -> Option<Cluster> {
        Cluster::new("tls_to_postgres_as_sslmode_says", |path| {
            let ca = authority(path, "ca");
            authority(path, "other-ca");
            server_certificate(path, &ca);
        })
    }

    /// The cluster's settings with TLS on or off.
    fn tls(cluster: &Cluster, on: bool) -> String {
        let dir = cluster.dir();
        format!(
            "ssl = {}\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            if on { "on" } else { "off" },
            dir.join("server.crt").display(),
            dir.join("server.key").display(),
        )
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
        let ca = cluster.dir().join("ca.crt");
        let other = cluster.dir().join("other-ca.crt");
        let (ca, other) = (ca.to_str().unwrap(), other.to_str().unwrap());
        cluster.start(&tls(&cluster, true));

        // verify-full: the right authority and the host the certificate names.
        let full = cluster.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
        assert_eq!(encrypted(&full).await, Ok(true));
        let store = PostgresStore::open(&full, aitrail_core::seal::ContentKey::new([7; 32]))
            .await
            .expect("the store over verify-full");
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
        cluster.start(&tls(&cluster, false));
        let refused = encrypted(&cluster.url("127.0.0.1", "sslmode=require")).await.unwrap_err();
        assert!(refused.to_lowercase().contains("tls") || refused.contains("ssl"), "{refused}");
        assert!(encrypted(&full).await.is_err());
        assert_eq!(encrypted(&cluster.url("127.0.0.1", "sslmode=prefer")).await, Ok(false));
        cluster.stop();
    }
}
