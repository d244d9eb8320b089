// Integrity: checkpoints and proofs, checked here with the core's verifiers and the
// published key alone.


async fn text(s: &Server, path: &str) -> (StatusCode, String) {
    let r = s.client.get(format!("{}{path}", s.base)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn published_key(s: &Server) -> Verifier {
    let (status, key) = text(s, "/v1/log-key").await;
    assert_eq!(status, StatusCode::OK);
    Verifier::parse(&key).unwrap()
}

/// Poll until the tenant's latest checkpoint covers `size` records (bounded: 10 s).
async fn wait_for_checkpoint(s: &Server, tenant: &str, size: u64) -> Checkpoint {
    let key = published_key(s).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, note) = text(s, &format!("/v1/checkpoint?tenant_id={tenant}")).await;
        if status == StatusCode::OK {
            let cp = Checkpoint::open(&note, &key).unwrap();
            if cp.size >= size {
                return cp;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint of size {size} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn b64s(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().unwrap().iter().map(|h| B64.decode(h.as_str().unwrap()).unwrap()).collect()
}

/// Check an inclusion body the way an auditor would, with the key alone.
fn check_inclusion(inclusion: &Value, key: &Verifier, id: &str) -> Checkpoint {
    let cp = Checkpoint::open(inclusion["checkpoint"].as_str().unwrap(), key).unwrap();
    let entry = B64.decode(inclusion["entry"].as_str().unwrap()).unwrap();
    let decoded = Entry::decode(&entry).unwrap();
    assert_eq!(decoded.id.to_string(), id);
    let index = inclusion["leaf_index"].as_u64().unwrap();
    assert_eq!(decoded.seq, index);
    assert_eq!(B64.decode(inclusion["leaf_hash"].as_str().unwrap()).unwrap(), leaf_hash(&entry));
    assert_eq!(inclusion["tree_size"].as_u64().unwrap(), cp.size);
    verify_inclusion(&leaf_hash(&entry), index, cp.size, &b64s(&inclusion["audit_path"]), &cp.root)
        .unwrap();
    cp
}

#[tokio::test]
async fn wait_checkpoint_answers_with_proofs_that_verify() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let key = published_key(&s).await;
    assert_eq!(key.name(), "test.aitrail");
    let (status, one) = s
        .post(
            "/v1/records?wait=checkpoint",
            "application/json",
            r#"{"tenant_id":"w","prompt":"secret plan"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    let cp = check_inclusion(&one["inclusion"], &key, one["id"].as_str().unwrap());
    assert_eq!(cp.origin, "test.aitrail/w");
    assert!(!one["inclusion"]["entry"].as_str().unwrap().is_empty());
    // The entry commits to the prompt without containing it.
    let entry = B64.decode(one["inclusion"]["entry"].as_str().unwrap()).unwrap();
    assert!(!String::from_utf8_lossy(&entry).contains("secret plan"));

    let batch = json!([{"tenant_id": "w"}, {"tenant_id": "w"}, {"tenant_id": "other"}]);
    let (status, many) =
        s.post("/v1/records?wait=checkpoint", "application/json", batch.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{many}");
    for r in many["results"].as_array().unwrap() {
        check_inclusion(&r["inclusion"], &key, r["id"].as_str().unwrap());
    }
    let (status, problem) = s.post("/v1/records?wait=forever", "application/json", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
}

#[tokio::test]
async fn proofs_and_consistency_verify_with_the_published_key() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let key = published_key(&s).await;
    let (_, first) =
        s.post_json(&json!([{"tenant_id": "p"}, {"tenant_id": "p"}, {"tenant_id": "p"}])).await;
    let old = wait_for_checkpoint(&s, "p", 3).await;
    let batch: Vec<Value> = (0..20).map(|_| json!({"tenant_id": "p"})).collect();
    s.post_json(&Value::Array(batch)).await;
    let new = wait_for_checkpoint(&s, "p", 23).await;

    let id = first["results"][1]["id"].as_str().unwrap();
    let (status, proof) = s.get(&format!("/v1/records/{id}/proof")).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(check_inclusion(&proof, &key, id).size, new.size);
    let (status, proof) = s.get(&format!("/v1/records/{id}/proof?tree_size=3")).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(check_inclusion(&proof, &key, id), old);

    let (status, c) = s.get("/v1/consistency?tenant_id=p&from=3").await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let signed_new = Checkpoint::open(c["checkpoint"].as_str().unwrap(), &key).unwrap();
    assert_eq!(c["to"].as_u64().unwrap(), signed_new.size);
    verify_consistency(3, signed_new.size, &b64s(&c["proof"]), &old.root, &signed_new.root)
        .unwrap();
    // A proof is not a proof of anything else.
    assert!(
        verify_consistency(3, signed_new.size, &b64s(&c["proof"]), &[7; 32], &signed_new.root)
            .is_err()
    );

    for (q, field) in [
        ("/v1/consistency?tenant_id=p&from=0", "from"),
        ("/v1/consistency?tenant_id=p&from=3&to=4", "to"),
        ("/v1/consistency?tenant_id=p&from=999", "from"),
        (&format!("/v1/records/{id}/proof?tree_size=4") as &str, "tree_size"),
    ] {
        let (status, problem) = s.get(q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {problem}");
        assert_eq!(problem_fields(&problem), [field], "{q}");
    }
    let (status, _) = s.get("/v1/records/0192b6d8-0000-7000-8000-000000000000/proof").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = text(&s, "/v1/checkpoint?tenant_id=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_record_not_yet_checkpointed_says_when_to_retry() {
    // The signer's first round is an hour away.
    let Some(s) = Server::with(BACKEND, Config::default(), Duration::from_secs(3600)).await
    else {
        return;
    };
    let (_, receipt) = s.post_json(&json!({"tenant_id": "late"})).await;
    let r = s
        .client
        .get(format!("{}/v1/records/{}/proof", s.base, receipt["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.headers()["retry-after"], "1");
}

#[tokio::test]
async fn an_external_id_is_logged_once_per_tenant() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let one = json!({"tenant_id": "t", "external_id": "log-123", "agent_id": "first"});
    let (status, receipt) = s.post_json(&one).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    // Again, alone, in a batch with a fresh one, or twice in one batch: refused whole.
    for body in [
        json!({"tenant_id": "t", "external_id": "log-123", "agent_id": "again"}),
        json!([{"tenant_id": "t", "external_id": "log-124"}, {"tenant_id": "t", "external_id": "log-123"}]),
        json!([{"tenant_id": "t", "external_id": "log-9"}, {"tenant_id": "t", "external_id": "log-9"}]),
    ] {
        let (status, problem) = s.post_json(&body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {problem}");
        assert_eq!(problem["type"], "urn:aitrail:problem:duplicate-external-id");
        assert!(problem["detail"].as_str().unwrap().contains("external_id already logged"));
    }
    // Another tenant may use the same one; records without one are never held to it.
    let (status, _) = s.post_json(&json!({"tenant_id": "u", "external_id": "log-123"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s.post_json(&json!([{"tenant_id": "t"}, {"tenant_id": "t"}])).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, page) = s.get("/v1/records?tenant_id=t&external_id=log-123").await;
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["agent_id"], "first");
    // Nothing of the refused requests was stored, and the log has no gap.
    let (_, page) = s.get("/v1/records?tenant_id=t").await;
    let seqs: Vec<u64> =
        page["records"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 1, 0]);
}
