// Records in: one, a batch, concurrent appends, and the conversation-audit-log service's
// payload.

#[tokio::test]
async fn single_record_round_trips_with_server_fields() {
    let Some(s) = Server::start(BACKEND).await else { return };
    // Raw text: a JSON number literal 0.70 must come back as "0.70".
    let body = r#"{"tenant_id": "org-1", "model_provider": "openai", "temperature": 0.70,
                   "cost_amount": "0.0031", "cost_currency": "CHF", "tokens_input": 12}"#;
    let (status, receipt) = s.post("/v1/records", "application/json", body).await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    assert_eq!(receipt["seq"], 0);
    let id = receipt["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let (status, record) = s.get(&format!("/v1/records/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["id"], receipt["id"]);
    assert_eq!(record["recorded_at"], receipt["recorded_at"]);
    // The literal the client sent, not a float's rendering of it.
    assert_eq!(record["temperature"], "0.70");
    assert_eq!(record["cost_amount"], "0.0031");
    assert_eq!(record["cost_currency"], "CHF");
    assert_eq!(record["tokens_input"], 12);
    assert_eq!(record["success"], true);
}

#[tokio::test]
async fn batches_answer_in_order_with_contiguous_seq() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch: Vec<Value> =
        (0..5).map(|i| json!({"tenant_id": "t", "agent_id": format!("a{i}")})).collect();
    let (status, body) = s.post_json(&Value::Array(batch)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let seqs: Vec<u64> =
        body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    let ndjson = "{\"tenant_id\":\"t\"}\n{\"tenant_id\":\"u\"}\n{\"tenant_id\":\"t\"}\n";
    let (status, body) = s.post("/v1/records", "application/x-ndjson", ndjson).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let seqs: Vec<u64> =
        body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 0, 6], "seq is per tenant");
    let first = body["results"][0]["id"].as_str().unwrap();
    let (_, record) = s.get(&format!("/v1/records/{first}")).await;
    assert_eq!(record["tenant_id"], "t");
}

#[tokio::test]
async fn a_large_batch_over_two_tenants_keeps_each_record_with_its_own_entry_and_content() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for t in ["even", "odd"] {
        assert_eq!(s.put_policy(t, &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    }
    // More records than one multi-row INSERT takes, content on every third only, so rows,
    // entries and contents are written in chunks that do not line up.
    let batch: Vec<Value> = (0..101)
        .map(|i| {
            let tenant = ["even", "odd"][i % 2];
            let mut r = json!({"tenant_id": tenant, "agent_id": format!("a{i}")});
            if i % 3 == 0 {
                r["prompt"] = json!(format!("prompt {i}"));
            }
            r
        })
        .collect();
    let (status, body) = s.post("/v1/records?wait=checkpoint", "application/json", Value::Array(batch).to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let results = body["results"].as_array().unwrap();
    for (i, receipt) in results.iter().enumerate() {
        let (_, record) = s.get(&format!("/v1/records/{}", receipt["id"].as_str().unwrap())).await;
        assert_eq!(record["tenant_id"], ["even", "odd"][i % 2], "{record}");
        assert_eq!((record["seq"].as_u64(), record["agent_id"].as_str()), (Some(i as u64 / 2), Some(format!("a{i}").as_str())));
        let prompt = (i % 3 == 0).then(|| format!("prompt {i}"));
        assert_eq!(record["prompt"].as_str(), prompt.as_deref(), "{record}");
    }
    // Listed newest first in the order they were sent; a filter finds its one record.
    let (_, page) = s.get("/v1/records?tenant_id=odd&limit=100").await;
    let listed: Vec<&str> = page["records"].as_array().unwrap().iter().map(|r| r["agent_id"].as_str().unwrap()).collect();
    let sent: Vec<String> = (0..101).rev().filter(|i| i % 2 == 1).map(|i| format!("a{i}")).collect();
    assert_eq!(listed, sent);
    let (_, page) = s.get("/v1/records?agent_id=a57").await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["records"][0]["prompt"], "prompt 57");
    // Every entry is in its log where its columns say, and every content matches its entry.
    let post = (reqwest::Method::POST, "/v1/verification".to_owned(), None);
    let (status, run) = send(&s.client, &s.base, &post).await;
    let sizes = (run["tenants"]["even"]["size"].as_u64(), run["tenants"]["odd"]["size"].as_u64());
    assert_eq!((status, run["ok"].as_bool(), sizes), (StatusCode::OK, Some(true), (Some(51), Some(50))), "{run}");
}

#[tokio::test]
async fn concurrent_appends_keep_seq_contiguous_and_unique() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..10 {
                let body = if i % 2 == 0 {
                    json!({"tenant_id": "busy", "agent_id": format!("w{w}")})
                } else {
                    json!([{"tenant_id": "busy"}, {"tenant_id": "busy"}])
                };
                let (status, answer) = s.post_json(&body).await;
                assert_eq!(status, StatusCode::CREATED, "{answer}");
                match answer.get("results") {
                    Some(rs) => seqs
                        .extend(rs.as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap())),
                    None => seqs.push(answer["seq"].as_u64().unwrap()),
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<u64> = (0..32 * 15).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn seed_000_payload_is_accepted_exactly_as_documented() {
    let Some(s) = Server::start(BACKEND).await else { return };
    // conversation-audit-log-model-metadata.md, "Create Audit Log (POST /audit/log)".
    let payload = r#"{
  "tenant_id": "org-123",
  "agent_id": "agent-001",
  "session_id": "sess-abc",
  "channel": "api",
  "prompt": "What is AI?",
  "response": "AI is...",
  "model_info": "gpt-4-turbo",
  "model_provider": "openai",
  "model_name": "gpt-4-turbo",
  "model_version": "2024-04-09",
  "deployment_id": null,
  "temperature": "0.7",
  "safety_mode": "strict",
  "model_config": {"top_p": 0.9}
}"#;
    let (status, stored) = s.post("/audit/log", "application/json", payload).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let sent: Value = serde_json::from_str(payload).unwrap();
    for (k, v) in sent.as_object().unwrap() {
        if v.is_null() {
            assert!(stored.get(k).is_none(), "{k} should be absent");
        } else {
            assert_eq!(&stored[k], v, "{k}");
        }
    }
    let (_, again) = s.get(&format!("/v1/records/{}", stored["id"].as_str().unwrap())).await;
    assert_eq!(again, stored);
    let (status, body) = s.post("/audit/log", "application/json", "[]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}
