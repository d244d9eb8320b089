//! Capture benchmarks: (h) what the logging proxy adds to a call's latency, against
//! calling the same mock upstream directly in the same run, at fixed (open-loop) request
//! rates; (i) OTLP ingest of gen_ai spans, in spans/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::json;

use aitrail_store_sqlite::{CHECKPOINT_THREAD, WRITER_THREAD};

use crate::{bench_dir, ms, percentile, spawn_server};

/// A chat completion as a provider answers it.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1763900000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":7,"total_tokens":21}}"#;

const REQUEST: &str = r#"{"model":"gpt-4o","temperature":0.2,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;

/// The record the proxy makes of that call, as a client would POST it itself.
const RECORD: &str = r#"{"tenant_id":"bench-closed","model_provider":"openai","model_name":"gpt-4o","response_model":"gpt-4o-2024-08-06","operation_type":"chat","temperature":0.2,"tokens_input":14,"tokens_output":7,"processing_time_ms":1,"success":true,"prompt":"[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]","response":"The capital of France is Paris."}"#;

async fn mock_upstream() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async { ([("content-type", "application/json")], ANSWER) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Latencies of `rate` requests a second for `seconds`, sent on schedule whatever the
/// answers' pace (open loop), so a slow answer does not hide the next one's wait.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static str,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Vec<Duration>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let mut request = client.post(url).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        tasks.spawn(async move {
            let started = Instant::now();
            let r = request.send().await?;
            anyhow::ensure!(r.status().is_success(), "status {}", r.status());
            r.bytes().await?;
            Ok(started.elapsed())
        });
    }
    let mut lat = Vec::new();
    while let Some(done) = tasks.join_next().await {
        lat.push(done??);
    }
    lat.sort_unstable();
    Ok(lat)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// An export of `n` chat spans, as the OpenTelemetry SDKs send them.
fn export(n: usize, batch: usize) -> Vec<u8> {
    let s = |v: &str| any_value::Value::StringValue(v.into());
    let spans = (0..n)
        .map(|i| Span {
            trace_id: [(batch % 256) as u8; 16].to_vec(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "chat gpt-4o".into(),
            start_time_unix_nano: 1_763_900_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_763_900_000_800_000_000 + i as u64,
            attributes: vec![
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
                kv("gen_ai.request.temperature", any_value::Value::DoubleValue(0.7)),
                kv("gen_ai.request.max_tokens", any_value::Value::IntValue(256)),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(120)),
                kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(48)),
                kv("gen_ai.conversation.id", s(&format!("conv-{}", i / 10))),
                kv("gen_ai.input.messages", s(r#"[{"role":"user","parts":[{"type":"text","content":"Summarise the quarterly report for the board."}]}]"#)),
                kv("gen_ai.output.messages", s(r#"[{"role":"assistant","parts":[{"type":"text","content":"Revenue grew 12% on the quarter; costs were flat."}]}]"#)),
            ],
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

pub fn run(seconds: u32) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let upstream = rt.block_on(mock_upstream())?;
    let dir = bench_dir()?;
    let args = ["--data-dir".to_owned(), dir.path().display().to_string()];
    let proxy = format!("openai={upstream}");
    let mut server = spawn_server(&args, &[("AITRAIL_PROXY", &proxy)])?;
    server._dir = Some(dir);
    let client = reqwest::Client::new();
    let key = |tenant: &str| -> anyhow::Result<String> {
        rt.block_on(async {
            let made: serde_json::Value = client
                .post(format!("{}/v1/keys", server.base))
                .bearer_auth(&server.key)
                .json(&json!({"role": "ingest", "tenant_id": tenant}))
                .send()
                .await?
                .json()
                .await?;
            made["key"].as_str().map(str::to_owned).context("no key made")
        })
    };
    let (closed, strict, open) = (key("bench-closed")?, key("bench-strict")?, key("bench-open")?);
    rt.block_on(async {
        for (tenant, mode) in [("bench-strict", "strict"), ("bench-open", "open")] {
            let r = client
                .put(format!("{}/v1/tenants/{tenant}/policy", server.base))
                .bearer_auth(&server.key)
                .json(&json!({"fail_mode": mode}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "policy: {}", r.status());
        }
        Ok(())
    })?;

    println!("| (h) chat call at | path | p50 ms | p99 ms | added p50 ms | added p99 ms |");
    println!("|---|---|---|---|---|---|");
    let direct_url = format!("{upstream}/v1/chat/completions");
    let proxy_url = format!("{}/proxy/openai/v1/chat/completions", server.base);
    for rate in [200, 1000] {
        let direct = rt.block_on(open_loop(&client, &direct_url, &[], REQUEST, rate, seconds))?;
        let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
        println!("| {rate}/s | direct | {} | {} | | |", ms(d50), ms(d99));
        // What fail mode strict waits for: one record's durable commit, as a client's own
        // POST of the same record (no upstream call) at the same rate.
        let auth = format!("Bearer {closed}");
        let records_url = format!("{}/v1/records", server.base);
        let own = rt.block_on(open_loop(
            &client,
            &records_url,
            &[("authorization", &auth)],
            RECORD,
            rate,
            seconds,
        ))?;
        println!(
            "| {rate}/s | (for scale: POST /v1/records of the call's record) | {} | {} | | |",
            ms(percentile(&own, 0.5)),
            ms(percentile(&own, 0.99))
        );
        for (label, key) in [
            ("proxy, fail mode closed (the default)", &closed),
            ("proxy, fail mode strict", &strict),
            ("proxy, fail mode open", &open),
        ] {
            let headers =
                [("authorization", "Bearer sk-bench-not-a-key"), ("x-aitrail-key", key.as_str())];
            let lat =
                rt.block_on(open_loop(&client, &proxy_url, &headers, REQUEST, rate, seconds))?;
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            println!(
                "| {rate}/s | {label} | {} | {} | {} | {} |",
                ms(p50),
                ms(p99),
                ms(p50.saturating_sub(d50)),
                ms(p99.saturating_sub(d99))
            );
        }
    }

    // (i) OTLP: 100 exports of 1,000 spans, 4 at a time, then 10 (the OpenTelemetry
    // Collector's exporters send with 10 consumers by default: sending_queue.num_consumers).
    let ingest = key("bench-otlp")?;
    let url = format!("{}/v1/traces", server.base);
    let mut where_the_time_went = Vec::new();
    for in_flight in [4, 10] {
        let bodies: Vec<Vec<u8>> = (0..100).map(|b| export(1000, b)).collect();
        let threads_before = thread_times(server.child.id())?;
        let started = Instant::now();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            let mut bodies = bodies.into_iter();
            loop {
                while tasks.len() < in_flight {
                    let Some(body) = bodies.next() else { break };
                    let request = client
                        .post(&url)
                        .bearer_auth(&ingest)
                        .header("content-type", "application/x-protobuf")
                        .body(body);
                    tasks.spawn(async move {
                        let r = request.send().await?;
                        anyhow::ensure!(r.status().is_success(), "OTLP status {}", r.status());
                        let answer = r.bytes().await?;
                        anyhow::ensure!(answer.is_empty(), "a partial success: {answer:?}");
                        Ok(())
                    });
                }
                let Some(done) = tasks.join_next().await else { break };
                done??;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        let elapsed = started.elapsed();
        let threads = thread_times(server.child.id())?;
        println!(
            "| (i) OTLP/HTTP protobuf, 100 exports of 1,000 gen_ai spans, {in_flight} at a time | {:.1} s | {:.0} spans/s |",
            elapsed.as_secs_f64(),
            100_000.0 / elapsed.as_secs_f64()
        );
        let used = |name: &str| {
            let (before, after) = (threads_before.get(name), threads.get(name));
            let (run, wait) = after.copied().unwrap_or_default();
            let (run0, wait0) = before.copied().unwrap_or_default();
            (run - run0, wait - wait0)
        };
        let (writer, writer_waited) = used(WRITER_THREAD);
        let (checkpointer, _) = used(CHECKPOINT_THREAD);
        let all: f64 = threads.keys().map(|name| used(name).0).sum();
        where_the_time_went.push(format!(
            "{in_flight} at a time, the server's threads over the {:.1} s: the SQLite writer ran \
             {writer:.2} s and waited {writer_waited:.2} s for a core; the checkpointer ran \
             {checkpointer:.2} s; all others (HTTP, decoding, mapping, policy, entries) {:.2} s",
            elapsed.as_secs_f64(),
            all - writer - checkpointer
        ));
    }
    println!();
    for line in where_the_time_went {
        println!("{line}");
    }
    Ok(())
}

/// Each thread name's time on a core and waiting for one, in seconds, summed over the
/// process's threads (/proc/PID/task/*/schedstat). A thread that ended is no longer
/// counted, so a span between two readings undercounts threads that ended within it.
fn thread_times(pid: u32) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let mut times = BTreeMap::<String, (f64, f64)>::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        // A thread may end between listing and reading: skip it.
        let (Ok(name), Ok(sched)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("schedstat")),
        ) else {
            continue;
        };
        let mut nanos = sched.split_whitespace().map(|n| n.parse::<f64>().unwrap_or(0.0) / 1e9);
        let (run, wait) = (nanos.next().unwrap_or(0.0), nanos.next().unwrap_or(0.0));
        let total = times.entry(name.trim().to_owned()).or_default();
        total.0 += run;
        total.1 += wait;
    }
    Ok(times)
}
