//! Tampering with the stored log behind the server's back, and `aitrail verify` naming each
//! change: the whole store, through a server, one record, a saved checkpoint.

use super::*;

// ---------------------------------------------------------------------------------------
// Tampering: edit the stored log behind the server's back, with SQL on the database file
// (a connection of its own, as the sqlite3 tool would); `aitrail verify` must name each change.
// Each statement names the tenant: the access log holds records at the same seqs (the key
// the test server starts with was made offline, and that is logged).

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
    // Without the log key, content stays sealed: verify says it did not check it.
    let keyless = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), keyless.path());
    std::fs::remove_file(keyless.path().join("log-key")).unwrap();
    let (ok, out) = verify(keyless.path(), &key, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("NOTE: the content of 10 record(s) is sealed and was not checked"),
        "{out}"
    );
    // A data key deleted behind aitrail's back shows without the log key too.
    sqlite3(&keyless.path().join("aitrail-keys.db"), "DELETE FROM data_keys");
    let (ok, out) = verify(keyless.path(), &key, &[]);
    assert!(!ok && out.contains("CONTENT REMOVED tenant tamper seq 7"), "{out}");

    let db = |d: &Path| d.join("aitrail.db");
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        ("model_name", "UPDATE records SET model_name = 'gpt-5' WHERE tenant_id = 'tamper' AND seq = 3".into(),
            vec![format!("MODIFIED  tenant tamper seq 3 id {}: model_name differ from the logged entry", ids[3])]),
        ("temperature", "UPDATE records SET temperature = 0.1 WHERE tenant_id = 'tamper' AND seq = 4".into(),
            vec![format!("MODIFIED  tenant tamper seq 4 id {}: temperature differ from the logged entry", ids[4])]),
        ("recorded_at", "UPDATE records SET recorded_at = '2020-01-01T00:00:00Z' WHERE tenant_id = 'tamper' AND seq = 5".into(),
            vec![format!("MODIFIED  tenant tamper seq 5 id {}: recorded_at differ from the logged entry", ids[5])]),
        ("entry and column together",
            "UPDATE records SET model_name = 'gpt-5' WHERE tenant_id = 'tamper' AND seq = 2; UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), 'gpt-4o', 'gpt-5') AS BLOB) WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 2)".into(),
            vec![format!("MODIFIED  tenant tamper seq 2 id {}: entry differs from the logged leaf hash", ids[2])]),
        // Content is sealed: an edit without the content key is bytes that no longer open...
        ("content", "UPDATE contents SET sealed = randomblob(length(sealed)) WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 7)".into(),
            vec![format!("MODIFIED  tenant tamper seq 7 id {}: content does not open: ", ids[7])]),
        // ... and so is another record's content moved in, whole with its key.
        ("moved content", "UPDATE contents SET (key_id, sealed) = (SELECT key_id, sealed FROM contents WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 8)) WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 7)".into(),
            vec![format!("MODIFIED  tenant tamper seq 7 id {}: content does not open: the sealed bytes do not open", ids[7])]),
        // A data key deleted from the key file is content removed.
        ("deleted data key", "ATTACH '{dir}/aitrail-keys.db' AS keyring; DELETE FROM keyring.data_keys".into(),
            vec![format!("CONTENT REMOVED tenant tamper seq 7 id {}: its content is gone without an erasure or retention event", ids[7])]),
        // A bucket key deleted leaves content that can no longer be opened: corrupt.
        ("deleted bucket key", "ATTACH '{dir}/aitrail-bucket-keys.db' AS buckets; DELETE FROM buckets.bucket_keys".into(),
            vec![format!("MODIFIED  tenant tamper seq 7 id {}: content has a data key that is wrapped under bucket key ", ids[7])]),
        ("deleted entry", "DELETE FROM entries WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 3)".into(),
            vec![format!("MODIFIED  tenant tamper seq 3 id {}: entry unreadable", ids[3])]),
        ("deleted content", "DELETE FROM contents WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 7)".into(),
            vec![format!("CONTENT REMOVED tenant tamper seq 7 id {}: its content is gone without an erasure or retention event", ids[7])]),
        ("deleted row", "DELETE FROM records WHERE tenant_id = 'tamper' AND seq = 6".into(),
            vec!["REMOVED   tenant tamper seq 6: the log has this leaf but no record holds it".into()]),
        ("swapped seq", "UPDATE records SET seq = 100 WHERE tenant_id = 'tamper' AND seq = 1; UPDATE records SET seq = 1 WHERE tenant_id = 'tamper' AND seq = 8; UPDATE records SET seq = 8 WHERE tenant_id = 'tamper' AND seq = 100".into(),
            vec![format!("REORDERED tenant tamper seq 1 id {}: this record was logged at seq 8", ids[8]),
                 format!("REORDERED tenant tamper seq 8 id {}: this record was logged at seq 1", ids[1])]),
        ("forged row",
            "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, model_name, success) \
             SELECT '0192b6d8-0000-7000-8000-00000000f0f0', tenant_id, 10, recorded_at, event_time, model_name, success FROM records WHERE tenant_id = 'tamper' AND seq = 0; \
             INSERT INTO entries (pos, entry) SELECT last_insert_rowid(), entry FROM entries WHERE pos = (SELECT pos FROM records WHERE tenant_id = 'tamper' AND seq = 0)".into(),
            vec!["INSERTED  tenant tamper seq 10 id 0192b6d8-0000-7000-8000-00000000f0f0: beyond the end of the log (size 10)".into()]),
        ("row of a tenant without a log",
            "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, success) \
             SELECT '0192b6d8-0000-7000-8000-00000000e0e0', 'ghost', 0, recorded_at, event_time, success FROM records WHERE tenant_id = 'tamper' AND seq = 0".into(),
            vec!["INSERTED  tenant ghost seq 0 id 0192b6d8-0000-7000-8000-00000000e0e0: a record of a tenant that has no log".into()]),
        // The UNIQUE (tenant_id, seq) constraint goes with the table rebuilt without it.
        ("second row at a seq",
            "CREATE TABLE plain AS SELECT * FROM records; DROP TABLE records; ALTER TABLE plain RENAME TO records; \
             INSERT INTO records SELECT * FROM records WHERE tenant_id = 'tamper' AND seq = 3; \
             UPDATE records SET pos = 1000, id = '0192b6d8-0000-7000-8000-00000000d0d0' WHERE rowid = last_insert_rowid(); \
             INSERT INTO entries (pos, entry) SELECT 1000, entry FROM entries WHERE pos = (SELECT min(pos) FROM records WHERE tenant_id = 'tamper' AND seq = 3)".into(),
            vec!["INSERTED  tenant tamper seq 3 id 0192b6d8-0000-7000-8000-00000000d0d0: a second record at a seq already taken".into()]),
        ("deleted leaf tile", "DELETE FROM tiles WHERE level = 0".into(),
            vec!["LOG       tenant tamper: the log has no leaf hash for seq 0: its tiles are incomplete".into()]),
        ("overwritten checkpoint", "UPDATE checkpoints SET note = replace(note, char(10) || '10' || char(10), char(10) || '9' || char(10))".into(),
            vec!["CHECKPOINT tenant tamper size 10: signature check failed".into()]),
    ];
    for (name, sql, expected) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        sqlite3(&db(copy.path()), &sql.replace("{dir}", copy.path().to_str().unwrap()));
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
        "UPDATE records SET model_name = 'gpt-5' WHERE tenant_id = 'tamper' AND seq = 3",
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
    sqlite3(&copy.path().join("aitrail.db"), "UPDATE contents SET sealed = randomblob(99)");
    let (ok, out) = verify(copy.path(), &key, &[&ids[4]]);
    assert!(!ok && out.contains("content does not open"), "{out}");

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
    // A 1 GiB file given as the checkpoint (once read whole: 1.07 GB) is refused unread.
    let huge = dir.path().join("huge-checkpoint.txt");
    std::fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (out, peak_mib) = run_peak(&[
        "--data-dir",
        data_dir,
        "verify",
        "--key",
        &key,
        "--checkpoint",
        huge.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("not a checkpoint"), "{said}");
    assert!(peak_mib < 100, "peak {peak_mib} MiB");
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
