//! A provider call seen by the logging proxy, as a record: the request's JSON and the
//! answer (one JSON body, or a server-sent event stream fed chunk by chunk). Only what
//! the call says about itself is read; the bytes are forwarded untouched elsewhere.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// How much of an answer a record keeps by default (`Call::keeping`): its text, or for an
/// answer that is not an event stream, its bytes.
pub const ANSWER_KEPT: usize = 1 << 20;

/// How much of a whole (not streamed) answer is read to make its record: model answers,
/// embeddings batches included, are far smaller. A longer one is kept only in part, raw.
pub const WHOLE_ANSWER_READ: usize = 16 << 20;

/// The longest event-stream line read (a Responses API stream's events may carry whole
/// images). A longer one is passed on untouched but not read, and the record says so:
/// without a bound, one line that never ends would be held whole.
pub const MAX_EVENT_LINE: usize = 16 << 20;

/// The APIs the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI and OpenAI-compatible: /v1/chat/completions, /v1/completions,
    /// /v1/embeddings, /v1/responses.
    OpenAi,
    /// Anthropic: /v1/messages.
    Anthropic,
}

impl Provider {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

/// Request parameters kept in `model_config`.
const CONFIG: [&str; 12] = [
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "seed",
    "stop",
    "stop_sequences",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "stream",
];

/// One call in the making: fed the request, then the answer, then made a record.
#[derive(Debug)]
pub struct Call {
    provider: Provider,
    operation: &'static str,
    request: Value,
    status: u16,
    /// A whole JSON answer, read at the end, up to [`WHOLE_ANSWER_READ`] bytes.
    body: Vec<u8>,
    /// For a stream: the event lines not yet complete, and what they said so far.
    stream: Option<Stream>,
    /// How much of the answer the record keeps.
    kept: usize,
    /// The whole answer, however long: its size and SHA-256, and whether the record keeps
    /// less of it.
    answer_bytes: u64,
    answer_sha256: Sha256,
    truncated: bool,
}

#[derive(Debug, Default)]
struct Stream {
    /// The start of the line being read, up to [`MAX_EVENT_LINE`] bytes.
    pending: Vec<u8>,
    /// The line being read is too long: skipped up to its end.
    skipping: bool,
    /// Lines skipped for being too long.
    lines_too_long: u64,
    text: String,
    model: Option<String>,
    tokens_input: Option<u64>,
    tokens_output: Option<u64>,
    id: Option<String>,
    error: Option<String>,
}

/// The operation a provider path is, or `None` for paths that are not model calls
/// (listing models): forwarded, not recorded.
pub fn operation(provider: Provider, path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    match (provider, path) {
        (Provider::OpenAi, p) if p.ends_with("/chat/completions") => Some("chat"),
        (Provider::OpenAi, p) if p.ends_with("/completions") => Some("completion"),
        (Provider::OpenAi, p) if p.ends_with("/embeddings") => Some("embeddings"),
        (Provider::OpenAi, p) if p.ends_with("/responses") => Some("responses"),
        (Provider::Anthropic, p) if p.ends_with("/messages") => Some("chat"),
        _ => None,
    }
}

impl Call {
    /// A call of `operation` with this request body (JSON, or anything else: then only
    /// the answer is read).
    pub fn new(provider: Provider, operation: &'static str, request: &[u8]) -> Self {
        let request = serde_json::from_slice(request).unwrap_or(Value::Null);
        Self {
            provider,
            operation,
            request,
            status: 0,
            body: Vec::new(),
            stream: None,
            kept: ANSWER_KEPT,
            answer_bytes: 0,
            answer_sha256: Sha256::new(),
            truncated: false,
        }
    }

    /// Keep `bytes` of the answer in the record (text of a stream, bytes of a whole answer).
    pub fn keeping(mut self, bytes: usize) -> Self {
        self.kept = bytes;
        self
    }

    /// The upstream answered with `status`; `event_stream`: its content type is
    /// text/event-stream.
    pub fn answered(&mut self, status: u16, event_stream: bool) {
        self.status = status;
        self.stream = event_stream.then(Stream::default);
    }

    /// A chunk of the answer, as it passes. What is held of it stays within `kept` (and
    /// [`MAX_EVENT_LINE`]) whatever the answer's size.
    pub fn chunk(&mut self, bytes: &[u8]) {
        self.answer_bytes += bytes.len() as u64;
        self.answer_sha256.update(bytes);
        let Some(stream) = self.stream.as_mut() else {
            let room = WHOLE_ANSWER_READ.max(self.kept).saturating_sub(self.body.len());
            self.body.extend_from_slice(&bytes[..room.min(bytes.len())]);
            self.truncated |= bytes.len() > room;
            return;
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, ended) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..=end], true),
                None => (rest, false),
            };
            rest = &rest[line.len()..];
            if !stream.skipping {
                if stream.pending.len() + line.len() > MAX_EVENT_LINE {
                    stream.pending.clear();
                    stream.skipping = true;
                    stream.lines_too_long += 1;
                } else {
                    stream.pending.extend_from_slice(line);
                }
            }
            if ended {
                if !stream.skipping {
                    let line = std::mem::take(&mut stream.pending);
                    stream.line(self.provider, &line);
                    stream.pending = line;
                    stream.pending.clear();
                }
                stream.skipping = false;
            }
        }
        // Cut as it grows, so a stream's text is never held past what the record keeps.
        self.truncated |= cut_to(&mut stream.text, self.kept);
    }

    /// The record (POST /v1/records' JSON, without tenant_id) of the finished call.
    /// `failure`: why the answer did not arrive whole, if it did not.
    pub fn record(mut self, processing_time_ms: u64, failure: Option<&str>) -> Value {
        let mut r = Map::new();
        let req = &self.request;
        r.insert("model_provider".into(), self.provider.name().into());
        r.insert("operation_type".into(), self.operation.into());
        if let Some(model) = req.get("model").and_then(Value::as_str) {
            r.insert("model_name".into(), model.into());
        }
        if let Some(t) = req.get("temperature").filter(|t| t.is_number()) {
            r.insert("temperature".into(), t.clone());
        }
        let config: Map<String, Value> = CONFIG
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), req.get(*k)?.clone())))
            .filter(|(_, v)| !v.is_null())
            .collect();
        if !config.is_empty() {
            r.insert("model_config".into(), Value::Object(config));
        }
        if let Some(prompt) = prompt(self.provider, req) {
            r.insert("prompt".into(), prompt.into());
        }
        r.insert("processing_time_ms".into(), processing_time_ms.into());
        let mut attributes = Map::new();
        attributes.insert("http.status".into(), self.status.into());
        let lines_too_long = self.stream.as_ref().map_or(0, |s| s.lines_too_long);
        let mut answer = match self.stream {
            Some(s) => Answer {
                model: s.model,
                text: (!s.text.is_empty()).then_some(s.text),
                tokens_input: s.tokens_input,
                tokens_output: s.tokens_output,
                id: s.id,
                error: s.error,
            },
            None => match serde_json::from_slice(&self.body) {
                Ok(whole) => answer(self.provider, &whole),
                // Cut: the bytes kept, as text.
                Err(_) if self.truncated => Answer {
                    text: Some(String::from_utf8_lossy(&self.body).into_owned()),
                    ..answer(self.provider, &Value::Null)
                },
                Err(_) => answer(self.provider, &Value::Null),
            },
        };
        if let Some(text) = answer.text.as_mut() {
            self.truncated |= cut_to(text, self.kept);
        }
        if self.truncated {
            // What the record keeps is cut: the whole is named by its size and hash.
            attributes.insert("proxy.answer_truncated".into(), true.into());
            attributes.insert("proxy.answer_bytes".into(), self.answer_bytes.into());
            let sha = hex::encode(self.answer_sha256.finalize());
            attributes.insert("proxy.answer_sha256".into(), sha.into());
        }
        if let Some(model) = answer.model {
            r.insert("response_model".into(), model.into());
        }
        if let Some(text) = answer.text {
            r.insert("response".into(), text.into());
        }
        if let Some(n) = answer.tokens_input {
            r.insert("tokens_input".into(), n.into());
        }
        if let Some(n) = answer.tokens_output {
            r.insert("tokens_output".into(), n.into());
        }
        if let Some(id) = answer.id {
            attributes.insert("provider.response_id".into(), id.into());
        }
        let error = match (failure, self.status) {
            (Some(f), _) => Some(f.to_owned()),
            // What the answer said cannot be told: not a success to put on record.
            (None, _) if lines_too_long > 0 => Some(format!(
                "the event stream held {lines_too_long} line(s) longer than {MAX_EVENT_LINE} \
                 bytes, passed on to the client but not read"
            )),
            (None, 200..=299) => answer.error,
            (None, status) => Some(answer.error.unwrap_or_else(|| format!("HTTP {status}"))),
        };
        r.insert("success".into(), error.is_none().into());
        if let Some(e) = error {
            r.insert("error_message".into(), e.into());
        }
        r.insert("attributes".into(), Value::Object(attributes));
        Value::Object(r)
    }
}

/// Cut `text` to at most `max` bytes, on a character boundary; whether it was cut.
fn cut_to(text: &mut String, max: usize) -> bool {
    let cut = text.len() > max;
    if cut {
        text.truncate(text.floor_char_boundary(max));
    }
    cut
}

/// What an answer said.
struct Answer {
    model: Option<String>,
    text: Option<String>,
    tokens_input: Option<u64>,
    tokens_output: Option<u64>,
    id: Option<String>,
    error: Option<String>,
}

fn text_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn count(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_u64()
}

/// What the provider said in a whole (not streamed) answer.
fn answer(provider: Provider, v: &Value) -> Answer {
    // The Responses API answers `"error": null` when all is well.
    let error = v
        .get("error")
        .filter(|e| !e.is_null())
        .map(|e| text_of(e.get("message")).unwrap_or_else(|| e.to_string()));
    let text = match provider {
        Provider::OpenAi => v["choices"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        text_of(c["message"].get("content")).or_else(|| text_of(c.get("text")))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .or_else(|| text_of(v.get("output_text")))
            .or_else(|| responses_text(v)),
        Provider::Anthropic => v["content"].as_array().map(|blocks| {
            blocks.iter().filter_map(|b| text_of(b.get("text"))).collect::<Vec<_>>().join("")
        }),
    };
    Answer {
        model: text_of(v.get("model")),
        text: text.filter(|t| !t.is_empty()),
        tokens_input: count(v, &["usage", "prompt_tokens"])
            .or_else(|| count(v, &["usage", "input_tokens"])),
        tokens_output: count(v, &["usage", "completion_tokens"])
            .or_else(|| count(v, &["usage", "output_tokens"])),
        id: text_of(v.get("id")),
        error,
    }
}

/// The Responses API's output text: `output[].content[].text`.
fn responses_text(v: &Value) -> Option<String> {
    let parts: Vec<String> = v["output"]
        .as_array()?
        .iter()
        .flat_map(|o| o["content"].as_array().into_iter().flatten())
        .filter_map(|c| text_of(c.get("text")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(""))
}

impl Stream {
    /// One whole line of the stream.
    fn line(&mut self, provider: Provider, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let Some(data) = line.trim_end().strip_prefix("data:") else { return };
        let data = data.trim();
        if data == "[DONE]" {
            return;
        }
        if let Ok(event) = serde_json::from_str::<Value>(data) {
            self.event(provider, &event);
        }
    }

    fn event(&mut self, provider: Provider, e: &Value) {
        match provider {
            Provider::OpenAi => {
                if let Some(model) = text_of(e.get("model")) {
                    self.model = Some(model);
                }
                if self.id.is_none() {
                    self.id = text_of(e.get("id"));
                }
                for choice in e["choices"].as_array().into_iter().flatten() {
                    if let Some(t) = choice["delta"]["content"].as_str().or(choice["text"].as_str())
                    {
                        self.text.push_str(t);
                    }
                }
                // The Responses API streams typed events.
                if e["type"] == "response.output_text.delta"
                    && let Some(t) = e["delta"].as_str()
                {
                    self.text.push_str(t);
                }
                let usage = e.get("usage").or_else(|| e["response"].get("usage"));
                if let Some(u) = usage.filter(|u| u.is_object()) {
                    self.tokens_input = u["prompt_tokens"].as_u64().or(u["input_tokens"].as_u64());
                    self.tokens_output =
                        u["completion_tokens"].as_u64().or(u["output_tokens"].as_u64());
                }
                if let Some(err) = e.get("error").filter(|e| !e.is_null()) {
                    self.error =
                        Some(text_of(err.get("message")).unwrap_or_else(|| err.to_string()));
                }
            }
            Provider::Anthropic => match e["type"].as_str().unwrap_or_default() {
                "message_start" => {
                    let m = &e["message"];
                    self.model = text_of(m.get("model"));
                    self.id = text_of(m.get("id"));
                    self.tokens_input = count(m, &["usage", "input_tokens"]);
                    self.tokens_output = count(m, &["usage", "output_tokens"]);
                }
                "content_block_delta" => {
                    if let Some(t) = e["delta"]["text"].as_str() {
                        self.text.push_str(t);
                    }
                }
                "message_delta" => {
                    if let Some(n) = count(e, &["usage", "output_tokens"]) {
                        self.tokens_output = Some(n);
                    }
                    if let Some(n) = count(e, &["usage", "input_tokens"]) {
                        self.tokens_input = Some(n);
                    }
                }
                "error" => {
                    self.error =
                        Some(text_of(e["error"].get("message")).unwrap_or_else(|| e.to_string()));
                }
                _ => {}
            },
        }
    }
}

/// The prompt of a request, as the JSON of what was sent to the model.
fn prompt(provider: Provider, req: &Value) -> Option<String> {
    let mut parts = Map::new();
    let keys: &[&str] = match provider {
        Provider::OpenAi => &["messages", "prompt", "input", "instructions"],
        Provider::Anthropic => &["system", "messages"],
    };
    for k in keys {
        if let Some(v) = req.get(*k).filter(|v| !v.is_null()) {
            parts.insert((*k).to_owned(), v.clone());
        }
    }
    match parts.len() {
        0 => None,
        // One part alone (the messages) is kept as itself.
        1 => parts.into_iter().next().map(|(_, v)| v.to_string()),
        _ => Some(json!(parts).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(provider: Provider, path: &str, request: Value) -> Call {
        Call::new(provider, operation(provider, path).unwrap(), request.to_string().as_bytes())
    }

    #[test]
    fn paths_are_operations() {
        assert_eq!(operation(Provider::OpenAi, "/v1/chat/completions"), Some("chat"));
        assert_eq!(operation(Provider::OpenAi, "/v1/completions"), Some("completion"));
        assert_eq!(operation(Provider::OpenAi, "/v1/embeddings"), Some("embeddings"));
        assert_eq!(operation(Provider::OpenAi, "/v1/responses"), Some("responses"));
        assert_eq!(operation(Provider::OpenAi, "/v1/models"), None);
        assert_eq!(operation(Provider::Anthropic, "/v1/messages"), Some("chat"));
    }

    #[test]
    fn an_openai_chat_answer() {
        let mut c = call(
            Provider::OpenAi,
            "/v1/chat/completions",
            json!({
            "model": "gpt-4o", "temperature": 0.2, "top_p": 0.9, "seed": 1,
            "messages": [{"role": "user", "content": "Hi"}]}),
        );
        c.answered(200, false);
        let body = json!({"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06",
            "choices": [{"message": {"role": "assistant", "content": "Hello!"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
        .to_string();
        let (a, b) = body.as_bytes().split_at(10);
        c.chunk(a);
        c.chunk(b);
        let r = c.record(120, None);
        assert_eq!(
            r,
            json!({
            "model_provider": "openai", "operation_type": "chat", "model_name": "gpt-4o",
            "temperature": 0.2, "model_config": {"top_p": 0.9, "seed": 1},
            "prompt": r#"[{"content":"Hi","role":"user"}]"#, "processing_time_ms": 120,
            "response_model": "gpt-4o-2024-08-06", "response": "Hello!",
            "tokens_input": 9, "tokens_output": 3, "success": true,
            "attributes": {"http.status": 200, "provider.response_id": "chatcmpl-1"}})
        );
    }

    #[test]
    fn an_openai_stream_split_anywhere_with_usage_in_the_last_chunk() {
        let mut c = call(
            Provider::OpenAi,
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true}),
        );
        c.answered(200, true);
        let events = [
            json!({"id": "c1", "model": "gpt-4o-x", "choices": [{"delta": {"content": "Hel"}}]}),
            json!({"id": "c1", "choices": [{"delta": {"content": "lo"}}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}),
        ];
        let text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>()
            + "data: [DONE]\n\n";
        for piece in text.as_bytes().chunks(7) {
            c.chunk(piece);
        }
        let r = c.record(5, None);
        assert_eq!(
            (r["response"].as_str(), r["response_model"].as_str()),
            (Some("Hello"), Some("gpt-4o-x"))
        );
        assert_eq!((r["tokens_input"].as_u64(), r["tokens_output"].as_u64()), (Some(4), Some(2)));
        assert_eq!(r["model_config"]["stream"], true);
    }

    #[test]
    fn an_anthropic_stream_and_answer() {
        let mut c = call(
            Provider::Anthropic,
            "/v1/messages",
            json!({
            "model": "claude-3-haiku", "max_tokens": 64, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}]}),
        );
        c.answered(200, true);
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-3-haiku-20240307", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi "}}),
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "there"}}),
            json!({"type": "message_delta", "usage": {"output_tokens": 6}}),
        ];
        for e in events {
            c.chunk(format!("event: x\ndata: {e}\n\n").as_bytes());
        }
        let r = c.record(5, None);
        assert_eq!(
            r["prompt"],
            r#"{"messages":[{"content":"Hi","role":"user"}],"system":"Be brief."}"#
        );
        assert_eq!(
            (r["response"].as_str(), r["tokens_input"].as_u64(), r["tokens_output"].as_u64()),
            (Some("Hi there"), Some(12), Some(6))
        );

        let mut c = call(Provider::Anthropic, "/v1/messages", json!({"model": "claude-3-haiku"}));
        c.answered(200, false);
        c.chunk(json!({"id": "msg_2", "model": "claude-3-haiku", "content": [{"type": "text", "text": "Yes."}], "usage": {"input_tokens": 3, "output_tokens": 2}}).to_string().as_bytes());
        let r = c.record(5, None);
        assert_eq!((r["response"].as_str(), r["tokens_output"].as_u64()), (Some("Yes."), Some(2)));
    }

    #[test]
    fn a_responses_api_answer_and_stream() {
        let mut c = call(
            Provider::OpenAi,
            "/v1/responses",
            json!({"model": "gpt-4.1", "input": "Hi", "max_output_tokens": 32}),
        );
        c.answered(200, false);
        c.chunk(json!({"id": "resp_1", "object": "response", "model": "gpt-4.1-2025-04-14", "status": "completed", "error": null,
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hello."}]}],
            "usage": {"input_tokens": 5, "output_tokens": 2}}).to_string().as_bytes());
        let r = c.record(3, None);
        assert_eq!(
            (r["success"].as_bool(), r["response"].as_str()),
            (Some(true), Some("Hello.")),
            "{r}"
        );
        assert_eq!(
            (r["operation_type"].as_str(), r["prompt"].as_str()),
            (Some("responses"), Some(r#""Hi""#))
        );
        assert_eq!((r["tokens_input"].as_u64(), r["tokens_output"].as_u64()), (Some(5), Some(2)));
        let mut c =
            call(Provider::OpenAi, "/v1/responses", json!({"model": "gpt-4.1", "stream": true}));
        c.answered(200, true);
        for e in [
            json!({"type": "response.output_text.delta", "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "delta": "lo."}),
            json!({"type": "response.completed", "response": {"error": null, "usage": {"input_tokens": 5, "output_tokens": 2}}}),
        ] {
            c.chunk(format!("event: x\ndata: {e}\n\n").as_bytes());
        }
        let r = c.record(3, None);
        assert_eq!(
            (r["success"].as_bool(), r["response"].as_str(), r["tokens_output"].as_u64()),
            (Some(true), Some("Hello."), Some(2)),
            "{r}"
        );
    }

    #[test]
    fn errors_and_broken_answers_are_failures() {
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({"model": "gpt-4o"}));
        c.answered(429, false);
        c.chunk(br#"{"error": {"message": "Rate limit reached", "type": "rate_limit"}}"#);
        let r = c.record(1, None);
        assert_eq!(
            (r["success"].as_bool(), r["error_message"].as_str()),
            (Some(false), Some("Rate limit reached"))
        );
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({}));
        c.answered(200, true);
        let r = c.record(1, Some("the upstream closed the stream early"));
        assert_eq!(r["error_message"], "the upstream closed the stream early");
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({}));
        c.answered(502, false);
        c.chunk(b"<html>bad gateway</html>");
        assert_eq!(c.record(1, None)["error_message"], "HTTP 502");
    }

    /// A line that never ends is held up to MAX_EVENT_LINE, skipped to its end, and the
    /// record says what happened rather than claiming a success with no response.
    #[test]
    fn an_event_line_that_never_ends_is_not_held_and_is_on_record() {
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({"stream": true}));
        c.answered(200, true);
        let junk = vec![b'x'; 64 << 10];
        for _ in 0..(3 * MAX_EVENT_LINE / junk.len()) {
            c.chunk(&junk);
            let held = c.stream.as_ref().unwrap().pending.capacity();
            assert!(held <= 2 * MAX_EVENT_LINE, "{held} bytes held");
        }
        c.chunk(b"\ndata: {\"choices\":[{\"delta\":{\"content\":\"after\"}}]}\n");
        let r = c.record(1, None);
        assert_eq!(r["success"], false, "{r}");
        let why = r["error_message"].as_str().unwrap();
        assert!(why.contains(&format!("1 line(s) longer than {MAX_EVENT_LINE} bytes")), "{why}");
        assert_eq!(r["response"], "after", "the lines after it are still read");
    }

    /// The record keeps `kept` bytes of an answer; the whole is named by size and hash.
    #[test]
    fn a_long_answer_is_kept_in_part_with_the_size_and_hash_of_the_whole() {
        let body = format!(r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#, "y".repeat(5000));
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({})).keeping(100);
        c.answered(200, false);
        for part in body.as_bytes().chunks(700) {
            c.chunk(part);
        }
        let r = c.record(1, None);
        let a = &r["attributes"];
        assert_eq!(a["proxy.answer_truncated"], true, "{r}");
        assert_eq!(a["proxy.answer_bytes"], body.len(), "{r}");
        assert_eq!(a["proxy.answer_sha256"], hex::encode(Sha256::digest(body.as_bytes())));
        // Read whole (it is under WHOLE_ANSWER_READ), its text kept in part.
        assert_eq!(r["response"].as_str().unwrap(), "y".repeat(100));
        // A stream's text is cut the same way, on a character boundary.
        let mut c = call(Provider::OpenAi, "/v1/chat/completions", json!({})).keeping(10);
        c.answered(200, true);
        for _ in 0..20 {
            c.chunk("data: {\"choices\":[{\"delta\":{\"content\":\"é\"}}]}\n".as_bytes());
        }
        let r = c.record(1, None);
        assert_eq!(r["response"], "ééééé");
        assert_eq!(r["attributes"]["proxy.answer_truncated"], true);
    }
}
