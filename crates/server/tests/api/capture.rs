// Capture: OTLP/JSON exports become records; the write probe the proxy's fail modes ask.

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
