//! Every input path has a memory and a count bound: hostile inputs sent to the real
//! binary, its peak resident memory (VmHWM) read from /proc. Each input here once took
//! gigabytes.

use super::*;

/// What peak memory a hostile request may add to the server's, in MiB: its 10 MiB body,
/// the body's copies and what the bounds let it decode, with room to spare.
const HOSTILE_HEADROOM_MIB: u64 = 150;

/// A protobuf length-delimited field: tag, length, bytes.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    let varint = |mut v: u64, out: &mut Vec<u8>| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    varint(u64::from(number << 3 | 2), &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// An ExportTraceServiceRequest of one resource and one scope holding `spans`, each the
/// encoded bytes of a Span.
fn export_of(spans: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let scope_spans: Vec<u8> = spans.flat_map(|s| field(2, &s)).collect();
    field(1, &field(2, &scope_spans))
}

async fn post_traces(s: &ServerProcess, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let r = s
        .client()
        .post(format!("{}/v1/traces", s.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// 10 MB of empty spans (5.2 million of them) once took the server to 3 GB, and a 9.8 MB
/// export of gen_ai spans became 700,000 records, past POST /v1/records' 10,000.
#[tokio::test]
async fn an_otlp_export_is_bounded_in_spans_decoded_size_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = ServerProcess::start(dir.path());
    let before = s.peak_rss_mib();

    let empty_spans = export_of(std::iter::repeat_n(Vec::new(), 5_000_000));
    assert!(empty_spans.len() < 10 << 20);
    let (status, problem) = post_traces(&s, empty_spans, "application/x-protobuf").await;
    assert_eq!(status, 413, "{problem}");
    let (status, problem) = post_traces(
        &s,
        export_of(std::iter::repeat_n(Vec::new(), 50_001)),
        "application/x-protobuf",
    )
    .await;
    assert_eq!(status, 413, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("more than 50000 spans"), "{problem}");

    // Under the span bound, each span a mass of empty attributes.
    let attributes = field(9, &[]).repeat(100_000);
    let fat_spans = export_of(std::iter::repeat_n(attributes, 40));
    let (status, problem) = post_traces(&s, fat_spans, "application/x-protobuf").await;
    assert_eq!(status, 413, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("once decoded"), "{problem}");

    let empty_json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        vec!["{}"; 3_000_000].join(",")
    );
    let (status, problem) = post_traces(&s, empty_json.into_bytes(), "application/json").await;
    assert_eq!(status, 413, "{problem}");
    // Small objects anywhere in the JSON (each a map node of 600 bytes once parsed).
    let objects =
        format!(r#"{{"resourceSpans":[],"x":[{}]}}"#, vec![r#"{"a":""}"#; 640_000].join(","));
    let (status, problem) = post_traces(&s, objects.into_bytes(), "application/json").await;
    assert_eq!(status, 413, "{problem}");
    // Millions of empty strings in a list of them (a resource's entity keys).
    let keys = field(1, &field(1, &field(3, &field(3, b"").repeat(5_000_000))));
    let (status, problem) = post_traces(&s, keys, "application/x-protobuf").await;
    assert_eq!(status, 413, "{problem}");

    // 10,001 spans that would each become a record.
    let gen_ai = field(9, &field(1, b"gen_ai.system"));
    let records = export_of(std::iter::repeat_n(gen_ai.clone(), 10_001));
    let (status, problem) = post_traces(&s, records, "application/x-protobuf").await;
    assert_eq!(status, 413, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("at most 10000 records"), "{problem}");
    let peak = s.peak_rss_mib();
    assert!(peak < before + HOSTILE_HEADROOM_MIB, "peak {peak} MiB, {before} MiB before");

    // And a batch within the bounds is still taken.
    let (status, _) =
        post_traces(&s, export_of(std::iter::repeat_n(gen_ai, 3)), "application/x-protobuf").await;
    assert_eq!(status, 200);
}

/// A mock provider on loopback whose answers are made as they are sent, by the request's
/// `model`: `whole:<MiB>` a JSON answer of that size, `endless:<MiB>` an event stream
/// whose first line runs that long before its newline.
fn huge_upstream(rt: &tokio::runtime::Runtime) -> String {
    use axum::body::Body;
    async fn answer(body: axum::Json<Value>) -> axum::response::Response {
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let (kind, mib) = model.split_once(':').unwrap();
        let mib: usize = mib.parse().unwrap();
        let chunk = bytes::Bytes::from(vec![b'y'; 1 << 20]);
        let middle = futures_util::stream::iter((0..mib).map(move |_| chunk.clone()));
        let (head, tail, content_type): (&str, &str, &str) = match kind {
            "whole" => (r#"{"choices":[{"message":{"content":""#, r#""}}]}"#, "application/json"),
            _ => ("data: ", "\n\ndata: [DONE]\n\n", "text/event-stream"),
        };
        let body = futures_util::stream::iter([bytes::Bytes::from(head)])
            .chain(middle)
            .chain(futures_util::stream::iter([bytes::Bytes::from(tail)]))
            .map(Ok::<_, std::io::Error>);
        axum::response::Response::builder()
            .header("content-type", content_type)
            .body(Body::from_stream(body))
            .unwrap()
    }
    use futures_util::StreamExt;
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The proxy once held whole answers (8.4 GB for a 2 GiB one) and an event-stream line
/// that never ended (8.2 GB). It streams them through now, its record keeping 1 MiB of
/// the answer with the size and hash of the whole, and cuts an answer past its limit.
#[test]
fn the_proxy_streams_huge_answers_through_in_bounded_memory() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = huge_upstream(&rt);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (proxy, max) = (format!("openai={upstream}"), (200u64 << 20).to_string());
    let s = ServerProcess::start_with(
        &["--data-dir", data.to_str().unwrap()],
        &[("AITRAIL_PROXY", &proxy), ("AITRAIL_PROXY_MAX_ANSWER_BYTES", &max)],
    );
    let key = super::capture::make_key_on(&s, &rt, "ingest", "acme");
    // Full content, so what the proxy keeps is what the record holds (not a preview).
    rt.block_on(async {
        let url = format!("{}/v1/tenants/acme/policy", s.base);
        let r = s.client().put(url).json(&json!({"content_mode": "full"})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    let before = s.peak_rss_mib();
    let call = |model: &str| {
        rt.block_on(async {
            let mut answer = reqwest::Client::new()
                .post(format!("{}/proxy/openai/v1/chat/completions", s.base))
                .header("x-aitrail-key", &key)
                .json(&json!({"model": model, "messages": []}))
                .send()
                .await
                .unwrap();
            let mut received = 0u64;
            let mut whole = true;
            loop {
                match answer.chunk().await {
                    Ok(Some(c)) => received += c.len() as u64,
                    Ok(None) => break,
                    Err(_) => {
                        whole = false;
                        break;
                    }
                }
            }
            (received, whole)
        })
    };
    let (received, whole) = call("whole:5");
    assert!(whole && received > 5 << 20, "{received}");
    let (received, whole) = call("whole:150");
    assert!(whole && received > 150 << 20, "{received}");
    let (received, whole) = call("endless:150");
    assert!(whole && received > 150 << 20, "{received}");
    let (received, whole) = call("whole:250");
    assert!(!whole && received <= 200 << 20, "cut at the limit: {received}");
    let peak = s.peak_rss_mib();
    // Each answer is 150 MiB or more: held whole, any one would pass this. What is held is
    // a 16 MiB body or line at most, in vectors that double as they grow (one CI run on a
    // loaded machine peaked at +102 MiB).
    assert!(peak < before + 128, "peak {peak} MiB, {before} MiB before");

    let records = super::capture::records_once(&s, &rt, "acme", 4);
    // Each record whole (a listing shows content cut to a preview).
    let of = |model: &str| {
        let listed = records.iter().find(|r| r["model_name"] == model).expect(model);
        let url = format!("{}/v1/records/{}", s.base, listed["id"].as_str().unwrap());
        rt.block_on(async {
            s.client().get(url).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    // Read whole (under 16 MiB), its text kept in part.
    let read = of("whole:5");
    let text = read["response"].as_str().unwrap();
    assert!(text.len() == 1 << 20 && text.bytes().all(|b| b == b'y'), "{}", text.len());
    assert_eq!(read["attributes"]["proxy.answer_truncated"], true);
    // Past 16 MiB, streamed: what is kept is the answer's first bytes, raw.
    let whole = of("whole:150");
    assert_eq!(whole["success"], true, "{whole}");
    let attributes = &whole["attributes"];
    assert_eq!(attributes["proxy.answer_truncated"], true, "{whole}");
    assert!(attributes["proxy.answer_bytes"].as_u64().unwrap() > 150 << 20, "{whole}");
    assert_eq!(attributes["proxy.answer_sha256"].as_str().unwrap().len(), 64);
    let kept = whole["response"].as_str().unwrap();
    assert!(kept.len() == 1 << 20 && kept.starts_with(r#"{"choices""#), "{}", kept.len());
    let endless = of("endless:150");
    assert_eq!(endless["success"], false, "{endless}");
    assert!(endless["error_message"].as_str().unwrap().contains("longer than"), "{endless}");
    let cut = of("whole:250");
    assert_eq!(cut["success"], false, "{cut}");
    assert!(cut["error_message"].as_str().unwrap().contains("limit of"), "{cut}");
}
