//! The client against a real server (the aitrail router on a SQLite store, on loopback):
//! batching, flush, shutdown, the bounded queue, refusals, and the spool while the server
//! is down — each record stored exactly once.

use std::sync::Arc;
use std::time::Duration;

use aitrail_client::{Client, Config, Error};
use aitrail_core::access::Role;
use aitrail_core::note::NoteSigner;
use aitrail_server::{LogSigner, router};
use aitrail_service::keys::{KeyRequest, issue};
use aitrail_store::Store;
use aitrail_store_sqlite::SqliteStore;
use serde_json::json;

/// A store with a key that may write for tenant t, and the API over it, not yet serving.
struct Server {
    store: Arc<dyn Store>,
    key: String,
    app: Option<axum::Router>,
    _dir: tempfile::TempDir,
}

async fn prepare() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path(), aitrail_core::seal::ContentKey::new([7; 32])).unwrap(),
    );
    let log = Arc::new(LogSigner::new(
        NoteSigner::from_seed("client.test", [9; 32]).unwrap(),
        Duration::from_millis(50),
    ));
    let request = KeyRequest {
        role: Role::Ingest,
        tenant: Some(aitrail_core::TenantId::parse("t").unwrap()),
        expires_at: None,
        label: None,
    };
    let (key, _) = issue(store.as_ref(), &log.api_key_secret(), request).await.unwrap();
    let app =
        router(store.clone(), log, aitrail_server::Config { rate_limit: 0, ..Default::default() });
    Server { store, key: key.reveal(), app: Some(app), _dir: dir }
}

impl Server {
    /// Start answering on `listener`.
    fn listen(&mut self, listener: tokio::net::TcpListener) {
        let app = self.app.take().expect("serves once");
        tokio::spawn(aitrail_server::serve(listener, app, std::future::pending()));
    }
}

async fn serve(listener: tokio::net::TcpListener) -> Server {
    let mut server = prepare().await;
    server.listen(listener);
    server
}

async fn bound() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// The external ids of tenant t's records.
async fn stored(store: &dyn Store) -> Vec<String> {
    let mut query =
        aitrail_core::Query::from_pairs(vec![("tenant_id", "t"), ("limit", "1000")]).unwrap();
    let mut ids = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap();
        ids.extend(page.records.iter().map(|r| r.record.external_id.as_ref().unwrap().to_string()));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return ids,
        }
    }
}

fn record(i: usize) -> serde_json::Value {
    json!({"tenant_id": "t", "model_provider": "openai", "model_name": "gpt-4o", "tokens_input": i})
}

#[tokio::test]
async fn batches_flush_and_shutdown_store_every_record_once() {
    let (listener, url) = bound().await;
    let server = serve(listener).await;
    let client = Client::new(Config { batch_size: 40, ..Config::new(&url, &server.key) }).unwrap();
    for i in 0..250 {
        client.record(record(i)).unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(stored(server.store.as_ref()).await.len(), 250);
    for i in 0..7 {
        client.record_wait(record(i)).await.unwrap();
    }
    client.shutdown().await.unwrap();
    let ids = stored(server.store.as_ref()).await;
    assert_eq!(ids.len(), 257, "shutdown sent the last partial batch");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.iter().all(|id| id.starts_with("aitrail-client:")));
}

#[tokio::test]
async fn while_the_server_is_down_batches_wait_in_the_spool_and_arrive_once_it_is_back() {
    // The server's port, with nothing listening on it yet.
    let (listener, url) = bound().await;
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut server = prepare().await;
    let spool = tempfile::tempdir().unwrap();
    let config = Config {
        batch_size: 10,
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        flush_interval: Duration::from_secs(3600),
        spool_dir: Some(spool.path().to_owned()),
        ..Config::new(&url, &server.key)
    };
    let client = Client::new(config).unwrap();
    for i in 0..25 {
        client.record(record(i)).unwrap();
    }
    client.flush().await.expect("spooled counts as kept");
    let files = Client::spooled_files(spool.path()).unwrap();
    assert_eq!(files.len(), 3, "25 records in batches of 10: {files:?}");
    assert!(stored(server.store.as_ref()).await.is_empty());
    // The server comes up on its port: the next flush drains the spool, each record once.
    server.listen(tokio::net::TcpListener::bind(addr).await.unwrap());
    client.flush().await.unwrap();
    assert!(Client::spooled_files(spool.path()).unwrap().is_empty());
    client.shutdown().await.unwrap();
    let ids = stored(server.store.as_ref()).await;
    assert_eq!(ids.len(), 25);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 25, "no record twice");
}

#[tokio::test]
async fn a_full_queue_refuses_rather_than_grows() {
    let config = Config {
        queue_capacity: 5,
        batch_size: 2,
        max_attempts: 1000,
        backoff: Duration::from_secs(1),
        ..Config::new(
            "http://127.0.0.1:9",
            "ait_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
    };
    let client = Client::new(config).unwrap();
    let refused = (0..100)
        .map(|i| client.record(record(i)))
        .filter(|r| matches!(r, Err(Error::QueueFull(5))))
        .count();
    assert!(refused >= 90, "{refused} of 100 refused");
}

#[tokio::test]
async fn a_refused_record_is_reported_and_the_rest_of_its_batch_kept() {
    let (listener, url) = bound().await;
    let server = serve(listener).await;
    let client = Client::new(Config::new(&url, &server.key)).unwrap();
    client.record(record(1)).unwrap();
    client.record(json!({"tenant_id": "t", "temperature": "hot"})).unwrap();
    client.record(record(3)).unwrap();
    match client.flush().await {
        Err(Error::Refused { status: 422, detail }) => {
            assert!(detail.contains("temperature"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(server.store.as_ref()).await.len(), 2);
    client.flush().await.unwrap();
}

#[tokio::test]
async fn without_a_spool_records_the_server_never_took_are_reported_lost() {
    let config = Config {
        max_attempts: 2,
        backoff: Duration::from_millis(1),
        ..Config::new(
            "http://127.0.0.1:9",
            "ait_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
    };
    let client = Client::new(config).unwrap();
    client.record(record(1)).unwrap();
    assert!(matches!(client.flush().await, Err(Error::Lost(1))));
}

#[tokio::test]
async fn a_batch_with_an_already_stored_external_id_keeps_its_other_records() {
    let (listener, url) = bound().await;
    let server = serve(listener).await;
    let client = Client::new(Config::new(&url, &server.key)).unwrap();
    client.record(json!({"tenant_id": "t", "external_id": "call-1"})).unwrap();
    client.flush().await.unwrap();
    for id in ["call-2", "call-1", "call-3"] {
        client.record(json!({"tenant_id": "t", "external_id": id})).unwrap();
    }
    client.flush().await.unwrap();
    let mut ids = stored(server.store.as_ref()).await;
    ids.sort();
    assert_eq!(ids, ["call-1", "call-2", "call-3"]);
}

#[tokio::test]
async fn a_wrong_key_keeps_the_records_spooled_and_says_so() {
    let (listener, url) = bound().await;
    let server = serve(listener).await;
    let spool = tempfile::tempdir().unwrap();
    let config = Config {
        max_attempts: 1,
        spool_dir: Some(spool.path().to_owned()),
        ..Config::new(&url, "ait_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let client = Client::new(config.clone()).unwrap();
    client.record(record(1)).unwrap();
    assert!(matches!(client.flush().await, Err(Error::Refused { .. })));
    assert_eq!(Client::spooled_files(spool.path()).unwrap().len(), 1, "kept on disk");
    client.shutdown().await.ok();
    // With the right key, the same spool goes through.
    let client = Client::new(Config { api_key: server.key.clone(), ..config }).unwrap();
    client.flush().await.unwrap();
    assert!(Client::spooled_files(spool.path()).unwrap().is_empty());
    assert_eq!(stored(server.store.as_ref()).await.len(), 1);
}
