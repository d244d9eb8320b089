//! Local and remote do the same thing: one CLI scenario run on a store directly and through
//! a server on another must give the same answers and leave the same changes in the access
//! and system logs (actor, channel, time and ids aside). And an offline read changes no
//! byte of the store it reads.

use std::collections::BTreeMap;

use super::*;

/// The scenario, each step a command line after the location flags. `{key}`: the id of the
/// key made in the step before it.
const SCENARIO: &[&[&str]] = &[
    &["log", "-"],
    &["config", "set", "content_mode", "full", "--tenant-id", "acme"],
    &["config", "set", "retention_days", "400", "--tenant-id", "acme"],
    &["keys", "create", "--role", "auditor", "--tenant-id", "acme", "--label", "acme audit"],
    &["hold", "add", "--tenant-id", "acme", "--session-id", "s1", "--reason", "case 7"],
    &["hold", "list"],
    &["erase", "--tenant-id", "acme", "--user-id", "u2"],
    &["hold", "remove", "--tenant-id", "acme", "--session-id", "s1"],
    &["erase", "--tenant-id", "acme", "--session-id", "s1"],
    &["keys", "revoke", "{key}"],
    &["config", "get", "--tenant-id", "acme"],
    &["list", "--tenant-id", "acme", "--format", "json"],
];

const SCENARIO_RECORDS: &str = r#"{"tenant_id":"acme","user_id":"u1","session_id":"s1","prompt":"first","response":"one"}
{"tenant_id":"acme","user_id":"u2","session_id":"s1","prompt":"second","response":"two"}
{"tenant_id":"acme","user_id":"u2","session_id":"s2","prompt":"third","response":"three"}
"#;

/// What a step printed, with what differs by run (ids, keys, keyed hashes, times) replaced
/// by markers.
fn normalized(text: &str) -> String {
    let patterns = [
        (r"ait_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", "<api key>"),
        // Keyed under each store's own log key (an erasure's subject).
        (r"hmac-sha256:[0-9a-f]{64}", "<keyed hash>"),
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>"),
        (r"\b[0-9a-f]{16}\b", "<key id>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
    ];
    patterns.iter().fold(text.to_owned(), |text, (pattern, marker)| {
        regex::Regex::new(pattern).unwrap().replace_all(&text, *marker).into_owned()
    })
}

/// Runs the scenario at `location`; returns each step's normalized output.
fn run_scenario(location: &[&str]) -> Vec<String> {
    let mut key_id = String::new();
    let mut said = Vec::new();
    for step in SCENARIO {
        let step: Vec<String> = step
            .iter()
            .map(|a| if *a == "{key}" { key_id.clone() } else { (*a).to_owned() })
            .collect();
        let step: Vec<&str> = step.iter().map(String::as_str).collect();
        let stdin = (step[0] == "log").then_some(SCENARIO_RECORDS);
        let out = aitrail(&[location, &step[..]].concat(), stdin);
        let stdout = ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if step[..2] == ["keys", "create"] {
            let key = stdout.trim();
            key_id = key[4..20].to_owned();
        }
        said.push(normalized(&format!("$ {}\n{stdout}{stderr}", step.join(" "))));
    }
    said
}

/// The events of a store's access log (its changes only: a read through a server is logged,
/// an offline one writes nothing) and of its system log, oldest first, without what
/// differs by run and by channel.
fn events(data: &Path) -> (Vec<Value>, Vec<Value>) {
    let changes = ["key.create", "key.revoke", "policy.set", "erasure", "hold.add", "hold.remove"];
    let read = |args: &[&str]| -> Vec<Value> {
        let at = ["--data-dir", data.to_str().unwrap()];
        let out =
            ok(&aitrail(&[&at[..], args, &["--format", "json", "--limit", "1000"]].concat(), None));
        let mut records: Vec<Value> = serde_json::from_str(&out).unwrap();
        records.reverse();
        records
    };
    let strip = |mut r: Value| {
        let object = r.as_object_mut().unwrap();
        for field in
            ["id", "seq", "recorded_at", "event_time", "user_id", "agent_id", "feature_code"]
        {
            object.remove(field);
        }
        serde_json::from_str::<Value>(&normalized(&r.to_string())).unwrap()
    };
    let access = read(&["access-log"])
        .into_iter()
        .filter(|r| changes.contains(&r["operation_type"].as_str().unwrap()))
        .map(strip)
        .collect();
    let system = read(&["list", "--tenant-id", "aitrail.system"]).into_iter().map(strip).collect();
    (access, system)
}

/// Who did what, by operation, as the access log names the actor.
fn actors(data: &Path) -> BTreeMap<String, (String, String, String)> {
    let at = ["--data-dir", data.to_str().unwrap()];
    let out = ok(&aitrail(
        &[&at[..], &["access-log", "--format", "json", "--limit", "1000"]].concat(),
        None,
    ));
    let records: Vec<Value> = serde_json::from_str(&out).unwrap();
    records
        .into_iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("operation_type"), (s("user_id"), s("agent_id"), s("feature_code")))
        })
        .collect()
}

#[test]
fn local_and_remote_give_the_same_answers_and_leave_the_same_events() {
    // Offline: the scenario on a store no server runs on, after the same first admin key a
    // test server starts with.
    let local = tempfile::tempdir().unwrap();
    let at_local = ["--data-dir", local.path().to_str().unwrap()];
    ok(&aitrail(&[&at_local[..], &["keys", "create", "--role", "admin"]].concat(), None));
    let said_local = run_scenario(&at_local);

    // Through a server on another store.
    let remote = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(remote.path());
    let said_remote = run_scenario(&server.remote());
    server.stop();

    for (local, remote) in said_local.iter().zip(&said_remote) {
        assert_eq!(
            local, remote,
            "the same step answered differently offline and through a server"
        );
    }
    let (access_local, system_local) = events(local.path());
    let (access_remote, system_remote) = events(remote.path());
    // The first admin key, two policies, a key made and revoked, a hold placed and lifted,
    // two erasures.
    assert_eq!(access_local.len(), 9, "{access_local:#?}");
    assert_eq!(access_local, access_remote);
    assert_eq!(system_local.len(), 4, "{system_local:#?}");
    assert_eq!(system_local, system_remote);

    // Who acted differs, and says so: the operator at the CLI, or a key through the API.
    let offline = actors(local.path());
    let (user, role, how) = &offline["erasure"];
    assert_eq!((user.as_str(), role.as_str(), how.as_str()), ("cli", "operator", "aitrail erase"));
    let (user, role, how) = &actors(remote.path())["erasure"];
    assert_eq!((user.len(), role.as_str(), how.as_str()), (16, "admin", "POST /v1/erasure"));
}

/// Every offline read the CLI has, on `tenant`'s log: `find` looks up a text (and `show`
/// a record), `verify` a whole store then one record, `export` writes to `export`.
pub(super) fn offline_reads<'a>(
    tenant: &'a str,
    (text, shown): (&'a str, &'a str),
    key: &'a str,
    verified: &'a str,
    export: &'a Path,
) -> Vec<Vec<&'a str>> {
    vec![
        vec!["list", "--tenant-id", tenant],
        vec!["find", "--tenant-id", tenant, "--prompt-text", text],
        vec!["show", shown],
        vec!["verify", "--key", key],
        vec!["verify", "--key", key, verified],
        vec!["checkpoint", "--tenant-id", tenant],
        vec!["export", "--tenant-id", tenant, "--output", export.to_str().unwrap()],
        vec!["access-log"],
        vec!["keys", "list"],
        vec!["hold", "list"],
        vec!["config", "get", "--tenant-id", tenant],
    ]
}

/// Every file of a directory by name, with a digest of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), hex::encode(sha2::Sha256::digest(bytes)))
        })
        .collect()
}

#[test]
fn offline_reads_change_no_byte_of_the_store() {
    let (dir, ids, key) = signed_log();
    let data = dir.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("tamper.zip");
    let reads = offline_reads("tamper", ("prompt 3", &ids[2]), &key, &ids[4], &export);
    // Twice: while another connection has the store open, as a server would (SQLite's -wal
    // and -shm files are there), and after it closed, the last to, which removes them.
    let open = rusqlite::Connection::open(dir.path().join("aitrail.db")).unwrap();
    open.query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0)).unwrap();
    let mut open = Some(open);
    for pass in ["with a WAL", "closed"] {
        if pass == "closed" {
            drop(open.take());
            assert!(!dir.path().join("aitrail.db-wal").exists());
        }
        let mut before = snapshot(dir.path());
        for read in &reads {
            let said = ok(&aitrail(&[&["--data-dir", data][..], read].concat(), None));
            if read[0] == "find" {
                assert!(said.contains(&ids[3]), "{said}");
            }
        }
        let mut after = snapshot(dir.path());
        if pass == "with a WAL" {
            // Readers of a WAL take their read marks in SQLite's shared-memory file, which
            // holds no data: the one file a read may touch (docs/ACCESS.md says so).
            assert!(before.remove("aitrail.db-shm").is_some(), "{before:?}");
            assert!(after.remove("aitrail.db-shm").is_some(), "{after:?}");
            assert!(before.contains_key("aitrail.db-wal"));
        }
        assert_eq!(after, before, "{pass}: an offline read changed the store");
    }
    let bundle =
        ok(&aitrail(&["verify", "--export", export.to_str().unwrap(), "--key", &key], None));
    assert!(bundle.contains("OK"), "{bundle}");

    // A change is refused by a store opened to read, not carried out.
    let store = aitrail_store_sqlite::SqliteStore::open_read_only(
        dir.path(),
        aitrail_store_sqlite::ReadMode::Mapped,
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record: aitrail_core::Record =
        serde_json::from_value(json!({"tenant_id": "tamper"})).unwrap();
    let refused = rt.block_on(aitrail_store::Store::append(&store, vec![record]));
    assert!(matches!(refused, Err(aitrail_store::StoreError::ReadOnly)), "{refused:?}");
    let before = snapshot(dir.path());
    let policy = rt.block_on(aitrail_store::Store::set_policy(
        &store,
        &aitrail_core::TenantId::parse("tamper").unwrap(),
        "{}",
        aitrail_core::Timestamp::now(),
    ));
    assert!(matches!(policy, Err(aitrail_store::StoreError::ReadOnly)), "{policy:?}");
    assert_eq!(snapshot(dir.path()), before);
}
