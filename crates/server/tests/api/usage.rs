// Usage: records, tokens and cost summed, exactly, as the export sums them.

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
