//! OTLP/HTTP trace exports → records. A span becomes a record when it has at least one
//! `gen_ai.*` attribute; the others are skipped and counted. docs/OTLP.md maps every
//! attribute.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, status};
use prost::Message;
use serde_json::{Map, Value, json};

use crate::otlp_bounds::{self, Bounds};

/// How an export's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// Why an export could not be read at all (the answer is 400).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("the gzip body could not be inflated: {0}")]
    Gzip(std::io::Error),
    #[error("the gzip body inflates beyond {0} bytes")]
    TooLarge(usize),
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(prost::DecodeError),
    #[error(
        "not an OTLP ExportTraceServiceRequest in protobuf: a field runs past the end of its message"
    )]
    Truncated,
    #[error("the export nests values deeper than {0} levels")]
    TooDeep(u32),
    #[error("the export holds more than {0} spans; send it in smaller batches")]
    TooManySpans(usize),
    #[error("the export would take more than {0} bytes once decoded; send it in smaller batches")]
    DecodesTooLarge(usize),
    #[error("not JSON: {0}")]
    Json(serde_json::Error),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    JsonShape(String),
}

/// Spans one export may hold (gen_ai or not): five times the records one may become,
/// which is POST /v1/records' batch limit (the server checks that).
pub const MAX_SPANS: usize = 50_000;

/// What an export may take once decoded, per byte of the body limit. Real exports decode
/// to two to three times their size; empty messages, to a hundred.
pub const DECODED_PER_BODY_BYTE: usize = 8;

/// Read an export: inflate it if `gzip`, up to `limit` bytes, check it against the
/// bounds ([`MAX_SPANS`], [`DECODED_PER_BODY_BYTE`] times `limit`), then decode it.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    gzip: bool,
    limit: usize,
) -> Result<ExportTraceServiceRequest, OtlpError> {
    let inflated;
    let bytes = if gzip {
        let mut out = Vec::new();
        let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
        reader.read_to_end(&mut out).map_err(OtlpError::Gzip)?;
        if out.len() > limit {
            return Err(OtlpError::TooLarge(limit));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    let bounds = Bounds { spans: MAX_SPANS, decoded: limit.saturating_mul(DECODED_PER_BODY_BYTE) };
    match encoding {
        Encoding::Protobuf => {
            otlp_bounds::check_protobuf(bytes, bounds)?;
            ExportTraceServiceRequest::decode(bytes).map_err(OtlpError::Protobuf)
        }
        Encoding::Json => {
            otlp_bounds::check_json(bytes, bounds)?;
            let value: Value = serde_json::from_slice(bytes).map_err(OtlpError::Json)?;
            otlp_bounds::check_json_spans(&value, bounds)?;
            crate::otlp_json::request(&value).map_err(OtlpError::JsonShape)
        }
    }
}

/// The answer to an export, in the request's encoding: empty when every span was taken,
/// else a partial success saying how many were not and why.
/// A message with no rejected span is OTLP's warning form of partial success.
pub fn response(rejected: u64, message: &str, encoding: Encoding) -> Vec<u8> {
    let partial_success =
        (rejected > 0 || !message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message.to_owned(),
        });
    let answer = ExportTraceServiceResponse { partial_success };
    match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        Encoding::Json => crate::otlp_json::response(&answer).to_string().into_bytes(),
    }
}

/// One span as a record (the JSON of POST /v1/records), or why it could not be one.
#[derive(Debug)]
pub struct SpanRecord {
    /// `trace_id/span_id`, to name the span in errors.
    pub span: String,
    pub record: Value,
}

/// What an export held.
#[derive(Debug, Default)]
pub struct Mapped {
    pub records: Vec<SpanRecord>,
    /// Spans without any `gen_ai.*` attribute.
    pub skipped: u64,
}

/// The resource attribute naming the tenant, for keys that are not bound to one.
pub const TENANT_ATTRIBUTE: &str = "aitrail.tenant_id";

/// Every span with `gen_ai.*` attributes as a record. `tenant`: the writing key's tenant;
/// without one, each resource must name its tenant in [`TENANT_ATTRIBUTE`] (a span that
/// names none is left without `tenant_id`, which the record's validation then refuses).
pub fn records(request: &ExportTraceServiceRequest, tenant: Option<&str>) -> Mapped {
    let mut mapped = Mapped::default();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or(&[]);
        let named_tenant = find(resource, TENANT_ATTRIBUTE).and_then(as_text);
        let service = find(resource, "service.name").and_then(as_text);
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                if !span.attributes.iter().any(|kv| kv.key.starts_with("gen_ai."))
                    && !span.events.iter().any(|e| e.name.starts_with("gen_ai."))
                {
                    mapped.skipped += 1;
                    continue;
                }
                let tenant = tenant.map(str::to_owned).or_else(|| named_tenant.clone());
                let record = span_record(span, tenant, service.as_deref());
                let span =
                    format!("{}/{}", hex::encode(&span.trace_id), hex::encode(&span.span_id));
                mapped.records.push(SpanRecord { span, record });
            }
        }
    }
    mapped
}

/// Request parameters kept in `model_config`, by their `gen_ai.request.*` name.
const CONFIG: [&str; 8] = [
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "stop_sequences",
    "frequency_penalty",
    "presence_penalty",
    "choice.count",
];

/// Attributes that become record fields (the rest of `gen_ai.*` goes to `attributes`).
/// Content is among them: it belongs in the content fields, under the tenant's content
/// policy and erasable, never in `attributes` (which the entry keeps).
const MAPPED: [&str; 18] = [
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.request.temperature",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.operation.name",
    "gen_ai.conversation.id",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "error.type",
];

fn span_record(span: &Span, tenant: Option<String>, service: Option<&str>) -> Value {
    let attrs = &span.attributes[..];
    let text = |key: &str| find(attrs, key).and_then(as_text);
    let count = |keys: &[&str]| keys.iter().find_map(|k| find(attrs, k).and_then(as_count));
    let mut r = Map::new();
    let mut put = |field: &str, value: Option<Value>| {
        if let Some(v) = value {
            r.insert(field.to_owned(), v);
        }
    };
    put("tenant_id", tenant.map(Value::String));
    put(
        "model_provider",
        text("gen_ai.provider.name").or_else(|| text("gen_ai.system")).map(Value::String),
    );
    put("model_name", text("gen_ai.request.model").map(Value::String));
    put("response_model", text("gen_ai.response.model").map(Value::String));
    put("operation_type", text("gen_ai.operation.name").map(Value::String));
    put("session_id", text("gen_ai.conversation.id").map(Value::String));
    put(
        "agent_id",
        text("gen_ai.agent.id").or_else(|| text("gen_ai.agent.name")).map(Value::String),
    );
    put("user_id", text("enduser.id").or_else(|| text("user.id")).map(Value::String));
    put(
        "temperature",
        find(attrs, "gen_ai.request.temperature").and_then(any_json).filter(Value::is_number),
    );
    // An agent's span sums the usage of the model calls beneath it, which are spans of
    // their own: counted there, kept here only as attributes (below).
    let operation = text("gen_ai.operation.name");
    let aggregate = matches!(operation.as_deref(), Some("invoke_agent" | "create_agent"));
    if !aggregate {
        let input = count(&["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"]);
        let output = count(&["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"]);
        put("tokens_input", input.map(Value::from));
        put("tokens_output", output.map(Value::from));
    }
    let config: Map<String, Value> = CONFIG
        .iter()
        .filter_map(|k| {
            Some(((*k).to_owned(), any_json(find(attrs, &format!("gen_ai.request.{k}"))?)?))
        })
        .collect();
    put("model_config", (!config.is_empty()).then_some(Value::Object(config)));
    put("event_time", timestamp(span.start_time_unix_nano).map(Value::String));
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        let ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000;
        put("processing_time_ms", Some(Value::from(ms)));
    }
    let status = span.status.as_ref();
    let failed = status.is_some_and(|s| s.code == status::StatusCode::Error as i32)
        || find(attrs, "error.type").is_some();
    put("success", Some(Value::Bool(!failed)));
    if failed {
        let message = status.map(|s| s.message.clone()).filter(|m| !m.is_empty());
        put("error_message", message.or_else(|| text("error.type")).map(Value::String));
    }
    let (prompt, response) = content(span);
    put("prompt", prompt.map(Value::String));
    put("response", response.map(Value::String));

    let mut attributes = Map::new();
    attributes.insert("otel.trace_id".into(), hex::encode(&span.trace_id).into());
    attributes.insert("otel.span_id".into(), hex::encode(&span.span_id).into());
    if !span.parent_span_id.is_empty() {
        attributes.insert("otel.parent_span_id".into(), hex::encode(&span.parent_span_id).into());
    }
    attributes.insert("otel.span_name".into(), span.name.clone().into());
    if let Some(service) = service {
        attributes.insert("service.name".into(), service.into());
    }
    for kv in attrs {
        let usage_of_an_agent = aggregate && kv.key.starts_with("gen_ai.usage.");
        let kept = kv.key.starts_with("gen_ai.")
            && (!MAPPED.contains(&kv.key.as_str()) || usage_of_an_agent)
            && !is_indexed_content(&kv.key)
            && !CONFIG.iter().any(|c| kv.key == format!("gen_ai.request.{c}"));
        if let Some(v) = kept.then(|| kv.value.as_ref().and_then(any_json)).flatten() {
            attributes.insert(kv.key.clone(), v);
        }
    }
    put("attributes", Some(Value::Object(attributes)));
    Value::Object(r)
}

/// OpenLLMetry's older content attributes: `gen_ai.prompt.0.content`, `gen_ai.completion.0.role`.
fn is_indexed_content(key: &str) -> bool {
    key.starts_with("gen_ai.prompt.") || key.starts_with("gen_ai.completion.")
}

/// The prompt and response of a span: `gen_ai.input.messages` / `gen_ai.output.messages`
/// (kept as the JSON they are), else the older forms: OpenLLMetry's indexed attributes,
/// the `gen_ai.content.prompt` / `gen_ai.content.completion` events, and the per-message
/// events (`gen_ai.user.message`, `gen_ai.choice`, …), each as a JSON list of messages.
/// The messages, in whichever form, join the system instructions, tool definitions and tool
/// call arguments of the same span: none of them is dropped for another.
fn content(span: &Span) -> (Option<String>, Option<String>) {
    let attrs = &span.attributes[..];
    // The newer conventions may carry content on the span or, instead, on its
    // `gen_ai.client.inference.operation.details` event.
    let details =
        span.events.iter().find(|e| e.name == "gen_ai.client.inference.operation.details");
    let find_content = |key: &str| {
        find(attrs, key)
            .or_else(|| details.and_then(|e| find(&e.attributes, key)))
            .and_then(any_json)
    };
    let (older_prompt, older_response) = older_content(span);
    let prompt = joined(vec![
        ("system_instructions", find_content("gen_ai.system_instructions")),
        ("tool_definitions", find_content("gen_ai.tool.definitions")),
        ("input_messages", find_content("gen_ai.input.messages").or(older_prompt)),
        ("tool_call_arguments", find_content("gen_ai.tool.call.arguments")),
    ]);
    let response = find_content("gen_ai.output.messages")
        .or_else(|| find_content("gen_ai.tool.call.result"))
        .or(older_response)
        .map(text_of_part);
    (prompt, response)
}

fn text_of_part(v: Value) -> String {
    match v {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// The older content forms' prompt and response, each as a JSON string (of a JSON list of
/// messages, or of the event's text).
fn older_content(span: &Span) -> (Option<Value>, Option<Value>) {
    let attrs = &span.attributes[..];
    let mut prompt = indexed(attrs, "gen_ai.prompt.").map(Value::String);
    let mut response = indexed(attrs, "gen_ai.completion.").map(Value::String);
    let mut asked = Vec::new();
    let mut answered = Vec::new();
    for event in &span.events {
        let ev = &event.attributes[..];
        let text = |key| find(ev, key).and_then(as_text).map(Value::String);
        match event.name.as_str() {
            "gen_ai.content.prompt" => prompt = prompt.or_else(|| text("gen_ai.prompt")),
            "gen_ai.content.completion" => {
                response = response.or_else(|| text("gen_ai.completion"));
            }
            "gen_ai.system.message"
            | "gen_ai.user.message"
            | "gen_ai.assistant.message"
            | "gen_ai.tool.message" => {
                let role = event.name.trim_start_matches("gen_ai.").trim_end_matches(".message");
                let content = find(ev, "content").and_then(any_json).unwrap_or(Value::Null);
                asked.push(json!({"role": role, "content": content}));
            }
            "gen_ai.choice" => {
                let message = find(ev, "message").and_then(any_json);
                let content = find(ev, "content").and_then(any_json);
                answered.push(message.or(content).unwrap_or(Value::Null));
            }
            _ => {}
        }
    }
    let listed = |list: Vec<Value>| (!list.is_empty()).then(|| Value::Array(list).to_string());
    (
        prompt.or_else(|| listed(asked).map(Value::String)),
        response.or_else(|| listed(answered).map(Value::String)),
    )
}

/// A prompt from its parts: one part alone as its text; several as a JSON object of them
/// (a part that is JSON text kept as JSON).
fn joined(parts: Vec<(&str, Option<Value>)>) -> Option<String> {
    let mut present: Vec<(&str, Value)> =
        parts.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    match present.len() {
        0 => None,
        1 => present.pop().map(|(_, one)| text_of_part(one)),
        _ => {
            let object: Map<String, Value> = present
                .into_iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
                        other => other,
                    };
                    (k.to_owned(), value)
                })
                .collect();
            Some(Value::Object(object).to_string())
        }
    }
}

/// `prefix.0.role`, `prefix.0.content`, `prefix.1.…` as a JSON list of messages.
fn indexed(attrs: &[KeyValue], prefix: &str) -> Option<String> {
    let mut messages: Vec<(usize, Map<String, Value>)> = Vec::new();
    for kv in attrs {
        let Some(rest) = kv.key.strip_prefix(prefix) else { continue };
        let Some((index, field)) = rest.split_once('.') else { continue };
        let (Ok(index), Some(value)) =
            (index.parse::<usize>(), kv.value.as_ref().and_then(any_json))
        else {
            continue;
        };
        match messages.iter_mut().find(|(i, _)| *i == index) {
            Some((_, m)) => {
                m.insert(field.to_owned(), value);
            }
            None => messages.push((index, Map::from_iter([(field.to_owned(), value)]))),
        }
    }
    messages.sort_by_key(|(i, _)| *i);
    (!messages.is_empty()).then(|| {
        Value::Array(messages.into_iter().map(|(_, m)| Value::Object(m)).collect()).to_string()
    })
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

fn as_text(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_count(v: &AnyValue) -> Option<u64> {
    match v.value.as_ref()? {
        any_value::Value::IntValue(i) => u64::try_from(*i).ok(),
        any_value::Value::DoubleValue(d) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// A value as JSON; doubles as the shortest number that reads back the same.
fn any_json(v: &AnyValue) -> Option<Value> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Value::String(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::from(*i),
        any_value::Value::DoubleValue(d) => number(*d)?,
        any_value::Value::ArrayValue(a) => {
            Value::Array(a.values.iter().filter_map(any_json).collect())
        }
        any_value::Value::KvlistValue(l) => Value::Object(
            l.values
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), kv.value.as_ref().and_then(any_json)?)))
                .collect(),
        ),
        any_value::Value::BytesValue(b) => Value::String(hex::encode(b)),
        _ => return None,
    })
}

/// A double as a JSON number written the shortest way that reads back the same (0.7, not
/// 0.69999…), as the record keeps decimal literals.
fn number(d: f64) -> Option<Value> {
    if !d.is_finite() {
        return None;
    }
    serde_json::from_str(&format!("{d}")).ok()
}

/// Unix nanoseconds as RFC 3339 UTC.
fn timestamp(nanos: u64) -> Option<String> {
    if nanos == 0 {
        return None;
    }
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span::Event};
    use std::io::Write;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }
    fn s(key: &str, v: &str) -> KeyValue {
        kv(key, any_value::Value::StringValue(v.into()))
    }
    fn i(key: &str, v: i64) -> KeyValue {
        kv(key, any_value::Value::IntValue(v))
    }
    fn d(key: &str, v: f64) -> KeyValue {
        kv(key, any_value::Value::DoubleValue(v))
    }

    fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![s("service.name", "support-bot"), s(TENANT_ATTRIBUTE, "acme")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn chat_span() -> Span {
        let stop = ArrayValue {
            values: vec![AnyValue { value: Some(any_value::Value::StringValue("END".into())) }],
        };
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            name: "chat gpt-4o".into(),
            start_time_unix_nano: 1_763_900_000_000_000_000,
            end_time_unix_nano: 1_763_900_001_250_000_000,
            attributes: vec![
                s("gen_ai.provider.name", "openai"),
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.response.model", "gpt-4o-2024-08-06"),
                d("gen_ai.request.temperature", 0.7),
                d("gen_ai.request.top_p", 0.9),
                i("gen_ai.request.max_tokens", 256),
                i("gen_ai.request.seed", 42),
                kv("gen_ai.request.stop_sequences", any_value::Value::ArrayValue(stop)),
                i("gen_ai.usage.input_tokens", 12),
                i("gen_ai.usage.output_tokens", 30),
                s("gen_ai.conversation.id", "conv-1"),
                s("gen_ai.response.id", "chatcmpl-1"),
                s(
                    "gen_ai.input.messages",
                    r#"[{"role":"user","parts":[{"type":"text","content":"Hi"}]}]"#,
                ),
                s(
                    "gen_ai.output.messages",
                    r#"[{"role":"assistant","parts":[{"type":"text","content":"Hello"}]}]"#,
                ),
                s("http.url", "https://api.openai.com/v1/chat/completions"),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_gen_ai_span_maps_field_by_field() {
        let mapped = records(&export(vec![chat_span()]), None);
        assert_eq!(mapped.skipped, 0);
        let r = &mapped.records[0].record;
        assert_eq!(mapped.records[0].span, format!("{}/{}", "ab".repeat(16), "cd".repeat(8)));
        let want = json!({
            "tenant_id": "acme", "model_provider": "openai", "model_name": "gpt-4o",
            "response_model": "gpt-4o-2024-08-06", "operation_type": "chat", "session_id": "conv-1",
            "tokens_input": 12, "tokens_output": 30, "event_time": "2025-11-23T12:13:20Z",
            "processing_time_ms": 1250, "success": true,
            "model_config": {"top_p": 0.9, "max_tokens": 256, "seed": 42, "stop_sequences": ["END"]},
            "prompt": r#"[{"role":"user","parts":[{"type":"text","content":"Hi"}]}]"#,
            "response": r#"[{"role":"assistant","parts":[{"type":"text","content":"Hello"}]}]"#,
            "attributes": {"otel.trace_id": "ab".repeat(16), "otel.span_id": "cd".repeat(8),
                           "otel.span_name": "chat gpt-4o", "service.name": "support-bot",
                           "gen_ai.response.id": "chatcmpl-1"},
        });
        let mut without_temperature = r.clone();
        let temperature = without_temperature.as_object_mut().unwrap().remove("temperature");
        assert_eq!(without_temperature, want);
        assert_eq!(temperature.unwrap().to_string(), "0.7", "the shortest literal, not 0.69999…");
    }

    #[test]
    fn tool_calls_system_instructions_and_agent_spans() {
        let tool = Span {
            span_id: vec![3; 8],
            attributes: vec![
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.name", "get_weather"),
                s("gen_ai.tool.call.arguments", r#"{"city":"Paris"}"#),
                s("gen_ai.tool.call.result", r#"{"temp":21}"#),
            ],
            ..Default::default()
        };
        let chat = Span {
            span_id: vec![4; 8],
            attributes: vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.system_instructions", "Be brief."),
            ],
            events: vec![Event {
                name: "gen_ai.client.inference.operation.details".into(),
                attributes: vec![
                    s("gen_ai.input.messages", r#"[{"role":"user"}]"#),
                    s("gen_ai.output.messages", "[]"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let agent = Span {
            span_id: vec![5; 8],
            attributes: vec![
                s("gen_ai.operation.name", "invoke_agent"),
                i("gen_ai.usage.input_tokens", 500),
            ],
            ..Default::default()
        };
        let mapped = records(&export(vec![tool, chat, agent]), None);
        let [tool, chat, agent] = [0, 1, 2].map(|n| &mapped.records[n].record);
        assert_eq!(tool["prompt"], r#"{"city":"Paris"}"#);
        assert_eq!(tool["response"], r#"{"temp":21}"#);
        assert_eq!(tool["attributes"]["gen_ai.tool.name"], "get_weather");
        assert!(
            tool["attributes"].get("gen_ai.tool.call.arguments").is_none(),
            "content is not an attribute"
        );
        assert_eq!(
            chat["prompt"],
            r#"{"input_messages":[{"role":"user"}],"system_instructions":"Be brief."}"#
        );
        assert_eq!(chat["response"], "[]");
        assert!(agent.get("tokens_input").is_none(), "an agent's usage is its calls'");
        assert_eq!(agent["attributes"]["gen_ai.usage.input_tokens"], 500);
    }

    #[test]
    fn system_instructions_join_messages_of_the_older_forms() {
        let indexed = Span {
            span_id: vec![6; 8],
            attributes: vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.system_instructions", "Be brief."),
                s("gen_ai.prompt.0.role", "user"),
                s("gen_ai.prompt.0.content", "Why?"),
            ],
            ..Default::default()
        };
        let events = Span {
            span_id: vec![7; 8],
            attributes: vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.tool.definitions", r#"[{"name":"f"}]"#),
            ],
            events: vec![Event {
                name: "gen_ai.user.message".into(),
                attributes: vec![s("content", "Hi")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mapped = records(&export(vec![indexed, events]), None);
        let [indexed, events] = [0, 1].map(|n| &mapped.records[n].record);
        assert_eq!(
            indexed["prompt"],
            r#"{"input_messages":[{"content":"Why?","role":"user"}],"system_instructions":"Be brief."}"#
        );
        assert_eq!(
            events["prompt"],
            r#"{"input_messages":[{"content":"Hi","role":"user"}],"tool_definitions":[{"name":"f"}]}"#
        );
    }

    #[test]
    fn the_keys_tenant_wins_over_the_resources() {
        let mapped = records(&export(vec![chat_span()]), Some("own"));
        assert_eq!(mapped.records[0].record["tenant_id"], "own");
    }

    #[test]
    fn older_names_errors_and_spans_without_gen_ai() {
        let legacy = Span {
            span_id: vec![1; 8],
            attributes: vec![
                s("gen_ai.system", "anthropic"),
                i("gen_ai.usage.prompt_tokens", 5),
                i("gen_ai.usage.completion_tokens", 7),
                s("gen_ai.prompt.0.role", "user"),
                s("gen_ai.prompt.0.content", "Why?"),
                s("gen_ai.prompt.1.role", "assistant"),
                s("gen_ai.prompt.1.content", "Because."),
                s("error.type", "rate_limit_exceeded"),
            ],
            events: vec![Event {
                name: "gen_ai.content.completion".into(),
                attributes: vec![s("gen_ai.completion", "Sorry")],
                ..Default::default()
            }],
            status: Some(Status { code: status::StatusCode::Error as i32, message: String::new() }),
            ..Default::default()
        };
        let plain = Span {
            span_id: vec![2; 8],
            attributes: vec![s("http.method", "GET")],
            ..Default::default()
        };
        let mapped = records(&export(vec![legacy, plain]), None);
        assert_eq!(mapped.skipped, 1);
        let r = &mapped.records[0].record;
        assert_eq!(r["model_provider"], "anthropic");
        assert_eq!((r["tokens_input"].as_u64(), r["tokens_output"].as_u64()), (Some(5), Some(7)));
        assert_eq!(
            r["prompt"],
            r#"[{"content":"Why?","role":"user"},{"content":"Because.","role":"assistant"}]"#
        );
        assert_eq!(r["response"], "Sorry");
        assert_eq!(
            (r["success"].as_bool(), r["error_message"].as_str()),
            (Some(false), Some("rate_limit_exceeded"))
        );
        assert!(r.get("event_time").is_none(), "no start time, no event_time");
    }

    #[test]
    fn protobuf_gzip_and_json_decode_alike() {
        let request = export(vec![chat_span()]);
        let proto = request.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&proto).unwrap();
        let gz = gz.finish().unwrap();
        let json = crate::otlp_json::tests::to_json(&request).to_string().into_bytes();
        // OTLP/JSON: ids in hex, 64-bit integers as strings.
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(&"ab".repeat(16)), "{text}");
        for (bytes, encoding, gzip) in [
            (&proto, Encoding::Protobuf, false),
            (&gz, Encoding::Protobuf, true),
            (&json, Encoding::Json, false),
        ] {
            let back = decode(bytes, encoding, gzip, 1 << 20).unwrap();
            assert_eq!(back, request, "{encoding:?} gzip={gzip}");
        }
        assert!(matches!(decode(&gz, Encoding::Protobuf, true, 10), Err(OtlpError::TooLarge(10))));
        assert!(matches!(
            decode(b"\xff\xff", Encoding::Protobuf, false, 100),
            Err(OtlpError::Protobuf(_))
        ));
        assert!(matches!(decode(b"{", Encoding::Json, false, 100), Err(OtlpError::Json(_))));
        assert!(matches!(decode(&proto, Encoding::Protobuf, true, 100), Err(OtlpError::Gzip(_))));
    }

    #[test]
    fn the_answer_counts_what_was_not_taken() {
        assert!(response(0, "", Encoding::Protobuf).is_empty());
        let answer =
            ExportTraceServiceResponse::decode(&response(3, "why", Encoding::Protobuf)[..])
                .unwrap();
        let partial = answer.partial_success.unwrap();
        assert_eq!((partial.rejected_spans, partial.error_message.as_str()), (3, "why"));
        let json: Value = serde_json::from_slice(&response(2, "x", Encoding::Json)).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedSpans"].to_string().trim_matches('"'), "2");
    }
}
