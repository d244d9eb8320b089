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
