// The behaviour tests of the HTTP API, included once per storage backend by tests/api.rs
// (`BACKEND` says which).



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

// ---------------------------------------------------------------------------------------
// Filters: one fixture, and for each filter the expected answer computed from the fixture
// by a predicate written here, not by the code under test.

struct Row {
    tenant: &'static str,
    provider: &'static str,
    model: &'static str,
    version: &'static str,
    deployment: Option<&'static str>,
    safety: &'static str,
    temperature: Option<&'static str>,
    op: &'static str,
    user: &'static str,
    agent: &'static str,
    session: &'static str,
    feature: &'static str,
    success: bool,
    day: u32,
}

const ROWS: &[Row] = &[
    Row {
        tenant: "org-1",
        provider: "openai",
        model: "gpt-4o",
        version: "2024-08-06",
        deployment: None,
        safety: "strict",
        temperature: Some("0.7"),
        op: "chat",
        user: "u1",
        agent: "a1",
        session: "s1",
        feature: "workspace",
        success: true,
        day: 1,
    },
    Row {
        tenant: "org-1",
        provider: "anthropic",
        model: "claude-3-sonnet",
        version: "20240229",
        deployment: None,
        safety: "balanced",
        temperature: Some("0.9"),
        op: "chat",
        user: "u2",
        agent: "a1",
        session: "s2",
        feature: "trustee",
        success: true,
        day: 5,
    },
    Row {
        tenant: "org-1",
        provider: "azure",
        model: "gpt-35-turbo",
        version: "0613",
        deployment: Some("prod-east"),
        safety: "relaxed",
        temperature: Some("0.80"),
        op: "completion",
        user: "u1",
        agent: "a2",
        session: "s1",
        feature: "workspace",
        success: false,
        day: 12,
    },
    Row {
        tenant: "org-2",
        provider: "azure",
        model: "gpt-4o",
        version: "2024-08-06",
        deployment: Some("prod-west"),
        safety: "strict",
        temperature: Some("1.2"),
        op: "embedding",
        user: "u3",
        agent: "a3",
        session: "s3",
        feature: "search",
        success: true,
        day: 20,
    },
    Row {
        tenant: "org-2",
        provider: "openai",
        model: "text-embedding-3",
        version: "1",
        deployment: None,
        safety: "strict",
        temperature: None,
        op: "embedding",
        user: "u3",
        agent: "a3",
        session: "s4",
        feature: "search",
        success: true,
        day: 28,
    },
    Row {
        tenant: "org-1",
        provider: "anthropic",
        model: "claude-3-haiku",
        version: "20240307",
        deployment: None,
        safety: "strict",
        temperature: Some("0.0"),
        op: "chat",
        user: "u2",
        agent: "a2",
        session: "s2",
        feature: "trustee",
        success: false,
        day: 30,
    },
];

fn temp(r: &Row) -> Option<f64> {
    r.temperature.map(|t| t.parse().unwrap())
}

async fn filter_case(query: &str, expect: impl Fn(&Row) -> bool) {
    let Some(s) = Server::start(BACKEND).await else { return };
    let mut ids = Vec::new();
    for r in ROWS {
        let mut v = json!({
            "tenant_id": r.tenant, "model_provider": r.provider, "model_name": r.model,
            "model_version": r.version, "deployment_id": r.deployment, "safety_mode": r.safety,
            "operation_type": r.op, "user_id": r.user, "agent_id": r.agent, "session_id": r.session,
            "feature_code": r.feature, "success": r.success,
            "event_time": format!("2026-10-{:02}T12:00:00Z", r.day),
        });
        if let Some(t) = r.temperature {
            v["temperature"] = Value::String(t.into());
        }
        let (status, receipt) = s.post_json(&v).await;
        assert_eq!(status, StatusCode::CREATED, "{receipt}");
        ids.push(receipt["id"].as_str().unwrap().to_owned());
    }
    let (status, page) = s.get(&format!("/v1/records?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    let got: Vec<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    // Newest first: the fixture in reverse order of insertion.
    let want: Vec<String> =
        ROWS.iter().zip(&ids).filter(|(r, _)| expect(r)).map(|(_, id)| id.clone()).rev().collect();
    assert!(
        !want.is_empty() && want.len() < ROWS.len(),
        "fixture should make {query} discriminate"
    );
    assert_eq!(got, want, "{query}");
}

macro_rules! filter_tests {
    ($($name:ident: $query:expr => $pred:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            filter_case($query, $pred).await;
        }
    )*};
}

filter_tests! {
    filter_tenant_id: "tenant_id=org-2" => |r| r.tenant == "org-2";
    filter_since_date: "since=2026-10-12" => |r| r.day >= 12;
    filter_since_rfc3339: "since=2026-10-12T12:00:01Z" => |r| r.day > 12;
    filter_until: "until=2026-10-12" => |r| r.day < 12;
    filter_model_provider: "model_provider=anthropic" => |r| r.provider == "anthropic";
    filter_model_provider_any_of: "model_provider=anthropic&model_provider=openai" => |r| r.provider != "azure";
    filter_model_name: "model_name=gpt-4o" => |r| r.model == "gpt-4o";
    filter_model_version: "model_version=2024-08-06" => |r| r.version == "2024-08-06";
    filter_deployment_id: "deployment_id=prod-east" => |r| r.deployment == Some("prod-east");
    filter_safety_mode: "safety_mode=strict" => |r| r.safety == "strict";
    filter_temperature_min: "temperature_min=0.8" => |r| temp(r).is_some_and(|t| t >= 0.8);
    filter_temperature_max: "temperature_max=0.8" => |r| temp(r).is_some_and(|t| t <= 0.8);
    filter_temperature_gt: "temperature_gt=0.8" => |r| temp(r).is_some_and(|t| t > 0.8);
    filter_temperature_lt: "temperature_lt=0.8" => |r| temp(r).is_some_and(|t| t < 0.8);
    filter_operation_type: "operation_type=embedding" => |r| r.op == "embedding";
    filter_user_id: "user_id=u1" => |r| r.user == "u1";
    filter_agent_id: "agent_id=a2" => |r| r.agent == "a2";
    filter_session_id: "session_id=s2" => |r| r.session == "s2";
    filter_feature_code: "feature_code=search" => |r| r.feature == "search";
    filter_success: "success=false" => |r| !r.success;
    // The auditor questions of the conversation-audit-log service, one call each.
    question_temperature_above_0_8: "temperature_gt=0.8" => |r| temp(r).is_some_and(|t| t > 0.8);
    question_claude_vs_gpt: "model_provider=anthropic&model_provider=openai&operation_type=chat" => |r| r.provider != "azure" && r.op == "chat";
    question_azure_last_month: "model_provider=azure&since=2026-10-01&until=2026-10-15" => |r| r.provider == "azure" && r.day < 15;
}

#[tokio::test]
async fn pagination_walks_every_record_once_newest_first() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch: Vec<Value> = (0..7).map(|_| json!({"tenant_id": "p"})).collect();
    let (_, body) = s.post_json(&Value::Array(batch)).await;
    let inserted: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = Vec::new();
    let mut q = "/v1/records?limit=3".to_owned();
    loop {
        let (status, page) = s.get(&q).await;
        assert_eq!(status, StatusCode::OK);
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 3);
        seen.extend(records.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => q = format!("/v1/records?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, inserted);
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear problem naming the field, and nothing stored.

async fn refused(
    s: &Server,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let before = s.all_ids().await.len();
    let (status, problem) = s.post("/v1/records", content_type, body).await;
    assert!(status.is_client_error(), "{status}: {problem}");
    assert_eq!(problem["status"], status.as_u16());
    assert!(problem["type"].as_str().unwrap().starts_with("urn:aitrail:problem:"));
    assert_eq!(s.all_ids().await.len(), before, "a refused request stored something");
    (status, problem)
}

#[tokio::test]
async fn a_batch_with_one_bad_record_stores_nothing() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let mut batch: Vec<Value> = (0..10).map(|_| json!({"tenant_id": "t"})).collect();
    batch[3]["temperature"] = json!("abc");
    let (status, problem) = refused(&s, "application/json", Value::Array(batch).to_string()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "records[3].temperature: not a decimal number");
    assert!(s.all_ids().await.is_empty());
}

#[tokio::test]
async fn every_bad_record_in_a_batch_is_named() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch = json!([{"tenant_id": "t", "tokens_input": -1}, {"tenant_id": "t"}, {"tenant_id": "t", "success": "yes"}]);
    let (_, problem) = refused(&s, "application/json", batch.to_string()).await;
    assert_eq!(problem_fields(&problem), ["records[0].tokens_input", "records[2].success"]);
}

#[tokio::test]
async fn invalid_json_is_400() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, problem) = refused(&s, "application/json", r#"{"tenant_id": "t",}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("body: malformed JSON at line 1"),
        "{problem}"
    );
}

#[tokio::test]
async fn wrong_types_are_422_naming_the_field() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for (body, field) in [
        (json!({"tenant_id": 5}), "tenant_id"),
        (json!({"tenant_id": "t", "model_name": 4}), "model_name"),
        (json!({"tenant_id": "t", "model_config": [1]}), "model_config"),
        (json!({"tenant_id": "t", "tokens_output": "12"}), "tokens_output"),
        (json!({"tenant_id": "t", "event_time": "yesterday"}), "event_time"),
        (json!({"tenant_id": "t", "input": {"record_count": true}}), "input.record_count"),
        (json!({"tenant_id": "t", "cost_currency": "chf"}), "cost_currency"),
        (json!({"tenant_id": "t", "model_name": ""}), "model_name"),
        (json!("just a string"), "record"),
    ] {
        let (status, problem) = refused(&s, "application/json", body.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(problem_fields(&problem), [field], "{body}: {problem}");
    }
}

#[tokio::test]
async fn negative_token_counts_are_refused() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, problem) =
        refused(&s, "application/json", r#"{"tenant_id":"t","tokens_input":-5}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "tokens_input: must not be negative");
}

#[tokio::test]
async fn temperature_abc_is_refused() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, problem) =
        refused(&s, "application/json", r#"{"tenant_id":"t","temperature":"abc"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "temperature: not a decimal number");
}

#[tokio::test]
async fn unknown_fields_are_listed() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (_, problem) =
        refused(&s, "application/json", r#"{"tenant_id":"t","modelName":"x","priceCHF":1}"#).await;
    assert_eq!(
        problem["detail"],
        "record: unknown fields: modelName, priceCHF (extensions go in `attributes`)"
    );
}

#[tokio::test]
async fn body_one_byte_over_the_limit_is_413() {
    let limit = 4096;
    let Some(s) = Server::with_config(BACKEND, Config { max_body_bytes: limit, ..Config::default() }).await else {
        return;
    };
    let record = |len: usize| {
        let base = r#"{"tenant_id":"t","prompt":""}"#.len();
        format!(r#"{{"tenant_id":"t","prompt":"{}"}}"#, "x".repeat(len - base))
    };
    let (status, body) = s.post("/v1/records", "application/json", record(limit)).await;
    assert_eq!(status, StatusCode::CREATED, "exactly at the limit is fine: {body}");
    let (status, problem) = refused(&s, "application/json", record(limit + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["detail"], format!("body larger than the limit of {limit} bytes"));
    // Without a Content-Length the limit holds too (a chunked upload, written by hand).
    let head = chunked_post(&s.base, &s.key, &record(limit + 1)).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(s.all_ids().await.len(), 1);
}

/// POST a body with Transfer-Encoding: chunked; returns the raw response.
async fn chunked_post(base: &str, key: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /v1/records HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(1000) {
        req.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), std::str::from_utf8(chunk).unwrap()));
    }
    req.push_str("0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let mut body = br#"{"tenant_id":"t","prompt":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    let (status, problem) = refused(&s, "application/json", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["detail"], "body: invalid UTF-8 at byte 27");
}

#[tokio::test]
async fn model_config_nested_10000_deep_is_refused() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let deep = format!(
        r#"{{"tenant_id":"t","model_config":{}1{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let (status, problem) = refused(&s, "application/json", deep).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "model_config: JSON nested deeper than 128 levels");
}

#[tokio::test]
async fn a_1_mib_prompt_is_stored_whole() {
    let Some(s) = Server::start(BACKEND).await else { return };
    assert_eq!(s.put_policy("t", &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    let prompt: String = "Ω".repeat(512 * 1024); // 1 MiB of two-byte characters
    let (status, receipt) = s.post_json(&json!({"tenant_id": "t", "prompt": prompt})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, record) = s.get(&format!("/v1/records/{}", receipt["id"].as_str().unwrap())).await;
    assert_eq!(record["prompt"].as_str().unwrap(), prompt);
}

#[tokio::test]
async fn empty_batches_are_refused() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, problem) = refused(&s, "application/json", "[]").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "records: empty batch: send at least one record");
    let (status, _) = refused(&s, "application/x-ndjson", "\n\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn over_10000_records_are_refused() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch = format!("[{}]", vec![r#"{"tenant_id":"t"}"#; 10_001].join(","));
    let (status, problem) = refused(&s, "application/json", batch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "records: 10001 records in one batch; at most 10000");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, _) = refused(&s, "text/plain", r#"{"tenant_id":"t"}"#).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_them() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for (q, field) in [
        ("temprature_min=0.8", "query"),
        ("since=last-month", "since"),
        ("temperature_min=abc", "temperature_min"),
        ("limit=1001", "limit"),
        ("cursor=xyz", "cursor"),
    ] {
        let (status, problem) = s.get(&format!("/v1/records?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(problem_fields(&problem), [field], "{q}");
    }
}

#[tokio::test]
async fn unknown_records_are_404_and_nothing_updates_or_deletes() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (_, receipt) = s.post_json(&json!({"tenant_id": "t"})).await;
    let id = receipt["id"].as_str().unwrap();
    for missing in ["/v1/records/0192b6d8-0000-7000-8000-000000000000", "/v1/records/not-a-uuid"] {
        let (status, problem) = s.get(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(problem["title"], "Not found");
    }
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let r = s
            .client
            .request(method.clone(), format!("{}/v1/records/{id}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.headers()["allow"], "GET, HEAD");
        let r = s
            .client
            .request(method.clone(), format!("{}/v1/records", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} on the collection");
    }
    let (status, _) = s.get(&format!("/v1/records/{id}")).await;
    assert_eq!(status, StatusCode::OK, "still there");
}

#[tokio::test]
async fn healthz() {
    let Some(s) = Server::start(BACKEND).await else { return };
    assert_eq!(s.get("/healthz").await, (StatusCode::OK, json!({"status": "ok"})));
}

/// The OpenAPI document and the router agree: every documented operation is served, and
/// every method a documented path serves is documented.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let (_, receipt) = s.post_json(&json!({"tenant_id": "t"})).await;
    let id = receipt["id"].as_str().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let served: BTreeSet<&str> = aitrail_server::PATHS.iter().copied().collect();
    assert_eq!(documented, served, "every served path documented, and no other");
    // The checkpoint and consistency routes need a signed checkpoint to answer 200.
    wait_for_checkpoint(&s, "t", 1).await;
    for (path, ops) in paths {
        let query = match path.as_str() {
            "/v1/checkpoint" => "?tenant_id=t",
            "/v1/consistency" => "?tenant_id=t&from=1",
            _ => "",
        };
        let url = format!("{}{}{query}", s.base, path.replace("{id}", id));
        let documented: BTreeSet<String> = ops.as_object().unwrap().keys().cloned().collect();
        for method in ["get", "post", "put", "patch", "delete"] {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s
                .client
                .request(m, &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            // Any answer but 405 and "no such route" is the route answering.
            let served = r.status() != StatusCode::METHOD_NOT_ALLOWED
                && !(r.status() == StatusCode::NOT_FOUND
                    && r.text().await.unwrap().contains("problem:no-route"));
            assert_eq!(served, documented.contains(method), "{method} {path}");
        }
    }
}

// ---------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------
// Access control: every route x every role x own and foreign tenant, exact statuses.

/// A request as the matrix sends it: method, path, JSON body.
type Call = (reqwest::Method, String, Option<Value>);

async fn send(client: &reqwest::Client, base: &str, (method, path, body): &Call) -> (StatusCode, Value) {
    let mut request = client.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Make a key through the admin API and answer it whole.
async fn make_key(s: &Server, role: &str, tenant: Option<&str>) -> (String, String) {
    let mut body = json!({"role": role});
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    let (status, key) = s.post("/v1/keys", "application/json", body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_route_answers_every_role_exactly() {
    use reqwest::Method;
    // Every role starts a full verification here, one after another.
    let config = Config { verification_cooldown: Duration::ZERO, ..Config::default() };
    let Some(s) = Server::with_config(BACKEND, config).await else { return };
    // One checkpointed record with content in each tenant.
    let mut ids = std::collections::HashMap::new();
    for t in ["own", "other"] {
        let body = json!({"tenant_id": t, "prompt": "secret prompt"}).to_string();
        let (status, r) = s.post("/v1/records?wait=checkpoint", "application/json", body).await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        ids.insert(t, r["id"].as_str().unwrap().to_owned());
    }
    let (other_key_id, _) = make_key(&s, "viewer", Some("other")).await;
    let mut keys = Vec::new();
    for role in ["ingest", "viewer", "auditor", "admin"] {
        keys.push((role, make_key(&s, role, Some("own")).await.1));
    }
    keys.push(("global admin", s.key.clone()));

    // (call for the own tenant, call for the foreign one, expected statuses by role in
    // the order ingest, viewer, auditor, admin, global admin: own then foreign).
    let record = |t: &str| Some(json!({"tenant_id": t}));
    let get = |p: String| (Method::GET, p, None);
    let cases: Vec<(Call, Call, [u16; 5], [u16; 5])> = vec![
        ((Method::POST, "/v1/records".into(), record("own")), (Method::POST, "/v1/records".into(), record("other")),
            [201, 403, 403, 201, 201], [403, 403, 403, 403, 201]),
        ((Method::POST, "/audit/log".into(), record("own")), (Method::POST, "/audit/log".into(), record("other")),
            [201, 403, 403, 201, 201], [403, 403, 403, 403, 201]),
        (get("/v1/records?tenant_id=own".into()), get("/v1/records?tenant_id=other".into()),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        (get(format!("/v1/records/{}", ids["own"])), get(format!("/v1/records/{}", ids["other"])),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        (get(format!("/v1/records/{}/proof", ids["own"])), get(format!("/v1/records/{}/proof", ids["other"])),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        (get("/v1/checkpoint?tenant_id=own".into()), get("/v1/checkpoint?tenant_id=other".into()),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        (get("/v1/consistency?tenant_id=own&from=1".into()), get("/v1/consistency?tenant_id=other&from=1".into()),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        (get("/v1/log-key".into()), get("/v1/log-key".into()),
            [200, 200, 200, 200, 200], [200, 200, 200, 200, 200]),
        (get("/openapi.json".into()), get("/openapi.json".into()),
            [200, 200, 200, 200, 200], [200, 200, 200, 200, 200]),
        (get("/v1/keys".into()), get("/v1/keys".into()),
            [403, 403, 403, 200, 200], [403, 403, 403, 200, 200]),
        ((Method::POST, "/v1/keys".into(), Some(json!({"role": "viewer", "tenant_id": "own"}))),
         (Method::POST, "/v1/keys".into(), Some(json!({"role": "viewer", "tenant_id": "other"}))),
            [403, 403, 403, 201, 201], [403, 403, 403, 403, 201]),
        ((Method::POST, "/v1/keys".into(), Some(json!({"role": "admin"}))),
         (Method::POST, "/v1/keys".into(), Some(json!({"role": "admin"}))),
            [403, 403, 403, 403, 201], [403, 403, 403, 403, 201]),
        ((Method::POST, format!("/v1/keys/{other_key_id}/revoke"), None),
         (Method::POST, format!("/v1/keys/{other_key_id}/revoke"), None),
            [403, 403, 403, 404, 200], [403, 403, 403, 404, 200]),
        (get("/v1/access-log".into()), get("/v1/access-log?tenant_id=other".into()),
            [403, 403, 200, 200, 200], [403, 403, 404, 404, 200]),
        (get("/v1/export?tenant_id=own&format=jsonl".into()), get("/v1/export?tenant_id=other&format=jsonl".into()),
            [403, 403, 200, 200, 200], [403, 403, 404, 404, 200]),
        (get("/healthz".into()), get("/healthz".into()),
            [200, 200, 200, 200, 200], [200, 200, 200, 200, 200]),
        (get("/v1/tenants/own/policy".into()), get("/v1/tenants/other/policy".into()),
            [403, 403, 200, 200, 200], [403, 403, 404, 404, 200]),
        ((Method::PUT, "/v1/tenants/own/policy".into(), Some(json!({"content_mode": "full"}))),
         (Method::PUT, "/v1/tenants/other/policy".into(), Some(json!({"content_mode": "full"}))),
            [403, 403, 403, 200, 200], [403, 403, 403, 404, 200]),
        ((Method::POST, "/v1/erasure".into(), Some(json!({"tenant_id": "own", "user_id": "nobody"}))),
         (Method::POST, "/v1/erasure".into(), Some(json!({"tenant_id": "other", "user_id": "nobody"}))),
            [403, 403, 403, 200, 200], [403, 403, 403, 404, 200]),
        (get("/v1/holds?tenant_id=own".into()), get("/v1/holds?tenant_id=other".into()),
            [403, 403, 200, 200, 200], [403, 403, 404, 404, 200]),
        ((Method::POST, "/v1/holds".into(), Some(json!({"tenant_id": "own", "session_id": "x"}))),
         (Method::POST, "/v1/holds".into(), Some(json!({"tenant_id": "other", "session_id": "x"}))),
            [403, 403, 403, 201, 201], [403, 403, 403, 404, 201]),
        (get("/v1/usage?tenant_id=own".into()), get("/v1/usage?tenant_id=other".into()),
            [403, 200, 200, 200, 200], [403, 404, 404, 404, 200]),
        ((Method::POST, "/v1/verification".into(), None), (Method::POST, "/v1/verification".into(), None),
            [403, 403, 200, 200, 200], [403, 403, 200, 200, 200]),
        (get("/v1/verification".into()), get("/v1/verification".into()),
            [403, 200, 200, 200, 200], [403, 200, 200, 200, 200]),
        ((Method::POST, "/v1/traces".into(), Some(json!({}))), (Method::POST, "/v1/traces".into(), Some(json!({}))),
            [200, 403, 403, 200, 200], [200, 403, 403, 200, 200]),
        // A key is no session: sessions are made by POST /v1/session (its own test).
        (get("/v1/session".into()), get("/v1/session".into()),
            [401, 401, 401, 401, 401], [401, 401, 401, 401, 401]),
    ];
    for (own, foreign, want_own, want_foreign) in &cases {
        for (i, (role, key)) in keys.iter().enumerate() {
            let client = http(key);
            for (call, want) in [(own, want_own[i]), (foreign, want_foreign[i])] {
                let (status, body) = send(&client, &s.base, call).await;
                assert_eq!(status.as_u16(), want, "{role} {} {}: {body}", call.0, call.1);
            }
        }
    }
}

#[tokio::test]
async fn another_tenants_record_is_answered_as_a_missing_one() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let body = json!({"tenant_id": "other", "prompt": "p"}).to_string();
    let (_, r) = s.post("/v1/records?wait=checkpoint", "application/json", body).await;
    let other = r["id"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let viewer = http(&make_key(&s, "viewer", Some("own")).await.1);
    for suffix in ["", "/proof"] {
        let (a, body_a) = send(&viewer, &s.base, &(reqwest::Method::GET, format!("/v1/records/{other}{suffix}"), None)).await;
        let (b, body_b) = send(&viewer, &s.base, &(reqwest::Method::GET, format!("/v1/records/{missing}{suffix}"), None)).await;
        assert_eq!((a, &body_a), (b, &body_b), "the same status and body");
        assert_eq!(a, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn viewers_see_records_without_content_and_proofs_without_salt() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let body = json!({"tenant_id": "own", "prompt": "p", "response": "r", "model_name": "m"}).to_string();
    let (_, r) = s.post("/v1/records?wait=checkpoint", "application/json", body).await;
    let id = r["id"].as_str().unwrap().to_owned();
    for (role, sees) in [("viewer", false), ("auditor", true)] {
        let client = http(&make_key(&s, role, Some("own")).await.1);
        let get = |p: String| (reqwest::Method::GET, p, None);
        let (_, record) = send(&client, &s.base, &get(format!("/v1/records/{id}"))).await;
        assert_eq!(record["model_name"], "m");
        assert_eq!(record.get("prompt").is_some(), sees, "{role}: {record}");
        assert_eq!(record.get("response").is_some(), sees, "{role}: {record}");
        let (_, page) = send(&client, &s.base, &get("/v1/records".into())).await;
        assert_eq!(page["records"][0].get("prompt").is_some(), sees, "{role}: {page}");
        assert_eq!(record.get("prompt_hash").is_some(), sees, "{role}: {record}");
        let (_, proof) = send(&client, &s.base, &get(format!("/v1/records/{id}/proof"))).await;
        assert_eq!(proof["content_salt"].is_string(), sees, "{role}: {proof}");
        // Looking a text up confirms or refutes a guess: only for who may read content.
        let (status, _) = send(&client, &s.base, &get("/v1/records?prompt_text=p".into())).await;
        assert_eq!(status, if sees { StatusCode::OK } else { StatusCode::FORBIDDEN }, "{role}");
    }
}

#[tokio::test]
async fn missing_malformed_unknown_revoked_and_expired_keys_get_401() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (id, key) = make_key(&s, "viewer", Some("own")).await;
    let list = (reqwest::Method::GET, "/v1/records".to_owned(), None);
    assert_eq!(send(&http(&key), &s.base, &list).await.0, StatusCode::OK);
    let unknown = aitrail_core::access::ApiKey::generate([9; 40]).reveal();
    let wrong_secret = format!("{}{}", &key[..key.len() - 1], if key.ends_with('A') { 'B' } else { 'A' });
    let expired = {
        let k = aitrail_core::access::ApiKey::generate([5; 40]);
        let mut stored = aitrail_store::StoredKey {
            id: k.id().clone(),
            role: Role::Admin,
            tenant: None,
            digest: k.digest(&s.secret),
            label: None,
            created_at: aitrail_core::Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap(),
            expires_at: None,
            revoked_at: None,
        };
        stored.expires_at = Some(aitrail_core::Timestamp::parse_rfc3339("2026-01-02T00:00:00Z").unwrap());
        s.store.add_key(&stored).await.unwrap();
        k.reveal()
    };
    let no_key = reqwest::Client::new();
    let (status, problem) = send(&no_key, &s.base, &list).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["detail"], "no Authorization: Bearer key (or dashboard session cookie)");
    for (what, presented, detail) in [
        ("malformed", "ait_nope".to_owned(), "malformed API key"),
        ("unknown", unknown, "invalid API key"),
        ("wrong secret", wrong_secret, "invalid API key"),
        ("expired", expired, "this API key has expired"),
    ] {
        let (status, problem) = send(&http(&presented), &s.base, &list).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(problem["detail"], detail, "{what}");
    }
    let revoke = (reqwest::Method::POST, format!("/v1/keys/{id}/revoke"), None);
    let (status, revoked) = send(&s.client, &s.base, &revoke).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (status, problem) = send(&http(&key), &s.base, &list).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked key stops working at once");
    assert_eq!(problem["detail"], "this API key was revoked");
    // The admin API lists keys without their secrets or digests.
    let (_, keys) = s.get("/v1/keys").await;
    let text = keys.to_string();
    assert!(!text.contains(&key[key.len() - 20..]) && !text.contains("digest"), "{text}");
}

#[tokio::test]
async fn every_access_is_in_the_access_log_which_is_itself_a_signed_log() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for t in ["own", "other"] {
        let body = json!({"tenant_id": t, "prompt": "p"}).to_string();
        let (status, _) = s.post("/v1/records?wait=checkpoint", "application/json", body).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let labelled = json!({"role": "viewer", "tenant_id": "own", "label": "support desk"});
    let (status, made) = s.post("/v1/keys", "application/json", labelled.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let viewer_id = made["id"].as_str().unwrap().to_owned();
    let (auditor_id, auditor) = make_key(&s, "auditor", Some("own")).await;
    let viewer = http(made["key"].as_str().unwrap());
    let get = |p: &str| (reqwest::Method::GET, p.to_owned(), None);
    let (_, page) = send(&viewer, &s.base, &get("/v1/records?model_name=x&model_name=y")).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (_, page) = send(&viewer, &s.base, &get("/v1/records")).await;
    let id = page["records"][0]["id"].as_str().unwrap().to_owned();
    send(&viewer, &s.base, &get(&format!("/v1/records/{id}/proof"))).await;
    // The global admin reads the other tenant; that is not the own tenant's auditor's to see.
    s.get("/v1/records?tenant_id=other").await;
    // A labelled global key reads the own tenant: its label is not the tenant's to read.
    let (_, ops) = s.post("/v1/keys", "application/json", json!({"role": "admin", "label": "ops"}).to_string()).await;
    let ops_id = ops["id"].as_str().unwrap().to_owned();
    send(&http(ops["key"].as_str().unwrap()), &s.base, &get("/v1/records?tenant_id=own")).await;
    let auditor = http(&auditor);
    let (status, log) = send(&auditor, &s.base, &get("/v1/access-log?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let events = log["records"].as_array().unwrap();
    let by = |key: &str| -> Vec<&Value> { events.iter().filter(|e| e["user_id"] == key).collect() };
    let viewer_events = by(&viewer_id);
    assert_eq!(viewer_events.len(), 3, "{events:?}");
    // Newest first: the proof, the listing, the filtered listing.
    let proof = viewer_events[0];
    assert_eq!(proof["operation_type"], "verify");
    assert_eq!(proof["feature_code"], "GET /v1/records/{id}/proof");
    assert_eq!(proof["agent_id"], "viewer");
    assert_eq!(proof["session_id"], "own");
    assert_eq!(proof["attributes"]["status"], 200);
    // The key's label is read from the keys table, beside the events; it was never logged.
    assert_eq!(log["key_labels"][&viewer_id], "support desk", "{log}");
    assert!(!proof.to_string().contains("support desk"), "{proof}");
    let filtered = viewer_events[2];
    assert_eq!(filtered["operation_type"], "read");
    assert_eq!(filtered["attributes"]["query"]["model_name"], json!(["x", "y"]));
    assert_eq!(filtered["attributes"]["records"], 0);
    assert_eq!(viewer_events[1]["attributes"]["records"], 1);
    // The admin's making of those keys is there too (tenant own); its read of other is not.
    let made = events.iter().filter(|e| e["operation_type"] == "key.create").count();
    assert_eq!(made, 2, "{events:?}");
    assert!(events.iter().all(|e| e["session_id"] == "own"), "only its tenant's accesses");
    assert!(by(&auditor_id).is_empty(), "this read is logged after it answers");
    assert_eq!(by(&ops_id).len(), 1, "{events:?}");
    assert!(log["key_labels"].get(&ops_id).is_none(), "{log}");
    // The global admin sees every tenant's, its own read of other included.
    let (_, all) = s.get("/v1/access-log?tenant_id=other&operation=read").await;
    let all = all["records"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["session_id"], "other");
    let (_, theirs) = s.get(&format!("/v1/access-log?key_id={ops_id}")).await;
    assert_eq!(theirs["key_labels"][&ops_id], "ops", "{theirs}");
    // The access log is a log like any other: checkpointed, and no client may write to it.
    let (status, problem) = s.post_json(&json!({"tenant_id": "aitrail.access"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("reserved"), "{problem}");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_others_go_on() {
    let config = Config { rate_limit: 5, ..Config::default() };
    let Some(s) = Server::with_config(BACKEND, config).await else { return };
    let (_, key) = make_key(&s, "viewer", Some("own")).await;
    let (_, other) = make_key(&s, "viewer", Some("own")).await;
    let list = (reqwest::Method::GET, "/v1/records".to_owned(), None);
    let client = http(&key);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..20 {
        let r = client.get(format!("{}/v1/records", s.base)).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            limited = Some((retry, r.json::<Value>().await.unwrap()));
        }
    }
    // A budget of 5 a second: the first 5 pass, 20 in a row cannot all.
    assert!(statuses[..5].iter().all(|&c| c == 200), "{statuses:?}");
    let (retry, problem) = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert!(retry >= 1);
    assert_eq!(problem["type"], "urn:aitrail:problem:rate-limited");
    assert_eq!(send(&http(&other), &s.base, &list).await.0, StatusCode::OK, "per key");
}

#[tokio::test]
async fn the_log_key_and_checkpoints_may_be_public_and_nothing_else() {
    let config = Config { public_log: true, ..Config::default() };
    let Some(s) = Server::with_config(BACKEND, config).await else { return };
    let body = json!({"tenant_id": "t"}).to_string();
    s.post("/v1/records?wait=checkpoint", "application/json", body).await;
    let anyone = reqwest::Client::new();
    let get = |p: &str| (reqwest::Method::GET, p.to_owned(), None);
    assert_eq!(send(&anyone, &s.base, &get("/v1/log-key")).await.0, StatusCode::OK);
    let (status, note) = send(&anyone, &s.base, &get("/v1/checkpoint?tenant_id=t")).await;
    assert_eq!(status, StatusCode::OK, "{note}");
    assert!(note.as_str().unwrap().starts_with("test.aitrail/t\n1\n"), "{note}");
    for path in ["/v1/records", "/v1/consistency?tenant_id=t&from=1", "/v1/access-log", "/openapi.json"] {
        assert_eq!(send(&anyone, &s.base, &get(path)).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Without the setting, the checkpoint needs a key; the log key never does (it is what
    // an auditor pins before trusting anything), not even a bad one.
    let Some(closed) = Server::start(BACKEND).await else { return };
    assert_eq!(send(&anyone, &closed.base, &get("/v1/checkpoint?tenant_id=t")).await.0, StatusCode::UNAUTHORIZED);
    let (status, key) = send(&anyone, &closed.base, &get("/v1/log-key")).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    assert!(key.as_str().unwrap().starts_with("test.aitrail+"), "{key}");
    let wrong = http("ait_0000000000000000_not-a-key");
    assert_eq!(send(&wrong, &closed.base, &get("/v1/log-key")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn key_routes_take_small_bodies_only() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let body = json!({"role": "viewer", "tenant_id": "t", "label": "x".repeat(100_000)});
    let (status, problem) = s.post("/v1/keys", "application/json", body.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let (_, keys) = s.get("/v1/keys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "nothing made: only the test's own key");
}

// ---------------------------------------------------------------------------------------
// Compliance export.

/// GET `path` with `client`: status, content type, body.
async fn fetch(client: &reqwest::Client, url: String) -> (StatusCode, String, Vec<u8>) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status();
    let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, kind, r.bytes().await.unwrap().to_vec())
}

/// Check an exported zip offline against `key`.
fn check_zip(bytes: &[u8], key: &Verifier) -> aitrail_export::check::Report {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    aitrail_export::check::bundle(file.path(), Some(key)).unwrap()
}

#[tokio::test]
async fn exports_prove_themselves_offline_and_are_in_the_access_log() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch: Vec<Value> = (0..30)
        .map(|i| {
            let provider = if i % 3 == 0 { "anthropic" } else { "openai" };
            json!({"tenant_id": "t", "model_provider": provider, "model_name": format!("{provider}-m"),
                   "prompt": format!("=cmd {i}"), "response": "fine, \"quoted\"", "tokens_input": 10,
                   "tokens_output": 2, "cost_amount": "0.001", "cost_currency": "USD",
                   "model_config": {"top_p": 0.90}})
        })
        .collect();
    let (status, answer) = s.post("/v1/records?wait=checkpoint", "application/json", json!(batch).to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let one = answer["results"][4]["id"].as_str().unwrap().to_owned();
    s.post_json(&json!({"tenant_id": "u", "prompt": "another tenant's"})).await;
    let key = published_key(&s).await;
    let (auditor_id, auditor) = make_key(&s, "auditor", Some("t")).await;
    let auditor = http(&auditor);
    let url = |q: &str| format!("{}/v1/export{q}", s.base);

    // The whole tenant: the bundle verifies, with the leaves of the whole log.
    let (status, kind, zip) = fetch(&auditor, url("")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/zip"));
    let report = check_zip(&zip, &key);
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!((report.records, report.tenant.as_str(), report.checkpoint_size), (30, "t", 30));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    assert!(archive.by_name("leaves.bin").is_ok());
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("conversation_logs.csv").unwrap(), &mut csv).unwrap();
    assert!(csv.starts_with("Log ID,Timestamp,Agent ID,Session ID,Channel,Prompt,Response,Model Info,Model Provider,Model Name,Model Version,Deployment ID,Temperature,Safety Mode,Model Config,"), "{csv}");
    assert!(csv.contains(",'=cmd 0,\"fine, \"\"quoted\"\"\",,anthropic,anthropic-m,"), "{csv}");
    assert_eq!(csv.matches("\r\n").count(), 31);
    let mut usage = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("usage_summary.csv").unwrap(), &mut usage).unwrap();
    assert!(usage.contains("provider,anthropic,,USD,10,100,20,0.01\r\n"), "{usage}");
    assert!(usage.contains("provider,openai,,USD,20,200,40,0.02\r\n"), "{usage}");

    // One record: an inclusion proof instead of every leaf.
    let (status, _, zip) = fetch(&auditor, url(&format!("?id={one}"))).await;
    assert_eq!(status, StatusCode::OK);
    let report = check_zip(&zip, &key);
    assert!(report.ok() && report.records == 1, "{:?}", report.findings);
    assert!(zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap().by_name("proofs.jsonl").is_ok());

    // A filter, and the single-file formats.
    let (_, kind, jsonl) = fetch(&auditor, url("?model_provider=anthropic&format=jsonl")).await;
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<Value> =
        String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..30).step_by(3).collect::<Vec<u64>>(), "oldest first");
    assert_eq!(lines[0]["content"]["prompt"], "=cmd 0", "JSON keeps exact values");
    let (_, kind, json_body) = fetch(&auditor, url("?format=json&model_provider=openai")).await;
    assert_eq!(kind, "application/json");
    let audits: Vec<Value> = serde_json::from_slice(&json_body).unwrap();
    assert_eq!(audits.len(), 20);
    assert_eq!(audits[0]["generation"]["provider"], "openai");
    assert_eq!(audits[0]["input"]["prompt"], "=cmd 1");
    assert_eq!(audits[0]["aitrail"]["seq"], 1);
    assert!(audits[0]["audit_id"].is_string() && audits[0]["reproducibility"].is_object());
    let (_, kind, csv) = fetch(&auditor, url("?format=csv&success=false")).await;
    assert!(kind.starts_with("text/csv"));
    assert_eq!(String::from_utf8(csv).unwrap().lines().count(), 1, "a header and no rows");

    // Bad requests name the parameter.
    let (status, problem) = s.get("/v1/export").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a key of no tenant must name one");
    assert_eq!(problem_fields(&problem), ["tenant_id"]);
    let (status, problem) = s.get("/v1/export?tenant_id=t&limit=5").await;
    assert_eq!((status, problem_fields(&problem)), (StatusCode::BAD_REQUEST, vec!["limit".to_owned()]));
    let (status, problem) = s.get("/v1/export?tenant_id=t&format=xml").await;
    assert_eq!((status, problem_fields(&problem)), (StatusCode::BAD_REQUEST, vec!["format".to_owned()]));

    // Every export is in the access log, its completion with the record count, before the
    // body ends.
    let (_, log) = s.get(&format!("/v1/access-log?tenant_id=t&key_id={auditor_id}&limit=1000")).await;
    let events = log["records"].as_array().unwrap();
    let ops: Vec<&str> = events.iter().map(|e| e["operation_type"].as_str().unwrap()).collect();
    assert_eq!(ops.iter().filter(|o| **o == "export").count(), 5, "{ops:?}");
    let done: Vec<&Value> = events.iter().filter(|e| e["operation_type"] == "export.completed").collect();
    assert_eq!(done.len(), 5, "{ops:?}");
    let counts: Vec<u64> = done.iter().map(|e| e["attributes"]["records"].as_u64().unwrap()).collect();
    assert_eq!(counts, [0, 20, 10, 1, 30], "newest first");
}

// ---------------------------------------------------------------------------------------
// Privacy: tenant policies and secrets at ingest.

#[tokio::test]
async fn a_tenant_keeps_as_much_content_as_its_policy_says() {
    let Some(s) = Server::start(BACKEND).await else { return };
    // 250 characters of 1 to 4 bytes: a preview cuts on characters, not bytes.
    let prompt: String = "aé€😀".repeat(62) + "xy";
    let body = |t: &str| {
        json!({"tenant_id": t, "prompt": prompt, "response": "short answer",
               "prompt_variables": {"name": "Ada"}})
    };
    let stored = |receipt: Value| {
        let s = &s;
        async move { s.get(&format!("/v1/records/{}", receipt["id"].as_str().unwrap())).await.1 }
    };
    // The default: a 200-character preview, no prompt variables.
    let (status, policy) = s.get("/v1/tenants/t/policy").await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    assert_eq!(policy["policy"]["content_mode"], "preview");
    assert_eq!(policy["policy"]["retention_days"], 180);
    assert_eq!(policy["policy"]["fail_mode"], "closed");
    let record = stored(s.post_json(&body("t")).await.1).await;
    let want: String = prompt.chars().take(200).collect();
    assert_eq!(record["prompt"], want.as_str());
    assert_eq!(record["response"], "short answer");
    assert_eq!(record["content_mode"], "preview");
    assert!(record.get("prompt_variables").is_none(), "{record}");
    // Full, then none; each applies from then on.
    assert_eq!(s.put_policy("t", &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    let record = stored(s.post_json(&body("t")).await.1).await;
    assert_eq!(record["prompt"], prompt.as_str());
    assert_eq!(record["prompt_variables"]["name"], "Ada");
    let (status, set) = s.put_policy("t", &json!({"content_mode": "none"})).await;
    assert_eq!((status, &set["policy"]["content_mode"]), (StatusCode::OK, &json!("none")));
    let record = stored(s.post_json(&body("t")).await.1).await;
    assert!(record.get("prompt").is_none() && record.get("response").is_none(), "{record}");
    assert_eq!(record["content_mode"], "none");
    // Another tenant still has the default.
    assert_eq!(stored(s.post_json(&body("u")).await.1).await["content_mode"], "preview");

    // Bad settings are refused, naming them; the policy in force stays.
    for (doc, field) in [
        (json!({"retention_days": 30}), "retention_days"),
        (json!({"retention_days": 365, "content_retention_days": 400}), "content_retention_days"),
        (json!({"content_mode": "everything"}), "content_mode"),
        (json!({"preview_chars": 0}), "preview_chars"),
        (json!({"retain": 1}), "retain"),
        (json!({"fail_mode": "sometimes"}), "fail_mode"),
    ] {
        let (status, problem) = s.put_policy("t", &doc).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{doc}: {problem}");
        assert_eq!(problem_fields(&problem), [field], "{doc}: {problem}");
    }
    assert_eq!(s.get("/v1/tenants/t/policy").await.1["policy"]["content_mode"], "none");
    // Less than six months needs the override, and the change is in the access log.
    let short = json!({"retention_days": 30, "retention_override": true, "content_retention_days": 7,
                       "fail_mode": "strict"});
    let (status, set) = s.put_policy("t", &short).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["policy"]["content_retention_days"], 7);
    assert_eq!(set["policy"]["fail_mode"], "strict");
    let (_, log) = s.get("/v1/access-log?tenant_id=t&operation=policy.set").await;
    let events = log["records"].as_array().unwrap();
    let status = |e: &Value| e["attributes"]["status"].as_u64().unwrap();
    let made: Vec<u64> = events.iter().map(status).collect();
    assert_eq!(made, [200, 422, 422, 422, 422, 422, 422, 200, 200], "refused changes too: {log}");
    let logged: Value =
        serde_json::from_str(events[0]["attributes"]["query"]["policy"][0].as_str().unwrap()).unwrap();
    assert_eq!(logged["retention_override"], true);
    assert_eq!(logged["retention_days"], 30);

    // Auditors read it, only admins change it, other tenants' keys see nothing.
    let (_, auditor) = make_key(&s, "auditor", Some("t")).await;
    let (_, other_admin) = make_key(&s, "admin", Some("u")).await;
    let put = |doc: &Value| (reqwest::Method::PUT, "/v1/tenants/t/policy".to_owned(), Some(doc.clone()));
    let get = (reqwest::Method::GET, "/v1/tenants/t/policy".to_owned(), None);
    assert_eq!(send(&http(&auditor), &s.base, &get).await.0, StatusCode::OK);
    assert_eq!(send(&http(&auditor), &s.base, &put(&json!({}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&http(&other_admin), &s.base, &get).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v1/tenants/aitrail.access/policy").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn secrets_refuse_a_config_and_are_redacted_from_content_or_refused_by_policy() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let key = "sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7";
    for (record, field) in [
        (json!({"tenant_id": "t", "model_config": {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}}),
         "model_config.headers.Authorization"),
        (json!({"tenant_id": "t", "attributes": {"calls": [{"note": format!("key {key}")}]}}),
         "attributes.calls[0].note"),
    ] {
        let (status, problem) = s.post_json(&record).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem_fields(&problem), [field], "{problem}");
        assert!(!problem.to_string().contains("dXNlcjpwYXNz") && !problem.to_string().contains(key));
    }
    // In a batch the record is named.
    let batch = json!([{"tenant_id": "t"}, {"tenant_id": "t", "model_config": {"api_key": "x1y2z3"}}]);
    let (status, problem) = s.post_json(&batch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_fields(&problem), ["records[1].model_config.api_key"]);
    assert!(s.all_ids().await.is_empty(), "nothing of a refused batch is kept");

    // In content: redacted and counted (with what the client redacted itself).
    let prompt = format!("my key is {key}, and AKIAIOSFODNN7EXAMPLE too");
    let (status, receipt) = s
        .post_json(&json!({"tenant_id": "t", "prompt": prompt, "secrets_redacted": 1,
                           "error_message": "401: Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz012345"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{receipt}");
    let (_, record) = s.get(&format!("/v1/records/{}", receipt["id"].as_str().unwrap())).await;
    assert_eq!(
        record["prompt"],
        "my key is [REDACTED:openai_api_key], and [REDACTED:aws_access_key_id] too"
    );
    assert_eq!(record["error_message"], "401: Incorrect API key provided: [REDACTED:openai_api_key]");
    assert_eq!(record["secrets_redacted"], 4);
    // A tenant that wants such records refused gets 422 naming the field.
    assert_eq!(s.put_policy("t", &json!({"secrets": "reject"})).await.0, StatusCode::OK);
    let (status, problem) = s.post_json(&json!({"tenant_id": "t", "response": prompt})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_fields(&problem), ["response"]);
    assert!(problem["detail"].as_str().unwrap().contains("openai_api_key"), "{problem}");
    assert!(!problem.to_string().contains(key));
}

#[tokio::test]
async fn erasure_deletes_a_persons_content_keeps_every_proof_and_respects_holds() {
    let Some(s) = Server::start(BACKEND).await else { return };
    assert_eq!(s.put_policy("t", &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    let secret_text = "my diagnosis is written in the stars 7731";
    let mut ids = Vec::new();
    for (user, session) in [("ada", "s1"), ("ada", "court-case"), ("bob", "s2"), ("ada", "s3")] {
        let (status, r) = s
            .post_json(&json!({"tenant_id": "t", "user_id": user, "session_id": session,
                               "prompt": format!("{secret_text} ({session})"), "response": "noted"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let checkpoint = wait_for_checkpoint(&s, "t", 4).await;
    let (status, hold) = s
        .post("/v1/holds", "application/json", json!({"tenant_id": "t", "session_id": "court-case", "reason": "case 12"}).to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Only admins erase.
    let (_, auditor) = make_key(&s, "auditor", Some("t")).await;
    let call = |body: Value| (reqwest::Method::POST, "/v1/erasure".to_owned(), Some(body));
    let (status, _) = send(&http(&auditor), &s.base, &call(json!({"user_id": "ada"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) = send(&s.client, &s.base, &call(json!({"tenant_id": "t"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    let (status, erased) =
        send(&s.client, &s.base, &call(json!({"tenant_id": "t", "user_id": "ada"}))).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!((erased["records"].as_u64(), erased["held"].as_u64()), (Some(2), Some(1)));
    let prompt_of = |i: usize| {
        let (s, id) = (&s, ids[i].clone());
        async move { s.get(&format!("/v1/records/{id}")).await.1.get("prompt").cloned() }
    };
    assert_eq!(prompt_of(0).await, None, "ada's content is gone");
    assert_eq!(prompt_of(3).await, None);
    assert!(prompt_of(1).await.is_some(), "the held session keeps its content");
    assert!(prompt_of(2).await.is_some(), "bob keeps his");
    // The records stay, with their proofs against the checkpoint signed before.
    let (status, proof) = s.get(&format!("/v1/records/{}/proof?tree_size=4", ids[0])).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert!(proof["content_salt"].is_null(), "the salt went with the content: {proof}");
    let entry = s.store.entry(ids[0].parse().unwrap()).await.unwrap().unwrap();
    let leaf = leaf_hash(&entry.entry);
    let path: Vec<[u8; 32]> = proof["audit_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    verify_inclusion(&leaf, entry.seq, checkpoint.size, &path, &checkpoint.root).unwrap();
    // What remains cannot confirm a guess: the entry holds a commitment under a salt
    // that no longer exists, not the text nor its plain hash.
    assert!(entry.content.is_none());
    let text = String::from_utf8_lossy(&entry.entry).into_owned();
    let guess = format!("{secret_text} (s1)");
    assert!(!text.contains(&guess));
    assert!(!text.contains(&hex::encode(sha2::Sha256::digest(guess.as_bytes()))));
    // The whole store still verifies.
    let verifier = published_key(&s).await;
    let report = aitrail_store::verify::verify_store(s.store.clone(), &verifier, &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);

    // The erasure is in the system log; a tenant-wide hold stops the next one.
    let (_, events) = s.get("/v1/records?tenant_id=aitrail.system").await;
    let events = events["records"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["operation_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["erasure", "hold.add"], "{events:?}");
    assert_eq!(events[0]["session_id"], "t");
    assert_eq!(events[0]["attributes"]["content_purged"], 2);
    let (status, _) = s.post("/v1/holds", "application/json", json!({"tenant_id": "t"}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) =
        send(&s.client, &s.base, &call(json!({"tenant_id": "t", "user_id": "bob"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(prompt_of(2).await.is_some());
    let (_, holds) = s.get("/v1/holds?tenant_id=t").await;
    assert_eq!(holds["holds"].as_array().unwrap().len(), 2, "{holds}");
    let release = json!({"tenant_id": "t"}).to_string();
    assert_eq!(s.post("/v1/holds/release", "application/json", release.clone()).await.0, StatusCode::OK);
    assert_eq!(s.post("/v1/holds/release", "application/json", release).await.0, StatusCode::NOT_FOUND);
    let (status, erased) =
        send(&s.client, &s.base, &call(json!({"tenant_id": "t", "user_id": "bob"}))).await;
    assert_eq!((status, erased["records"].as_u64()), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn retention_deletes_old_content_but_held_and_keeps_the_log_valid() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for t in ["short", "long", "frozen"] {
        assert_eq!(s.put_policy(t, &json!({"content_mode": "full"})).await.0, StatusCode::OK);
        for session in ["a", "kept"] {
            let r = json!({"tenant_id": t, "session_id": session, "prompt": format!("{t} {session}")});
            assert_eq!(s.post_json(&r).await.0, StatusCode::CREATED);
        }
    }
    let short = json!({"content_mode": "full", "retention_days": 30, "retention_override": true,
                       "content_retention_days": 1});
    assert_eq!(s.put_policy("short", &short).await.0, StatusCode::OK);
    assert_eq!(s.put_policy("frozen", &short).await.0, StatusCode::OK);
    for hold in [json!({"tenant_id": "short", "session_id": "kept"}), json!({"tenant_id": "frozen"})] {
        assert_eq!(s.post("/v1/holds", "application/json", hold.to_string()).await.0, StatusCode::CREATED);
    }
    // Two days on, a dry run counts; a run deletes, but for holds.
    let later = Timestamp::from_datetime(Timestamp::now().datetime() + Duration::from_secs(2 * 86_400)).unwrap();
    let dry = aitrail_store::retention::run(s.store.as_ref(), later, aitrail_store::retention::Mode::DryRun).await.unwrap();
    let by = |run: &aitrail_store::retention::Run, t: &str| {
        let t = run.tenants.iter().find(|r| r.tenant_id.as_str() == t).unwrap();
        (t.purged.records, t.purged.held, t.held)
    };
    assert_eq!(by(&dry, "short"), (1, 1, false));
    assert_eq!(by(&dry, "long"), (0, 0, false));
    assert_eq!(by(&dry, "frozen"), (0, 0, true));
    assert!(dry.event_id.is_none());
    let (_, page) = s.get("/v1/records?tenant_id=short&session_id=a").await;
    assert_eq!(page["records"][0]["prompt"], "short a", "a dry run deletes nothing");
    let run = aitrail_store::retention::run(s.store.as_ref(), later, aitrail_store::retention::Mode::Delete).await.unwrap();
    assert_eq!(by(&run, "short"), (1, 1, false));
    let prompt = |t: &str, session: &str| {
        let (s, q) = (&s, format!("/v1/records?tenant_id={t}&session_id={session}"));
        async move { s.get(&q).await.1["records"][0].get("prompt").cloned() }
    };
    assert_eq!(prompt("short", "a").await, None);
    assert_eq!(prompt("short", "kept").await, Some(json!("short kept")));
    assert_eq!(prompt("long", "a").await, Some(json!("long a")));
    assert_eq!(prompt("frozen", "a").await, Some(json!("frozen a")));
    // One event for the run, with every tenant's cut-off and counts.
    let event = s.get("/v1/records?tenant_id=aitrail.system&operation_type=retention").await.1;
    let event = &event["records"][0];
    assert_eq!(event["id"].as_str(), run.event_id.map(|id| id.to_string()).as_deref());
    let tenants = event["attributes"]["tenants"].as_array().unwrap();
    assert!(tenants.iter().any(|t| t["tenant_id"] == "short" && t["records"] == 1), "{event}");
    wait_for_checkpoint(&s, "aitrail.system", 3).await;
    let verifier = published_key(&s).await;
    let report = aitrail_store::verify::verify_store(s.store.clone(), &verifier, &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);

    // A month on, short's records past its 30 days go but for the held session; their
    // leaves stay, the run says which seqs went, and the log still verifies.
    let (_, before) = s.get("/v1/records?tenant_id=short&session_id=a").await;
    let gone = before["records"][0]["id"].as_str().unwrap().to_owned();
    let month = Timestamp::from_datetime(Timestamp::now().datetime() + Duration::from_secs(31 * 86_400)).unwrap();
    let run = aitrail_store::retention::run(s.store.as_ref(), month, aitrail_store::retention::Mode::Delete).await.unwrap();
    let short = run.tenants.iter().find(|t| t.tenant_id.as_str() == "short").unwrap();
    assert_eq!((short.records_removed, short.records_held), (1, 1));
    assert_eq!(short.removed_seqs, [[0, 1]]);
    let frozen = run.tenants.iter().find(|t| t.tenant_id.as_str() == "frozen").unwrap();
    assert!(frozen.held && frozen.records_removed == 0);
    assert_eq!(s.get(&format!("/v1/records/{gone}")).await.0, StatusCode::NOT_FOUND);
    let (_, left) = s.get("/v1/records?tenant_id=short").await;
    let left = left["records"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["session_id"], "kept");
    let checkpoint = wait_for_checkpoint(&s, "short", 2).await;
    let (status, proof) = s.get(&format!("/v1/records/{}/proof", left[0]["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["tree_size"], checkpoint.size, "{proof}");
    let report = aitrail_store::verify::verify_store(s.store.clone(), &verifier, &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn a_known_text_is_found_by_its_keyed_hash_whatever_is_kept_and_not_after_erasure() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let said = "Please summarise the merger terms for Project Nightingale";
    let long = format!("{said} {}", "and more ".repeat(40));
    assert_eq!(s.put_policy("t", &json!({"content_mode": "hash"})).await.0, StatusCode::OK);
    let (_, hashed) = s.post_json(&json!({"tenant_id": "t", "user_id": "ada", "prompt": said})).await;
    let (_, previewed) = s.post_json(&json!({"tenant_id": "u", "user_id": "ada", "prompt": long})).await;
    let (_, record) = s.get(&format!("/v1/records/{}", hashed["id"].as_str().unwrap())).await;
    assert!(record.get("prompt").is_none(), "{record}");
    assert_eq!(record["content_mode"], "hash");
    let shown = record["prompt_hash"].as_str().unwrap().to_owned();
    assert!(shown.starts_with("hmac-sha256:") && shown.len() == 12 + 64, "{shown}");
    // Keyed: not the text's plain SHA-256, and another tenant's hash of it differs.
    assert!(!shown.contains(&hex::encode(sha2::Sha256::digest(said.as_bytes()))));
    let find = |tenant: &str, text: &str| {
        let q = format!("/v1/records?tenant_id={tenant}&prompt_text={}", urlencode(text));
        let s = &s;
        async move {
            let (status, page) = s.get(&q).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(find("t", said).await, [hashed["id"].as_str().unwrap()]);
    assert!(find("t", "Please summarise the merger terms").await.is_empty());
    // A preview keeps 200 characters; the whole text is still found.
    assert_eq!(find("u", &long).await, [previewed["id"].as_str().unwrap()]);
    assert!(find("u", said).await.is_empty());
    let (_, other) = s.get(&format!("/v1/records/{}", previewed["id"].as_str().unwrap())).await;
    assert_ne!(other["prompt_hash"], record["prompt_hash"]);
    // A global key must name the tenant (texts are hashed per tenant).
    let (status, problem) = s.get(&format!("/v1/records?prompt_text={}", urlencode(said))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    // The text looked up is not kept in the access log.
    let (_, log) = s.get("/v1/access-log?tenant_id=t&operation=read").await;
    assert!(!log.to_string().contains("Nightingale"), "{log}");
    assert!(log.to_string().contains("(withheld)"), "{log}");
    // Erased with the content: nothing left to confirm the text with.
    let erase = json!({"tenant_id": "t", "user_id": "ada"}).to_string();
    assert_eq!(s.post("/v1/erasure", "application/json", erase).await.0, StatusCode::OK);
    assert!(find("t", said).await.is_empty());
    let (_, record) = s.get(&format!("/v1/records/{}", hashed["id"].as_str().unwrap())).await;
    assert!(record.get("prompt_hash").is_none(), "{record}");
    // Nothing at all in mode none.
    assert_eq!(s.put_policy("t", &json!({"content_mode": "none"})).await.0, StatusCode::OK);
    let (_, none) = s.post_json(&json!({"tenant_id": "t", "prompt": said})).await;
    let (_, record) = s.get(&format!("/v1/records/{}", none["id"].as_str().unwrap())).await;
    assert!(record.get("prompt_hash").is_none() && record.get("prompt").is_none(), "{record}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}


/// A client that keeps cookies and sends no key, as a browser.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

#[tokio::test]
async fn a_dashboard_session_stands_for_its_key_and_changes_need_the_csrf_token() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (key_id, key) = make_key(&s, "admin", Some("own")).await;
    let b = browser();
    let url = |p: &str| format!("{}{p}", s.base);
    // Sign-in takes JSON only (a cross-site form cannot sign a browser in) and a real key.
    let form = b.post(url("/v1/session")).form(&[("api_key", key.as_str())]).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);
    let wrong = b.post(url("/v1/session")).json(&json!({"api_key": "ait_nope"})).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let r = b.post(url("/v1/session")).json(&json!({"api_key": key})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    assert!(!cookie.contains(key.splitn(3, '_').nth(2).unwrap()), "the cookie holds no key secret");
    let session: Value = r.json().await.unwrap();
    assert_eq!((session["role"].as_str(), session["key_id"].as_str()), (Some("admin"), Some(key_id.as_str())));
    assert_eq!(session["tenant_id"], "own");
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();

    // Reads need only the cookie; the key's role and tenant apply.
    let me: Value = b.get(url("/v1/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["csrf_token"], csrf.as_str());
    assert_eq!(b.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(b.get(url("/v1/records?tenant_id=other")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // Changes need the CSRF token too: none, or another session's, is 403 and stores nothing.
    let record = json!({"tenant_id": "own", "model_name": "from-the-browser"});
    let bare = b.post(url("/v1/records")).json(&record).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let problem: Value = bare.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("X-CSRF-Token"), "{problem}");
    let other: Value = browser().post(url("/v1/session")).json(&json!({"api_key": key})).send().await.unwrap().json().await.unwrap();
    let foreign = other["csrf_token"].as_str().unwrap();
    let r = b.post(url("/v1/records")).header("x-csrf-token", foreign).json(&record).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, page) = send(&s.client, &s.base, &(reqwest::Method::GET, "/v1/records?model_name=from-the-browser".into(), None)).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0, "nothing stored: {page}");
    let r = b.post(url("/v1/records")).header("x-csrf-token", &csrf).json(&record).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A forged or altered cookie is no session.
    let token = cookie.split(';').next().unwrap().strip_prefix("aitrail_session=").unwrap();
    let forged = token.replacen(".", ".9", 1);
    for bad in [forged.as_str(), "x.y.z.w", ""] {
        let r = reqwest::Client::new().get(url("/v1/records")).header("cookie", format!("aitrail_session={bad}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Signing in and out is in the access log.
    let r = b.delete(url("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "sign-out needs its CSRF token too");
    let r = b.delete(url("/v1/session")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(b.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (_, log) = send(&s.client, &s.base, &(reqwest::Method::GET, format!("/v1/access-log?key_id={key_id}"), None)).await;
    let ops: Vec<&str> = log["records"].as_array().unwrap().iter().map(|r| r["operation_type"].as_str().unwrap()).collect();
    assert!(ops.contains(&"sign-in") && ops.contains(&"sign-out"), "{ops:?}");
    // Revoking the key ends its sessions at once.
    let (_, other_key) = make_key(&s, "viewer", Some("own")).await;
    let c = browser();
    c.post(url("/v1/session")).json(&json!({"api_key": other_key})).send().await.unwrap();
    assert_eq!(c.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::OK);
    let id = other_key.split('_').nth(1).unwrap();
    let (status, _) = s.post(&format!("/v1/keys/{id}/revoke"), "application/json", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tls_proxy_makes_the_session_cookie_secure() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (_, key) = make_key(&s, "viewer", Some("own")).await;
    let r = browser()
        .post(format!("{}/v1/session", s.base))
        .header("x-forwarded-proto", "https")
        .json(&json!({"api_key": key}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-aitrail_session=") && cookie.contains("; Secure"), "{cookie}");
    // ... and that cookie signs the browser in.
    let token = cookie.split(';').next().unwrap();
    let over_tls = |cookie: String| {
        let url = format!("{}/v1/session", s.base);
        async move {
            let r = reqwest::Client::new().get(url).header("cookie", cookie).header("x-forwarded-proto", "https");
            r.send().await.unwrap().status()
        }
    };
    assert_eq!(over_tls(token.to_owned()).await, StatusCode::OK);
    // Under TLS the plain name is not read: a sibling subdomain could have planted it.
    let planted = token.replacen("__Host-aitrail_session", "aitrail_session", 1);
    assert_eq!(over_tls(planted).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn usage_sums_records_tokens_and_cost_by_provider_model_time_user_and_feature() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let at = |d: u32, h: u32| format!("2026-11-{d:02}T{h:02}:30:00Z");
    let rows = [
        ("openai", "gpt-4o", "u1", "chat", 10, 5, "0.50", at(20, 9)),
        ("openai", "gpt-4o", "u2", "chat", 20, 10, "0.25", at(20, 10)),
        ("openai", "gpt-4o-mini", "u1", "search", 1, 1, "0.01", at(21, 9)),
        ("anthropic", "claude-3-haiku", "u1", "chat", 7, 3, "1.00", at(21, 23)),
    ];
    let records: Vec<Value> = rows.iter().map(|(p, m, u, f, i, o, c, t)| json!({
        "tenant_id": "own", "model_provider": p, "model_name": m, "user_id": u, "feature_code": f,
        "tokens_input": i, "tokens_output": o, "cost_amount": c, "cost_currency": "USD", "event_time": t})).collect();
    let (status, _) = s.post("/v1/records", "application/json", json!(records).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    // Another tenant's records are not summed.
    let (status, _) = s.post("/v1/records", "application/json", json!({"tenant_id": "other", "model_provider": "openai", "event_time": at(20, 9)}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    let viewer = http(&make_key(&s, "viewer", Some("own")).await.1);
    let get = |p: &str| (reqwest::Method::GET, p.to_owned(), None);
    let (status, u) = send(&viewer, &s.base, &get("/v1/usage?since=2026-11-01&until=2026-12-01")).await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["bucket"], "day");
    assert_eq!((u["since"].as_str(), u["until"].as_str()), (Some("2026-11-01T00:00:00Z"), Some("2026-12-01T00:00:00Z")));
    assert_eq!((u["totals"]["records"].as_u64(), u["totals"]["tokens_input"].as_u64()), (Some(4), Some(38)));
    assert_eq!(u["totals"]["cost"]["USD"], 1.76);
    assert_eq!(u["by_provider"][0]["key"], "openai");
    assert_eq!(u["by_provider"][0]["records"], 3);
    assert_eq!(u["by_provider"][1]["cost"]["USD"], 1, "summed exactly: 1.00 is 1");
    assert_eq!(u["by_model"][0]["key"], "openai/gpt-4o");
    let days: Vec<(&str, &str, u64)> = u["over_time"].as_array().unwrap().iter()
        .map(|p| (p["at"].as_str().unwrap(), p["model"].as_str().unwrap(), p["records"].as_u64().unwrap())).collect();
    assert_eq!(days, [
        ("2026-11-20T00:00:00Z", "gpt-4o", 2),
        ("2026-11-21T00:00:00Z", "claude-3-haiku", 1),
        ("2026-11-21T00:00:00Z", "gpt-4o-mini", 1),
    ]);
    assert_eq!((u["top_users"][0]["key"].as_str(), u["top_users"][0]["records"].as_u64()), (Some("u1"), Some(3)));
    assert_eq!(u["top_features"][0]["key"], "chat");
    // Hours on request; the filters are the listing's.
    let (_, u) = send(&viewer, &s.base, &get("/v1/usage?since=2026-11-20&until=2026-11-21&bucket=hour&model_provider=openai")).await;
    let hours: Vec<&str> = u["over_time"].as_array().unwrap().iter().map(|p| p["at"].as_str().unwrap()).collect();
    assert_eq!(hours, ["2026-11-20T09:00:00Z", "2026-11-20T10:00:00Z"]);
    // Without since, the last 30 days, and the answer says from when.
    let (_, u) = send(&viewer, &s.base, &get("/v1/usage")).await;
    let since = aitrail_core::Timestamp::parse_rfc3339(u["since"].as_str().unwrap()).unwrap();
    let days = (aitrail_core::Timestamp::now().unix_nanos() - since.unix_nanos()) / 86_400_000_000_000;
    assert_eq!((days, u["until"].is_null()), (30, true), "{u}");
    for (bad, named) in [("bucket=week", "bucket"), ("limit=5", "limit"), ("temperature_min=x", "temperature_min")] {
        let (status, problem) = send(&viewer, &s.base, &get(&format!("/v1/usage?{bad}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(problem.to_string().contains(named), "{bad}: {problem}");
    }
}

#[tokio::test]
async fn usage_and_the_exports_summary_sum_costs_exactly_and_agree() {
    let Some(s) = Server::start(BACKEND).await else { return };
    // Each a cost binary floating point cannot hold: summed as f64 they make 0.6000000000000001.
    let records: Vec<Value> = ["0.1", "0.2", "0.3"].iter().map(|c| json!({"tenant_id": "t",
        "model_provider": "openai", "cost_amount": c, "cost_currency": "USD"})).collect();
    let (status, _) = s.post("/v1/records?wait=checkpoint", "application/json", json!(records).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    let auditor = http(&make_key(&s, "auditor", Some("t")).await.1);
    let get = |p: &str| (reqwest::Method::GET, p.to_owned(), None);
    let (_, u) = send(&auditor, &s.base, &get("/v1/usage")).await;
    assert_eq!(u["totals"]["cost"]["USD"].to_string(), "0.6", "{u}");
    assert_eq!(u["by_provider"][0]["cost"]["USD"].to_string(), "0.6", "{u}");
    let (status, _, zip) = fetch(&auditor, format!("{}/v1/export", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let mut usage = String::new();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    std::io::Read::read_to_string(&mut archive.by_name("usage_summary.csv").unwrap(), &mut usage).unwrap();
    assert!(usage.contains("provider,openai,,USD,3,0,0,0.6\r\n"), "{usage}");
}

#[tokio::test]
async fn a_full_verification_from_the_api_is_kept_and_shows_each_tenant_its_own_findings() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for t in ["own", "other"] {
        let batch = json!([{"tenant_id": t}, {"tenant_id": t}, {"tenant_id": t}]).to_string();
        let (status, _) = s.post("/v1/records?wait=checkpoint", "application/json", batch).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let get = |p: &str| (reqwest::Method::GET, p.to_owned(), None);
    let post = (reqwest::Method::POST, "/v1/verification".to_owned(), None);
    let (status, _) = send(&s.client, &s.base, &get("/v1/verification")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "none ran yet");
    let (status, run) = send(&s.client, &s.base, &post).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["ok"], true, "{run}");
    // A record of "other" disappears behind the server's back.
    let other = aitrail_core::TenantId::parse("other").unwrap();
    s.store.remove_records(&other, &[1]).await.unwrap();
    let (_, run) = send(&s.client, &s.base, &post).await;
    assert_eq!(run["ok"], false, "{run}");
    assert!(run["examples"][0].as_str().unwrap().starts_with("REMOVED   tenant other seq 1"), "{run}");
    // An auditor of "own" sees its log sound and nothing of the other's.
    let auditor = http(&make_key(&s, "auditor", Some("own")).await.1);
    let (status, _) = send(&auditor, &s.base, &post).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&auditor, &s.base, &post).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a tenant's key waits a minute between runs");
    // A tenant with no log is told so, not shown "0 records, no problem".
    let (_, empty) = send(&http(&make_key(&s, "viewer", Some("empty")).await.1), &s.base, &get("/v1/verification")).await;
    assert_eq!(empty["examples"][0], "this tenant had no log when the run started", "{empty}");
    let (_, mine) = send(&auditor, &s.base, &get("/v1/verification")).await;
    assert_eq!((mine["ok"].as_bool(), mine["records"].as_u64()), (Some(true), Some(3)), "{mine}");
    assert!(!mine.to_string().contains("other"), "{mine}");
    // It is told its view is one tenant's, so nobody reads "0 in the system log" into it.
    assert_eq!(mine["tenant"], "own", "{mine}");
    assert!(run.get("tenant").is_none(), "a global key sees every log: {run}");
    // The last run is kept in the system log, the same for every node.
    let (_, latest) = send(&s.client, &s.base, &get("/v1/verification")).await;
    assert_eq!(latest["ok"], false);
    let (_, event) = send(&s.client, &s.base, &get(&format!("/v1/records/{}", latest["event_id"].as_str().unwrap()))).await;
    assert_eq!(event["tenant_id"], "aitrail.system");
    assert_eq!(event["operation_type"], "verification");
}

/// An OTLP/JSON export of these spans, for `tenant` (a resource attribute) when given.
fn otlp_json(tenant: Option<&str>, spans: Vec<Value>) -> String {
    let mut resource = vec![json!({"key": "service.name", "value": {"stringValue": "svc"}})];
    if let Some(t) = tenant {
        resource.push(json!({"key": "aitrail.tenant_id", "value": {"stringValue": t}}));
    }
    json!({"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]}).to_string()
}

fn gen_ai_span(span_id: &str, attributes: Vec<Value>) -> Value {
    let mut attrs = vec![
        json!({"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}}),
        json!({"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}),
        json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "11"}}),
        json!({"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.25}}),
    ];
    attrs.extend(attributes);
    json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": "chat",
           "startTimeUnixNano": "1763900000000000000", "endTimeUnixNano": "1763900000500000000",
           "attributes": attrs})
}

#[tokio::test]
async fn otlp_json_exports_become_records_and_the_answer_counts_what_was_not_taken() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let post = |key: String, body: Vec<u8>, encoding: Option<&'static str>| {
        let base = s.base.clone();
        async move {
            let mut r = http(&key).post(format!("{base}/v1/traces")).header("content-type", "application/json");
            if let Some(e) = encoding {
                r = r.header("content-encoding", e);
            }
            let r = r.body(body).send().await.unwrap();
            let status = r.status();
            let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            (status, ct, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ingest = make_key(&s, "ingest", Some("own")).await.1;
    let plain = json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000009", "name": "GET /",
                       "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}]});
    // The key's tenant wins over the resource's.
    let body = otlp_json(Some("other"), vec![gen_ai_span("eee19b7ec3c1b174", vec![]), plain.clone()]);
    let (status, ct, answer) = post(ingest.clone(), body.into_bytes(), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(ct.as_deref(), Some("application/json"));
    // Skipped is not rejected: OTLP's warning form (0 rejected, a message).
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "0");
    assert!(answer["partialSuccess"]["errorMessage"].as_str().unwrap().contains("1 spans without gen_ai.* attributes were skipped"), "{answer}");
    let (_, page) = send(&s.client, &s.base, &(reqwest::Method::GET, "/v1/records?tenant_id=own".into(), None)).await;
    let r = &page["records"][0];
    assert_eq!((r["model_name"].as_str(), r["tokens_input"].as_u64(), r["temperature"].as_str()), (Some("gpt-4o"), Some(11), Some("0.25")), "{r}");
    assert_eq!((r["processing_time_ms"].as_u64(), r["attributes"]["otel.span_id"].as_str()), (Some(500), Some("eee19b7ec3c1b174")));

    // gzip; a global key names the tenant in the resource; a span with a credential in its
    // config, and one without any tenant, are refused on their own and counted.
    let secret = json!({"key": "gen_ai.request.api_key", "value": {"stringValue": "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e"}});
    let body = otlp_json(Some("own"), vec![gen_ai_span("0000000000000002", vec![]), gen_ai_span("0000000000000003", vec![secret])]);
    let (status, _, answer) = post(s.key.clone(), gzip(body.as_bytes()), Some("gzip")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    assert!(!answer.to_string().contains("sk-proj"), "the refusal never repeats the secret: {answer}");
    let (status, _, answer) = post(s.key.clone(), otlp_json(None, vec![gen_ai_span("0000000000000004", vec![])]).into_bytes(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["partialSuccess"]["errorMessage"].as_str().unwrap().contains("tenant_id"), "{answer}");
    let (_, page) = send(&s.client, &s.base, &(reqwest::Method::GET, "/v1/records?tenant_id=own".into(), None)).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 2, "{page}");

    // What cannot be read at all is a 400 or 415 naming the problem; nothing is stored.
    let r = http(&ingest).post(format!("{}/v1/traces", s.base)).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, problem) = post(ingest.clone(), b"{\"resourceSpans\": 5}".to_vec(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("resourceSpans is not a list") || problem.to_string().contains("resourceSpans is not a list"), "{problem}");
    let (status, _, _) = post(ingest.clone(), b"{}".to_vec(), Some("br")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let viewer = make_key(&s, "viewer", Some("own")).await.1;
    let (status, _, _) = post(viewer, otlp_json(None, vec![]).into_bytes(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn a_working_store_says_it_would_take_a_write() {
    let Some(s) = Server::start(BACKEND).await else { return };
    s.store.probe_write().await.unwrap();
    // The probe writes nothing.
    let before = s.store.logs().await.unwrap();
    s.store.probe_write().await.unwrap();
    assert_eq!(s.store.logs().await.unwrap(), before);
}

#[tokio::test]
async fn a_store_busy_with_its_own_commits_still_says_it_would_take_a_write() {
    // The proxy's fail modes closed and strict refuse calls on a failed probe: commits of
    // this very store must never make it fail.
    let Some(s) = Server::start(BACKEND).await else { return };
    let s = Arc::new(s);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let (status, answer) =
                        s.post_json(&json!({"tenant_id": "busy", "agent_id": format!("w{w}")})).await;
                    assert_eq!(status, StatusCode::CREATED, "{answer}");
                }
            })
        })
        .collect();
    let mut probes = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let asked: Vec<_> = (0..8).map(|_| s.store.probe_write()).collect();
        for answer in futures_util::future::join_all(asked).await {
            answer.expect("a probe failed while only this store was committing");
            probes += 1;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(probes >= 8, "the probes ran while the commits did");
}
