// Full verification from the API, kept in the system log.

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
