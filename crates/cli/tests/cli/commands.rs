//! The commands on a local data dir and through a server, their errors and help, and
//! the durability promise under kill -9.

use super::*;

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
