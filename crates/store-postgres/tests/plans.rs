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
    let (client, connection) =
        tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
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
