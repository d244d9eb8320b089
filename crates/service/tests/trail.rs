//! The shared use cases over a real store (SQLite in a temporary directory).

use std::sync::Arc;

use aitrail_core::policy::Policy;
use aitrail_core::{Query, Record, Sent, TenantId};
use aitrail_service::{IngestError, Trail};
use aitrail_store::Store;
use aitrail_store_sqlite::SqliteStore;

fn record(json: serde_json::Value) -> Record {
    serde_json::from_value(json).unwrap()
}

async fn stored(store: &dyn Store, tenant: &str) -> Vec<aitrail_core::StoredRecord> {
    let query = Query::from_pairs([("tenant_id", tenant)]).unwrap();
    store.list(&query).await.unwrap().records
}

#[tokio::test]
async fn records_go_in_through_their_tenants_policy_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let trail = Trail::new(store.clone(), [3; 32]);
    let tenant = TenantId::parse("t").unwrap();

    // A policy set here applies to the next record at once: no content kept.
    let none = Policy::default().with("content_mode", "none").unwrap();
    trail.set_policy(&tenant, &none).await.unwrap();
    assert_eq!(trail.current_policy(&tenant).await.unwrap(), none);
    let said = record(serde_json::json!({"tenant_id": "t", "prompt": "what was said"}));
    trail.append(vec![said], Sent::One).await.unwrap();
    let kept = stored(store.as_ref(), "t").await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0].record.prompt.is_none() && kept[0].record.prompt_hash.is_none());

    // A credential in the config refuses the batch it is in, naming it; nothing is stored.
    let batch = vec![
        record(serde_json::json!({"tenant_id": "t"})),
        record(serde_json::json!({"tenant_id": "t",
            "model_config": {"key": "aws_access_key_id AKIAIOSFODNN7EXAMPLE"}})),
    ];
    match trail.append(batch, Sent::Batch).await {
        Err(IngestError::Refused(fields)) => {
            assert_eq!(fields.len(), 1, "{fields:?}");
            assert!(fields[0].field.starts_with("records[1].model_config"), "{fields:?}");
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(stored(store.as_ref(), "t").await.len(), 1, "nothing of the batch stored");
}
