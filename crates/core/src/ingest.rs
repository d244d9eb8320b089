//! Turning a request body into records, with errors that name the offending field
//! (`records[3].temperature: not a decimal number`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::record::{RECORD_FIELDS, Record};

pub use crate::value::FieldError;

/// Most records one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// How deep JSON may nest: serde_json's own limit, which keeps a hostile body from
/// exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// The shape of a body, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one record object, or an array of them.
    Json,
    /// `application/x-ndjson`: one record object per line.
    Ndjson,
}

/// A parsed body: one record, or a batch (array or NDJSON), all valid.
#[derive(Debug)]
pub enum Parsed {
    One(Box<Record>),
    Batch(Vec<Record>),
}

/// How a request sent its records, which decides how an error names a field: bare for one
/// record (`prompt`), by index in a batch (`records[3].prompt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    One,
    Batch,
}

impl Parsed {
    pub fn sent(&self) -> Sent {
        match self {
            Parsed::One(_) => Sent::One,
            Parsed::Batch(_) => Sent::Batch,
        }
    }

    pub fn into_records(self) -> Vec<Record> {
        match self {
            Parsed::One(r) => vec![*r],
            Parsed::Batch(rs) => rs,
        }
    }
}

/// Why a body was refused. Nothing of a refused body is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Not UTF-8 or not JSON at all.
    #[error("{0}")]
    Malformed(FieldError),
    /// JSON, but not valid records; every problem found, in order.
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<FieldError>),
}

/// Most field errors reported for one body; past that the client has enough to go on.
const MAX_REPORTED: usize = 100;

/// Parse a body of the given format into valid records. A batch is all-or-nothing: one bad
/// record refuses the whole body.
pub fn parse_body(body: &[u8], format: BodyFormat) -> Result<Parsed, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        BodyError::Malformed(FieldError::new(
            "body",
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ))
    })?;
    let items: Vec<&RawValue> = match format {
        BodyFormat::Json => {
            let trimmed = text.trim_start();
            if !trimmed.starts_with('[') {
                let raw: &RawValue = serde_json::from_str(text).map_err(malformed)?;
                return parse_record(raw.get(), "")
                    .map(|r| Parsed::One(Box::new(r)))
                    .map_err(|e| BodyError::Invalid(vec![e]));
            }
            serde_json::from_str(text).map_err(malformed)?
        }
        BodyFormat::Ndjson => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|e| {
                    BodyError::Malformed(FieldError::new(
                        format!("line {}", n + 1),
                        format!("malformed JSON: {}", bare_message(&e)),
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if items.is_empty() {
        return Err(BodyError::Invalid(vec![FieldError::new(
            "records",
            "empty batch: send at least one record",
        )]));
    }
    if items.len() > MAX_BATCH {
        return Err(BodyError::Invalid(vec![FieldError::new(
            "records",
            format!("{} records in one batch; at most {MAX_BATCH}", items.len()),
        )]));
    }
    let mut records = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, raw) in items.iter().enumerate() {
        match parse_record(raw.get(), &format!("records[{i}]")) {
            Ok(r) => records.push(r),
            Err(e) if errors.len() < MAX_REPORTED => errors.push(e),
            Err(_) => {}
        }
    }
    if errors.is_empty() { Ok(Parsed::Batch(records)) } else { Err(BodyError::Invalid(errors)) }
}

/// Parse one record's JSON text; `prefix` is its place in the body (`records[3]`, or "").
pub fn parse_record(json: &str, prefix: &str) -> Result<Record, FieldError> {
    // serde would also read a record from an array, field by field in order: only an
    // object is one.
    if !json.trim_start().starts_with('{') {
        let at = if prefix.is_empty() { "record" } else { prefix };
        return Err(FieldError::new(at, "must be a JSON object (one record)"));
    }
    // Tracking the path costs a good part of the parse, and only a refused record needs it.
    if let Ok(record) = Record::deserialize(&mut serde_json::Deserializer::from_str(json))
        && !record.tenant_id.is_reserved()
    {
        return Ok(record);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let result: Result<Record, _> = serde_path_to_error::deserialize(&mut de);
    let join = |field: &str| match (prefix.is_empty(), field.is_empty()) {
        (true, true) => "record".to_owned(),
        (true, false) => field.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{field}"),
    };
    let err = match result {
        Ok(record) if record.tenant_id.is_reserved() => {
            return Err(FieldError::new(
                join("tenant_id"),
                "tenant ids beginning with `aitrail.` (in any case) are reserved for aitrail's own logs",
            ));
        }
        Ok(record) => return Ok(record),
        Err(err) => err,
    };
    let path = err.path().to_string();
    let message = bare_message(err.inner());
    if message.starts_with("recursion limit exceeded") {
        // The path is as deep as the nesting; the top-level field is what the client needs.
        let top = path.split(['.', '[']).next().unwrap_or_default();
        return Err(FieldError::new(
            join(top),
            format!("JSON nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let at_top = path == "." || path.is_empty();
    let top_level_key = !path.contains(['.', '[']);
    if top_level_key && message.starts_with("unknown field") {
        let unknown = unknown_fields(json);
        return Err(FieldError::new(
            join(""),
            format!("unknown fields: {} (extensions go in `attributes`)", unknown.join(", ")),
        ));
    }
    if at_top && message.starts_with("missing field `tenant_id`") {
        return Err(FieldError::new(join("tenant_id"), "required"));
    }
    if at_top && message.starts_with("invalid type") {
        return Err(FieldError::new(join(""), "must be a JSON object (one record)"));
    }
    let field = if at_top { String::new() } else { path };
    Err(FieldError::new(join(&field), message))
}

/// [`parse_record`] of a record its caller has built as a JSON value (an OTLP span's, a
/// proxied call's), without writing it out and reading it back. A refused one, or one that
/// would not read back unchanged, is parsed as text after all, so it is taken or refused
/// exactly as its text would be, in the same words.
pub fn parse_record_value(value: &Value, prefix: &str) -> Result<Record, FieldError> {
    if value.is_object()
        && reads_back_unchanged(value, MAX_DEPTH - 1)
        && let Ok(record) = Record::deserialize(value)
        && !record.tenant_id.is_reserved()
    {
        return Ok(record);
    }
    parse_record(&value.to_string(), prefix)
}

/// Whether serde reads `value` as its text would be read: no more than `levels` levels of
/// arrays and objects (text deeper than that is refused), and every number keeps its
/// literal (from a value, serde_json writes some its own way: `-0` as `0`, `0.000002` as
/// `2e-6`). Looks no deeper than `levels`.
fn reads_back_unchanged(value: &Value, levels: usize) -> bool {
    // A container counts as a level, empty or not, as serde_json's limit counts it.
    let within = |v: &Value| reads_back_unchanged(v, levels - 1);
    match value {
        Value::Number(_) => Value::deserialize(value).is_ok_and(|read| read == *value),
        Value::Array(items) => levels > 0 && items.iter().all(within),
        Value::Object(map) => levels > 0 && map.values().all(within),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

fn unknown_fields(json: &str) -> Vec<String> {
    let all: BTreeMap<String, IgnoredAny> = serde_json::from_str(json).unwrap_or_default();
    all.into_keys().filter(|k| !RECORD_FIELDS.contains(&k.as_str())).collect()
}

fn malformed(e: serde_json::Error) -> BodyError {
    BodyError::Malformed(FieldError::new(
        "body",
        format!("malformed JSON at line {} column {}: {}", e.line(), e.column(), bare_message(&e)),
    ))
}

/// serde_json's message without its " at line L column C" suffix.
fn bare_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Vec<String> {
        match parse_body(body.as_bytes(), BodyFormat::Json) {
            Err(BodyError::Invalid(es)) => es.iter().map(ToString::to_string).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field_in_a_batch() {
        let body = r#"[{"tenant_id":"t"},{"tenant_id":"t","temperature":"abc"}]"#;
        assert_eq!(invalid(body), ["records[1].temperature: not a decimal number"]);
    }

    /// A record is evidence: a key given twice, at any depth, is refused with its path,
    /// never collapsed to the last value (which serde_json's own map does).
    #[test]
    fn a_key_given_twice_at_any_depth_is_refused_with_its_path() {
        let twice = "appears twice in one object: each key may appear once";
        assert_eq!(
            invalid(r#"{"tenant_id":"t","attributes":{"a":1,"a":2}}"#),
            [format!("attributes: the key \"a\" {twice}")]
        );
        assert_eq!(
            invalid(
                r#"[{"tenant_id":"t"},{"tenant_id":"t","model_config":{"x":[{"y":1,"y":1}]}}]"#
            ),
            [format!("records[1].model_config.x[0]: the key \"y\" {twice}")]
        );
        assert_eq!(
            invalid(r#"{"tenant_id":"t","tenant_id":"u"}"#),
            ["record: duplicate field `tenant_id`"]
        );
        // Numbers keep their literal through the check.
        let body = r#"{"tenant_id":"t","attributes":{"n":1.50,"m":-0,"big":123456789012345678901234567890}}"#;
        let record = parse_record(body, "").unwrap();
        let text = serde_json::to_string(&record.attributes).unwrap();
        assert_eq!(text, r#"{"big":123456789012345678901234567890,"m":-0,"n":1.50}"#);
    }

    #[test]
    fn single_record_paths_have_no_prefix() {
        assert_eq!(
            invalid(r#"{"tenant_id":"t","tokens_input":-1}"#),
            ["tokens_input: must not be negative"]
        );
        assert_eq!(invalid(r#"{"model_name":"x"}"#), ["tenant_id: required"]);
    }

    #[test]
    fn a_record_in_array_form_is_refused() {
        assert_eq!(invalid(r#"[["t"]]"#), ["records[0]: must be a JSON object (one record)"]);
        assert_eq!(
            invalid(r#"[{"tenant_id":"t"}, ["t", null]]"#),
            ["records[1]: must be a JSON object (one record)"]
        );
        assert_eq!(
            parse_record(r#" ["t"]"#, "").unwrap_err().to_string(),
            "record: must be a JSON object (one record)"
        );
    }

    #[test]
    fn lists_every_unknown_field() {
        let e = invalid(r#"{"tenant_id":"t","zeta":1,"alpha":2}"#);
        assert_eq!(e, ["record: unknown fields: alpha, zeta (extensions go in `attributes`)"]);
    }

    #[test]
    fn nested_paths() {
        let e = invalid(r#"[{"tenant_id":"t","input":{"record_count":"x"}}]"#);
        assert!(e[0].starts_with("records[0].input.record_count: "), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused_cleanly() {
        let deep = format!(
            r#"{{"tenant_id":"t","model_config":{}1{}}}"#,
            r#"{"a":"#.repeat(10_000),
            "}".repeat(10_000)
        );
        let e = invalid(&deep);
        assert_eq!(e, [format!("model_config: JSON nested deeper than {MAX_DEPTH} levels")]);
    }

    #[test]
    fn malformed_and_empty() {
        assert!(matches!(
            parse_body(b"{", BodyFormat::Json),
            Err(BodyError::Malformed(FieldError { ref field, .. })) if field == "body"
        ));
        assert!(matches!(
            parse_body(b"\xff\xfe", BodyFormat::Json),
            Err(BodyError::Malformed(ref e)) if e.message == "invalid UTF-8 at byte 0"
        ));
        assert_eq!(invalid("[]"), ["records: empty batch: send at least one record"]);
    }

    #[test]
    fn ndjson_skips_blank_lines() {
        let body = b"{\"tenant_id\":\"a\"}\n\n{\"tenant_id\":\"b\"}\n";
        let Parsed::Batch(rs) = parse_body(body, BodyFormat::Ndjson).unwrap() else {
            panic!("batch expected")
        };
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[1].tenant_id.as_str(), "b");
    }

    #[test]
    fn stored_record_round_trips_with_literals() {
        let r = parse_record(r#"{"tenant_id":"t","temperature":0.70,"cost_amount":"1.50"}"#, "")
            .unwrap();
        let stored = crate::record::StoredRecord {
            id: uuid::Uuid::now_v7(),
            seq: 7,
            recorded_at: crate::value::Timestamp::now(),
            record: r,
        };
        let json = serde_json::to_string(&stored).unwrap();
        assert!(json.contains(r#""temperature":"0.70""#), "{json}");
        let back: crate::record::StoredRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stored);
    }

    /// OTLP spans and proxied calls are parsed from the JSON value they were mapped to: it
    /// must take and refuse exactly what the same record as text does, in the same words.
    #[test]
    fn a_record_as_a_json_value_parses_as_its_text_does() {
        let texts = [
            r#"{"tenant_id":"t","temperature":0.70,"cost_amount":"1.50","cost_currency":"CHF"}"#,
            r#"{"tenant_id":"t","model_provider":"openai","model_name":"gpt-4o","tokens_input":12,
                "tokens_output":0,"processing_time_ms":800,"success":null,"temperature":"1e-3",
                "event_time":"2026-11-23T10:00:00.5Z","prompt":"Hi","response":"Hello",
                "model_config":{"top_p":0.90,"stop":["\n"],"n":{"deep":[1,2e3,-0.0]}},
                "prompt_variables":{"b":1.50,"a":"x"},"attributes":{"otel.span_id":"ab"}}"#,
            // Read from a value, serde_json writes these numbers its own way (2e-6, 0).
            r#"{"tenant_id":"t","model_config":{"a":0.000002,"b":-0,"c":-1e-7,"d":1E5,"e":0.1e1},
                "prompt_variables":{"x":[0.000001,-0.0,100000000000000000000]}}"#,
            r#"{"tenant_id":"t","reproducibility":{"seed":-0}}"#,
            r#"{"tenant_id":"t","temperature":"abc"}"#,
            r#"{"tenant_id":"t","temperature":-0.5}"#,
            r#"{"tenant_id":"t","tokens_input":-1}"#,
            r#"{"tenant_id":"t","tokens_input":1.5}"#,
            r#"{"tenant_id":"t","zeta":1,"alpha":2}"#,
            r#"{"tenant_id":"t","input":{"record_count":"x"}}"#,
            r#"{"tenant_id":"t","cost_currency":"usd"}"#,
            r#"{"tenant_id":"t","event_time":"yesterday"}"#,
            r#"{"tenant_id":"aitrail.system"}"#,
            r#"{"tenant_id":""}"#,
            r#"{"model_name":"gpt-4o"}"#,
            r#"["tenant_id"]"#,
            r#"["t", null, "u1"]"#,
            r#""t""#,
        ];
        let mut values: Vec<Value> =
            texts.iter().map(|text| serde_json::from_str(text).unwrap()).collect();
        // Built, not parsed: around the deepest nesting whose text parse_record takes.
        for levels in [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 5] {
            let config = (1..levels).fold(serde_json::json!(1), |v, _| serde_json::json!({"a": v}));
            values.push(serde_json::json!({"tenant_id": "t", "model_config": config}));
        }
        for value in values {
            let text = value.to_string();
            let from_text = parse_record(&text, "records[2]").map_err(|e| e.to_string());
            let from_value = parse_record_value(&value, "records[2]").map_err(|e| e.to_string());
            assert_eq!(from_value, from_text, "{text}");
        }
    }
}
