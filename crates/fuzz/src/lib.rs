//! Fuzz targets: one function per parser of untrusted bytes. Each feeds the bytes to the
//! real parser and asserts what must hold for any input: no panic, and where cheap a
//! round trip or invariant. `fuzz/` runs them under libFuzzer (cargo-fuzz); the replay
//! test runs them over the committed corpora, so they build and run with the normal
//! tests (FUZZING.md).

use std::io::Write;

use aitrail_capture::otlp::{self, Encoding};
use aitrail_capture::proxy::{Call, Provider};
use aitrail_core::entry::{self, Entry};
use aitrail_core::ingest::{BodyFormat, parse_body, parse_record, parse_record_value};
use aitrail_core::legacy::{csv_rows, record_from_row};
use aitrail_core::note::{Checkpoint, NoteSigner, Verifier};
use aitrail_core::{Query, Record, TenantId, Timestamp};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

/// A fuzz target: any bytes in, a panic when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target, by name: what `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` are.
pub const TARGETS: &[(&str, Target)] = &[
    ("ingest_json", ingest_json),
    ("ingest_ndjson", ingest_ndjson),
    ("otlp_protobuf", otlp_protobuf),
    ("otlp_json", otlp_json),
    ("proxy_exchange", proxy_exchange),
    ("proxy_sse", proxy_sse),
    ("csv_import", csv_import),
    ("signed_note", signed_note),
    ("checkpoint", checkpoint),
    ("export_check", export_check),
    ("query_string", query_string),
];

/// Most bytes an OTLP body may inflate to here: small, so a gzip bomb costs nothing.
const OTLP_LIMIT: usize = 1 << 20;

/// A valid record is stored as a canonical entry: that entry must decode, hold the
/// record's content commitments, and the record as served must parse back to itself.
fn assert_stored_round_trip(record: &Record) {
    let prepared = entry::prepare(record, [7; 32]);
    let at = Timestamp::from_unix_nanos(0).expect("the epoch is a timestamp");
    let bytes = entry::encode(&uuid::Uuid::nil(), at, 0, &prepared.record_json);
    let decoded = Entry::decode(&bytes).expect("a prepared record's entry decodes");
    if let Some(content) = &prepared.content {
        decoded.check_content(content).expect("the content matches its commitments");
    }
    let served = serde_json::to_string(record).expect("a record serialises");
    let again = parse_record(&served, "").expect("a served record parses again");
    assert_eq!(&again, record, "a served record parses back to itself");
}

/// A record built by a capture path: it may be refused (that is the client's problem,
/// answered as an error), never panic; if taken, it is stored like any other.
fn assert_mapped_record(mut record: Value, tenant: &str) {
    if record.get("tenant_id").is_none() {
        record["tenant_id"] = tenant.into();
    }
    if let Ok(r) = parse_record_value(&record, "") {
        assert_stored_round_trip(&r);
    }
}

/// POST /v1/records with `application/json`: one record or an array.
pub fn ingest_json(data: &[u8]) {
    if let Ok(parsed) = parse_body(data, BodyFormat::Json) {
        parsed.into_records().iter().for_each(assert_stored_round_trip);
    }
}

/// POST /v1/records with `application/x-ndjson`: a record per line.
pub fn ingest_ndjson(data: &[u8]) {
    if let Ok(parsed) = parse_body(data, BodyFormat::Ndjson) {
        parsed.into_records().iter().for_each(assert_stored_round_trip);
    }
}

/// The spans of a decoded export, with and without a key's tenant, as records.
fn otlp_records(request: &ExportTraceServiceRequest) {
    for tenant in [Some("fuzz-tenant"), None] {
        let mapped = otlp::records(request, tenant);
        for span in mapped.records {
            assert_mapped_record(span.record, "fuzz-tenant");
        }
    }
}

/// POST /v1/traces, protobuf, plain and as if gzip-encoded.
pub fn otlp_protobuf(data: &[u8]) {
    if let Ok(request) = otlp::decode(data, Encoding::Protobuf, false, OTLP_LIMIT) {
        otlp_records(&request);
    }
    if let Ok(request) = otlp::decode(data, Encoding::Protobuf, true, OTLP_LIMIT) {
        otlp_records(&request);
    }
}

/// POST /v1/traces, OTLP/JSON.
pub fn otlp_json(data: &[u8]) {
    if let Ok(request) = otlp::decode(data, Encoding::Json, false, OTLP_LIMIT) {
        otlp_records(&request);
    }
}

/// Every proxied operation the capture maps.
const OPERATIONS: [(Provider, &str); 5] = [
    (Provider::OpenAi, "chat"),
    (Provider::OpenAi, "completion"),
    (Provider::OpenAi, "embeddings"),
    (Provider::OpenAi, "responses"),
    (Provider::Anthropic, "chat"),
];

/// A proxied call with a whole (non-stream) answer: the request body, a NUL byte, then
/// the answer body (JSON has no raw NUL, so the split is unambiguous). Also the provider
/// path mapping, with the request as the path.
pub fn proxy_exchange(data: &[u8]) {
    let (request, answer) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    for (provider, operation) in OPERATIONS {
        let _ = aitrail_capture::proxy::operation(provider, &String::from_utf8_lossy(request));
        for status in [200, 429] {
            let mut call = Call::new(provider, operation, request);
            call.answered(status, false);
            call.chunk(answer);
            assert_mapped_record(call.record(12, None), "fuzz-tenant");
        }
    }
}

/// A streamed (text/event-stream) answer. The first byte picks the chunk size the stream
/// arrives in: the record must not depend on how the bytes were chunked.
pub fn proxy_sse(data: &[u8]) {
    let Some((first, stream)) = data.split_first() else { return };
    let size = usize::from(*first % 16) + 1;
    for provider in [Provider::OpenAi, Provider::Anthropic] {
        let request = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let feed = |chunks: &mut dyn Iterator<Item = &[u8]>| {
            let mut call = Call::new(provider, "chat", request);
            call.answered(200, true);
            chunks.for_each(|c| call.chunk(c));
            call.record(12, None)
        };
        let whole = feed(&mut std::iter::once(stream));
        let chunked = feed(&mut stream.chunks(size));
        assert_eq!(whole, chunked, "the record depends on the chunking");
        assert_mapped_record(whole, "fuzz-tenant");
    }
}

/// `aitrail import --csv`: the old system's compliance CSV, each row a record.
pub fn csv_import(data: &[u8]) {
    // The import's own bound on a row (the API's body limit), so a row past it is refused
    // the same way.
    let Ok((_, rows)) = csv_rows(data, 10 << 20) else { return };
    for row in rows {
        for tenant in [Some("fuzz-tenant"), None] {
            if let Ok(record) = record_from_row(row.clone(), tenant) {
                assert_stored_round_trip(&record);
            }
        }
    }
}

/// The fuzz key (a fixed seed: no secret).
fn signer() -> NoteSigner {
    NoteSigner::from_seed("fuzz.example", [1; 32]).expect("a valid key name")
}

/// Signed notes and verifier keys: what opens is a prefix of the note, a key that
/// parses writes out as the same text, and any text that can be signed opens again.
pub fn signed_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let signer = signer();
    let verifier = signer.verifier();
    if let Ok(opened) = verifier.open(text) {
        assert!(text.starts_with(opened), "the opened text is the note's own");
    }
    if let Ok(key) = Verifier::parse(text) {
        // Surrounding whitespace (a key file's newline) is not part of the key.
        assert_eq!(key.to_string(), text.trim(), "a key writes out as it was read");
    }
    let _ = NoteSigner::parse(text);
    if let Ok(note) = signer.sign(text) {
        assert_eq!(verifier.open(&note), Ok(text), "a signed note opens to its text");
    }
}

/// Checkpoint bodies and signed checkpoints: one that parses writes out as text that
/// parses to it again, and signed by the log key opens to it.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let signer = signer();
    let _ = Checkpoint::open(text, &signer.verifier());
    let Ok(cp) = Checkpoint::parse(text) else { return };
    assert_eq!(Checkpoint::parse(&cp.to_text()).as_ref(), Ok(&cp), "a checkpoint round-trips");
    if let Ok(note) = signer.sign(&cp.to_text()) {
        assert_eq!(Checkpoint::open(&note, &signer.verifier()), Ok(cp), "a signed one opens");
    }
}

/// `aitrail verify --export`: the bytes as a bundle (zip), checked against its own key
/// and against the fuzz key. Any answer but a panic will do.
pub fn export_check(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("the bundle is written");
    let _ = aitrail_export::check::bundle(file.path(), None);
    let _ = aitrail_export::check::bundle(file.path(), Some(&signer().verifier()));
}

/// Query strings as the server decodes them (axum's Query: serde_urlencoded), for the
/// listing, an export's parameters and the access log.
pub fn query_string(data: &[u8]) {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else { return };
    if let Ok(mut query) = Query::from_pairs(pairs.clone()) {
        if let Some(cursor) = query.cursor {
            assert_eq!(cursor.to_string().parse().ok(), Some(cursor), "a cursor round-trips");
        }
        let _ = query.hash_texts(&[3; 32]);
    }
    let _ = aitrail_export::parse_params(pairs.clone());
    let tenant = TenantId::parse("fuzz-tenant").expect("a valid tenant id");
    let _ = aitrail_core::access::access_log_query(&pairs, None);
    let _ = aitrail_core::access::access_log_query(&pairs, Some(&tenant));
}
