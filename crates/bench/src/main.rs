//! Benchmarks behind BENCHMARKS.md. Run: `cargo run --release -p aitrail-bench -- all`.
//!
//! The server runs in this process on its own runtime, over the real SQLite store in a
//! temporary directory, and is driven over loopback HTTP by reqwest clients on another
//! runtime. Figures are printed as Markdown rows.

mod capture;
mod postgres;
mod raw_sqlite;
mod soak;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_store::Store;
use aitrail_store_sqlite::SqliteStore;
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// (a) single-record POSTs at concurrency 1/16/64, (b) batches of 1,000, (c) raw SQLite.
    Ingest {
        /// Seconds of wrk load per concurrency level for (a).
        #[arg(long, default_value_t = 10)]
        singles_seconds: u32,
        /// Batches of 1,000 for (b) and (c).
        #[arg(long, default_value_t = 100)]
        batches: usize,
    },
    /// (d) first page of two-filter queries over N stored records.
    Query {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
    /// Full `aitrail verify` of N stored, checkpointed records.
    Verify {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
    /// `aitrail export` of one tenant's N records to a zip, and `aitrail verify --export`
    /// of it: time and peak memory of each.
    Export {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
    /// Inclusion and consistency proofs from the tiles of a log of N leaves.
    Proofs {
        #[arg(long, default_value_t = 10_000_000)]
        leaves: u64,
    },
    /// PostgreSQL: (e) batch ingest through a node, (f) binary COPY of the same rows into
    /// plain tables, (g) one node against two on one database.
    Postgres {
        /// The server, without a database name; each measurement gets a fresh database.
        #[arg(
            long,
            env = "AITRAIL_TEST_POSTGRES",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        url: String,
        #[arg(long, default_value_t = 100)]
        batches: usize,
        #[arg(long, default_value_t = 10)]
        singles_seconds: u32,
    },
    /// What authentication costs a request: GET /healthz (no key) against GET /v1/log-key
    /// (a key checked), next to single-record ingest, all at 64 connections.
    Auth {
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// The dashboard over N stored records: what a logs page view fetches (the page, the
    /// session, a page of 50 records), over HTTP and in headless chromium; and usage.
    Dashboard {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
    /// Capture: the proxy's added latency against calling a mock upstream directly, at
    /// fixed request rates; OTLP ingest in spans/s.
    Capture {
        /// Seconds of load per rate and path.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Soak: the server for minutes under a steady mixed load (batch writes, list, proof
    /// and export reads, an erasure a minute, a retention run), then a check that nothing
    /// acknowledged was lost and the store verifies; fails on errors, losses, or RSS or
    /// open fds that grew. Not part of `all`.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Records a second written, in batches.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Records a POST.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Seconds between erasures (0: none).
        #[arg(long, default_value_t = 60)]
        erase_every_s: u64,
        /// Run on a fresh database on this PostgreSQL server (a URL without a database
        /// name, e.g. postgres://postgres@127.0.0.1:5432) instead of SQLite.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Everything, with the defaults.
    All,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    machine();
    match cli.which {
        Which::Ingest { singles_seconds, batches } => ingest(singles_seconds, batches),
        Which::Query { records } => query(records),
        Which::Verify { records } => verify(records),
        Which::Export { records } => export(records),
        Which::Proofs { leaves } => proofs(leaves),
        Which::Auth { seconds } => auth(seconds),
        Which::Dashboard { records } => dashboard(records),
        Which::Capture { seconds } => capture::run(seconds),
        Which::Soak { minutes, rate, batch, erase_every_s, postgres } => {
            let erase_every = Duration::from_secs(erase_every_s);
            soak::run(&soak::Options { minutes, rate, batch, erase_every, postgres })
        }
        Which::Postgres { url, batches, singles_seconds } => {
            postgres::run(&url, batches, singles_seconds)
        }
        Which::All => {
            ingest(10, 100)?;
            query(1_000_000)?;
            verify(1_000_000)?;
            export(1_000_000)?;
            dashboard(1_000_000)?;
            capture::run(10)?;
            proofs(10_000_000)
        }
    }
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("machine: {cores} cores, {cpu}");
}

/// A record of about 1 KiB, varied so indexes see realistic spread.
fn record(i: usize) -> Value {
    const PROVIDERS: [&str; 5] = ["openai", "anthropic", "azure", "cohere", "mistral"];
    const MODELS: [&str; 10] = [
        "gpt-4o",
        "claude-3-sonnet",
        "gpt-35-turbo",
        "command-r",
        "mistral-large",
        "gpt-4o-mini",
        "claude-3-haiku",
        "gpt-4-turbo",
        "command-r-plus",
        "mistral-small",
    ];
    const SAFETY: [&str; 3] = ["strict", "balanced", "relaxed"];
    const FEATURES: [&str; 3] = ["workspace", "trustee", "search"];
    let temperature = format!("{}.{}", (i * 7) % 2, (i * 13) % 10);
    json!({
        "tenant_id": format!("tenant-{}", i % 4),
        "user_id": format!("user-{}", i % 1000),
        "agent_id": format!("agent-{}", i % 50),
        "session_id": format!("sess-{}", i / 10),
        "channel": "api",
        "feature_code": FEATURES[i % 3],
        "operation_type": "chat",
        "model_provider": PROVIDERS[i % 5],
        "model_name": MODELS[(i / 5) % 10],
        "model_version": "2024-08-06",
        "deployment_id": format!("deploy-{}", i % 7),
        "temperature": temperature,
        "safety_mode": SAFETY[i % 3],
        "model_config": {"top_p": 0.9, "max_tokens": 1024, "frequency_penalty": 0.5},
        "tokens_input": 400 + i % 300,
        "tokens_output": 200 + i % 500,
        "processing_time_ms": 900 + i % 4000,
        "cost_amount": "0.0042",
        "cost_currency": "USD",
        "prompt": "Summarise the attached quarterly report for the board, focusing on revenue, churn and the hiring plan. Keep it under two hundred words and use a neutral tone. ".repeat(2),
        "response": "Revenue grew 12% quarter on quarter, driven by the enterprise tier; churn fell to 1.8%. Hiring is on plan with 14 of 16 roles filled. ".repeat(2),
        "success": !i.is_multiple_of(50),
        "event_time": "2026-11-01T12:00:00Z",
    })
}

/// The real `aitrail serve` binary (built beside this one) on a fresh data dir, or on a
/// PostgreSQL database.
struct Server {
    base: String,
    /// A global admin key, made on the store before the server started.
    key: String,
    child: std::process::Child,
    /// ERROR lines the server has written to its log so far.
    logged_errors: Arc<std::sync::atomic::AtomicUsize>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Where and as whom to send requests.
    fn target(&self) -> (String, String) {
        (self.base.clone(), self.key.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::tempdir_in(std::env::var("AITRAIL_BENCH_DIR").unwrap_or_else(|_| ".".into()))?)
}

fn start_server(dir: tempfile::TempDir) -> anyhow::Result<Server> {
    start_server_with(dir, &[])
}

/// [`start_server`] with more environment (`serve`'s settings) for the server.
fn start_server_with(dir: tempfile::TempDir, env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let args = ["--data-dir".to_owned(), dir.path().display().to_string()];
    let mut server = spawn_server(&args, env)?;
    server._dir = Some(dir);
    Ok(server)
}

/// A node on a PostgreSQL database; every node of a database gets the same log key.
fn start_node(url: &str) -> anyhow::Result<Server> {
    start_node_with(url, &[])
}

/// [`start_node`] with more environment (`serve`'s settings) for the node.
fn start_node_with(url: &str, env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let key = aitrail_core::note::NoteSigner::from_seed("aitrail", [3; 32])?.to_private_string();
    let mut env = env.to_vec();
    env.push(("AITRAIL_LOG_KEY", &key));
    spawn_server(&["--database".to_owned(), url.to_owned()], &env)
}

fn spawn_server(args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Server> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?.with_file_name("aitrail");
    let made = std::process::Command::new(&exe)
        .args(args)
        .args(["keys", "create", "--role", "admin"])
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {} (cargo build --release first)", exe.display()))?;
    anyhow::ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout)?.trim().to_owned();
    let mut child = std::process::Command::new(&exe)
        // One key drives all the load here: no per-key limit.
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} (cargo build --release first)", exe.display()))?;
    let mut lines = std::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut said = Vec::new();
    let base = loop {
        let Some(line) = lines.next() else {
            anyhow::bail!("server exited before listening: {}", said.join("\n"))
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix("aitrail listening on ") {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
        said.push(line);
    };
    // The server's warnings and errors go on to ours: a figure taken while it failed says so.
    let logged_errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = logged_errors.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("server: {line}");
            }
            if line.contains("ERROR") {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    Ok(Server { base, key, child, logged_errors, _dir: None })
}

/// The next number of a xorshift stream: fixed, cheap, spread enough for picking.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn ingest(singles_seconds: u32, batches: usize) -> anyhow::Result<()> {
    let client_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let size = serde_json::to_vec(&record(1))?.len();
    println!("record size: {size} bytes of JSON");
    println!("| measure | concurrency | records/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");

    // (a) single-record POSTs, driven by wrk: a load generator in C costs this 2-core
    // machine far less CPU than one in Rust on the same cores would.
    for concurrency in [1usize, 16, 64] {
        let server = start_server(bench_dir()?)?;
        let script = wrk_script(&server.key, Some(&record(1).to_string()))?;
        let w = wrk(&server.base, "/v1/records", concurrency, singles_seconds, script.path())?;
        println!(
            "| (a) single POST (wrk, {singles_seconds} s) | {concurrency} | {:.0} | {} | {} |",
            w.rate, w.p50, w.p99
        );
    }

    // (b) batches of 1,000 over HTTP
    let mut batch_rate = 0.0;
    for concurrency in [1usize, 4] {
        let server = start_server(bench_dir()?)?;
        let (elapsed, mut lat) =
            client_rt.block_on(drive(&[server.target()], concurrency, batches, 1000))?;
        lat.sort_unstable();
        let rate = (batches * 1000) as f64 / elapsed.as_secs_f64();
        if concurrency == 1 {
            batch_rate = rate;
        }
        println!(
            "| (b) batch of 1,000 POST | {concurrency} | {rate:.0} | {} | {} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }

    // (c) the same rows straight into SQLite, same schema, same durability, 1,000 a commit.
    let raw_rate = raw_sqlite::insert_rate(batches)?;
    println!("| (c) raw SQLite INSERT, 1,000 a transaction | 1 | {raw_rate:.0} | | |");
    println!("\n(b)/(c) at concurrency 1 = {:.2}", batch_rate / raw_rate);
    Ok(())
}

/// A wrk script that sends `key`, and POSTs `body` (JSON) when there is one.
fn wrk_script(key: &str, body: Option<&str>) -> anyhow::Result<tempfile::NamedTempFile> {
    let script = tempfile::NamedTempFile::new()?;
    let mut lua = format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n");
    if let Some(body) = body {
        lua.push_str(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        );
        lua.push_str(&format!("wrk.body = {}\n", serde_json::to_string(body)?));
    }
    std::fs::write(script.path(), lua)?;
    Ok(script)
}

/// Authentication's cost per request, from three wrk runs at 64 connections against one
/// server: the same trivial answer without a key (/healthz) and with one (/v1/log-key),
/// and single-record ingest for scale.
fn auth(seconds: u32) -> anyhow::Result<()> {
    let server = start_server(bench_dir()?)?;
    // The server's own CPU time per request (wrk shares the cores, so rates alone would
    // measure wrk as much as the server).
    let cpu_seconds = || -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))?;
        let after_name = stat.rsplit_once(')').context("/proc stat")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?; // utime, stime
        Ok(ticks / 100.0)
    };
    let run = |path: &str, body: Option<&str>| -> anyhow::Result<(WrkResult, f64)> {
        let script = wrk_script(&server.key, body)?;
        let before = cpu_seconds()?;
        let w = wrk(&server.base, path, 64, seconds, script.path())?;
        let per_request = (cpu_seconds()? - before) / (w.rate * f64::from(seconds));
        Ok((w, per_request))
    };
    let plain = run("/healthz", None)?;
    let keyed = run("/v1/log-key", None)?;
    let body = record(1).to_string();
    let ingest = run("/v1/records", Some(&body))?;
    println!(
        "| request (wrk, 64 connections, {seconds} s) | requests/s | server CPU µs a request | p99 ms |"
    );
    println!("|---|---|---|---|");
    for (what, (w, cpu)) in [
        ("GET /healthz (no key)", &plain),
        ("GET /v1/log-key (key checked)", &keyed),
        ("POST /v1/records, one record (key checked)", &ingest),
    ] {
        println!("| {what} | {:.0} | {:.1} | {} |", w.rate, cpu * 1e6, w.p99);
    }
    let auth = (keyed.1 - plain.1).max(0.0);
    println!(
        "\nauthentication: {:.1} µs of server CPU a request = {:.1}% of a single-record ingest's {:.1} µs",
        auth * 1e6,
        100.0 * auth / ingest.1,
        ingest.1 * 1e6
    );
    not_found_timing(&server)
}

/// Another tenant's record and a missing one, asked for alternately by a viewer key of
/// tenant-0: the two 404s' latency, which must not tell them apart.
fn not_found_timing(server: &Server) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let exe = std::env::current_exe()?.with_file_name("aitrail");
    let made = std::process::Command::new(&exe)
        .args(["--server", &server.base, "--api-key", &server.key])
        .args(["keys", "create", "--role", "viewer", "--tenant-id", "tenant-0"])
        .output()?;
    let viewer = String::from_utf8(made.stdout)?.trim().to_owned();
    rt.block_on(async {
        let client = reqwest::Client::new();
        // tenant-1's record (records 0..4 go to tenant-0..3).
        let body = Value::Array((0..4).map(record).collect()).to_string();
        let answer: Value = client
            .post(format!("{}/v1/records", server.base))
            .bearer_auth(&server.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        let foreign = answer["results"][1]["id"].as_str().context("a receipt")?.to_owned();
        let missing = uuid::Uuid::now_v7().to_string();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..2_000 {
            // Alternating, in both orders, so neither rides on the other's wake.
            let first = (i / 2) % 2 == 0;
            let (id, lat) =
                if (i % 2 == 0) == first { (&foreign, &mut a) } else { (&missing, &mut b) };
            let t = Instant::now();
            let r = client
                .get(format!("{}/v1/records/{id}", server.base))
                .bearer_auth(&viewer)
                .send()
                .await?;
            anyhow::ensure!(r.status() == 404, "expected 404, got {}", r.status());
            r.bytes().await?;
            lat.push(t.elapsed());
        }
        a.sort_unstable();
        b.sort_unstable();
        println!("\n| 404 for (1,000 each, alternating) | p50 ms | p90 ms | p99 ms |");
        println!("|---|---|---|---|");
        for (what, lat) in [("another tenant's record", &a), ("a missing record", &b)] {
            println!(
                "| {what} | {} | {} | {} |",
                ms(percentile(lat, 0.5)),
                ms(percentile(lat, 0.9)),
                ms(percentile(lat, 0.99))
            );
        }
        Ok(())
    })
}

struct WrkResult {
    rate: f64,
    p50: String,
    p99: String,
}

/// Run wrk (Debian package `wrk`) with one thread and `connections` connections.
fn wrk(
    base: &str,
    path: &str,
    connections: usize,
    seconds: u32,
    script: &std::path::Path,
) -> anyhow::Result<WrkResult> {
    let out = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("{base}{path}"))
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    anyhow::ensure!(!text.contains("Non-2xx"), "the server refused requests: {text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no `{prefix}` in wrk output: {text}"))
    };
    Ok(WrkResult {
        rate: field("Requests/sec:")?.parse()?,
        p50: wrk_ms(&field("50%")?)?,
        p99: wrk_ms(&field("99%")?)?,
    })
}

/// wrk prints latencies as `812.00us`, `4.00ms` or `1.02s`; in milliseconds.
fn wrk_ms(v: &str) -> anyhow::Result<String> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        anyhow::bail!("unknown latency unit in {v}")
    };
    Ok(format!("{:.2}", num.parse::<f64>()? * factor))
}

/// `total` POSTs of `per_request` records from `concurrency` clients, each client on one
/// of `targets` (base URL, API key) in turn; latency per request.
async fn drive(
    targets: &[(String, String)],
    concurrency: usize,
    total: usize,
    per_request: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..concurrency.min(total).max(1) * 2)
            .map(|k| {
                if per_request == 1 {
                    record(k).to_string()
                } else {
                    Value::Array((0..per_request).map(|i| record(k * per_request + i)).collect())
                        .to_string()
                }
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (base, key) = &targets[c % targets.len()];
        let url = format!("{base}/v1/records");
        let auth = format!("Bearer {key}");
        let (next, bodies) = (next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(bodies[k % bodies.len()].clone())
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 201, "status {}", r.status());
                r.bytes().await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((start.elapsed(), all))
}

/// A data dir holding `n` records loaded straight through the store (the ingest path is
/// measured above).
fn loaded_store(n: usize, rt: &tokio::runtime::Runtime) -> anyhow::Result<tempfile::TempDir> {
    loaded_store_of(n, None, rt)
}

/// [`loaded_store`], every record in `tenant` when given.
fn loaded_store_of(
    n: usize,
    tenant: Option<&str>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<tempfile::TempDir> {
    let dir = bench_dir()?;
    std::fs::write(dir.path().join("log-key"), bench_signer().to_private_string() + "\n")?;
    let started = Instant::now();
    rt.block_on(async {
        let store = SqliteStore::open(dir.path(), bench_content_key())?;
        let mut i = 0;
        while i < n {
            let batch: Vec<_> = (i..(i + 10_000).min(n))
                .map(|k| {
                    let mut body = record(k);
                    if let Some(t) = tenant {
                        body["tenant_id"] = json!(t);
                    }
                    let body = body.to_string();
                    parse_body(body.as_bytes(), BodyFormat::Json).unwrap().into_records().remove(0)
                })
                .collect();
            i += batch.len();
            store.append(batch).await.context("loading")?;
        }
        // Signed, as a server would have: exports prove against the latest checkpoint.
        let log = aitrail_server::LogSigner::new(bench_signer(), Duration::from_secs(1));
        log.sign_pending(&store).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    println!("loaded {n} records in {:.1} s", started.elapsed().as_secs_f64());
    Ok(dir)
}

fn query(n: usize) -> anyhow::Result<()> {
    let load_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = loaded_store(n, &load_rt)?;
    let server = start_server(dir)?;
    println!("| (d) first page (50) of | p50 ms | p99 ms | rows |");
    println!("|---|---|---|---|");
    // One client for every query, so connection set-up is not what we measure.
    let client = reqwest::Client::new();
    for q in [
        "model_provider=anthropic&temperature_gt=0.8",
        "model_name=claude-3-haiku&safety_mode=strict",
        "model_provider=azure&since=2026-10-01&until=2026-11-02",
        "tenant_id=tenant-2&user_id=user-998",
        // No record matches both: the worst case, every candidate of one index is checked.
        "model_provider=cohere&user_id=user-4",
    ] {
        let url = format!("{}/v1/records?{q}", server.base);
        let mut lat = Vec::new();
        let mut rows = 0;
        for _ in 0..200 {
            let t = Instant::now();
            let page: Value = load_rt.block_on(async {
                client.get(&url).bearer_auth(&server.key).send().await?.json().await
            })?;
            lat.push(t.elapsed());
            rows = page["records"].as_array().map_or(0, Vec::len);
        }
        lat.sort_unstable();
        println!(
            "| `{q}` | {} | {} | {rows} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }
    Ok(())
}

/// The logs page's filter views, as query strings.
const LOGS_VIEWS: [&str; 5] = [
    "",
    "tenant_id=tenant-2",
    "model_provider=anthropic",
    "model_provider=openai&model_name=gpt-4o",
    "model_provider=cohere&user_id=user-4",
];

fn dashboard(n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = loaded_store(n, &rt)?;
    let server = start_server(dir)?;
    let browser = reqwest::Client::builder().cookie_store(true).build()?;
    rt.block_on(async {
        let r = browser
            .post(format!("{}/v1/session", server.base))
            .json(&json!({"api_key": server.key}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "sign-in failed: {}", r.status());
        Ok(())
    })?;
    println!("| logs page view over HTTP (index, session, 50 records) | p50 ms | p99 ms | rows |");
    println!("|---|---|---|---|");
    for view in LOGS_VIEWS {
        let mut lat = Vec::new();
        let mut rows = 0;
        for _ in 0..100 {
            let t = Instant::now();
            let page: Value = rt.block_on(async {
                browser.get(format!("{}/", server.base)).send().await?.bytes().await?;
                browser.get(format!("{}/v1/session", server.base)).send().await?.bytes().await?;
                let url = format!("{}/v1/records?limit=50&{view}", server.base);
                browser.get(url).send().await?.json().await
            })?;
            lat.push(t.elapsed());
            rows = page["records"].as_array().map_or(0, Vec::len);
        }
        lat.sort_unstable();
        let (p50, p99) = (ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
        println!(
            "| `{}` | {p50} | {p99} | {rows} |",
            if view.is_empty() { "(no filter)" } else { view }
        );
    }
    // The same views in a real browser, from the hash change to the table drawn.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("logs-page.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .env("AITRAIL_URL", &server.base)
        .env("AITRAIL_KEY", &server.key)
        .env("VIEWS", LOGS_VIEWS.join("\n"))
        .output();
    match out {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!("(browser timing failed: {})", String::from_utf8_lossy(&out.stderr)),
        Err(e) => println!("(browser timing not run: node: {e})"),
    }
    // Usage sums every selected record's entry: all of them here, the worst case.
    let mut lat = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report: Value = rt.block_on(async {
            let url = format!("{}/v1/usage?since=2000-01-01&bucket=day", server.base);
            browser.get(url).send().await?.json().await
        })?;
        lat.push(t.elapsed());
        anyhow::ensure!(
            report["totals"]["records"] == json!(n),
            "usage covered {}",
            report["totals"]
        );
    }
    lat.sort_unstable();
    println!("| GET /v1/usage over all {n} records | median {} ms |", ms(percentile(&lat, 0.5)));
    Ok(())
}

/// Full verification by the real binary, of a store with every tenant log checkpointed.
fn verify(n: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = loaded_store(n, &rt)?;
    let key = bench_signer().verifier().to_string();
    let exe = std::env::current_exe()?.with_file_name("aitrail");
    if std::env::var_os("AITRAIL_BENCH_KEEP").is_some() {
        println!("keeping {} (key {key})", dir.path().display());
    }
    let started = Instant::now();
    let out = std::process::Command::new(&exe)
        .args(["verify", "--key", &key, "--data-dir"])
        .arg(dir.path())
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "| full `aitrail verify` | {n} records | {:.1} s | {rate:.0} records/s |",
        elapsed.as_secs_f64()
    );
    // The same run's floor: one pass reading every row and its content, checking nothing.
    let started = Instant::now();
    let conn = rusqlite::Connection::open(dir.path().join(aitrail_store_sqlite::DB_FILE))?;
    let mut stmt = conn.prepare(
        "SELECT r.*, e.entry, c.key_id, c.sealed FROM records r \
         LEFT JOIN entries e ON e.pos = r.pos LEFT JOIN contents c ON c.pos = r.pos",
    )?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        for i in 0..columns {
            bytes += match row.get_ref(i)? {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.len(),
                _ => 8,
            };
        }
    }
    let scan = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "| plain SELECT of the same rows (one thread, no checks; {} MB) | {n} records | {:.1} s | {scan:.0} records/s |",
        bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    println!("\nverify / plain SELECT = {:.2}", rate / scan);
    if std::env::var_os("AITRAIL_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    Ok(())
}

/// A figure in kB of a /proc/<pid>/status text (`key` with its colon, e.g. "VmRSS:"); 0
/// when absent.
fn status_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Run the real binary with `args`; its wall time and peak memory (VmHWM: resident,
/// file-backed pages included; RssAnon: the process's own), sampled every 10 ms.
fn run_measured(args: &[&std::ffi::OsStr]) -> anyhow::Result<(Duration, u64, u64)> {
    let exe = std::env::current_exe()?.with_file_name("aitrail");
    let started = Instant::now();
    let mut child = std::process::Command::new(&exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let status = format!("/proc/{}/status", child.id());
    let (mut hwm, mut anon) = (0, 0);
    let exit = loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            hwm = hwm.max(status_kib(&text, "VmHWM:"));
            anon = anon.max(status_kib(&text, "RssAnon:"));
        }
        if let Some(exit) = child.try_wait()? {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out)?;
    anyhow::ensure!(exit.success(), "{args:?} failed: {out}");
    Ok((elapsed, hwm, anon))
}

/// Export of one tenant's `n` records to a zip by the real binary, then its offline
/// verification; the same run's floor is a plain SELECT of the same rows.
fn export(n: usize) -> anyhow::Result<()> {
    use std::ffi::OsStr;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = loaded_store_of(n, Some("tenant-0"), &rt)?;
    let key = bench_signer().verifier().to_string();
    let zip = dir.path().join("compliance_export.zip");
    let (took, hwm, anon) = run_measured(&[
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
        OsStr::new("export"),
        OsStr::new("--tenant-id"),
        OsStr::new("tenant-0"),
        OsStr::new("-o"),
        zip.as_os_str(),
    ])?;
    let size = std::fs::metadata(&zip)?.len();
    println!("| measure | records | time | records/s | peak RSS (VmHWM) | peak RssAnon |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| `aitrail export` to zip ({} MB) | {n} | {:.1} s | {:.0} | {} MB | {} MB |",
        size / 1_000_000,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        hwm / 1024,
        anon / 1024
    );
    let (took, hwm, anon) = run_measured(&[
        OsStr::new("verify"),
        OsStr::new("--export"),
        zip.as_os_str(),
        OsStr::new("--key"),
        OsStr::new(&key),
    ])?;
    println!(
        "| `aitrail verify --export` of it | {n} | {:.1} s | {:.0} | {} MB | {} MB |",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        hwm / 1024,
        anon / 1024
    );
    if std::env::var_os("AITRAIL_BENCH_KEEP").is_some() {
        println!("kept {} (key {key})", dir.keep().display());
    }
    Ok(())
}

/// Proof latency from tiles alone: a log of `leaves` synthetic leaves is written as tiles
/// (no records needed), then proofs are read through the store like the API does.
fn proofs(leaves: u64) -> anyhow::Result<()> {
    use aitrail_core::merkle::{Hash, leaf_hash};
    use aitrail_core::tiles::{self, Tile};
    let dir = bench_dir()?;
    let tenant = aitrail_core::TenantId::parse("bench").map_err(anyhow::Error::msg)?;
    // Create the schema, then write tiles in chunks of 65,536 leaves.
    drop(SqliteStore::open(dir.path(), bench_content_key())?);
    let started = Instant::now();
    {
        let conn = rusqlite::Connection::open(dir.path().join(aitrail_store_sqlite::DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let mut edge: std::collections::HashMap<tiles::TileId, Tile> =
            std::collections::HashMap::new();
        let mut size = 0u64;
        while size < leaves {
            let n = (leaves - size).min(65_536);
            let new: Vec<Hash> = (size..size + n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let have: Vec<Tile> =
                tiles::partial_edge(size).iter().map(|id| edge[id].clone()).collect();
            let tx = conn.unchecked_transaction()?;
            for t in tiles::append(size, &new, &have)? {
                tx.execute(
                    "INSERT OR REPLACE INTO tiles (tenant_id, level, idx, hashes) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params!["bench", t.id.level, t.id.index as i64, t.to_bytes()],
                )?;
                edge.insert(t.id, t);
            }
            tx.commit()?;
            size += n;
            edge.retain(|id, _| tiles::partial_edge(size).contains(id));
        }
    }
    println!("wrote the tiles of {leaves} leaves in {:.1} s", started.elapsed().as_secs_f64());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let store = SqliteStore::open(dir.path(), bench_content_key())?;
    println!("| proof from tiles, log of {leaves} leaves | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    for kind in ["inclusion", "consistency"] {
        let mut lat = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64; // a fixed xorshift stream of positions
        for _ in 0..2_000 {
            let i = xorshift(&mut x) % leaves;
            let t = Instant::now();
            let proof = rt.block_on(async {
                match kind {
                    "inclusion" => {
                        aitrail_store::proofs::inclusion(&store, &tenant, i, leaves).await
                    }
                    _ => {
                        aitrail_store::proofs::consistency(&store, &tenant, i.max(1), leaves).await
                    }
                }
            })?;
            lat.push(t.elapsed());
            anyhow::ensure!(!proof.is_empty() || i == leaves - 1);
        }
        lat.sort_unstable();
        println!(
            "| {kind} (2,000 random) | {} | {} | {} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }
    Ok(())
}

/// The log key of the stores the bench loads, kept in their data dir (`log-key`) as a
/// server keeps its own, so the commands run on them open their content.
fn bench_signer() -> aitrail_core::note::NoteSigner {
    aitrail_core::note::NoteSigner::from_seed("bench", [1; 32]).expect("a valid key")
}

/// The content key of [`bench_signer`]: what the bench's stores seal content with.
fn bench_content_key() -> aitrail_core::seal::ContentKey {
    aitrail_server::LogSigner::new(bench_signer(), Duration::from_secs(1)).content_key()
}
