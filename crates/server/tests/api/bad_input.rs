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

/// Hostile URIs get a problem naming what is wrong, never a panic or a closed connection:
/// NUL or invalid UTF-8 in a query parameter or the path, an over-long URI, a single-valued
/// parameter given twice. Every answer, refusals included, says `nosniff`.
#[tokio::test]
async fn hostile_uris_get_a_problem_naming_what_is_wrong() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (status, _) = s.post_json(&json!({"tenant_id": "t", "model_name": "m"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let problem_of = |path: String| {
        let (client, base) = (s.client.clone(), s.base.clone());
        async move {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            let status = r.status();
            let headers = r.headers().clone();
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["content-type"], "application/problem+json", "{path}");
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["status"], status.as_u16(), "{problem}");
            (status, problem)
        }
    };
    // NUL in any query parameter (this closed the connection with a panic).
    for query in ["model_name=a%00b", "tenant_id=t&user_id=%00", "limit=1&x%00=1"] {
        let (status, problem) = problem_of(format!("/v1/records?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("contains a NUL character"));
    }
    let (_, problem) = problem_of("/v1/access-log?operation=%00".into()).await;
    assert_eq!(problem_fields(&problem), ["operation"], "{problem}");
    // Invalid UTF-8 in a query value (was read as U+FFFD), or in the path.
    let (status, problem) = problem_of("/v1/records?model_name=%ff%fe".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem_fields(&problem), ["model_name"], "{problem}");
    let (status, problem) = problem_of("/v1/records/%ff%fe".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("path"), "{problem}");
    // An over-long URI.
    let (status, problem) = problem_of(format!("/v1/records?model_name={}", "m".repeat(20_000))).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{problem}");
    // Past 64 KiB the HTTP parser answers before any of the server's code runs (a bare
    // 414 with no body); the connection puts the problem in its place.
    // (HTTP clients refuse such a URI: it goes over a plain socket.)
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = s.base.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
        // A kept-alive connection's second request: the parser answers any request so.
        let first = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let path = format!("/v1/records?model_name={}", "m".repeat(100_000));
        let second = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        socket.write_all(format!("{first}{second}").as_bytes()).await.unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        let (healthz, answer) = answer.split_once("\r\n\r\n").unwrap();
        assert!(healthz.starts_with("HTTP/1.1 200 "), "{healthz}");
        let answer = &answer[answer.find("HTTP/1.1 ").expect("a second answer")..];
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        let problem: Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 414, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("URI is longer than"), "{problem}");
    }
    // A single-valued parameter twice (the last one was taken).
    let (status, problem) = problem_of("/v1/records?tenant_id=t&tenant_id=u".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem_fields(&problem), ["tenant_id"], "{problem}");
    // The same requests, well formed, still answer.
    let (status, page) = s.get("/v1/records?tenant_id=t&model_name=m&model_name=n").await;
    assert_eq!((status, page["records"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let r = s.client.get(format!("{}/v1/records?tenant_id=t", s.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// `AITRAIL.system` names the system log to a reader as much as `aitrail.system`: no
/// record may claim any case of the reserved prefix.
#[tokio::test]
async fn the_reserved_tenant_prefix_is_refused_in_any_case() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for tenant in ["aitrail.system", "AITRAIL.system", "Aitrail.access"] {
        let (status, problem) =
            refused(&s, "application/json", json!({"tenant_id": tenant}).to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{tenant}: {problem}");
        assert_eq!(problem_fields(&problem), ["tenant_id"], "{problem}");
    }
}

/// A key given twice inside `attributes` or `model_config`, at any depth, is refused with
/// its path: the entry is evidence, and the last value silently won.
#[tokio::test]
async fn a_key_given_twice_in_a_record_is_refused_with_its_path() {
    let Some(s) = Server::start(BACKEND).await else { return };
    for (body, path) in [
        (r#"{"tenant_id": "t", "attributes": {"approved": false, "approved": true}}"#, "attributes"),
        (r#"{"tenant_id": "t", "model_config": {"tools": [{"name": "a", "name": "b"}]}}"#, "model_config.tools[0]"),
    ] {
        let (status, problem) = refused(&s, "application/json", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem_fields(&problem), [path], "{problem}");
        assert!(problem.to_string().contains("appears twice"), "{problem}");
    }
}

/// Compressed bodies get the status that names their problem: `POST /v1/records` takes
/// none (415, where it answered 400 "not UTF-8"), and an OTLP export whose gzip inflates
/// past the body limit is 413, as a body that large would be (it answered 400).
#[tokio::test]
async fn compressed_bodies_get_the_status_that_names_the_problem() {
    use std::io::Write;
    let Some(s) = Server::start(BACKEND).await else { return };
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let r = s
        .client
        .post(format!("{}/v1/records", s.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"tenant_id": "t"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("Content-Encoding gzip"), "{problem}");
    let limit = Config::default().max_body_bytes;
    let bomb = gzip(&vec![b' '; limit + 1]);
    assert!(bomb.len() < limit / 100, "a small body that inflates past the limit");
    let r = s
        .client
        .post(format!("{}/v1/traces", s.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(s.all_ids().await.is_empty(), "nothing was stored");
}
