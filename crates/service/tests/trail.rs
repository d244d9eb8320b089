//! The shared use cases over a real store (SQLite in a temporary directory).

use std::sync::Arc;

use aitrail_core::access::{Actor, Role};
use aitrail_core::note::NoteSigner;
use aitrail_core::policy::Policy;
use aitrail_core::{Query, Record, Sent, TenantId};
use aitrail_service::retention::RetentionError;
use aitrail_service::{IngestError, KeyRequest, LogSigner, Trail};
use aitrail_store::Store;
use aitrail_store::retention::{Hold, Selector};
use aitrail_store_sqlite::SqliteStore;

/// A trail over a fresh SQLite store in `dir`, signing with a throwaway key.
fn trail(dir: &std::path::Path) -> Trail {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir, aitrail_core::seal::ContentKey::new([7; 32])).unwrap());
    let signer = NoteSigner::from_seed("test.aitrail", [3; 32]).unwrap();
    Trail::new(store, Arc::new(LogSigner::new(signer, std::time::Duration::from_secs(1))))
}

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
    let trail = trail(dir.path());
    let store = trail.store().clone();
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

#[tokio::test]
async fn keys_holds_and_erasure_each_leave_their_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trail = trail(dir.path());
    let tenant = TenantId::parse("t").unwrap();

    let request = KeyRequest { role: Role::Viewer, tenant: None, expires_at: None, label: None };
    assert!(trail.issue_key(request).await.is_err(), "a viewer key needs a tenant");
    let request = KeyRequest {
        role: Role::Viewer,
        tenant: Some(tenant.clone()),
        expires_at: None,
        label: None,
    };
    let (key, made) = trail.issue_key(request).await.unwrap();
    assert_eq!(&made.id, key.id());
    assert!(trail.revoke_key(&made.id).await.unwrap());
    assert!(trail.key(&made.id).await.unwrap().unwrap().revoked_at.is_some());

    let said = record(serde_json::json!({"tenant_id": "t", "user_id": "u-1", "prompt": "hi"}));
    trail.append(vec![said], Sent::One).await.unwrap();
    let hold = Hold {
        tenant_id: tenant.clone(),
        session_id: None,
        placed_at: aitrail_core::Timestamp::now(),
        reason: None,
    };
    trail.place_hold(&hold, Actor::Operator).await.unwrap();
    let user = Selector::User("u-1".into());
    assert!(matches!(
        trail.erase(&tenant, &user, Actor::Operator).await,
        Err(RetentionError::Held(_))
    ));
    assert!(trail.release_hold(&tenant, None, Actor::Operator).await.unwrap());
    let erased = trail.erase(&tenant, &user, Actor::Operator).await.unwrap();
    assert_eq!(erased.purged.records, 1);
    assert!(stored_content_gone(trail.store().as_ref()).await);
    // Each change is an event of the system log, in order.
    let events = stored(trail.store().as_ref(), "aitrail.system").await;
    let operations: Vec<String> = events
        .iter()
        .rev()
        .map(|e| e.record.operation_type.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(operations, ["hold.add", "hold.remove", "erasure"]);
}

async fn stored_content_gone(store: &dyn Store) -> bool {
    let kept = stored(store, "t").await;
    kept.len() == 1 && kept[0].record.prompt.is_none()
}

/// An erasure logs first, naming the seqs it will empty and its subject by pseudonym only;
/// should the deletion fail after the event (a crash, here a trigger that refuses it),
/// `verify` raises no false alarm, and the erasure run again finishes the work. Content
/// deleted with no event naming it is a finding.
#[tokio::test]
async fn an_erasure_is_logged_before_it_deletes_and_verify_tells_it_from_a_deletion() {
    use aitrail_store::verify::{Finding, verify_store};
    let dir = tempfile::tempdir().unwrap();
    let trail = trail(dir.path());
    let store = trail.store().clone();
    let tenant = TenantId::parse("t").unwrap();
    let said = |user: &str, session: &str, prompt: &str| {
        record(serde_json::json!({"tenant_id": "t", "user_id": user, "session_id": session,
            "prompt": prompt, "response": "answered"}))
    };
    let batch = vec![
        said("erin", "s1", "first of erin"),
        said("kept", "s1", "first of kept"),
        said("erin", "s2", "second of erin"),
        said("kept", "s3", "second of kept"),
    ];
    trail.append(batch, Sent::Batch).await.unwrap();
    trail.sign_pending().await.unwrap();
    let verifier = trail.signer().verifier();
    let findings =
        || async { verify_store(store.clone(), &verifier, &|_| {}).await.unwrap().findings };
    assert_eq!(findings().await, []);

    // The deletion fails after the event: the content the event names is still there.
    let db = rusqlite::Connection::open(dir.path().join("aitrail.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER no_delete BEFORE DELETE ON contents BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .unwrap();
    let erin = Selector::User("erin".into());
    assert!(trail.erase(&tenant, &erin, Actor::Operator).await.is_err());
    let events = stored(store.as_ref(), "aitrail.system").await;
    assert_eq!(events.len(), 1);
    let event = serde_json::to_string(&events[0].record.attributes).unwrap();
    assert!(!event.contains("erin"), "the subject in plain text: {event}");
    assert!(event.contains(r#""content_seqs":[[0,1],[2,3]]"#), "{event}");
    assert!(event.contains(r#""subject":{"user":"hmac-sha256:"#), "{event}");
    assert_eq!(findings().await, [], "an erasure logged but not yet done is no alarm");

    // Run again: done, and verify accepts the content it took.
    db.execute_batch("DROP TRIGGER no_delete").unwrap();
    let erased = trail.erase(&tenant, &erin, Actor::Operator).await.unwrap();
    assert_eq!(erased.purged.records, 2);
    trail.sign_pending().await.unwrap();
    assert_eq!(findings().await, []);

    // Content deleted behind the store's back is named.
    db.execute_batch("DELETE FROM contents WHERE pos = (SELECT pos FROM records WHERE tenant_id = 't' AND seq = 3)")
        .unwrap();
    let kept = stored(store.as_ref(), "t").await.into_iter().find(|r| r.seq == 3).unwrap();
    assert_eq!(
        findings().await,
        [Finding::ContentRemoved { tenant: tenant.clone(), seq: 3, id: kept.id.to_string() }]
    );
}

/// An erasure never destroys what it did not name: an empty id picks no one (it would
/// have matched the key of every record without a user), and a session placed under a hold
/// after its keys were retired keeps its key and content, readable (the hold wins).
#[tokio::test]
async fn an_erasure_destroys_only_the_keys_of_what_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let trail = trail(dir.path());
    let store = trail.store().clone();
    let tenant = TenantId::parse("t").unwrap();
    let records = vec![
        record(serde_json::json!({"tenant_id": "t", "prompt": "nobody's"})),
        record(
            serde_json::json!({"tenant_id": "t", "user_id": "u", "session_id": "s1", "prompt": "one"}),
        ),
        record(
            serde_json::json!({"tenant_id": "t", "user_id": "u", "session_id": "s2", "prompt": "two"}),
        ),
    ];
    trail.append(records, Sent::Batch).await.unwrap();
    for empty in [Selector::User(String::new()), Selector::Session(" ".into())] {
        let refused = trail.erase(&tenant, &empty, Actor::Operator).await;
        assert!(matches!(refused, Err(RetentionError::Store(_))), "{refused:?}");
    }

    // The keys of u are retired, then s2 is held before the rest of the erasure runs.
    let user = Selector::User("u".into());
    let retired = store.retire_keys(&tenant, &user).await.unwrap();
    assert_eq!(retired.len(), 2);
    let hold = Hold {
        tenant_id: tenant.clone(),
        session_id: Some("s2".into()),
        placed_at: aitrail_core::Timestamp::now(),
        reason: None,
    };
    store.add_hold(&hold).await.unwrap();
    let (seqs, held) = store.content_seqs(&tenant, &user).await.unwrap();
    assert_eq!((seqs.len(), held), (1, 1));
    store
        .purge_content(&tenant, &Selector::Seqs(seqs), aitrail_store::retention::Mode::Delete)
        .await
        .unwrap();
    assert_eq!(
        store.destroy_keys(&tenant, &retired).await.unwrap(),
        1,
        "the held session's key stays"
    );
    let prompts: Vec<Option<String>> = stored(store.as_ref(), "t")
        .await
        .iter()
        .map(|r| r.record.prompt.as_ref().map(|p| p.as_str().to_owned()))
        .collect();
    assert_eq!(prompts, [Some("two".into()), None, Some("nobody's".into())]);
}
