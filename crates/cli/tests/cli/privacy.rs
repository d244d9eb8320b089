//! Privacy: what is erased or redacted is in no file of the store, nor in the server's log.

use super::*;

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
    let corpus: Vec<(String, String)> = include_str!("../../../core/tests/data/secrets.tsv")
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

            // The same secret in an identifier-like field (a rotation; core's policy tests
            // put every rule in every field), as a filter value and as a key label.
            let metadata = [
                "user_id",
                "session_id",
                "agent_id",
                "feature_code",
                "external_id",
                "model_name",
                "model_version",
                "deployment_id",
                "safety_mode",
                "operation_type",
                "channel",
                "response_model",
            ][i % 12];
            let r = client
                .post(format!("{}/v1/records", server.base))
                .json(&json!({"tenant_id": "t", metadata: text}))
                .send()
                .await
                .unwrap();
            assert!(r.status() == 201 || r.status() == 422, "{rule} in {metadata}: {}", r.status());
            let r = client
                .get(format!("{}/v1/records", server.base))
                .query(&[("tenant_id", "t"), ("user_id", text.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{rule} as a filter value");
            let r = client
                .post(format!("{}/v1/keys", server.base))
                .json(&json!({"role": "viewer", "tenant_id": "t", "label": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422, "{rule} as a key label");
            let problem: Value = r.json().await.unwrap();
            assert!(problem.to_string().contains(rule.as_str()), "{problem}");
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
