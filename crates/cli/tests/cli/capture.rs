//! Capture with real client libraries: the OpenTelemetry Python SDK, the openai and
//! anthropic packages, and our own Python client.

use super::*;

// ---------------------------------------------------------------------------------------
// Capture with real client libraries (crates/cli/tests/capture): the OpenTelemetry Python
// SDK, and the openai and anthropic packages, from a virtualenv that .ci/run makes from
// requirements.txt. Without it the tests are skipped, loudly; with AITRAIL_TEST_CAPTURE
// (as in CI) they must run.

fn capture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/capture")
}

/// The virtualenv's python, or `None` (and a loud skip) when it is not there.
fn capture_python(test: &str) -> Option<PathBuf> {
    let python = capture_dir().join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let how = format!(
        "needs {} (python3 -m venv {0}/.venv && {0}/.venv/bin/pip install -r {0}/requirements.txt); .ci/run makes it",
        capture_dir().display()
    );
    assert!(std::env::var_os("AITRAIL_TEST_CAPTURE").is_none(), "{test} cannot run: {how}");
    say_skipped(test, &how);
    None
}

/// Run a capture script with these environment variables; its stdout as JSON.
fn run_python(python: &Path, script: &str, env: &[(&str, &str)], server: &ServerProcess) -> Value {
    let out = Command::new(python)
        .arg(capture_dir().join(script))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        server.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn make_key_on(
    server: &ServerProcess,
    rt: &tokio::runtime::Runtime,
    role: &str,
    tenant: &str,
) -> String {
    let body = json!({"role": role, "tenant_id": tenant});
    let made: Value = rt.block_on(async {
        let r = server
            .client()
            .post(format!("{}/v1/keys", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    });
    made["key"].as_str().unwrap().to_owned()
}

/// The tenant's records once there are at least `n` (records arrive after their answer),
/// or what there is after 10 s, for the caller's assertions to name.
pub(crate) fn records_once(
    server: &ServerProcess,
    rt: &tokio::runtime::Runtime,
    tenant: &str,
    n: usize,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let records = records_of(server, rt, tenant);
        if records.len() >= n || std::time::Instant::now() >= deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Wait up to `secs` for `done`, failing with `what` if it never is.
fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn records_of(server: &ServerProcess, rt: &tokio::runtime::Runtime, tenant: &str) -> Vec<Value> {
    rt.block_on(async {
        let url = format!("{}/v1/records?tenant_id={tenant}&limit=1000", server.base);
        let page: Value = server.client().get(url).send().await.unwrap().json().await.unwrap();
        page["records"].as_array().unwrap().clone()
    })
}

#[test]
fn spans_from_the_opentelemetry_python_sdk_become_records_field_by_field() {
    let Some(python) = capture_python("spans_from_the_opentelemetry_python_sdk") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ingest = make_key_on(&server, &rt, "ingest", "acme");
    let sent = run_python(
        &python,
        "otel_spans.py",
        &[("AITRAIL_URL", &server.base), ("AITRAIL_KEY", &ingest)],
        &server,
    );
    assert_eq!(
        sent["exports_succeeded"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|ok| ok == &&json!(true))
            .count(),
        4,
        "{sent}"
    );
    let records = records_of(&server, &rt, "acme");
    assert_eq!(records.len(), 3, "the span without gen_ai attributes is skipped: {records:?}");
    let by_span = |name: &str| {
        let id = sent[name].as_str().unwrap();
        records
            .iter()
            .find(|r| r["attributes"]["otel.span_id"] == id)
            .unwrap_or_else(|| panic!("no record of {name}"))
    };
    let chat = by_span("chat");
    let expected = [
        ("tenant_id", json!("acme")),
        ("model_provider", json!("openai")),
        ("model_name", json!("gpt-4o")),
        ("response_model", json!("gpt-4o-2024-08-06")),
        ("operation_type", json!("chat")),
        ("session_id", json!("conv-42")),
        ("user_id", json!("alice")),
        ("temperature", json!("0.3")),
        ("tokens_input", json!(21)),
        ("tokens_output", json!(9)),
        ("processing_time_ms", json!(842)),
        ("event_time", json!("2025-11-23T12:13:20Z")),
        ("success", json!(true)),
        (
            "model_config",
            json!({"top_p": 0.95, "max_tokens": 200, "seed": 7, "stop_sequences": ["###"], "frequency_penalty": 0.5, "presence_penalty": 0.25}),
        ),
    ];
    for (field, want) in expected {
        assert_eq!(chat[field], want, "{field} of {chat}");
    }
    // Content as the tenant's policy keeps it (default: a 200-character preview).
    assert!(chat["prompt"].as_str().unwrap().contains("What is the capital of France?"), "{chat}");
    assert!(chat["response"].as_str().unwrap().contains("Paris."), "{chat}");
    assert_eq!(chat["attributes"]["otel.trace_id"], sent["trace_id"]);
    assert_eq!(chat["attributes"]["gen_ai.response.id"], "chatcmpl-abc");
    assert_eq!(chat["attributes"]["service.name"], "support-bot");
    let failed = by_span("failed");
    assert_eq!(
        (failed["success"].as_bool(), failed["error_message"].as_str()),
        (Some(false), Some("upstream overloaded"))
    );
    assert_eq!(failed["processing_time_ms"], 1000);
    let legacy = by_span("legacy");
    assert_eq!(
        (
            legacy["model_provider"].as_str(),
            legacy["tokens_input"].as_u64(),
            legacy["tokens_output"].as_u64()
        ),
        (Some("anthropic"), Some(5), Some(8))
    );
    assert_eq!(legacy["prompt"], r#"[{"content":"Say hi","role":"user"}]"#);
    assert_eq!(legacy["response"], r#"[{"content":"Hi!","role":"assistant"}]"#);
    server.stop();
}

/// `aitrail serve` on a data dir in `dir`, proxying to `proxies` (`openai=URL,…`).
fn proxy_server(dir: &Path, proxies: &str) -> ServerProcess {
    let data = dir.join("data");
    ServerProcess::start_with(
        &["--data-dir", data.to_str().unwrap()],
        &[("AITRAIL_PROXY", proxies)],
    )
}

/// The mock provider (tests/capture/mock_upstream.py) on loopback: the process and its URL.
struct MockUpstream {
    child: Child,
    url: String,
}

impl MockUpstream {
    fn start(python: &Path) -> Self {
        Self::start_locking(python, Path::new(""))
    }

    /// A mock whose `locks-the-store` calls take the write lock of the SQLite database
    /// `db` (until [`MockUpstream::unlock`]).
    fn start_locking(python: &Path, db: &Path) -> Self {
        let mut child = Command::new(python)
            .arg(capture_dir().join("mock_upstream.py"))
            .env("MOCK_LOCK_DB", db)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").expect("the mock says its port");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    fn unlock(&self) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = format!("{}/unlock", self.url);
        rt.block_on(async { assert!(reqwest::get(url).await.unwrap().status().is_success()) });
    }

    /// What the mock was sent.
    fn calls(&self) -> Vec<Value> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = format!("{}/calls", self.url);
        rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_openai_and_anthropic_clients_through_the_proxy_are_recorded_field_by_field() {
    let Some(python) = capture_python("the_openai_and_anthropic_clients_through_the_proxy") else {
        return;
    };
    let upstream = MockUpstream::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let server = proxy_server(dir.path(), &format!("openai={0},anthropic={0}", upstream.url));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ingest = make_key_on(&server, &rt, "ingest", "acme");
    let got = run_python(
        &python,
        "proxy_clients.py",
        &[("AITRAIL_URL", &server.base), ("AITRAIL_KEY", &ingest)],
        &server,
    );

    // The clients got the upstream's answers, streams chunk by chunk (the mock pauses 0.3 s
    // between events: the first text arrives long before the last).
    assert_eq!(got["chat"]["text"], "The capital of France is Paris.");
    assert_eq!(got["chat_stream"]["text"], "The capital of France is Paris.");
    assert_eq!(got["chat_stream"]["tokens"], 21);
    assert_eq!(got["embeddings"]["dims"], 3);
    assert_eq!(got["rate_limited"], 429);
    assert_eq!(got["messages"]["text"], "Bonjour, Paris!");
    assert_eq!(got["messages_stream"]["text"], "Bonjour, Paris!");
    for stream in ["chat_stream", "messages_stream"] {
        let (first, total) = (
            got[stream]["first_chunk_s"].as_f64().unwrap(),
            got[stream]["total_s"].as_f64().unwrap(),
        );
        assert!(
            total - first > 0.5,
            "{stream}: first text at {first:.2} s of {total:.2} s: buffered?"
        );
    }
    // The provider keys reached the upstream; the aitrail headers did not.
    let calls = upstream.calls();
    assert_eq!(calls.len(), 6, "{calls:?}");
    for call in &calls {
        assert_eq!(call["aitrail_headers"], json!([]), "{call}");
        assert!(call["accept_encoding"].is_null(), "{call}");
        // The anthropic package sends its key in x-api-key or as a bearer, by version.
        let want = if call["path"] == "/v1/messages" {
            "sk-ant-test-0000-not-a-real-key"
        } else {
            "sk-test-0000-not-a-real-key"
        };
        let bearer = format!("Bearer {want}");
        assert!(call["authorization"] == bearer.as_str() || call["x_api_key"] == want, "{call}");
    }

    // One record per call, field by field; the stream's record is complete once it ends.
    let records = records_once(&server, &rt, "acme", 6);
    assert_eq!(records.len(), 6, "{records:?}");
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("not-a-real-key"), "a provider key was stored");
    let by_model = |m: &str| {
        records.iter().find(|r| r["model_name"] == m).unwrap_or_else(|| panic!("no record of {m}"))
    };
    let chat = by_model("gpt-4o");
    for (field, want) in [
        ("model_provider", json!("openai")),
        ("operation_type", json!("chat")),
        ("temperature", json!("0.2")),
        ("response_model", json!("gpt-4o-2024-08-06")),
        ("tokens_input", json!(14)),
        ("tokens_output", json!(7)),
        ("success", json!(true)),
        ("user_id", json!("bob")),
        ("session_id", json!("sess-7")),
        ("model_config", json!({"seed": 5, "max_tokens": 50})),
        ("response", json!("The capital of France is Paris.")),
    ] {
        assert_eq!(chat[field], want, "{field} of {chat}");
    }
    assert!(chat["prompt"].as_str().unwrap().contains("What is the capital of France?"), "{chat}");
    assert!(chat["processing_time_ms"].is_u64());
    let streamed = by_model("gpt-4o-mini");
    assert_eq!(
        (
            streamed["response"].as_str(),
            streamed["tokens_input"].as_u64(),
            streamed["tokens_output"].as_u64()
        ),
        (Some("The capital of France is Paris."), Some(14), Some(7)),
        "{streamed}"
    );
    assert!(
        streamed["processing_time_ms"].as_u64().unwrap() >= 1000,
        "the stream's record covers the whole stream: {streamed}"
    );
    let embeddings = by_model("text-embedding-3-small");
    assert_eq!(
        (embeddings["operation_type"].as_str(), embeddings["tokens_input"].as_u64()),
        (Some("embeddings"), Some(4))
    );
    let limited = by_model("rate-limited");
    assert_eq!(
        (limited["success"].as_bool(), limited["error_message"].as_str()),
        (Some(false), Some("Rate limit reached for requests"))
    );
    let message = by_model("claude-3-haiku");
    for (field, want) in [
        ("model_provider", json!("anthropic")),
        ("temperature", json!("0.5")),
        ("tokens_input", json!(11)),
        ("tokens_output", json!(5)),
        ("response", json!("Bonjour, Paris!")),
        ("model_config", json!({"max_tokens": 64})),
    ] {
        assert_eq!(message[field], want, "{field} of {message}");
    }
    assert!(message["prompt"].as_str().unwrap().contains("Answer in French."), "{message}");
    let streamed = by_model("claude-3-sonnet");
    assert_eq!(
        (
            streamed["response"].as_str(),
            streamed["tokens_input"].as_u64(),
            streamed["tokens_output"].as_u64()
        ),
        (Some("Bonjour, Paris!"), Some(11), Some(5)),
        "{streamed}"
    );
    server.stop();
}

#[test]
fn when_records_cannot_be_committed_closed_refuses_calls_strict_also_answers_and_open_spools() {
    let Some(python) = capture_python("fail_modes_through_the_proxy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join(aitrail_store_sqlite::DB_FILE);
    let upstream = MockUpstream::start_locking(&python, &db);
    let server = proxy_server(dir.path(), &format!("openai={}", upstream.url));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let closed = make_key_on(&server, &rt, "ingest", "closed"); // the default fail mode
    let strict = make_key_on(&server, &rt, "ingest", "strict");
    let lenient = make_key_on(&server, &rt, "ingest", "lenient");
    rt.block_on(async {
        for (tenant, mode) in [("strict", "strict"), ("lenient", "open")] {
            let url = format!("{}/v1/tenants/{tenant}/policy", server.base);
            let r =
                server.client().put(url).json(&json!({"fail_mode": mode})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let call_on = |server: &ServerProcess, key: &str, model: &str| {
        run_python(
            &python,
            "one_call.py",
            &[("AITRAIL_URL", &server.base), ("AITRAIL_KEY", key), ("MODEL", model)],
            server,
        )
    };
    let call = |key: &str, model: &str| call_on(&server, key, model);
    // A streamed call by hand, to see what of its body came and how it ended: whole (no
    // error), or broken off.
    let streamed = |key: &str, model: &str| -> (u16, String, Option<String>) {
        rt.block_on(async {
            let answer = server
                .client()
                .post(format!("{}/proxy/openai/v1/chat/completions", server.base))
                .header("X-Aitrail-Key", key)
                .bearer_auth("sk-test-0000-not-a-real-key")
                .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let mut answer = answer;
            let mut body = Vec::new();
            loop {
                match answer.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break (status, String::from_utf8(body).unwrap(), None),
                    Err(e) => break (status, String::from_utf8(body).unwrap(), Some(format!("{e:?}"))),
                }
            }
        })
    };
    for key in [&closed, &strict] {
        assert_eq!(call(key, "gpt-4o")["status"], 200, "a call while the store works");
    }

    // Another process takes SQLite's write lock and keeps it (until its stdin closes):
    // every commit now fails (after the store's 10 s busy timeout).
    let hold_write_lock = || {
        let mut lock = Command::new(&python)
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()"])
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        BufReader::new(lock.stdout.take().unwrap()).read_line(&mut said).unwrap();
        assert_eq!(said.trim(), "locked");
        lock
    };
    let release = |mut lock: Child| {
        drop(lock.stdin.take());
        lock.wait().unwrap();
    };
    let lock = hold_write_lock();
    // Within 250 ms of a commit that went through, the proxy trusts the store without
    // asking (docs/PROXY.md); past that window, it asks.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = upstream.calls().len();

    // Open: the call goes through at once; its record waits in the spool.
    let open = call(&lenient, "gpt-4o-open");
    assert_eq!(open["status"], 200, "{open}");
    assert!(open["seconds"].as_f64().unwrap() < 5.0, "the call did not wait for the store: {open}");
    assert_eq!(upstream.calls().len(), before + 1);
    // Closed and strict: the store takes no write, so the call is refused (503) before it
    // reaches the upstream, at once.
    for (key, model) in [(&closed, "gpt-4o-closed"), (&strict, "gpt-4o-strict")] {
        let refused = call(key, model);
        assert_eq!(refused["status"], 503, "{refused}");
        assert!(
            refused["detail"].as_str().unwrap().contains("not let a call go unrecorded"),
            "{refused}"
        );
        assert!(refused["seconds"].as_f64().unwrap() < 5.0, "{refused}");
    }
    assert_eq!(upstream.calls().len(), before + 1, "the upstream was not called");

    // The lock goes: the spooled record is committed; the refused calls left none.
    release(lock);
    let lenient_records = records_once(&server, &rt, "lenient", 1);
    assert_eq!(lenient_records.len(), 1, "the spooled record arrived");
    assert_eq!(lenient_records[0]["model_name"], "gpt-4o-open");
    let models_of = |tenant: &str| -> Vec<Value> {
        records_of(&server, &rt, tenant).iter().map(|r| r["model_name"].clone()).collect()
    };
    assert_eq!(models_of("strict"), [json!("gpt-4o")]);
    assert_eq!(models_of("closed"), [json!("gpt-4o")]);

    // Closed, and the store fails while the call is out (the upstream takes the lock): the
    // answer comes at once; its record waits for the store and arrives once the lock goes.
    // Meanwhile the next calls are refused before they go out.
    let before = upstream.calls().len();
    let answered = call(&closed, "locks-the-store");
    assert_eq!(answered["status"], 200, "{answered}");
    assert!(answered["seconds"].as_f64().unwrap() < 5.0, "the answer did not wait: {answered}");
    assert_eq!(call(&closed, "gpt-4o-after")["status"], 503);
    let (status, body, _) = streamed(&closed, "gpt-4o-stream-after");
    assert_eq!(status, 503, "{body}");
    assert_eq!(upstream.calls().len(), before + 1);
    upstream.unlock();
    wait_until(30, "the closed tenant's record never arrived", || models_of("closed").len() == 2);
    assert_eq!(models_of("closed"), [json!("locks-the-store"), json!("gpt-4o")]);

    // Strict, the same: the answer is withheld, 503 (answer-withheld: the call was made),
    // and nothing is recorded; the upstream was called.
    let before = upstream.calls().len();
    let withheld = call(&strict, "locks-the-store");
    assert_eq!(withheld["status"], 503, "{withheld}");
    assert!(withheld["detail"].as_str().unwrap().contains("answer-withheld"), "{withheld}");
    assert_eq!(upstream.calls().len(), before + 1, "the call went out before the store failed");
    // While the lock is held, the next call is refused before it goes out (within 5 s of a
    // failed commit without asking the store; later, because the store says no).
    assert_eq!(call(&strict, "gpt-4o-after")["status"], 503);
    assert_eq!(upstream.calls().len(), before + 1);
    upstream.unlock();
    // Calls go through again once the store is back (and a commit has: up to 5 s).
    let back = || {
        wait_until(30, "calls never went through again", || {
            call(&strict, "gpt-4o-back")["status"] == 200
        })
    };
    back();
    // Streamed: every chunk comes, but the stream is broken off before its end; the
    // client has the answer, so its record is spooled and arrives once the lock goes.
    let (status, body, broken) = streamed(&strict, "locks-the-store");
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "the chunks came: {body}");
    assert!(broken.is_some(), "a strict stream whose record failed must not end whole");
    upstream.unlock();
    back();
    // A strict stream whose record is committed ends whole.
    let (status, body, broken) = streamed(&strict, "gpt-4o-stream");
    assert_eq!((status, broken), (200, None), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let sorted = |records: Vec<Value>| {
        let mut models: Vec<String> =
            records.iter().map(|r| r["model_name"].as_str().unwrap().to_owned()).collect();
        models.sort();
        models
    };
    let want = ["gpt-4o", "gpt-4o-back", "gpt-4o-back", "gpt-4o-stream", "locks-the-store"];
    wait_until(30, "the strict stream's spooled record never arrived", || {
        sorted(records_of(&server, &rt, "strict")).len() == want.len()
    });
    assert_eq!(sorted(records_of(&server, &rt, "strict")), want);

    // A spooled record outlives its node: spooled while the store is locked, the node is
    // killed (-9); the next node on the data dir finds it in the spool and stores it.
    let lock = hold_write_lock();
    assert_eq!(call(&lenient, "gpt-4o-survives")["status"], 200);
    let spool_dir = dir.path().join("data").join("proxy-spool");
    let spooled = || -> usize {
        std::fs::read_dir(&spool_dir).map_or(0, |d| {
            d.filter(|e| e.as_ref().unwrap().path().extension() == Some("json".as_ref())).count()
        })
    };
    wait_until(30, "the record never reached the spool's directory", || spooled() > 0);
    server.kill9();
    release(lock);
    let next = proxy_server(dir.path(), &format!("openai={}", upstream.url));
    let models = records_once(&next, &rt, "lenient", 2);
    let mut models: Vec<&str> = models.iter().map(|r| r["model_name"].as_str().unwrap()).collect();
    models.sort();
    assert_eq!(models, ["gpt-4o-open", "gpt-4o-survives"], "{}", next.log());
    let survivor = records_of(&next, &rt, "lenient")
        .into_iter()
        .find(|r| r["model_name"] == "gpt-4o-survives")
        .unwrap();
    assert!(
        survivor["event_time"].as_str().unwrap() < survivor["recorded_at"].as_str().unwrap(),
        "the record says when the call happened, not when it was stored: {survivor}"
    );
    wait_until(10, "its file went once it was stored", || spooled() == 0);
    assert!(next.log().contains("records a node left in the proxy's spool"), "{}", next.log());
    // The strict tenant has its records, each once.
    assert_eq!(sorted(records_of(&next, &rt, "strict")), want);

    // A record still in flight when its node is told to stop is not lost: this node has
    // seen no failure, so the call's commit waits out the store's 10 s busy timeout after
    // the answer; SIGTERM at once; the node exits only once the record is in the spool.
    let lock = hold_write_lock();
    assert_eq!(call_on(&next, &lenient, "gpt-4o-at-stop")["status"], 200);
    next.stop();
    assert_eq!(spooled(), 1, "the stopping node waited for the record and spooled it");
    release(lock);
    let last = proxy_server(dir.path(), &format!("openai={}", upstream.url));
    let models = records_once(&last, &rt, "lenient", 3);
    assert!(models.iter().any(|r| r["model_name"] == "gpt-4o-at-stop"), "{}", last.log());
    last.stop();
}

#[test]
fn the_python_client_records_queries_exports_and_verifies_records_itself() {
    let Some(python) = capture_python("the_python_client") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ingest = make_key_on(&server, &rt, "ingest", "acme");
    let auditor = make_key_on(&server, &rt, "auditor", "acme");
    // Full content, so prompt variables are kept (and their commitment checked).
    rt.block_on(async {
        let url = format!("{}/v1/tenants/acme/policy", server.base);
        let r =
            server.client().put(url).json(&json!({"content_mode": "full"})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    let log_key = rt.block_on(async {
        server
            .client()
            .get(format!("{}/v1/log-key", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let export = dir.path().join("compliance-report.json");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/tests/against_server.py");
    let out = Command::new(&python)
        .arg(script)
        .env("AITRAIL_URL", &server.base)
        .env("INGEST_KEY", &ingest)
        .env("AUDITOR_KEY", &auditor)
        .env("LOG_KEY", log_key.trim())
        .env("EXPORT_PATH", &export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["exported"], 2, "{summary}");
    assert!(export.exists());
    // What the client recorded is what the server keeps.
    let records = records_of(&server, &rt, "acme");
    let first = records.iter().find(|r| r["id"] == summary["ids"][0]).unwrap();
    assert_eq!(
        (first["model_name"].as_str(), first["temperature"].as_str()),
        (Some("claude-sonnet-4"), Some("0.7"))
    );
    server.stop();
}

#[test]
fn the_proxy_forwards_only_what_it_records_follows_no_redirect_and_records_calls_whose_client_left()
{
    let Some(python) = capture_python("the_proxy_forwards_only_what_it_records") else { return };
    let upstream = MockUpstream::start(&python);
    let dir = tempfile::tempdir().unwrap();
    // openai over plain HTTP to the mock; anthropic over TLS to the same port, which
    // speaks no TLS: the handshake must be attempted (and fail), not refused as a scheme.
    let port = upstream.url.rsplit(':').next().unwrap();
    let server = proxy_server(
        dir.path(),
        &format!("openai={},anthropic=https://127.0.0.1:{port}", upstream.url),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = make_key_on(&server, &rt, "ingest", "acme");
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |path: &str, body: Value, timeout_ms: u64| {
        let url = format!("{}{path}", server.base);
        rt.block_on(async {
            client
                .post(url)
                .header("x-aitrail-key", &key)
                .header("authorization", "Bearer sk-test-0000-not-a-real-key")
                .json(&body)
                .timeout(std::time::Duration::from_millis(timeout_ms))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    // Paths whose recording could differ from what the upstream serves are refused, unsent.
    // Sent raw: an HTTP client library would resolve the dot segments itself.
    let raw_post = |path: &str| -> String {
        use std::io::Read;
        let body = chat.to_string();
        let mut tcp =
            std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
        write!(
            tcp,
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Aitrail-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    };
    for path in [
        "/proxy/openai/v1/chat/completions%23x",
        "/proxy/openai/v1/%2e%2e/v1/chat/completions",
        "/proxy/openai/x/../v1/chat/completions",
        "/proxy/openai/v1/chat%2Fcompletions",
    ] {
        let status = raw_post(path);
        assert!(status.contains(" 400 "), "{path}: {status}");
    }
    assert!(upstream.calls().is_empty(), "nothing was forwarded");
    // What is aitrail's, or nobody's business upstream, stays here: cookies (the
    // dashboard's session among them), forwarding headers, and an aitrail key wherever it
    // is put. The provider's key passes, and the provider's cookie comes back unchanged.
    let session = "aitrail-session-token-that-must-stay-here";
    let answer = rt.block_on(async {
        client
            .post(format!("{}/proxy/openai/v1/chat/completions", server.base))
            .header("x-aitrail-key", &key)
            .header("cookie", format!("aitrail_session={session}; theme=dark"))
            .header("authorization", format!("Bearer {key}"))
            .header("x-api-key", "sk-test-0000-not-a-real-key")
            .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
            .header("x-forwarded-for", "10.9.8.7")
            .json(&chat)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["set-cookie"], "__cf_bm=mock-provider-cookie; Path=/; HttpOnly");
    let calls = upstream.calls();
    let sent = calls.last().expect("the call was forwarded");
    assert_eq!(sent["cookie"], Value::Null, "{sent}");
    assert_eq!(sent["authorization"], Value::Null, "an aitrail key in Authorization: {sent}");
    assert_eq!(sent["x_api_key"], "sk-test-0000-not-a-real-key", "{sent}");
    let values = sent["header_values"].to_string();
    for secret in [session, key.as_str(), "cHJveHk6c2VjcmV0", "10.9.8.7", "theme=dark"] {
        assert!(!values.contains(secret), "{secret} reached the upstream: {values}");
    }
    // A redirect is the client's to follow, not the proxy's (it could carry the key away).
    let redirect = rt.block_on(async {
        let url = format!("{}/proxy/openai/v1/redirect", server.base);
        client.get(url).header("x-aitrail-key", &key).send().await.unwrap().status().as_u16()
    });
    assert_eq!(redirect, 302);
    // A client that gives up before a slow answer: the call and its record still complete.
    let gave_up =
        post("/proxy/openai/v1/chat/completions", json!({"model": "slow", "messages": []}), 300);
    assert!(gave_up.is_err(), "the client timed out: {gave_up:?}");
    // TLS is spoken to an https upstream.
    let tls = post(
        "/proxy/anthropic/v1/messages",
        json!({"model": "claude-3-haiku", "max_tokens": 5, "messages": []}),
        10_000,
    );
    assert_eq!(tls.unwrap(), 502);
    let records = records_once(&server, &rt, "acme", 3);
    let slow =
        records.iter().find(|r| r["model_name"] == "slow").expect("the slow call is recorded");
    assert_eq!(slow["success"], true, "{slow}");
    assert!(slow["processing_time_ms"].as_u64().unwrap() >= 1000, "{slow}");
    let tls = records
        .iter()
        .find(|r| r["model_provider"] == "anthropic")
        .expect("the failed TLS call is recorded");
    let why = tls["error_message"].as_str().unwrap();
    assert!(!why.contains("scheme"), "TLS was attempted: {why}");
    assert_eq!(tls["success"], false);
    server.stop();
}

#[test]
fn postgres_fail_mode_open_keeps_calls_going_while_the_database_is_unreachable() {
    let Some(python) = capture_python("postgres_fail_mode_open") else { return };
    let Some((db, rt)) = postgres("proxy_open_database_down") else { return };
    let upstream = MockUpstream::start(&python);
    let (private_key, _) = shared_key();
    let proxies = format!("openai={}", upstream.url);
    let server = ServerProcess::start_with(
        &["--database", &db.url],
        &[("AITRAIL_LOG_KEY", &private_key), ("AITRAIL_PROXY", &proxies)],
    );
    let key = make_key_on(&server, &rt, "ingest", "lenient");
    rt.block_on(async {
        let url = format!("{}/v1/tenants/lenient/policy", server.base);
        let r = server.client().put(url).json(&json!({"fail_mode": "open"})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    let call = |model: &str| {
        run_python(
            &python,
            "one_call.py",
            &[("AITRAIL_URL", &server.base), ("AITRAIL_KEY", &key), ("MODEL", model)],
            &server,
        )
    };
    assert_eq!(call("before")["status"], 200);

    // The database takes no connection, and the server's are cut.
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let admin_url = db.url.rsplit_once('/').unwrap().0.to_owned() + "/postgres";
    let psql_at = |sql: &str| {
        let out = Command::new("psql")
            .args([admin_url.as_str(), "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    };
    psql_at(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    psql_at(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    // Past the key and policy caches' second, so the call can only pass on what was last
    // read (the log says so below).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let during = call("during");
    psql_at(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    assert_eq!(during["status"], 200, "the call went through: {during}");
    assert!(during["seconds"].as_f64().unwrap() < 5.0, "{during}");
    let log = server.log();
    assert!(log.contains("could not be committed"), "the database really was unreachable:\n{log}");
    for stale in ["using the key as last read", "using the policy last read"] {
        assert!(log.contains(stale), "the node went on with what it read last ({stale}):\n{log}");
    }

    // Back: the spooled record arrives.
    let mut models = Vec::new();
    for _ in 0..100 {
        let page: Option<Value> = rt.block_on(async {
            let url = format!("{}/v1/records?tenant_id=lenient", server.base);
            server.client().get(url).send().await.ok()?.json().await.ok()
        });
        models = page
            .and_then(|p| p["records"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|r| r["model_name"].as_str().unwrap_or_default().to_owned())
            .collect();
        if models.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    models.sort();
    assert_eq!(models, ["before", "during"], "{}", server.log());
    server.stop();
}
