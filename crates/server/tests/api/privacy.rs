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
    // One data key per (user, session): ada's two sessions outside the hold.
    assert_eq!(erased["data_keys_destroyed"], 2, "{erased}");
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

/// Records of a person keep arriving while that person is erased, again and again: each is
/// either erased (named in an erasure event, its key destroyed) or kept whole, never
/// sealed under a destroyed key without an event naming it (`aitrail_store::sealing`).
#[tokio::test]
async fn records_arriving_during_erasures_are_erased_or_kept_whole() {
    let Some(s) = Server::start(BACKEND).await else { return };
    assert_eq!(s.put_policy("t", &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    let (client, base) = (s.client.clone(), s.base.clone());
    let writer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..150 {
            let body = json!({"tenant_id": "t", "user_id": "ada", "session_id": format!("s{}", i % 3),
                              "prompt": format!("call {i}")});
            let r = client.post(format!("{base}/v1/records")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            ids.push((i, r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()));
        }
        ids
    });
    let erase = json!({"tenant_id": "t", "user_id": "ada"}).to_string();
    let mut erasures = 0;
    while !writer.is_finished() {
        let (status, erased) = s.post("/v1/erasure", "application/json", erase.clone()).await;
        assert_eq!(status, StatusCode::OK, "{erased}");
        erasures += 1;
    }
    let ids = writer.await.unwrap();
    assert!(erasures > 1, "the erasures ran while records arrived");
    let mut kept = 0;
    for (i, id) in ids {
        let (_, record) = s.get(&format!("/v1/records/{id}")).await;
        match record.get("prompt") {
            None => {}
            Some(prompt) => {
                assert_eq!(prompt, &json!(format!("call {i}")));
                kept += 1;
            }
        }
    }
    eprintln!("{erasures} erasures, {kept} of 150 records kept");
    let verifier = published_key(&s).await;
    let report =
        aitrail_store::verify::verify_store(s.store.clone(), &verifier, &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// Others whose keys share a bucket with two people being erased, at once and again and
/// again, keep writing, each record under a key of its own session (a new key every
/// time): every rekey of that bucket, racing these adds and the other erasure's rekeys,
/// leaves each kept key wrapped under a bucket key that exists, so all their content
/// reads back, every erasure answers 200, and the store verifies.
#[tokio::test]
async fn keys_added_to_a_bucket_while_it_is_rekeyed_survive() {
    use aitrail_core::seal::KeyScope;
    let Some(s) = Server::start(BACKEND).await else { return };
    assert_eq!(s.put_policy("t", &json!({"content_mode": "full"})).await.0, StatusCode::OK);
    let scope = |user: &str| KeyScope { tenant: "t".into(), user: user.into(), session: "s".into() };
    let bucket = scope("ada").bucket();
    // bea and two others share ada's bucket; ada and bea are erased, the others kept.
    let mut same: Vec<String> = (0..)
        .map(|n| format!("user-{n}"))
        .filter(|u| scope(u).bucket() == bucket)
        .take(3)
        .collect();
    let bea = same.pop().unwrap();
    let erased = ["ada".to_owned(), bea];
    let users: Vec<String> = erased.iter().cloned().chain(same).collect();
    let (client, base) = (s.client.clone(), s.base.clone());
    let writer = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..120 {
            let user = users[i % users.len()].clone();
            let body = json!({"tenant_id": "t", "user_id": user, "session_id": format!("s{i}"),
                              "prompt": format!("call {i}")});
            let r = client.post(format!("{base}/v1/records")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
            sent.push((i, user, id));
        }
        sent
    });
    let erasers: Vec<_> = erased
        .iter()
        .map(|user| {
            let (client, base, writer_done) = (s.client.clone(), s.base.clone(), writer.abort_handle());
            let erase = json!({"tenant_id": "t", "user_id": user});
            tokio::spawn(async move {
                let mut erasures = 0;
                while !writer_done.is_finished() {
                    let r = client.post(format!("{base}/v1/erasure")).json(&erase).send().await.unwrap();
                    let status = r.status();
                    assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
                    erasures += 1;
                }
                erasures
            })
        })
        .collect();
    let sent = writer.await.unwrap();
    for eraser in erasers {
        assert!(eraser.await.unwrap() > 1, "the erasures ran while records arrived");
    }
    for (i, user, id) in sent.iter().filter(|(_, user, _)| !erased.contains(user)) {
        let (status, record) = s.get(&format!("/v1/records/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        assert_eq!(record["prompt"], json!(format!("call {i}")), "{user}'s record {i}");
    }
    let verifier = published_key(&s).await;
    let report =
        aitrail_store::verify::verify_store(s.store.clone(), &verifier, &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
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
    let dry = aitrail_service::retention::run(s.store.as_ref(), later, aitrail_store::retention::Mode::DryRun).await.unwrap();
    let by = |run: &aitrail_service::retention::Run, t: &str| {
        let t = run.tenants.iter().find(|r| r.tenant_id.as_str() == t).unwrap();
        (t.purged.records, t.purged.held, t.held)
    };
    assert_eq!(by(&dry, "short"), (1, 1, false));
    assert_eq!(by(&dry, "long"), (0, 0, false));
    assert_eq!(by(&dry, "frozen"), (0, 0, true));
    assert!(dry.event_id.is_none());
    let (_, page) = s.get("/v1/records?tenant_id=short&session_id=a").await;
    assert_eq!(page["records"][0]["prompt"], "short a", "a dry run deletes nothing");
    let run = aitrail_service::retention::run(s.store.as_ref(), later, aitrail_store::retention::Mode::Delete).await.unwrap();
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
    let run = aitrail_service::retention::run(s.store.as_ref(), month, aitrail_store::retention::Mode::Delete).await.unwrap();
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
