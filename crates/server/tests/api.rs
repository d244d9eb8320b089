//! The HTTP API, end to end: a real server on 127.0.0.1:0 spoken to with a real HTTP
//! client, over each storage backend: every case in `api/*.rs` (a file per concern) runs
//! once on SQLite and once on PostgreSQL (a fresh database per test; see
//! aitrail_store_postgres::testing).

use std::collections::BTreeSet;
use std::sync::Arc;

use std::time::Duration;

use aitrail_core::Timestamp;
use aitrail_core::access::Role;
use aitrail_core::entry::Entry;
use aitrail_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use aitrail_core::note::NoteSigner;
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_server::{Config, LogSigner};
use aitrail_service::keys::{KeyRequest, issue};
use aitrail_store::Store;
use aitrail_store_postgres::PostgresStore;
use aitrail_store_postgres::testing::TestDatabase;
use aitrail_store_sqlite::SqliteStore;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

/// A throwaway key for tests (a fixed seed: it signs nothing that leaves the test).
fn test_signer() -> NoteSigner {
    NoteSigner::from_seed("test.aitrail", [42; 32]).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test server keeps its records; removed when the test ends.
enum Storage {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

impl Storage {
    /// `None` when the backend is not available here (said loudly; never in CI).
    async fn open(backend: Backend) -> Option<(Arc<dyn Store>, Storage)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(
                    SqliteStore::open(dir.path(), aitrail_core::seal::ContentKey::new([7; 32]))
                        .unwrap(),
                );
                Some((store, Storage::Sqlite(dir)))
            }
            Backend::Postgres => {
                let test = std::thread::current().name().unwrap_or("a test").to_owned();
                let db = TestDatabase::create(&test).await?;
                let store = Arc::new(
                    PostgresStore::open(&db.url, aitrail_core::seal::ContentKey::new([7; 32]))
                        .await
                        .unwrap(),
                );
                Some((store, Storage::Postgres(db)))
            }
        }
    }
}

/// An HTTP client that sends `key` as its bearer.
fn http(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

struct Server {
    base: String,
    client: reqwest::Client,
    /// The global admin key the client sends.
    key: String,
    store: Arc<dyn Store>,
    /// What key digests are made with.
    secret: [u8; 32],
    _storage: Storage,
}

impl Server {
    async fn start(backend: Backend) -> Option<Self> {
        Self::with_config(backend, Config::default()).await
    }

    async fn with_config(backend: Backend, config: Config) -> Option<Self> {
        Self::with(backend, config, Duration::from_millis(50)).await
    }

    async fn with(backend: Backend, config: Config, checkpoint_interval: Duration) -> Option<Self> {
        let (store, storage) = Storage::open(backend).await?;
        let log = Arc::new(LogSigner::new(test_signer(), checkpoint_interval));
        let admin = KeyRequest { role: Role::Admin, tenant: None, expires_at: None, label: None };
        let secret = log.api_key_secret();
        let (key, _) = issue(store.as_ref(), &secret, admin).await.unwrap();
        let kept = store.clone();
        tokio::spawn(log.clone().run(store.clone()));
        let app = aitrail_server::router(store, log, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(aitrail_server::serve(listener, app, std::future::pending()));
        let key = key.reveal();
        Some(Self { base, client: http(&key), key, store: kept, secret, _storage: storage })
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post_json(&self, body: &Value) -> (StatusCode, Value) {
        self.post("/v1/records", "application/json", body.to_string()).await
    }

    async fn put_policy(&self, tenant: &str, policy: &Value) -> (StatusCode, Value) {
        let url = format!("{}/v1/tenants/{tenant}/policy", self.base);
        let r = self.client.put(url).json(policy).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        let r = self.client.get(format!("{}{path_and_query}", self.base)).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Every stored record id, newest first, following cursors.
    async fn all_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/v1/records?limit=1000&cursor={c}"),
                None => "/v1/records?limit=1000".to_owned(),
            };
            let (status, page) = self.get(&q).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            ids.extend(
                page["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }
}

fn problem_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|es| es.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The behaviour tests of the API, a file per concern under `api/`, included once per
/// storage backend (`BACKEND` says which).
macro_rules! cases {
    () => {
        include!("api/records.rs");
        include!("api/filters.rs");
        include!("api/bad_input.rs");
        include!("api/integrity.rs");
        include!("api/access.rs");
        include!("api/export.rs");
        include!("api/privacy.rs");
        include!("api/dashboard.rs");
        include!("api/usage.rs");
        include!("api/verification.rs");
        include!("api/capture.rs");
    };
}

mod sqlite {
    use super::*;
    const BACKEND: Backend = Backend::Sqlite;
    cases!();
}

mod postgres {
    use super::*;
    const BACKEND: Backend = Backend::Postgres;
    cases!();
}
