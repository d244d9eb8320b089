//! The `aitrail` binary, end to end: commands on a local data dir and against a running
//! server, and the durability promise under kill -9.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_aitrail");

/// A running `aitrail serve` on 127.0.0.1:0.
struct ServerProcess {
    child: Child,
    base: String,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("aitrail listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

#[test]
fn commands_work_on_the_local_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    log_list_show(&["--data-dir", data.to_str().unwrap()]);
}

#[test]
fn commands_work_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    log_list_show(&["--server", &server.base]);
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("srv"));
    let local = dir.path().join("local");
    let bad = "{\"tenant_id\":\"t\"}\n{\"tenant_id\":\"t\",\"temperature\":\"abc\"}\n";
    for location in [["--server", server.base.as_str()], ["--data-dir", local.to_str().unwrap()]] {
        let mut args = location.to_vec();
        args.extend(["log", "-"]);
        let out = aitrail(&args, Some(bad));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("records[1].temperature: not a decimal number"), "{stderr}");
        let mut list = location.to_vec();
        list.extend(["list", "--format", "json"]);
        assert_eq!(ok(&aitrail(&list, None)).trim(), "[]", "nothing stored");
    }
    let out = aitrail(&["--server", &server.base, "list", "--since", "someday"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("since: not an RFC 3339 timestamp"));
    let out = aitrail(&["--data-dir", local.to_str().unwrap(), "log", "/no/such/file"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("aitrail: error: cannot read /no/such/file")
    );
}

#[test]
fn every_command_has_help() {
    for cmd in ["serve", "log", "list", "show"] {
        let out = ok(&aitrail(&[cmd, "--help"], None));
        assert!(out.contains("Usage: aitrail"), "{cmd}");
    }
}

/// kill -9 in the middle of concurrent ingest, five times over: every record the server
/// acknowledged is there after restart, and every tenant's seq is contiguous.
#[test]
fn kill_9_during_concurrent_ingest_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut acknowledged: Vec<(String, String)> = Vec::new(); // (tenant, id)
    for round in 0..5 {
        let server = ServerProcess::start(dir.path());
        let base = server.base.clone();
        let acked = runtime.block_on(ingest_until_killed(base, round, server));
        assert!(
            acked.len() >= 200,
            "round {round}: only {} acknowledged before the kill",
            acked.len()
        );
        acknowledged.extend(acked);
    }
    // Restart once more and check every acknowledged id and every tenant's seq.
    let server = ServerProcess::start(dir.path());
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for (_, id) in &acknowledged {
            let r = client.get(format!("{}/v1/records/{id}", server.base)).send().await.unwrap();
            assert_eq!(r.status(), 200, "acknowledged record {id} lost");
        }
        for tenant in ["kill-a", "kill-b"] {
            let mut seqs = Vec::new();
            let mut cursor = String::new();
            loop {
                let url =
                    format!("{}/v1/records?tenant_id={tenant}&limit=1000{cursor}", server.base);
                let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
                seqs.extend(
                    page["records"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()),
                );
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
            seqs.sort_unstable();
            let expected: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(seqs, expected, "{tenant}: seq must be contiguous from 0");
        }
    });
}

/// 16 writers post singles and small batches; once 200 are acknowledged the server gets
/// SIGKILL while they are still writing. Returns what was acknowledged.
async fn ingest_until_killed(
    base: String,
    round: usize,
    server: ServerProcess,
) -> Vec<(String, String)> {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let tenant = if w % 2 == 0 { "kill-a" } else { "kill-b" };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let one = json!({"tenant_id": tenant, "agent_id": format!("r{round}w{w}i{i}"), "prompt": "x".repeat(512)});
                let body = if i % 3 == 0 { json!([one.clone(), one.clone(), one]) } else { one };
                let sent = client.post(format!("{base}/v1/records")).json(&body).send().await;
                let Ok(response) = sent else { break };
                if response.status() != 201 {
                    break;
                }
                let Ok(answer) = response.json::<Value>().await else { break };
                let ids: Vec<String> = match answer.get("results") {
                    Some(rs) => rs.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect(),
                    None => vec![answer["id"].as_str().unwrap().to_owned()],
                };
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
