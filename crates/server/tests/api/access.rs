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
