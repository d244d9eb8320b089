//! The `aitrail` binary, end to end, a file per concern: `commands` (on a data dir and
//! through a server, kill -9), `integrity` (tampering and verify), `postgres`, `import`,
//! `keys`, `export`, `privacy`, `bounds` (hostile inputs against memory and count
//! bounds), `browser` (the dashboard in chromium), `capture` (real client libraries) and
//! `readme` (README.md's commands as pasted). What several of them use is here.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aitrail_store_postgres::testing::TestDatabase;
use serde_json::{Value, json};

mod bounds;
mod browser;
mod capture;
mod commands;
mod export;
mod import;
mod integrity;
mod keys;
mod local_remote;
mod postgres;
mod privacy;
mod readme;

const BIN: &str = env!("CARGO_BIN_EXE_aitrail");

/// A running `aitrail serve` on 127.0.0.1:0, and an admin key for it.
struct ServerProcess {
    child: Child,
    base: String,
    key: String,
    /// Everything the server wrote to stderr (its log), as it comes.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The data dir of a server on PostgreSQL (its proxy spool), so none lands in the
    /// source tree.
    _own_dir: Option<tempfile::TempDir>,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(&["--data-dir", data_dir.to_str().unwrap()], &[])
    }

    /// `aitrail serve` on the store at `location` (`--data-dir D` or `--database URL`), with
    /// these environment variables. A global admin key is made on the store first, offline.
    fn start_with(location: &[&str], env: &[(&str, &str)]) -> Self {
        let own_dir = (!location.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
        let own = own_dir.as_ref().map(|d| d.path().to_str().unwrap().to_owned());
        let location: Vec<&str> =
            location.iter().copied().chain(own.iter().flat_map(|d| ["--data-dir", d])).collect();
        let mut make_key = Command::new(BIN);
        make_key.args(&location).args(["keys", "create", "--role", "admin"]);
        let made = make_key.envs(env.iter().copied()).env_remove("AITRAIL_DATABASE_URL").output();
        let key = ok(&made.unwrap()).trim().to_owned();
        let args = &location;
        let mut child = Command::new(BIN)
            // Durability under load is what these tests load for: no rate limit.
            .args(["serve", "--listen", "127.0.0.1:0", "--checkpoint-interval-ms", "50"])
            .args(["--rate-limit", "0"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove("AITRAIL_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let base = loop {
            let Some(line) = lines.next() else {
                panic!("server exited before listening:\n{}", said.join("\n"))
            };
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("aitrail listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            said.push(line);
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(said));
        let kept = log.clone();
        std::thread::spawn(move || {
            lines.for_each(|l| kept.lock().unwrap().push(l.unwrap_or_default()))
        });
        Self { child, base, key, log, _own_dir: own_dir }
    }

    /// The server's log so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// An HTTP client that sends this server's admin key.
    fn client(&self) -> reqwest::Client {
        http(&self.key)
    }

    /// The server's peak resident memory so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> u64 {
        peak_rss_mib(self.child.id())
    }

    /// The global flags that point a command at this server.
    fn remote(&self) -> [&str; 4] {
        ["--server", &self.base, "--api-key", &self.key]
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait for the clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    vm_hwm_kib(&status).expect("VmHWM in /proc status") / 1024
}

/// An HTTP client that sends `key` as its bearer.
fn http(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Run `aitrail args` to the end; its output and its peak resident memory in MiB, read
/// from /proc every few milliseconds while it runs (VmHWM only grows; growth in the last
/// 2 ms before the process exits goes unseen, as an exited process has no VmHWM: the
/// inputs tested grow memory as they are read, not at the end).
fn run_peak(args: &[&str]) -> (Output, u64) {
    let child = Command::new(BIN)
        .args(args)
        .env_remove("AITRAIL_SERVER")
        .env_remove("AITRAIL_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let watching = done.clone();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while !watching.load(Ordering::Relaxed) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                // A process that has exited but not been waited for has no VmHWM.
                peak = peak.max(vm_hwm_kib(&status).unwrap_or(0));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak / 1024
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    (out, watcher.join().unwrap())
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn aitrail(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("AITRAIL_SERVER")
        .env_remove("AITRAIL_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

const RECORDS: &str = r#"{"tenant_id":"org-1","model_provider":"openai","model_name":"gpt-4o","temperature":"0.9","agent_id":"a1"}
{"tenant_id":"org-1","model_provider":"anthropic","model_name":"claude-3-sonnet","temperature":0.50,"agent_id":"a2","cost_amount":"0.02","cost_currency":"CHF"}
{"tenant_id":"org-1","model_provider":"=cmd","model_name":"x","agent_id":"a3"}
"#;

/// A stopped server's data dir holding 10 records of tenant `tamper` (prompt and response
/// kept), all in a signed checkpoint; returns (dir, ids by seq, published verifier key).
fn signed_log() -> (tempfile::TempDir, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ids, key) = runtime.block_on(async {
        let client = server.client();
        let batch: Vec<Value> = (0..10)
            .map(|i| {
                json!({"tenant_id": "tamper", "model_name": "gpt-4o", "temperature": "0.5",
                            "prompt": format!("prompt {i}"), "response": format!("response {i}")})
            })
            .collect();
        let answer: Value = client
            .post(format!("{}/v1/records?wait=checkpoint", server.base))
            .json(&batch)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        let key = client
            .get(format!("{}/v1/log-key", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (ids, key.trim().to_owned())
    });
    server.stop();
    (dir, ids, key)
}

/// log, list (every format), show: the same answers on the data dir and through a server.
fn log_list_show(location: &[&str]) {
    let with = |args: &[&str]| -> Vec<String> {
        location.iter().chain(args).map(ToString::to_string).collect()
    };
    let run = |args: &[&str], stdin: Option<&str>| {
        let args = with(args);
        aitrail(&args.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    };
    let out = ok(&run(&["log", "-"], Some(RECORDS)));
    let receipts: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(receipts.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);

    let listed: Vec<Value> = serde_json::from_str(&ok(&run(
        &["list", "--format", "json", "--temperature-gt", "0.8"],
        None,
    )))
    .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], receipts[0]["id"]);

    let listed: Vec<Value> = serde_json::from_str(&ok(&run(
        &["list", "--format", "json", "--provider", "anthropic", "--provider", "openai"],
        None,
    )))
    .unwrap();
    assert_eq!(
        listed.iter().map(|r| r["agent_id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["a2", "a1"]
    );

    let table = ok(&run(&["list"], None));
    assert!(
        table.contains("claude-3-sonnet") && table.contains("0.50") && table.contains("0.02 CHF"),
        "{table}"
    );

    let csv_text = ok(&run(&["list", "--format", "csv"], None));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][col("model_provider")], "'=cmd", "formula cell neutralised");
    assert_eq!(&rows[1][col("temperature")], "0.50");

    let paged = run(&["list", "--limit", "2", "--format", "json"], None);
    assert!(String::from_utf8_lossy(&paged.stderr).contains("more records: add --cursor"));
    let all: Vec<Value> = serde_json::from_str(&ok(&run(
        &["list", "--limit", "2", "--all", "--format", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(all.len(), 3);

    let id = receipts[1]["id"].as_str().unwrap();
    let shown: Value = serde_json::from_str(&ok(&run(&["show", id], None))).unwrap();
    assert_eq!(shown["model_name"], "claude-3-sonnet");
    assert_eq!(shown["temperature"], "0.50");

    let missing = run(&["show", "0192b6d8-0000-7000-8000-000000000000"], None);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).starts_with("aitrail: error: no record with id")
    );
}

/// POST a record or a batch; the ids acknowledged, or `None` when the server did not
/// acknowledge (it may be gone).
async fn post_records(client: &reqwest::Client, base: &str, body: &Value) -> Option<Vec<String>> {
    let response = client.post(format!("{base}/v1/records")).json(body).send().await.ok()?;
    if response.status() != 201 {
        return None;
    }
    let answer = response.json::<Value>().await.ok()?;
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();
    Some(match answer.get("results") {
        Some(rs) => rs.as_array().unwrap().iter().map(id).collect(),
        None => vec![id(&answer)],
    })
}

/// 16 writers post singles and small batches; once 200 are acknowledged the server gets
/// SIGKILL while they are still writing. Returns what was acknowledged.
async fn ingest_until_killed(round: usize, server: ServerProcess) -> Vec<(String, String)> {
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
        let client = server.client();
        writers.push(tokio::spawn(async move {
            let tenant = if w % 2 == 0 { "kill-a" } else { "kill-b" };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let one = json!({"tenant_id": tenant, "agent_id": format!("r{round}w{w}i{i}"), "prompt": "x".repeat(512)});
                let body = if i % 3 == 0 { json!([one.clone(), one.clone(), one]) } else { one };
                let Some(ids) = post_records(&client, &base, &body).await else { break };
                acked.lock().unwrap().extend(ids.into_iter().map(|id| (tenant.to_owned(), id)));
            }
        }));
    }
    loop {
        if acked.lock().unwrap().len() >= 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    acked.lock().unwrap().clone()
}

/// A fresh database for this test, or `None` when PostgreSQL is not configured here.
fn postgres(test: &str) -> Option<(TestDatabase, tokio::runtime::Runtime)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDatabase::create(test))?;
    Some((db, runtime))
}

fn psql(db: &TestDatabase, sql: &str) -> String {
    let out = Command::new("psql")
        .args([db.url.as_str(), "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("the psql command-line tool is needed for PostgreSQL tests (apt-get install postgresql-client)");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One log key for every node of a test (a fixed seed: it signs nothing that leaves it).
fn shared_key() -> (String, String) {
    let signer = aitrail_core::note::NoteSigner::from_seed("aitrail", [7; 32]).unwrap();
    (signer.to_private_string(), signer.verifier().to_string())
}

/// A skipped test's line, on the terminal itself: `eprintln!` would be captured by the test
/// harness and never shown for a passing test, so a person running `cargo test` would not
/// know the suite did not run.
fn say_skipped(test: &str, how: &str) {
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED {test}: {how}\n");
}

/// `aitrail serve` on `data_dir` as it is (no key made first); the lines it said before
/// listening, and the server.
fn serve_bare(data_dir: &Path) -> (Vec<String>, Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let base = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.strip_prefix("aitrail listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        said.push(line);
    };
    std::thread::spawn(move || lines.for_each(drop));
    (said, child, base)
}
