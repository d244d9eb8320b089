//! PostgreSQL: the same commands on --database, several nodes on one database, kill -9 of
//! one of them, and tampering done with psql.

use super::*;

// ---------------------------------------------------------------------------------------
// PostgreSQL: the same commands on --database, several nodes on one database, kill -9 of
// a node under load, and tampering with psql. Each test has a fresh database of its own;
// without AITRAIL_TEST_POSTGRES they are skipped, loudly (and fail in CI).

fn node(db: &TestDatabase, private_key: &str) -> ServerProcess {
    ServerProcess::start_with(&["--database", &db.url], &[("AITRAIL_LOG_KEY", private_key)])
}

/// `aitrail verify` of the database, with the nodes' log key (its content key opens the
/// content, whose commitments are then checked too).
fn verify_database(db: &TestDatabase, key: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--database", &db.url, "verify", "--key", key])
        .env("AITRAIL_LOG_KEY", shared_key().0)
        .env_remove("AITRAIL_SERVER")
        .env_remove("AITRAIL_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn postgres_commands_work_on_the_database() {
    let Some((db, _rt)) = postgres("postgres_commands_work_on_the_database") else { return };
    // The log key is read from (or made in) the data dir: a temporary one, never the
    // source tree the tests run in. The records logged offline are signed at once, so it
    // holds the key the server below signs with: one log, one key.
    let data = tempfile::tempdir().unwrap();
    let (private, _) = shared_key();
    std::fs::write(data.path().join("log-key"), &private).unwrap();
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
    let server = node(&db, &private);
    let mut args = server.remote().to_vec();
    args.extend(["list", "--format", "json"]);
    let listed = ok(&aitrail(&args, None));
    assert_eq!(serde_json::from_str::<Vec<Value>>(&listed).unwrap().len(), 3);
}

/// Every row of the database, as pg_dump writes it.
fn dump(db: &TestDatabase) -> String {
    let out = Command::new("pg_dump")
        .args(["--data-only", "--no-owner", db.url.as_str()])
        .output()
        .expect("pg_dump (postgresql-client) is needed for this PostgreSQL test");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    // Without the dump's own random guard lines (\restrict, \unrestrict).
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().filter(|l| !l.contains("restrict ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn postgres_offline_reads_change_nothing() {
    let Some((db, rt)) = postgres("postgres_offline_reads_change_nothing") else { return };
    let (private, verifier) = shared_key();
    let server = node(&db, &private);
    let client = server.client();
    let receipts: Value = rt.block_on(async {
        let records =
            json!([{"tenant_id": "ro", "prompt": "p0"}, {"tenant_id": "ro", "prompt": "p1"}]);
        let url = format!("{}/v1/records?wait=checkpoint", server.base);
        client.post(url).json(&records).send().await.unwrap().json().await.unwrap()
    });
    server.stop();
    let id = receipts["results"][1]["id"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("log-key"), &private).unwrap();
    let at = ["--database", db.url.as_str(), "--data-dir", data.path().to_str().unwrap()];
    let export = data.path().join("ro.zip");
    let before = dump(&db);
    let reads = super::local_remote::offline_reads("ro", ("p1", &id), &verifier, &id, &export);
    for read in &reads {
        let said = ok(&aitrail(&[&at[..], read].concat(), None));
        if read[0] == "find" {
            assert!(said.contains(&id), "{said}");
        }
    }
    assert_eq!(dump(&db), before, "an offline read changed the database");

    // A store opened to read refuses writes before they reach PostgreSQL (whose sessions
    // are read-only too, should one get through).
    let store =
        rt.block_on(aitrail_store_postgres::PostgresStore::open_read_only(&db.url, None)).unwrap();
    let record: aitrail_core::Record = serde_json::from_value(json!({"tenant_id": "ro"})).unwrap();
    let refused = rt.block_on(aitrail_store::Store::append(&store, vec![record]));
    assert!(matches!(refused, Err(aitrail_store::StoreError::ReadOnly)), "{refused:?}");
    let tenant = aitrail_core::TenantId::parse("ro").unwrap();
    let now = aitrail_core::Timestamp::now();
    let policy = rt.block_on(aitrail_store::Store::set_policy(&store, &tenant, "{}", now));
    assert!(matches!(policy, Err(aitrail_store::StoreError::ReadOnly)), "{policy:?}");
    assert_eq!(dump(&db), before);
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
            "UPDATE contents SET sealed = sealed || '\\x00'::bytea WHERE id = (SELECT id FROM records WHERE seq = 7)",
            "",
            format!(
                "MODIFIED  tenant tamper seq 7 id {}: content does not open: the sealed bytes do not open",
                ids[7]
            ),
        ),
        (
            "DELETE FROM contents WHERE id = (SELECT id FROM records WHERE seq = 6); DELETE FROM records WHERE seq = 6",
            "",
            "REMOVED   tenant tamper seq 6: the log has this leaf but no record holds it".into(),
        ),
        (
            "DELETE FROM contents WHERE id = (SELECT id FROM records WHERE tenant_id = 'tamper' AND seq = 2)",
            "",
            format!(
                "CONTENT REMOVED tenant tamper seq 2 id {}: its content is gone without an erasure or retention event",
                ids[2]
            ),
        ),
        (
            "UPDATE records SET seq = 100 WHERE seq = 1; UPDATE records SET seq = 1 WHERE seq = 8; UPDATE records SET seq = 8 WHERE seq = 100",
            "",
            format!("REORDERED tenant tamper seq 1 id {}: this record was logged at seq 8", ids[8]),
        ),
        (
            "DELETE FROM data_keys WHERE id = (SELECT key_id FROM contents WHERE id = (SELECT id FROM records WHERE tenant_id = 'tamper' AND seq = 3))",
            "",
            format!(
                "CONTENT REMOVED tenant tamper seq 3 id {}: its content is gone without an erasure or retention event",
                ids[3]
            ),
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

/// Crypto-shredding on PostgreSQL, on a cluster of the test's own so that every file of it
/// can be read: no prompt, erased or kept, is in any byte of its data directory (`pg_wal`
/// included, after a checkpoint) nor in a `pg_dump` of it: content only ever arrives
/// sealed (`privacy::crypto_shredding`).
#[test]
fn postgres_erasure_leaves_no_content_in_clear_in_the_cluster_or_a_dump() {
    use aitrail_store_postgres::testing::Cluster;
    let test = "postgres_erasure_leaves_no_content_in_clear_in_the_cluster_or_a_dump";
    let Some(cluster) = Cluster::new(test, |_| {}) else { return };
    cluster.start("");
    let url = cluster.url("127.0.0.1", "sslmode=disable");
    let (private, _) = shared_key();
    let server = ServerProcess::start_with(&["--database", &url], &[("AITRAIL_LOG_KEY", &private)]);
    let scan = || {
        cluster.run("psql", &["-d", &url, "-c", "CHECKPOINT"]);
        let mut files = privacy::files_bytes(&cluster.data());
        files.push(("pg_dump".into(), cluster.run("pg_dump", &["-d", &url])));
        files
    };
    let destroyed = privacy::crypto_shredding(&server, &server.remote(), || {}, scan);
    assert_eq!(destroyed, 20 * 2 + 5, "one data key per (user, session) erased");
}
