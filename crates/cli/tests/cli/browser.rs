//! The dashboard in a real browser.

use super::*;

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
