//! The `aitrail` binary, end to end: commands on a local data dir and against a running
//! server, and the durability promise under kill -9.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

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

/// An HTTP client that sends `key` as its bearer.
fn http(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
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
    log_list_show(&server.remote());
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("srv"));
    let local = dir.path().join("local");
    let bad = "{\"tenant_id\":\"t\"}\n{\"tenant_id\":\"t\",\"temperature\":\"abc\"}\n";
    for location in [server.remote().to_vec(), vec!["--data-dir", local.to_str().unwrap()]] {
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
    let mut args = server.remote().to_vec();
    args.extend(["list", "--since", "someday"]);
    let out = aitrail(&args, None);
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
        let acked = runtime.block_on(ingest_until_killed(round, server));
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
        let client = server.client();
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

// ---------------------------------------------------------------------------------------
// Tampering: edit the stored log behind the server's back, with SQL on the database file
// (a connection of its own, as the sqlite3 tool would); `aitrail verify` must name each change.

fn sqlite3(db: &Path, sql: &str) {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

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

fn verify(dir: &Path, key: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["--data-dir", dir.to_str().unwrap(), "verify", "--key", key];
    args.extend(extra);
    let out = aitrail(&args, None);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn verify_names_every_kind_of_tampering() {
    let (dir, ids, key) = signed_log();
    let (ok, out) = verify(dir.path(), &key, &[]);
    assert!(ok, "an untouched log verifies: {out}");
    assert!(out.contains("OK: 10 records in 1 tenant log, plus 0 in the system log and "), "{out}");

    let db = |d: &Path| d.join("aitrail.db");
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        ("model_name", "UPDATE records SET model_name = 'gpt-5' WHERE seq = 3".into(),
            vec![format!("MODIFIED  tenant tamper seq 3 id {}: model_name differ from the logged entry", ids[3])]),
        ("temperature", "UPDATE records SET temperature = 0.1 WHERE seq = 4".into(),
            vec![format!("MODIFIED  tenant tamper seq 4 id {}: temperature differ from the logged entry", ids[4])]),
        ("recorded_at", "UPDATE records SET recorded_at = '2020-01-01T00:00:00Z' WHERE seq = 5".into(),
            vec![format!("MODIFIED  tenant tamper seq 5 id {}: recorded_at differ from the logged entry", ids[5])]),
        ("entry and column together",
            "UPDATE records SET model_name = 'gpt-5' WHERE seq = 2; UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), 'gpt-4o', 'gpt-5') AS BLOB) WHERE pos = (SELECT pos FROM records WHERE seq = 2)".into(),
            vec![format!("MODIFIED  tenant tamper seq 2 id {}: entry differs from the logged leaf hash", ids[2])]),
        ("content", "UPDATE contents SET prompt = 'another prompt' WHERE pos = (SELECT pos FROM records WHERE seq = 7)".into(),
            vec![format!("MODIFIED  tenant tamper seq 7 id {}: content prompt does not match its commitment", ids[7])]),
        ("deleted entry", "DELETE FROM entries WHERE pos = (SELECT pos FROM records WHERE seq = 3)".into(),
            vec![format!("MODIFIED  tenant tamper seq 3 id {}: entry unreadable", ids[3])]),
        ("deleted row", "DELETE FROM records WHERE seq = 6".into(),
            vec!["REMOVED   tenant tamper seq 6: the log has this leaf but no record holds it".into()]),
        ("swapped seq", "UPDATE records SET seq = 100 WHERE seq = 1; UPDATE records SET seq = 1 WHERE seq = 8; UPDATE records SET seq = 8 WHERE seq = 100".into(),
            vec![format!("REORDERED tenant tamper seq 1 id {}: this record was logged at seq 8", ids[8]),
                 format!("REORDERED tenant tamper seq 8 id {}: this record was logged at seq 1", ids[1])]),
        ("forged row",
            "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, model_name, success) \
             SELECT '0192b6d8-0000-7000-8000-00000000f0f0', tenant_id, 10, recorded_at, event_time, model_name, success FROM records WHERE seq = 0; \
             INSERT INTO entries (pos, entry) SELECT last_insert_rowid(), entry FROM entries WHERE pos = (SELECT pos FROM records WHERE seq = 0)".into(),
            vec!["INSERTED  tenant tamper seq 10 id 0192b6d8-0000-7000-8000-00000000f0f0: beyond the end of the log (size 10)".into()]),
        ("row of a tenant without a log",
            "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, success) \
             SELECT '0192b6d8-0000-7000-8000-00000000e0e0', 'ghost', 0, recorded_at, event_time, success FROM records WHERE seq = 0".into(),
            vec!["INSERTED  tenant ghost seq 0 id 0192b6d8-0000-7000-8000-00000000e0e0: a record of a tenant that has no log".into()]),
        // The UNIQUE (tenant_id, seq) constraint goes with the table rebuilt without it.
        ("second row at a seq",
            "CREATE TABLE plain AS SELECT * FROM records; DROP TABLE records; ALTER TABLE plain RENAME TO records; \
             INSERT INTO records SELECT * FROM records WHERE seq = 3; \
             UPDATE records SET pos = 1000, id = '0192b6d8-0000-7000-8000-00000000d0d0' WHERE rowid = last_insert_rowid(); \
             INSERT INTO entries (pos, entry) SELECT 1000, entry FROM entries WHERE pos = (SELECT min(pos) FROM records WHERE seq = 3)".into(),
            vec!["INSERTED  tenant tamper seq 3 id 0192b6d8-0000-7000-8000-00000000d0d0: a second record at a seq already taken".into()]),
        ("deleted leaf tile", "DELETE FROM tiles WHERE level = 0".into(),
            vec!["LOG       tenant tamper: the log has no leaf hash for seq 0: its tiles are incomplete".into()]),
        ("overwritten checkpoint", "UPDATE checkpoints SET note = replace(note, char(10) || '10' || char(10), char(10) || '9' || char(10))".into(),
            vec!["CHECKPOINT tenant tamper size 10: signature check failed".into()]),
    ];
    for (name, sql, expected) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        sqlite3(&db(copy.path()), &sql);
        let (ok, out) = verify(copy.path(), &key, &[]);
        assert!(!ok, "{name}: tampering went unnoticed:\n{out}");
        for line in expected {
            assert!(out.contains(&line), "{name}: expected `{line}` in:\n{out}");
        }
        assert!(out.contains("verification FAILED"), "{name}: {out}");
    }
}

#[test]
fn whole_store_verify_through_a_server_pins_the_key_and_names_tampering() {
    let (dir, ids, key) = signed_log();
    let through = |dir: &Path, pinned: &str| {
        let server = ServerProcess::start(dir);
        let out = aitrail(&[&server.remote()[..], &["verify", "--key", pinned]].concat(), None);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server.stop();
        (out.status.success(), said)
    };
    let (ok, out) = through(dir.path(), &key);
    assert!(ok, "{out}");
    assert!(out.contains("OK: the server verified 10 records in 1 tenant log, plus "), "{out}");

    // A server that signs with another key than the one pinned is not taken at its word.
    let other = aitrail_core::note::NoteSigner::from_seed("aitrail", [9; 32]).unwrap().verifier();
    let (ok, out) = through(dir.path(), &other.to_string());
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("not with the pinned key {other}")), "{out}");

    // What the server's own check finds, the command prints, and fails.
    sqlite3(
        &dir.path().join("aitrail.db"),
        "UPDATE records SET model_name = 'gpt-5' WHERE seq = 3",
    );
    let (ok, out) = through(dir.path(), &key);
    assert!(!ok, "tampering went unnoticed: {out}");
    let modified = format!("MODIFIED  tenant tamper seq 3 id {}: model_name differ", ids[3]);
    assert!(out.contains(&modified), "{out}");
    assert!(out.contains("verification FAILED on the server: 1 problem(s) in 10 records"), "{out}");
}

/// A server that answers whole-store verify's three requests as it is told: one that lies,
/// for the checks `verify` makes itself.
fn scripted_server(
    runtime: &tokio::runtime::Runtime,
    log_key: String,
    run: Value,
    checkpoint: String,
) -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/v1/log-key", get(move || async move { log_key }))
        .route("/v1/verification", post(move || async move { axum::Json(run) }))
        .route("/v1/checkpoint", get(move || async move { checkpoint }));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await });
    base
}

#[test]
fn whole_store_verify_through_a_server_checks_each_tenant_checkpoint_itself() {
    use aitrail_core::note::{Checkpoint, NoteSigner};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pinned = NoteSigner::from_seed("aitrail", [7; 32]).unwrap();
    let forger = NoteSigner::from_seed("aitrail", [9; 32]).unwrap();
    let all_logs = json!({"ok": true, "findings": 0, "examples": [],
        "tenants": {"tamper": {"size": 10}, "aitrail.access": {"size": 3}}});
    let one_tenant = json!({"ok": true, "findings": 0, "examples": [], "tenant": "tamper",
        "tenants": {"tamper": {"size": 10}}});
    let signed = |by: &NoteSigner, origin: &str| {
        by.sign(&Checkpoint { origin: origin.into(), size: 10, root: [1; 32] }.to_text()).unwrap()
    };
    let cases = [
        (
            &pinned,
            "aitrail/tamper",
            &all_logs,
            Ok(
                "OK: the server verified 10 records in 1 tenant log, plus 0 in the system log and 3 in the access log",
            ),
        ),
        (
            &pinned,
            "aitrail/tamper",
            &one_tenant,
            Ok("10 records in 1 tenant log (this key does not see the system and access logs)"),
        ),
        (&forger, "aitrail/tamper", &all_logs, Err("the latest checkpoint of tenant tamper")),
        (&pinned, "aitrail/other", &all_logs, Err("is of another log: aitrail/other")),
    ];
    for (signer, origin, run, expected) in cases {
        let base = scripted_server(
            &runtime,
            pinned.verifier().to_string(),
            run.clone(),
            signed(signer, origin),
        );
        let key = pinned.verifier().to_string();
        let out =
            aitrail(&["--server", &base, "--api-key", "ait_x", "verify", "--key", &key], None);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (ok, text) = match expected {
            Ok(text) => (true, text),
            Err(text) => (false, text),
        };
        assert_eq!(out.status.success(), ok, "{origin}: {said}");
        assert!(said.contains(text), "{origin}: expected {text:?} in {said}");
    }
}

#[test]
fn verify_against_another_key_fails() {
    let (dir, _, _) = signed_log();
    // Same log name, another key: what a forger holding the database but not the key has.
    let other = aitrail_core::note::NoteSigner::from_seed("aitrail", [9; 32]).unwrap().verifier();
    let (ok, out) = verify(dir.path(), &other.to_string(), &[]);
    assert!(!ok);
    assert!(out.contains("CHECKPOINT tenant tamper size 10: signature check failed"), "{out}");
}

#[test]
fn verify_one_record_and_a_saved_checkpoint() {
    let (dir, ids, key) = signed_log();
    let (ok, out) = verify(dir.path(), &key, &[&ids[4]]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "OK: record {} (tenant tamper, seq 4) is in the log of size 10",
            ids[4]
        )),
        "{out}"
    );
    // The shown record must be the logged one, content included.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    sqlite3(&copy.path().join("aitrail.db"), "UPDATE contents SET response = 'edited'");
    let (ok, out) = verify(copy.path(), &key, &[&ids[4]]);
    assert!(!ok && out.contains("does not match its commitment"), "{out}");

    // Save today's checkpoint, grow the log, prove it only grew.
    let saved = dir.path().join("saved.checkpoint");
    let cp = ok_stdout(&aitrail(&["--data-dir", dir.path().to_str().unwrap(), "checkpoint"], None));
    assert!(cp.starts_with("aitrail/tamper\n10\n"), "{cp}");
    std::fs::write(&saved, &cp).unwrap();
    let server = ServerProcess::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        server
            .client()
            .post(format!("{}/v1/records?wait=checkpoint", server.base))
            .json(&json!([{"tenant_id": "tamper"}, {"tenant_id": "tamper"}]))
            .send()
            .await
            .unwrap();
    });
    let (ok, out) = verify(dir.path(), &key, &["--checkpoint", saved.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("at size 12 extends the saved checkpoint of size 10"), "{out}");
    let remote = aitrail(
        &[
            "--server",
            &server.base,
            "--api-key",
            &server.key,
            "verify",
            "--key",
            &key,
            "--checkpoint",
            saved.to_str().unwrap(),
        ],
        None,
    );
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    server.stop();

    // A log rewritten under the same key (another history of 12 records) is caught.
    let forged = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("log-key"), forged.path().join("log-key")).unwrap();
    let server = ServerProcess::start(forged.path());
    rt.block_on(async {
        let batch: Vec<Value> = (0..12)
            .map(|i| json!({"tenant_id": "tamper", "agent_id": format!("forged {i}")}))
            .collect();
        server
            .client()
            .post(format!("{}/v1/records?wait=checkpoint", server.base))
            .json(&batch)
            .send()
            .await
            .unwrap();
    });
    server.stop();
    let (ok, out) = verify(forged.path(), &key, &["--checkpoint", saved.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("is NOT an extension of the saved checkpoint of size 10"), "{out}");
}

fn ok_stdout(out: &Output) -> String {
    ok(out)
}

#[test]
fn the_log_key_is_made_once_private_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    ServerProcess::start(dir.path()).stop();
    let key_file = dir.path().join("log-key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the signing key must be readable by its owner only");
    let first = std::fs::read_to_string(&key_file).unwrap();
    assert!(first.starts_with("PRIVATE+KEY+aitrail+"));
    ServerProcess::start(dir.path()).stop();
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), first, "a restart keeps the key");
    // A different log name would orphan every signed checkpoint: refused, clearly.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-name", "other.example", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the log key is named \"aitrail\" but --log-name is \"other.example\""),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the same commands on --database, several nodes on one database, kill -9 of
// a node under load, and tampering with psql. Each test has a fresh database of its own;
// without AITRAIL_TEST_POSTGRES they are skipped, loudly (and fail in CI).

use aitrail_store_postgres::testing::TestDatabase;

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

fn node(db: &TestDatabase, private_key: &str) -> ServerProcess {
    ServerProcess::start_with(&["--database", &db.url], &[("AITRAIL_LOG_KEY", private_key)])
}

fn verify_database(db: &TestDatabase, key: &str) -> (bool, String) {
    let out = aitrail(&["--database", &db.url, "verify", "--key", key], None);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn postgres_commands_work_on_the_database() {
    let Some((db, _rt)) = postgres("postgres_commands_work_on_the_database") else { return };
    // The log key is read from (or made in) the data dir: a temporary one, never the
    // source tree the tests run in.
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    log_list_show(&["--data-dir", data, "--database", &db.url]);
    let out = ok(&aitrail(&["--data-dir", data, "--database", &db.url, "migrate"], None));
    let version = aitrail_store_postgres::MIGRATIONS.len();
    assert!(out.contains(&format!("schema is at version {version}, nothing to do")), "{out}");
    // The database may come from a config file too.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), format!("database = {:?}\n", db.url)).unwrap();
    let listed = ok(&aitrail(
        &[
            "--data-dir",
            data,
            "--config",
            config.path().to_str().unwrap(),
            "list",
            "--format",
            "json",
        ],
        None,
    ));
    assert_eq!(serde_json::from_str::<Vec<Value>>(&listed).unwrap().len(), 3);
    // The same records through a server on that database.
    let (private, _) = shared_key();
    let server = node(&db, &private);
    let mut args = server.remote().to_vec();
    args.extend(["list", "--format", "json"]);
    let listed = ok(&aitrail(&args, None));
    assert_eq!(serde_json::from_str::<Vec<Value>>(&listed).unwrap().len(), 3);
}

#[test]
fn postgres_nodes_with_different_keys_are_refused() {
    let Some((db, _rt)) = postgres("postgres_nodes_with_different_keys_are_refused") else {
        return;
    };
    let (private, verifier) = shared_key();
    let first = node(&db, &private);
    let other = aitrail_core::note::NoteSigner::from_seed("aitrail", [8; 32]).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &db.url])
        .env("AITRAIL_LOG_KEY", other.to_private_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("this store's checkpoints are signed with the key {verifier}")),
        "{stderr}"
    );
    first.stop();
}

/// Writers spread over `nodes` post to one shared tenant (and one of their own) until each
/// has made `requests` requests or its node is gone; returns the acknowledged (tenant, id).
async fn write_through(
    nodes: Vec<(String, String)>,
    writers_per_node: usize,
    requests: usize,
) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    for (n, (base, key)) in nodes.into_iter().enumerate() {
        for w in 0..writers_per_node {
            let (base, client) = (base.clone(), http(&key));
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..requests {
                    let tenant = if i % 4 == 3 { format!("node-{n}") } else { "shared".into() };
                    let one = json!({"tenant_id": tenant, "agent_id": format!("n{n}w{w}i{i}"), "prompt": "p"});
                    let body = if i % 5 == 0 { json!([one.clone(), one]) } else { one };
                    let Some(ids) = post_records(&client, &base, &body).await else { break };
                    acked.extend(ids.into_iter().map(|id| (tenant.clone(), id)));
                }
                acked
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Every acknowledged record is stored exactly once, every tenant's seq is contiguous from
/// 0 with nothing unacknowledged beyond what failed requests may have left, and the
/// checkpoints form one history that `aitrail verify` accepts.
fn assert_one_log(db: &TestDatabase, acked: &[(String, String)], key: &str) {
    let stored: std::collections::HashMap<String, usize> =
        psql(db, "SELECT id, count(*) FROM records GROUP BY id")
            .lines()
            .map(|l| {
                let (id, n) = l.split_once('|').unwrap();
                (id.to_owned(), n.parse().unwrap())
            })
            .collect();
    for (_, id) in acked {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged record {id} must be stored exactly once"
        );
    }
    for line in psql(db, "SELECT tenant_id, count(*), min(seq), max(seq), count(DISTINCT seq) FROM records GROUP BY tenant_id").lines() {
        let f: Vec<&str> = line.split('|').collect();
        let (n, min, max, distinct): (i64, i64, i64, i64) =
            (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap());
        assert_eq!((min, max, distinct), (0, n - 1, n), "tenant {}: seq must be 0..{n} without gap or duplicate", f[0]);
        let size = psql(db, &format!("SELECT size FROM logs WHERE tenant_id = '{}'", f[0]));
        assert_eq!(size.trim(), n.to_string(), "tenant {}: log size", f[0]);
    }
    let (ok, out) = verify_database(db, key);
    assert!(ok, "verify must pass:\n{out}");
}

#[test]
fn postgres_three_nodes_write_one_log() {
    let Some((db, runtime)) = postgres("postgres_three_nodes_write_one_log") else { return };
    let (private, verifier) = shared_key();
    let nodes: Vec<ServerProcess> = (0..3).map(|_| node(&db, &private)).collect();
    let bases = nodes.iter().map(|n| (n.base.clone(), n.key.clone())).collect();
    let acked = runtime.block_on(write_through(bases, 6, 40));
    // 3 nodes x 6 writers x 40 requests, a fifth of them batches of two.
    assert_eq!(acked.len(), 3 * 6 * (40 + 8), "every request is acknowledged");
    // Let every node sign what it has seen, then stop them all.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for n in nodes {
        n.stop();
    }
    assert_one_log(&db, &acked, &verifier);
    // Every node signed; one history: the checkpoints of the shared log grow with size and
    // each size has one root (the primary key refuses a second, and verify checked each).
    let sizes = psql(&db, "SELECT count(*) FROM checkpoints WHERE tenant_id = 'shared'");
    assert!(sizes.trim().parse::<u32>().unwrap() >= 1);
}

#[test]
fn postgres_kill_9_of_one_node_under_load() {
    let Some((db, runtime)) = postgres("postgres_kill_9_of_one_node_under_load") else { return };
    let (private, verifier) = shared_key();
    let victim = node(&db, &private);
    let survivors: Vec<ServerProcess> = (0..2).map(|_| node(&db, &private)).collect();
    let acked = runtime.block_on(async {
        let killed = tokio::spawn(ingest_until_killed(0, victim));
        let carried_on = write_through(
            survivors.iter().map(|n| (n.base.clone(), n.key.clone())).collect(),
            4,
            60,
        )
        .await;
        let mut acked = killed.await.unwrap();
        assert_eq!(carried_on.len(), 2 * 4 * (60 + 12), "the other nodes carry on");
        acked.extend(carried_on);
        acked
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    for n in survivors {
        n.stop();
    }
    assert_one_log(&db, &acked, &verifier);
}

#[test]
fn postgres_verify_names_tampering_done_with_psql() {
    let Some((db, runtime)) = postgres("postgres_verify_names_tampering_done_with_psql") else {
        return;
    };
    let (private, verifier) = shared_key();
    let server = node(&db, &private);
    let ids: Vec<String> = runtime.block_on(async {
        let batch: Vec<Value> = (0..10)
            .map(|i| {
                json!({"tenant_id": "tamper", "model_name": "gpt-4o", "temperature": "0.5",
                       "model_config": {"top_p": 0.9}, "prompt": format!("prompt {i}")})
            })
            .collect();
        let answer: Value = server
            .client()
            .post(format!("{}/v1/records?wait=checkpoint", server.base))
            .json(&batch)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    });
    server.stop();
    let (ok, out) = verify_database(&db, &verifier);
    assert!(ok, "an untouched log verifies: {out}");
    // Each edit is made, checked and undone inside one transaction-free sequence.
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "UPDATE records SET model_name = 'gpt-5' WHERE seq = 3",
            "UPDATE records SET model_name = 'gpt-4o' WHERE seq = 3",
            format!(
                "MODIFIED  tenant tamper seq 3 id {}: model_name differ from the logged entry",
                ids[3]
            ),
        ),
        (
            "UPDATE records SET temperature = 0.1 WHERE seq = 4",
            "UPDATE records SET temperature = 0.5 WHERE seq = 4",
            format!(
                "MODIFIED  tenant tamper seq 4 id {}: temperature differ from the logged entry",
                ids[4]
            ),
        ),
        (
            "UPDATE records SET recorded_at = '2020-01-01T00:00:00Z' WHERE seq = 5",
            "",
            format!(
                "MODIFIED  tenant tamper seq 5 id {}: recorded_at differ from the logged entry",
                ids[5]
            ),
        ),
        (
            "UPDATE contents SET prompt = 'another' WHERE id = (SELECT id FROM records WHERE seq = 7)",
            "",
            format!(
                "MODIFIED  tenant tamper seq 7 id {}: content prompt does not match its commitment",
                ids[7]
            ),
        ),
        (
            "DELETE FROM contents WHERE id = (SELECT id FROM records WHERE seq = 6); DELETE FROM records WHERE seq = 6",
            "",
            "REMOVED   tenant tamper seq 6: the log has this leaf but no record holds it".into(),
        ),
        (
            "UPDATE records SET seq = 100 WHERE seq = 1; UPDATE records SET seq = 1 WHERE seq = 8; UPDATE records SET seq = 8 WHERE seq = 100",
            "",
            format!("REORDERED tenant tamper seq 1 id {}: this record was logged at seq 8", ids[8]),
        ),
        (
            "UPDATE checkpoints SET note = replace(note, E'\\n10\\n', E'\\n9\\n')",
            "",
            "CHECKPOINT tenant tamper size 10: signature check failed".into(),
        ),
    ];
    // The edits accumulate; each one's finding must appear once it is made.
    for (edit, undo, expected) in cases {
        psql(&db, edit);
        let (ok, out) = verify_database(&db, &verifier);
        assert!(!ok, "`{edit}` went unnoticed:\n{out}");
        assert!(out.contains(&expected), "`{edit}`: expected `{expected}` in:\n{out}");
        if !undo.is_empty() {
            psql(&db, undo);
        }
    }
    // model_config as JSONB is read from the entry: it cannot be edited apart from it.
    let top_p = psql(&db, "SELECT model_config->>'top_p' FROM records_json WHERE seq = 0");
    assert_eq!(top_p.trim(), "0.9");
    let out = Command::new("psql")
        .args([db.url.as_str(), "-Atc", "UPDATE records_json SET model_config = '{}'"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the JSONB view must not be editable");
}

// ---------------------------------------------------------------------------------------
// Moving in from the conversation-audit-log service.

/// the conversation-audit-log service's compliance export, as its document shows it, with RFC 4180
/// quoting.
const CONVERSATION_LOGS_CSV: &str = "Log ID,Timestamp,Agent ID,Session ID,Channel,Prompt,Response,Model Info,Model Provider,Model Name,Model Version,Deployment ID,Temperature,Safety Mode,Model Config
log-123,2026-01-30T10:30:00Z,agent-001,sess-abc,api,What is AI?,\"AI is, briefly, \"\"software\"\"...\",gpt-4-turbo,openai,gpt-4-turbo,2024-04-09,,0.7,strict,\"{\"\"top_p\"\": 0.9}\"
log-124,2026-01-30T10:31:00Z,agent-002,sess-abc,web,Hi,Hello,,azure,gpt-35-turbo,,my-gpt-deployment,0.2,balanced,
log-122,2026-01-29T09:00:00Z,agent-001,sess-xyz,api,Old,Older,,anthropic,claude-3-sonnet,,,0.90,relaxed,
";

fn listed(location: &[&str]) -> Vec<Value> {
    let mut args = location.to_vec();
    args.extend(["list", "--format", "json", "--limit", "1000"]);
    serde_json::from_str(&ok(&aitrail(&args, None))).unwrap()
}

#[test]
fn import_of_conversation_logs_csv_is_exact_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let csv_file = dir.path().join("conversation_logs.csv");
    std::fs::write(&csv_file, CONVERSATION_LOGS_CSV).unwrap();
    let data = dir.path().join("data");
    let at = ["--data-dir", data.to_str().unwrap()];
    let import = |extra: &[&str]| {
        let mut args = at.to_vec();
        args.extend(["import", "--csv", csv_file.to_str().unwrap()]);
        args.extend(extra);
        aitrail(&args, None)
    };
    // Without a tenant the CSV's rows belong to nobody: refused, nothing stored.
    let out = import(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("row 1: tenant_id"), "{out:?}");
    assert!(listed(&at).is_empty());

    let out = ok(&import(&["--tenant-id", "org-123"]));
    assert!(out.contains("imported 3 record(s)"), "{out}");
    let records = listed(&at);
    // Logged in the old system's time order; original timestamps kept as event_time.
    let by_seq: BTreeSet<(u64, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (r["seq"].as_u64().unwrap(), s("external_id"), s("event_time"))
        })
        .collect();
    let expected: BTreeSet<(u64, String, String)> = [
        (0, "log-122", "2026-01-29T09:00:00Z"),
        (1, "log-123", "2026-01-30T10:30:00Z"),
        (2, "log-124", "2026-01-30T10:31:00Z"),
    ]
    .iter()
    .map(|(s, i, t)| (*s, (*i).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(by_seq, expected);
    let first = records.iter().find(|r| r["external_id"] == "log-123").unwrap();
    assert_eq!(first["response"], "AI is, briefly, \"software\"...");
    assert_eq!(first["model_info"], "gpt-4-turbo");
    assert_eq!(first["temperature"], "0.7");
    assert_eq!(first["model_config"]["top_p"].to_string(), "0.9");
    assert_eq!(first["channel"], "api");
    assert!(first.get("deployment_id").is_none());
    let older = records.iter().find(|r| r["external_id"] == "log-122").unwrap();
    assert_eq!(older["temperature"], "0.90", "the literal is kept");

    // A re-run imports nothing twice.
    let out = ok(&import(&["--tenant-id", "org-123"]));
    assert!(
        out.contains("imported 0 record(s)") && out.contains("3 of 3 were imported before"),
        "{out}"
    );
    assert_eq!(listed(&at).len(), 3);
}

#[test]
fn import_from_the_conversation_audit_logs_table_into_postgres() {
    let Some((db, _rt)) = postgres("import_from_the_conversation_audit_logs_table_into_postgres")
    else {
        return;
    };
    // the conversation-audit-log service's table: its base columns and the seven of its
    // model-metadata migration.
    psql(
        &db,
        "CREATE TABLE conversation_audit_logs (
        id SERIAL PRIMARY KEY, tenant_id TEXT NOT NULL, agent_id TEXT, session_id TEXT,
        channel TEXT, prompt TEXT, response TEXT, model_info TEXT,
        timestamp TIMESTAMP NOT NULL DEFAULT now(),
        model_provider TEXT, model_name TEXT, model_version TEXT, deployment_id TEXT,
        temperature TEXT, safety_mode TEXT, model_config JSONB)",
    );
    psql(&db, "INSERT INTO conversation_audit_logs (tenant_id, agent_id, session_id, channel, prompt, response, timestamp, model_provider, model_name, temperature, safety_mode, model_config) VALUES
        ('org-123', 'agent-001', 'sess-abc', 'api', 'What is AI?', 'AI is...', '2026-01-30 10:30:00', 'openai', 'gpt-4-turbo', '0.7', 'strict', '{\"top_p\": 0.9}'),
        ('org-123', 'agent-002', 'sess-def', 'web', 'Hi', 'Hello', '2026-01-30 10:31:00.25', 'anthropic', 'claude-3-sonnet', '0.95', 'relaxed', NULL),
        ('org-456', 'agent-009', 'sess-ghi', 'api', 'Q', 'A', '2026-01-29 08:00:00', 'azure', 'gpt-35-turbo', NULL, NULL, NULL)");
    // The log key is read from (or made in) the data dir: a temporary one.
    let data = tempfile::tempdir().unwrap();
    let at = ["--data-dir", data.path().to_str().unwrap(), "--database", db.url.as_str()];
    let import = || {
        let mut args = at.to_vec();
        args.extend(["import", "--from-postgres", &db.url, "--table", "conversation_audit_logs"]);
        ok(&aitrail(&args, None))
    };
    let out = import();
    assert!(out.contains("imported 3 record(s) from table conversation_audit_logs"), "{out}");
    let records = listed(&at);
    assert_eq!(records.len(), 3);
    let r = records.iter().find(|r| r["external_id"] == "2").unwrap();
    assert_eq!(r["tenant_id"], "org-123");
    assert_eq!(r["event_time"], "2026-01-30T10:31:00.25Z");
    assert_eq!(r["model_provider"], "anthropic");
    assert_eq!(r["temperature"], "0.95");
    let other = records.iter().find(|r| r["tenant_id"] == "org-456").unwrap();
    assert_eq!(other["seq"], 0, "each tenant's log starts at 0");
    // The auditor's question works on what was imported.
    let mut hot = at.to_vec();
    hot.extend(["list", "--format", "json", "--temperature-gt", "0.8"]);
    let hot = aitrail(&hot, None);
    let hot: Vec<Value> = serde_json::from_str(&ok(&hot)).unwrap();
    assert_eq!(hot.len(), 1);
    // Re-run: nothing twice.
    let out = import();
    assert!(out.contains("imported 0 record(s)"), "{out}");
    assert_eq!(listed(&at).len(), 3);
}

// ---------------------------------------------------------------------------------------
// Keys: the first start, and managing keys from the command line.

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

#[test]
fn the_first_start_shows_one_admin_key_and_the_cli_manages_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (said, mut child, base) = serve_bare(dir.path());
    let admin = said
        .iter()
        .find_map(|l| l.strip_prefix("aitrail admin key: "))
        .unwrap_or_else(|| panic!("no admin key shown: {said:?}"))
        .to_owned();
    let as_key = |key: &str, args: &[&str]| {
        let mut all = vec!["--server", &base, "--api-key", key];
        all.extend(args);
        aitrail(&all, Some(RECORDS))
    };
    // The admin makes a viewer key for org-1 and an ingest key for it.
    let viewer =
        ok(&as_key(&admin, &["keys", "create", "--role", "viewer", "--tenant-id", "org-1"]));
    let viewer = viewer.trim().to_owned();
    let ingest = ok(&as_key(
        &admin,
        &[
            "keys",
            "create",
            "--role",
            "ingest",
            "--tenant-id",
            "org-1",
            "--expires",
            "30d",
            "--label",
            "app",
        ],
    ));
    let ingest = ingest.trim().to_owned();
    assert!(viewer.starts_with("ait_") && ingest.starts_with("ait_"));
    ok(&as_key(&ingest, &["log", "-"]));
    // The ingest key reads nothing; the viewer reads and writes nothing.
    let out = as_key(&ingest, &["list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{out:?}");
    let listed: Vec<Value> =
        serde_json::from_str(&ok(&as_key(&viewer, &["list", "--format", "json"]))).unwrap();
    assert_eq!(listed.len(), 3);
    assert!(!as_key(&viewer, &["log", "-"]).status.success());
    // Listing keys shows ids and roles, never a secret.
    let keys = ok(&as_key(&admin, &["keys", "list"]));
    assert!(keys.contains("viewer") && keys.contains("ingest") && keys.contains("app"), "{keys}");
    for secret in [&admin, &viewer, &ingest] {
        assert!(!keys.contains(&secret[21..]), "a secret in the listing: {keys}");
    }
    let viewer_id = &viewer[4..20];
    // Every read is in the access log, through the server and on the data dir alike.
    let log = ok(&as_key(&admin, &["access-log", "--key-id", viewer_id, "--format", "json"]));
    let events: Vec<Value> = serde_json::from_str(&log).unwrap();
    assert_eq!(events.len(), 1, "{log}");
    assert_eq!(events[0]["operation_type"], "read");
    assert_eq!(events[0]["session_id"], "org-1");
    assert_eq!(events[0]["attributes"]["records"], 3);
    let table = ok(&as_key(&admin, &["access-log"]));
    assert!(table.contains("key.create") && table.contains(viewer_id), "{table}");
    // Revoked from the command line: the next request is refused, in one line.
    ok(&as_key(&admin, &["keys", "revoke", viewer_id]));
    let out = as_key(&viewer, &["list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("revoked"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();
    // A restart shows no key: one exists. Offline, on the data dir, keys work too.
    let (said, mut child, _) = serve_bare(dir.path());
    assert!(!said.iter().any(|l| l.contains("admin key")), "{said:?}");
    let _ = child.kill();
    let _ = child.wait();
    let data = dir.path().to_str().unwrap();
    let offline = ok(&aitrail(&["--data-dir", data, "keys", "list"], None));
    assert!(offline.contains(viewer_id), "{offline}");
    let log = ok(&aitrail(&["--data-dir", data, "access-log", "--operation", "key.revoke"], None));
    assert!(log.contains("key.revoke") && log.contains("POST /v1/keys/{id}/revoke"), "{log}");
    let out = aitrail(&["--data-dir", data, "keys", "create", "--role", "viewer"], None);
    assert!(!out.status.success(), "a viewer key needs a tenant");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a tenant"));
}

#[test]
fn a_config_file_sets_defaults_that_the_environment_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) =
        (dir.path().join("file"), dir.path().join("env"), dir.path().join("flag"));
    let config = dir.path().join("aitrail.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\nlog-name = \"cfg.example\"\n", from_file.to_str().unwrap()),
    )
    .unwrap();
    let run = |env: Option<&Path>, flag: Option<&Path>| {
        let mut c = Command::new(BIN);
        c.env_remove("AITRAIL_DATA_DIR").env_remove("AITRAIL_LOG_NAME");
        c.args(["--config", config.to_str().unwrap()]);
        if let Some(e) = env {
            c.env("AITRAIL_DATA_DIR", e);
        }
        if let Some(f) = flag {
            c.arg("--data-dir").arg(f);
        }
        ok(&c.args(["keys", "create", "--role", "admin"]).output().unwrap())
    };
    run(None, None);
    let key = std::fs::read_to_string(from_file.join("log-key")).unwrap();
    assert!(key.starts_with("PRIVATE+KEY+cfg.example+"), "a subcommand's option from the file");
    run(Some(&from_env), None);
    assert!(from_env.join("log-key").exists(), "the environment beats the file");
    run(Some(&from_env), Some(&from_flag));
    assert!(from_flag.join("log-key").exists(), "the command line beats the environment");
    std::fs::write(&config, "data_dri = \"typo\"\n").unwrap();
    let out = aitrail(&["--config", config.to_str().unwrap(), "list"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data_dri is not an aitrail option"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Compliance export, checked offline.

/// A copy of the zip at `from` with `name`'s bytes passed through `edit`.
fn edit_zip(from: &Path, to: &Path, name: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let file_name = file.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        if file_name == name {
            bytes = edit(bytes);
        }
        out.start_file(file_name, zip::write::SimpleFileOptions::default()).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}

/// Apply `edit` to the lines of a text file (CRLF or LF kept as found).
fn edit_lines(bytes: Vec<u8>, edit: impl Fn(&mut Vec<String>)) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    let end = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.split_terminator(end).map(str::to_owned).collect();
    edit(&mut lines);
    (lines.join(end) + end).into_bytes()
}

fn verify_export(zip: &Path, key: Option<&str>) -> (bool, String) {
    let mut args = vec!["verify", "--export", zip.to_str().unwrap()];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    let out = aitrail(&args, None);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn an_export_verifies_offline_and_every_kind_of_tampering_is_named() {
    let (dir, ids, key) = signed_log();
    let zip = dir.path().join("compliance_export.zip");
    let data_dir = dir.path().to_str().unwrap();
    let out = aitrail(
        &["--data-dir", data_dir, "export", "--tenant-id", "tamper", "-o", zip.to_str().unwrap()],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 10 records"), "{out:?}");
    let (ok, said) = verify_export(&zip, Some(&key));
    assert!(ok, "{said}");
    assert!(
        said.contains("OK: 10 records of tenant tamper are in its log as signed at size 10"),
        "{said}"
    );
    // Without --key it still checks, against the bundle's own key, and says so.
    let (ok, said) = verify_export(&zip, None);
    assert!(ok && said.contains("pass --key to pin"), "{said}");
    // Nothing else is needed: the data dir can be gone.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("bundle.zip");
    std::fs::copy(&zip, &moved).unwrap();
    drop(dir);
    assert!(verify_export(&moved, Some(&key)).0);

    let other = aitrail_core::note::NoteSigner::from_seed("aitrail", [9; 32]).unwrap();
    let resign = |bytes: Vec<u8>| {
        let note = String::from_utf8(bytes).unwrap();
        let body = &note[..note.find("\n\n").unwrap() + 1];
        other.sign(body).unwrap().into_bytes()
    };
    let name = |seq: usize| format!("record {} (seq {seq})", ids[seq]);
    // (what, the file edited, the edit, lines verify must print)
    type Edit<'a> = Box<dyn Fn(Vec<u8>) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, &str, Edit, Vec<String>)> = vec![
        (
            "one CSV cell",
            "conversation_logs.csv",
            Box::new(|b| edit_lines(b, |l| l[4] = l[4].replacen("gpt-4o", "gpt-5", 1))),
            vec![
                format!(
                    "conversation_logs.csv: {}: column Model Name differs from the record",
                    name(3)
                ),
                "manifest.json: conversation_logs.csv: SHA-256 differs from the manifest's".into(),
            ],
        ),
        (
            "one JSONL field",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l[4] = l[4].replacen("gpt-4o", "gpt-5", 1))),
            vec![
                format!("leaves.bin: {}: its leaf hash is not the logged leaf at its seq", name(4)),
                "manifest.json: records.jsonl: SHA-256 differs from the manifest's".into(),
            ],
        ),
        (
            "one record's content",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l[6] = l[6].replacen("prompt 6", "prompt X", 1))),
            vec![format!(
                "records.jsonl: {}: content prompt does not match its commitment",
                name(6)
            )],
        ),
        (
            "a dropped record",
            "records.jsonl",
            Box::new(|b| {
                edit_lines(b, |l| {
                    l.remove(5);
                })
            }),
            vec![
                format!(
                    "conversation_logs.csv: {}: row 7 is record {}, not this one",
                    name(6),
                    ids[5]
                ),
                "records.jsonl: holds 9 records; the manifest says 10".into(),
            ],
        ),
        (
            "reordered lines",
            "records.jsonl",
            Box::new(|b| edit_lines(b, |l| l.swap(1, 2))),
            vec![format!(
                "records.jsonl: {}: comes after seq 2: lines are out of log order",
                name(1)
            )],
        ),
        (
            "a checkpoint signed by another key",
            "checkpoint.txt",
            Box::new(resign),
            vec!["checkpoint.txt: signature check failed".into()],
        ),
        (
            "a manifest edit",
            "manifest.json",
            Box::new(|b| {
                String::from_utf8(b)
                    .unwrap()
                    .replace("\"records\": 10", "\"records\": 9")
                    .into_bytes()
            }),
            vec![
                "manifest.json: does not match the signed digest in manifest.sig: it was edited"
                    .into(),
            ],
        ),
        (
            "a manifest signed by another key",
            "manifest.sig",
            Box::new(resign),
            vec!["manifest.sig: signature check failed".into()],
        ),
    ];
    for (what, file, edit, expected) in cases {
        let tampered = elsewhere.path().join("tampered.zip");
        edit_zip(&moved, &tampered, file, edit);
        let (ok, said) = verify_export(&tampered, Some(&key));
        assert!(!ok, "{what}: went unnoticed:\n{said}");
        for line in expected {
            assert!(said.contains(&line), "{what}: expected `{line}` in:\n{said}");
        }
        assert!(said.contains("export verification FAILED"), "{what}: {said}");
    }
    // The right bundle against another key.
    let (ok, said) = verify_export(&moved, Some(&other.verifier().to_string()));
    assert!(!ok && said.contains("manifest.sig: signature check failed"), "{said}");
}

#[test]
fn an_export_streams_into_standard_output_and_pipes_without_replacing_them() {
    let (dir, _ids, key) = signed_log();
    let data_dir = dir.path().to_str().unwrap();
    let export = |output: &str| {
        aitrail(&["--data-dir", data_dir, "export", "--tenant-id", "tamper", "-o", output], None)
    };
    let out = export("-");
    assert!(out.status.success(), "{out:?}");
    let from_stdout = dir.path().join("stdout.zip");
    std::fs::write(&from_stdout, &out.stdout).unwrap();
    let (ok, said) = verify_export(&from_stdout, Some(&key));
    assert!(ok, "{said}");

    // A named pipe is written through, not renamed over (as /dev/null would be).
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = export(fifo.to_str().unwrap());
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the pipe was replaced");
    let through_pipe = dir.path().join("pipe.zip");
    std::fs::write(&through_pipe, reader.join().unwrap()).unwrap();
    assert!(verify_export(&through_pipe, Some(&key)).0);
}

#[test]
fn an_auditor_exports_through_the_server_in_every_format() {
    let (dir, _, key) = signed_log();
    let server = ServerProcess::start(dir.path());
    let auditor = ok(&aitrail(
        &[&server.remote()[..], &["keys", "create", "--role", "auditor", "--tenant-id", "tamper"]]
            .concat(),
        None,
    ));
    let auditor = auditor.trim();
    let out_dir = tempfile::tempdir().unwrap();
    let remote = ["--server", server.base.as_str(), "--api-key", auditor];
    for format in ["zip", "csv", "jsonl", "json"] {
        let file = out_dir.path().join(format!("export.{format}"));
        let args =
            [&remote[..], &["export", "--format", format, "-o", file.to_str().unwrap()]].concat();
        ok(&aitrail(&args, None));
        let bytes = std::fs::read(&file).unwrap();
        match format {
            "zip" => assert!(verify_export(&file, Some(&key)).0),
            "csv" => assert!(
                bytes.starts_with(b"Log ID,Timestamp,")
                    && bytes.split(|b| *b == b'\n').count() == 12
            ),
            "jsonl" => assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 10),
            _ => assert_eq!(serde_json::from_slice::<Vec<Value>>(&bytes).unwrap().len(), 10),
        }
    }
    // A viewer may not; the refusal is one line and no file is left behind.
    let viewer = ok(&aitrail(
        &[&server.remote()[..], &["keys", "create", "--role", "viewer", "--tenant-id", "tamper"]]
            .concat(),
        None,
    ));
    let file = out_dir.path().join("refused.zip");
    let args = [
        "--server",
        &server.base,
        "--api-key",
        viewer.trim(),
        "export",
        "-o",
        file.to_str().unwrap(),
    ];
    let out = aitrail(&args, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{out:?}");
    assert!(!file.exists());
}

// ---------------------------------------------------------------------------------------
// Privacy: what is erased or redacted is in no file of the store, nor in the server's log.

/// Every byte of every file in `dir` (the database, its WAL and shared memory).
fn files_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn erased_content_is_in_no_file_of_the_store_and_verify_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let remote = server.remote();
    let set = aitrail(
        &[&remote[..], &["config", "set", "audit.content_mode", "full", "--tenant-id", "t"]]
            .concat(),
        None,
    );
    assert!(set.status.success(), "{set:?}");
    let ada = "Ada's blood test came back with marker QX-4471-ZETA";
    let bob = "Bob asked about the marker ZK-9920-OMEGA";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = server.client();
        for (user, text) in [("ada", ada), ("bob", bob), ("ada", ada)] {
            let r = client
                .post(format!("{}/v1/records", server.base))
                .json(&json!({"tenant_id": "t", "user_id": user, "prompt": text, "response": format!("re: {text}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    });
    let found = |text: &str| -> Vec<String> {
        files_bytes(dir.path())
            .into_iter()
            .filter(|(_, b)| holds(b, text))
            .map(|(f, _)| f)
            .collect()
    };
    assert!(!found(ada).is_empty(), "the scan finds stored text");
    let out =
        aitrail(&[&remote[..], &["erase", "--tenant-id", "t", "--user-id", "ada"]].concat(), None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("erased the content of 2 records"),
        "{out:?}"
    );
    // With the server still running: not in the database, its WAL or anywhere else.
    assert_eq!(found(ada), Vec::<String>::new(), "erased text left on disk");
    assert_eq!(found("QX-4471"), Vec::<String>::new());
    assert!(!found(bob).is_empty(), "others' content stays");
    let verify = aitrail(&["--data-dir", dir.path().to_str().unwrap(), "verify"], None);
    assert!(verify.status.success(), "{verify:?}");
    assert!(!server.log().contains("QX-4471"), "{}", server.log());
}

#[test]
fn no_secret_of_the_corpus_reaches_the_store_or_the_servers_log() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = ServerProcess::start_with(&["--data-dir", data_dir], &[("AITRAIL_LOG", "debug")]);
    let corpus: Vec<(String, String)> = include_str!("../../core/tests/data/secrets.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (rule, text) = l.split_once('\t').unwrap();
            (rule.to_owned(), text.replace("\\n", "\n"))
        })
        .collect();
    assert!(corpus.len() >= 50);
    // A distinctive piece of each secret: the middle of its longest word.
    let needle = |text: &str| {
        let word = text.split_whitespace().max_by_key(|w| w.len()).unwrap();
        let mid = word.len() / 2;
        word.get(mid.saturating_sub(6)..(mid + 6).min(word.len())).unwrap_or(word).to_owned()
    };
    let control = "look-alike control text: the tokenizer splits words into tokens";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = server.client();
        let policy = client
            .put(format!("{}/v1/tenants/t/policy", server.base))
            .json(&json!({"content_mode": "full"}))
            .send()
            .await
            .unwrap();
        assert_eq!(policy.status(), 200);
        for (i, (rule, text)) in corpus.iter().enumerate() {
            // Each in a different field, in turn.
            let field = ["prompt", "response", "error_message", "prompt_template"][i % 4];
            let r = client
                .post(format!("{}/v1/records", server.base))
                .json(&json!({"tenant_id": "t", field: text, "attributes": {"case": i}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{rule}: {text}");
            let receipt: Value = r.json().await.unwrap();
            let stored: Value = client
                .get(format!("{}/v1/records/{}", server.base, receipt["id"].as_str().unwrap()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                stored[field].as_str().unwrap().contains(&format!("[REDACTED:{rule}]")),
                "{rule}: {stored}"
            );
            assert!(stored["secrets_redacted"].as_u64().unwrap() >= 1);
        }
        let r = client
            .post(format!("{}/v1/records", server.base))
            .json(&json!({"tenant_id": "t", "prompt": control}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    let files = files_bytes(dir.path());
    assert!(files.iter().any(|(_, b)| holds(b, control)), "the scan finds stored text");
    let log = server.log();
    for (rule, text) in &corpus {
        let piece = needle(text);
        for (file, bytes) in &files {
            assert!(!holds(bytes, &piece), "{rule} {piece:?} stored in {file}");
        }
        assert!(!log.contains(&piece), "{rule} {piece:?} in the server's log");
    }
}

#[test]
fn find_looks_a_text_up_by_its_keyed_hash_on_the_store_and_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let local = ["--data-dir", data_dir];
    let set = aitrail(
        &[&local[..], &["config", "set", "content_mode", "hash", "--tenant-id", "t"]].concat(),
        None,
    );
    assert!(set.status.success(), "{set:?}");
    let got = aitrail(
        &[&local[..], &["config", "get", "audit.content_mode", "--tenant-id", "t"]].concat(),
        None,
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "hash");
    let said = "What is the notice period in the Harbour Street lease?";
    let body =
        json!([{"tenant_id": "t", "prompt": said}, {"tenant_id": "t", "prompt": "something else"}]);
    let logged = aitrail(&[&local[..], &["log", "-"]].concat(), Some(&body.to_string()));
    assert!(logged.status.success(), "{logged:?}");
    let find = |global: &[&str], text: &str| -> Vec<Value> {
        let args =
            [global, &["find", "--tenant-id", "t", "--prompt-text", text, "--format", "json"]]
                .concat();
        let out = aitrail(&args, None);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let found = find(&local, said);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].get("prompt").is_none(), "hash mode keeps no text");
    assert!(find(&local, "What is the notice period").is_empty());
    // The server, on the same key, finds the same record.
    let server = ServerProcess::start(dir.path());
    let remote = server.remote();
    let through = find(&remote, said);
    assert_eq!(through.len(), 1);
    assert_eq!(through[0]["id"], found[0]["id"]);
    let refused = aitrail(&[&local[..], &["find", "--prompt-text", said]].concat(), None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tenant-id"), "{refused:?}");
}

// ---------------------------------------------------------------------------------------
// The dashboard in a real browser: Debian's chromium driven by playwright-core
// (tests/browser/dashboard.mjs). Without AITRAIL_TEST_BROWSER the test is skipped, loudly,
// when chromium or the node modules are missing; with it (as in CI) they must be there.

/// Where the browser test's node project lives.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[test]
fn dashboard_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&chromium).exists()
        && browser_dir().join("node_modules/playwright-core").exists();
    if !ready {
        let how = format!(
            "needs {chromium} (apt-get install chromium) and `npm ci --prefix {}`; .ci/run does both",
            browser_dir().display()
        );
        assert!(
            std::env::var_os("AITRAIL_TEST_BROWSER").is_none(),
            "browser test cannot run: {how}"
        );
        say_skipped("dashboard_in_a_real_browser", &how);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let make_key = |role: &str| {
        let body = json!({"role": role, "tenant_id": "acme", "label": format!("browser {role}")});
        let made: Value = runtime.block_on(async {
            let r =
                client.post(format!("{}/v1/keys", server.base)).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201);
            r.json().await.unwrap()
        });
        made["key"].as_str().unwrap().to_owned()
    };
    let (admin, viewer) = (make_key("admin"), make_key("viewer"));
    // Usage to chart: two providers, three models, two users, a failure, over 12 days.
    let now = aitrail_core::Timestamp::now().unix_nanos();
    let seeded: Vec<Value> = (0..12)
        .map(|i| {
            let day = 86_400 * 1_000_000_000 * i64::from(i);
            let at = aitrail_core::Timestamp::from_unix_nanos(now - day).unwrap().to_string();
            let (provider, model) = match i % 3 {
                0 => ("openai", "gpt-4o"),
                1 => ("openai", "gpt-4o-mini"),
                _ => ("anthropic", "claude-3-haiku"),
            };
            json!({"tenant_id": "acme", "model_provider": provider, "model_name": model,
                   "user_id": format!("user-{}", i % 2), "feature_code": "support",
                   "tokens_input": 100 + i, "tokens_output": 20 * i, "cost_amount": "0.0125",
                   "cost_currency": "USD", "success": i != 5,
                   "prompt": (i != 0).then(|| format!("seeded {i}")), "event_time": at})
        })
        .collect();
    runtime.block_on(async {
        assert!(post_records(&client, &server.base, &json!(seeded)).await.is_some());
    });
    let shots = std::env::var("AITRAIL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let download = dir.path().join("compliance_export.zip");
    let out = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .env("AITRAIL_URL", &server.base)
        .env("ADMIN_KEY", &admin)
        .env("VIEWER_KEY", &viewer)
        .env("SCREENSHOTS", &shots)
        .env("DOWNLOAD", &download)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{said}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let found: Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    assert_eq!(found["csrf"], json!([403, 403]));
    assert!(found["usage"].as_str().unwrap().starts_with("13 records"), "{found}");
    // The zip the browser downloaded verifies offline with the log key alone.
    let key = runtime.block_on(async {
        let r = client.get(format!("{}/v1/log-key", server.base)).send().await.unwrap();
        r.text().await.unwrap()
    });
    let zip = download.to_str().unwrap();
    let checked = ok(&aitrail(&["verify", "--export", zip, "--key", key.trim()], None));
    assert!(checked.contains("13 records"), "{checked}");
    for page in ["logs", "record", "usage", "integrity", "export", "logs-390"] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
    // What the browser did is in the access log: the sign-ins, the export, the sign-out.
    let log: Value = runtime.block_on(async {
        let r =
            client.get(format!("{}/v1/access-log?limit=1000", server.base)).send().await.unwrap();
        r.json().await.unwrap()
    });
    let operations: Vec<&str> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["operation_type"].as_str())
        .collect();
    for op in ["sign-in", "sign-out", "export", "verify.store", "usage.read"] {
        assert!(operations.contains(&op), "no {op} in the access log: {operations:?}");
    }
    server.stop();
}

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

/// A skipped test's line, on the terminal itself: `eprintln!` would be captured by the test
/// harness and never shown for a passing test, so a person running `cargo test` would not
/// know the suite did not run.
fn say_skipped(test: &str, how: &str) {
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED {test}: {how}\n");
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

fn make_key_on(
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
fn records_once(
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
    let records = records_once(&server, &rt, "acme", 2);
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
