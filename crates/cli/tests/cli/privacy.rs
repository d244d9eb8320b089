//! Privacy: what is erased or redacted is in no file of the store, nor in the server's log.

use super::*;

// ---------------------------------------------------------------------------------------
// Privacy: what is erased or redacted is in no file of the store, nor in the server's log.

/// Every byte of every file under `dir` (the database, its WAL, the key file; a cluster's
/// data directory with `pg_wal`).
pub(crate) fn files_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.is_file() {
                // A file PostgreSQL removed meanwhile is in no file any more.
                if let Ok(bytes) = std::fs::read(&path) {
                    files.push((path.display().to_string(), bytes));
                }
            }
        }
    }
    files
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Which of `needles` (each at least 8 bytes) occur in any of `files`, each named with the
/// first file that holds it: one pass over every byte, whatever the number of needles.
fn found_in(files: &[(String, Vec<u8>)], needles: &[Vec<u8>]) -> Vec<(usize, String)> {
    let mut by_start: std::collections::HashMap<[u8; 8], Vec<usize>> = Default::default();
    for (i, n) in needles.iter().enumerate() {
        by_start.entry(n[..8].try_into().unwrap()).or_default().push(i);
    }
    let mut found: std::collections::BTreeMap<usize, String> = Default::default();
    for (name, bytes) in files {
        for (at, window) in bytes.windows(8).enumerate() {
            let Some(candidates) = by_start.get(<&[u8; 8]>::try_from(window).unwrap()) else {
                continue;
            };
            for &i in candidates {
                if bytes[at..].starts_with(&needles[i]) {
                    found.entry(i).or_insert_with(|| name.clone());
                }
            }
        }
    }
    found.into_iter().collect()
}

/// A prompt of about 2 KiB, different for every (subject, session).
fn unique_prompt(subject: usize, session: char) -> String {
    let mut text = format!("Subject {subject:02}, session {session}, asks:");
    let mut x = (subject as u64) << 8 | u64::from(session);
    while text.len() < 2048 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text.push_str(&format!(" w{:x}", x >> 20));
    }
    text
}

/// What crypto-shredding must hold on either backend (docs/PRIVACY.md): 40 subjects with
/// two sessions each, a unique ~2 KiB prompt per session; erase 20 subjects by user, and of
/// 5 more one session each. Then the erased content reads as gone, the kept content reads
/// back whole, the log verifies, and `scan()` (every byte the backend keeps) holds no prompt
/// at all: content is only ever stored sealed. `before_erasure` runs once all is logged.
/// Returns how many data keys the server said it destroyed.
pub(crate) fn crypto_shredding(
    server: &ServerProcess,
    verify: &[&str],
    before_erasure: impl FnOnce(),
    scan: impl Fn() -> Vec<(String, Vec<u8>)>,
) -> u64 {
    let session = |subject: usize, s: char| format!("s{subject:02}-{s}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let base = &server.base;
    let get = |url: String| {
        let client = client.clone();
        runtime.block_on(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        })
    };
    runtime.block_on(async {
        let r = client
            .put(format!("{base}/v1/tenants/t/policy"))
            .json(&json!({"content_mode": "full"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for subject in 0..40 {
            for s in ['a', 'b'] {
                let r = client
                    .post(format!("{base}/v1/records"))
                    .json(&json!({
                        "tenant_id": "t",
                        "user_id": format!("u{subject:02}"),
                        "session_id": session(subject, s),
                        "prompt": unique_prompt(subject, s),
                        "response": format!("answer for {}", unique_prompt(subject, s)),
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }
        // A control of the same size and kind, in attributes: the entry keeps it in clear,
        // so the scan must find it (through any compression the backend applies).
        let control = json!({"tenant_id": "t", "attributes": {"note": unique_prompt(99, 'z')}});
        let r = client.post(format!("{base}/v1/records")).json(&control).send().await.unwrap();
        assert_eq!(r.status(), 201);
    });
    before_erasure();
    let destroyed = runtime.block_on(async {
        let mut destroyed = 0;
        let erasures = (0..20)
            .map(|subject| json!({"tenant_id": "t", "user_id": format!("u{subject:02}")}))
            .chain(
                (20..25)
                    .map(|subject| json!({"tenant_id": "t", "session_id": session(subject, 'b')})),
            );
        for body in erasures {
            let r = client.post(format!("{base}/v1/erasure")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{body}");
            let answer: Value = r.json().await.unwrap();
            assert_eq!(
                answer["records"],
                if body["user_id"].is_string() { 2 } else { 1 },
                "{answer}"
            );
            destroyed += answer["data_keys_destroyed"].as_u64().unwrap();
        }
        destroyed
    });
    // Through the API: erased content is gone, kept content is whole.
    for subject in 0..40 {
        for s in ['a', 'b'] {
            let page =
                get(format!("{base}/v1/records?tenant_id=t&session_id={}", session(subject, s)));
            let record = &page["records"][0];
            let erased = subject < 20 || (subject < 25 && s == 'b');
            if erased {
                assert!(record["prompt"].is_null() && record["response"].is_null(), "{record}");
            } else {
                assert_eq!(record["prompt"], unique_prompt(subject, s), "{subject}{s}");
            }
        }
    }
    // Every proof still holds.
    let out = aitrail(&[verify, &["verify"]].concat(), None);
    assert!(out.status.success(), "{out:?}");
    // No prompt, erased or kept, is in any byte: only sealed content is stored. The scan
    // does find what is stored in clear (session ids), so it would find a prompt.
    let files = scan();
    let control = unique_prompt(99, 'z').into_bytes();
    let control = [control[..64].to_vec(), control[1000..1064].to_vec()];
    assert_eq!(found_in(&files, &control).len(), 2, "the scan finds text stored in clear");
    let texts: Vec<Vec<u8>> = (0..40)
        .flat_map(|subject| ['a', 'b'].map(|s| unique_prompt(subject, s)))
        .flat_map(|text| [text.as_bytes()[..64].to_vec(), text.as_bytes()[1000..1064].to_vec()])
        .collect();
    assert_eq!(found_in(&files, &texts), Vec::new(), "prompt text stored in clear");
    destroyed
}

/// A data key as the key files hold it, unwrapped with the log key's content key.
#[derive(Clone)]
struct HeldKey {
    user: String,
    session: String,
    raw: Vec<u8>,
    wrapped: Vec<u8>,
    /// Its bucket key: id, raw and wrapped.
    bucket: (Vec<u8>, Vec<u8>, Vec<u8>),
}

/// The data keys the key files hold, each with its bucket key.
fn data_keys(dir: &Path) -> Vec<HeldKey> {
    use aitrail_store::uuid::Uuid;
    let log_key = std::fs::read_to_string(dir.join("log-key")).unwrap();
    let content_key =
        aitrail_service::content_key(&aitrail_core::note::NoteSigner::parse(&log_key).unwrap());
    let keys = rusqlite::Connection::open(dir.join("aitrail-keys.db")).unwrap();
    let buckets = dir.join("aitrail-bucket-keys.db");
    keys.execute("ATTACH ?1 AS buckets", [buckets.to_str().unwrap()]).unwrap();
    let mut stmt = keys
        .prepare(
            "SELECT k.id, k.tenant_id, k.user_id, k.session_id, k.wrapped, b.id, b.bucket, b.wrapped
             FROM data_keys k JOIN buckets.bucket_keys b ON b.id = k.bucket_key",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let id = Uuid::from_slice(&r.get::<_, Vec<u8>>(0)?).unwrap();
        let (tenant, wrapped): (String, Vec<u8>) = (r.get(1)?, r.get(4)?);
        let (bucket_id, bucket, bucket_wrapped): (Vec<u8>, u16, Vec<u8>) =
            (r.get(5)?, r.get(6)?, r.get(7)?);
        let bucket_key = content_key
            .unwrap_bucket_key(bucket, &Uuid::from_slice(&bucket_id).unwrap(), &bucket_wrapped)
            .unwrap();
        let raw = bucket_key.unwrap(&tenant, &id, &wrapped).unwrap().raw_bytes().to_vec();
        Ok(HeldKey {
            user: r.get(2)?,
            session: r.get(3)?,
            raw,
            wrapped,
            bucket: (bucket_id, bucket_key.raw_bytes().to_vec(), bucket_wrapped),
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// On the embedded store: no prompt in any file of the data dir (database, WAL, key
/// files), with the server running and after it stopped; no destroyed data key in clear;
/// and no bucket key that wrapped one, in clear or wrapped, so that whatever copy of a
/// destroyed key's wrapped bytes a free page keeps cannot be unwrapped. The kept keys are
/// there to find, wrapped only.
#[test]
fn erasure_destroys_data_keys_and_no_file_holds_content_in_clear_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let data = ["--data-dir", dir.path().to_str().unwrap()];
    // Subjects are erased by user (0–19) or one session (20–24, session b).
    let erased = |user: &str, session: &str| {
        let n: usize = user[1..].parse().unwrap();
        n < 20 || (n < 25 && session.ends_with("-b"))
    };
    let mut before = Vec::new();
    let destroyed = crypto_shredding(
        &server,
        &data,
        || before = data_keys(dir.path()),
        || files_bytes(dir.path()),
    );
    assert_eq!(destroyed, 20 * 2 + 5, "one data key per (user, session) erased");
    let (gone, kept): (Vec<HeldKey>, Vec<HeldKey>) =
        before.into_iter().partition(|k| erased(&k.user, &k.session));
    let now = data_keys(dir.path());
    assert!(
        gone.iter().all(|g| now.iter().all(|k| k.raw != g.raw)),
        "a destroyed key is still there"
    );
    assert_eq!(now.len(), kept.len(), "the kept keys, and no other");
    // Bucket keys that wrapped a destroyed key: every one is gone, rekeyed.
    let mut old_buckets: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        gone.iter().map(|k| k.bucket.clone()).collect();
    old_buckets.sort();
    old_buckets.dedup();
    assert!(old_buckets.len() >= 20, "the erased people's keys sit in many buckets");
    assert!(
        old_buckets.iter().all(|(id, ..)| now.iter().all(|k| k.bucket.0 != *id)),
        "a bucket key that wrapped a destroyed key still wraps a kept one"
    );
    let on_disk = |needles: Vec<Vec<u8>>| found_in(&files_bytes(dir.path()), &needles);
    let destroyed_secrets = || -> Vec<Vec<u8>> {
        gone.iter()
            .map(|k| k.raw.clone())
            .chain(old_buckets.iter().flat_map(|(_, raw, wrapped)| [raw.clone(), wrapped.clone()]))
            .collect()
    };
    assert_eq!(
        on_disk(destroyed_secrets()),
        Vec::new(),
        "a destroyed data key in clear, or a destroyed bucket key in clear or wrapped, on disk"
    );
    let kept_now: Vec<Vec<u8>> = now.iter().map(|k| k.wrapped.clone()).collect();
    assert_eq!(on_disk(kept_now).len(), now.len(), "each kept key is on disk, wrapped");
    let kept_raw: Vec<Vec<u8>> = kept.iter().map(|k| k.raw.clone()).collect();
    assert_eq!(on_disk(kept_raw), Vec::new(), "a kept key in clear on disk");
    server.stop();
    assert_eq!(on_disk(destroyed_secrets()), Vec::new(), "after a clean shutdown too");
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
            // In attributes, which the entry holds in clear (content is sealed).
            .json(&json!({"tenant_id": "t", "attributes": {"note": control}}))
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
