//! OTLP/JSON (the protobuf JSON mapping with OTLP's exceptions: trace and span ids in hex,
//! enums as integers, 64-bit integers as strings or numbers) read into the protobuf
//! messages, for the fields capture uses; anything else is ignored, as protobuf would.

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, String>;

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{key} is not a list")),
    }
}

fn text(v: &Value, key: &str) -> Result<String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// A 64-bit integer written as a string or a number.
fn int(v: &Value, key: &str) -> Result<i128> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{key} is not an integer: {s:?}")),
        Some(Value::Number(n)) => {
            n.to_string().parse().map_err(|_| format!("{key} is not an integer: {n}"))
        }
        Some(_) => Err(format!("{key} is not an integer")),
    }
}

fn id(v: &Value, key: &str, len: usize) -> Result<Vec<u8>> {
    let text = text(v, key)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = hex::decode(&text).map_err(|_| format!("{key} is not hex: {text:?}"))?;
    if bytes.len() != len {
        return Err(format!("{key} is not {len} bytes of hex"));
    }
    Ok(bytes)
}

fn attributes(v: &Value) -> Result<Vec<KeyValue>> {
    list(v, "attributes")?.iter().map(key_value).collect()
}

fn key_value(kv: &Value) -> Result<KeyValue> {
    let value = kv.get("value").map(any).transpose()?;
    Ok(KeyValue { key: text(kv, "key")?, value, ..Default::default() })
}

fn any(v: &Value) -> Result<AnyValue> {
    let value = if let Some(s) = v.get("stringValue") {
        Some(any_value::Value::StringValue(
            s.as_str().ok_or("stringValue is not a string")?.to_owned(),
        ))
    } else if let Some(b) = v.get("boolValue") {
        Some(any_value::Value::BoolValue(b.as_bool().ok_or("boolValue is not a boolean")?))
    } else if v.get("intValue").is_some() {
        let i = int(v, "intValue")?;
        Some(any_value::Value::IntValue(i64::try_from(i).map_err(|_| "intValue is out of range")?))
    } else if let Some(d) = v.get("doubleValue") {
        let d = match d {
            Value::Number(n) => n.to_string().parse::<f64>().ok(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        Some(any_value::Value::DoubleValue(d.ok_or("doubleValue is not a number")?))
    } else if let Some(a) = v.get("arrayValue") {
        let values = list(a, "values")?.iter().map(any).collect::<Result<_>>()?;
        Some(any_value::Value::ArrayValue(ArrayValue { values }))
    } else if let Some(l) = v.get("kvlistValue") {
        let values = list(l, "values")?.iter().map(key_value).collect::<Result<_>>()?;
        Some(any_value::Value::KvlistValue(KeyValueList { values }))
    } else if let Some(b) = v.get("bytesValue") {
        let b = b.as_str().ok_or("bytesValue is not a string")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| "bytesValue is not base64")?;
        Some(any_value::Value::BytesValue(bytes))
    } else {
        None
    };
    Ok(AnyValue { value })
}

fn nanos(v: &Value, key: &str) -> Result<u64> {
    u64::try_from(int(v, key)?).map_err(|_| format!("{key} is out of range"))
}

fn span(v: &Value) -> Result<Span> {
    let events = list(v, "events")?
        .iter()
        .map(|e| {
            Ok(Event {
                time_unix_nano: nanos(e, "timeUnixNano")?,
                name: text(e, "name")?,
                attributes: attributes(e)?,
                ..Default::default()
            })
        })
        .collect::<Result<_>>()?;
    let status = match v.get("status") {
        None | Some(Value::Null) => None,
        Some(s) => Some(Status {
            message: text(s, "message")?,
            code: i32::try_from(int(s, "code")?).map_err(|_| "status.code is out of range")?,
        }),
    };
    Ok(Span {
        trace_id: id(v, "traceId", 16)?,
        span_id: id(v, "spanId", 8)?,
        parent_span_id: id(v, "parentSpanId", 8)?,
        name: text(v, "name")?,
        kind: i32::try_from(int(v, "kind")?).map_err(|_| "kind is out of range")?,
        start_time_unix_nano: nanos(v, "startTimeUnixNano")?,
        end_time_unix_nano: nanos(v, "endTimeUnixNano")?,
        attributes: attributes(v)?,
        events,
        status,
        ..Default::default()
    })
}

/// An ExportTraceServiceRequest from its OTLP/JSON form.
pub(crate) fn request(v: &Value) -> Result<ExportTraceServiceRequest> {
    if !v.is_object() {
        return Err("the body is not a JSON object".into());
    }
    let resource_spans = list(v, "resourceSpans")?
        .iter()
        .map(|rs| {
            let resource = match rs.get("resource") {
                None | Some(Value::Null) => None,
                Some(r) => Some(Resource { attributes: attributes(r)?, ..Default::default() }),
            };
            let scope_spans = list(rs, "scopeSpans")?
                .iter()
                .map(|ss| {
                    let spans = list(ss, "spans")?.iter().map(span).collect::<Result<_>>()?;
                    Ok(ScopeSpans { spans, ..Default::default() })
                })
                .collect::<Result<_>>()?;
            Ok(ResourceSpans { resource, scope_spans, ..Default::default() })
        })
        .collect::<Result<_>>()?;
    Ok(ExportTraceServiceRequest { resource_spans })
}

/// An ExportTraceServiceResponse in OTLP/JSON.
pub(crate) fn response(answer: &ExportTraceServiceResponse) -> Value {
    match &answer.partial_success {
        None => json!({}),
        Some(p) => json!({"partialSuccess": {
            "rejectedSpans": p.rejected_spans.to_string(),
            "errorMessage": p.error_message,
        }}),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn any_to_json(v: &AnyValue) -> Value {
        match v.value.as_ref() {
            Some(any_value::Value::StringValue(s)) => json!({"stringValue": s}),
            Some(any_value::Value::BoolValue(b)) => json!({"boolValue": b}),
            Some(any_value::Value::IntValue(i)) => json!({"intValue": i.to_string()}),
            Some(any_value::Value::DoubleValue(d)) => json!({"doubleValue": d}),
            Some(any_value::Value::ArrayValue(a)) => {
                json!({"arrayValue": {"values": a.values.iter().map(any_to_json).collect::<Vec<_>>()}})
            }
            _ => json!({}),
        }
    }

    fn attrs(kvs: &[KeyValue]) -> Value {
        kvs.iter()
            .map(|kv| json!({"key": kv.key, "value": kv.value.as_ref().map(any_to_json)}))
            .collect()
    }

    /// The OTLP/JSON an exporter would send for `r` (for the tests: what capture reads).
    pub(crate) fn to_json(r: &ExportTraceServiceRequest) -> Value {
        json!({"resourceSpans": r.resource_spans.iter().map(|rs| json!({
            "resource": {"attributes": attrs(&rs.resource.as_ref().unwrap().attributes)},
            "scopeSpans": rs.scope_spans.iter().map(|ss| json!({"spans": ss.spans.iter().map(|s| json!({
                "traceId": hex::encode(&s.trace_id), "spanId": hex::encode(&s.span_id),
                "name": s.name, "kind": s.kind,
                "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                "endTimeUnixNano": s.end_time_unix_nano,
                "attributes": attrs(&s.attributes),
            })).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()})
    }

    #[test]
    fn malformed_json_is_named() {
        for (body, why) in [
            (json!([]), "not a JSON object"),
            (json!({"resourceSpans": 3}), "resourceSpans is not a list"),
            (
                json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}),
                "traceId is not hex",
            ),
            (
                json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}),
                "startTimeUnixNano is not an integer",
            ),
        ] {
            let e = request(&body).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
    }
}
