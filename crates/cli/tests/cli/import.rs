//! Moving in from the conversation-audit-log service: its CSV export and its table.

use super::*;

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
    assert!(!data.join("aitrail.db").exists(), "a refused import made a store");

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

/// An import is held to what the API takes: a 50 MB cell (once imported, at five times
/// its size in memory) and columns no record holds (once dropped or kept unseen) are
/// refused, naming them; rows the API takes one by one go in bodies it takes.
#[test]
fn a_csv_import_is_held_to_the_apis_limits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv_file = dir.path().join("import.csv");
    let import = |csv: &[u8], at: &[&str]| {
        std::fs::write(&csv_file, csv).unwrap();
        let mut args = at.to_vec();
        args.extend(["import", "--csv", csv_file.to_str().unwrap(), "--tenant-id", "t"]);
        run_peak(&args)
    };
    let at = ["--data-dir", data.to_str().unwrap()];
    let said = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let mut huge = b"Log ID,Prompt\nlog-1,\"".to_vec();
    huge.resize(huge.len() + (50 << 20), b'p');
    huge.extend_from_slice(b"\"\n");
    let (out, peak_mib) = import(&huge, &at);
    assert!(!out.status.success(), "{out:?}");
    assert!(said(&out).contains("row 1 is longer than 10485760 bytes"), "{}", said(&out));
    assert!(peak_mib < 100, "peak {peak_mib} MiB");

    let (out, _) = import(b"Log ID,Prompt,Favourite Colour\nlog-1,hi,blue\n", &at);
    assert!(
        said(&out).contains(r#"1 column(s) that no record holds: "Favourite Colour""#),
        "{}",
        said(&out)
    );
    let mut wide = "Log ID".to_owned();
    for i in 0..100_000 {
        wide.push_str(&format!(",c{i}"));
    }
    wide.push_str("\nlog-1");
    wide.push_str(&",x".repeat(100_000));
    wide.push('\n');
    let (out, peak_mib) = import(wide.as_bytes(), &at);
    assert!(
        said(&out).contains("100000 column(s)") && said(&out).contains("and 99990 more"),
        "{}",
        said(&out)
    );
    assert!(peak_mib < 100, "peak {peak_mib} MiB");
    // A row within the limit as CSV but not as JSON (each newline escaped to two bytes),
    // after one that fits: refused whole, nothing imported (the first once went in).
    let mut grows = b"Log ID,Prompt\nlog-c,small\nlog-d,\"".to_vec();
    grows.extend_from_slice(&b"a\n".repeat(4 << 20));
    grows.extend_from_slice(b"\"\n");
    let (out, _) = import(&grows, &at);
    assert!(
        said(&out).contains("row 2: ") && said(&out).contains("bytes as JSON"),
        "{}",
        said(&out)
    );
    assert!(!data.join("aitrail.db").exists(), "a refused import made a store");

    // Three rows of 4 MiB each, under the limit alone but not together: through a server
    // (whose body limit is 10 MiB) they go in more than one body.
    let server = ServerProcess::start(&data);
    let mut rows = b"Log ID,Prompt\n".to_vec();
    for i in 0..3 {
        rows.extend_from_slice(format!("log-{i},").as_bytes());
        rows.resize(rows.len() + (4 << 20), b'p');
        rows.push(b'\n');
    }
    let (out, _) = import(&rows, &server.remote());
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 3 record(s)"), "{out:?}");
}
