//! Keys: the first start's admin key, managing keys from the command line, and the config
//! file.

use super::*;

// ---------------------------------------------------------------------------------------
// Keys: the first start, and managing keys from the command line.

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
