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
