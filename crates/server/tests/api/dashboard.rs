// The dashboard's session: a cookie that stands for a key, and the CSRF token.

/// A client that keeps cookies and sends no key, as a browser.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

#[tokio::test]
async fn a_dashboard_session_stands_for_its_key_and_changes_need_the_csrf_token() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (key_id, key) = make_key(&s, "admin", Some("own")).await;
    let b = browser();
    let url = |p: &str| format!("{}{p}", s.base);
    // Sign-in takes JSON only (a cross-site form cannot sign a browser in) and a real key.
    let form = b.post(url("/v1/session")).form(&[("api_key", key.as_str())]).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);
    let wrong = b.post(url("/v1/session")).json(&json!({"api_key": "ait_nope"})).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let r = b.post(url("/v1/session")).json(&json!({"api_key": key})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    assert!(!cookie.contains(key.splitn(3, '_').nth(2).unwrap()), "the cookie holds no key secret");
    let session: Value = r.json().await.unwrap();
    assert_eq!((session["role"].as_str(), session["key_id"].as_str()), (Some("admin"), Some(key_id.as_str())));
    assert_eq!(session["tenant_id"], "own");
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();

    // Reads need only the cookie; the key's role and tenant apply.
    let me: Value = b.get(url("/v1/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["csrf_token"], csrf.as_str());
    assert_eq!(b.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(b.get(url("/v1/records?tenant_id=other")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // Changes need the CSRF token too: none, or another session's, is 403 and stores nothing.
    let record = json!({"tenant_id": "own", "model_name": "from-the-browser"});
    let bare = b.post(url("/v1/records")).json(&record).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let problem: Value = bare.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("X-CSRF-Token"), "{problem}");
    let other: Value = browser().post(url("/v1/session")).json(&json!({"api_key": key})).send().await.unwrap().json().await.unwrap();
    let foreign = other["csrf_token"].as_str().unwrap();
    let r = b.post(url("/v1/records")).header("x-csrf-token", foreign).json(&record).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, page) = send(&s.client, &s.base, &(reqwest::Method::GET, "/v1/records?model_name=from-the-browser".into(), None)).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0, "nothing stored: {page}");
    let r = b.post(url("/v1/records")).header("x-csrf-token", &csrf).json(&record).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A forged or altered cookie is no session.
    let token = cookie.split(';').next().unwrap().strip_prefix("aitrail_session=").unwrap();
    let forged = token.replacen(".", ".9", 1);
    for bad in [forged.as_str(), "x.y.z.w", ""] {
        let r = reqwest::Client::new().get(url("/v1/records")).header("cookie", format!("aitrail_session={bad}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Signing in and out is in the access log.
    let r = b.delete(url("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "sign-out needs its CSRF token too");
    let r = b.delete(url("/v1/session")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(b.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (_, log) = send(&s.client, &s.base, &(reqwest::Method::GET, format!("/v1/access-log?key_id={key_id}"), None)).await;
    let ops: Vec<&str> = log["records"].as_array().unwrap().iter().map(|r| r["operation_type"].as_str().unwrap()).collect();
    assert!(ops.contains(&"sign-in") && ops.contains(&"sign-out"), "{ops:?}");
    // Revoking the key ends its sessions at once.
    let (_, other_key) = make_key(&s, "viewer", Some("own")).await;
    let c = browser();
    c.post(url("/v1/session")).json(&json!({"api_key": other_key})).send().await.unwrap();
    assert_eq!(c.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::OK);
    let id = other_key.split('_').nth(1).unwrap();
    let (status, _) = s.post(&format!("/v1/keys/{id}/revoke"), "application/json", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c.get(url("/v1/records")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tls_proxy_makes_the_session_cookie_secure() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let (_, key) = make_key(&s, "viewer", Some("own")).await;
    let r = browser()
        .post(format!("{}/v1/session", s.base))
        .header("x-forwarded-proto", "https")
        .json(&json!({"api_key": key}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-aitrail_session=") && cookie.contains("; Secure"), "{cookie}");
    // ... and that cookie signs the browser in.
    let token = cookie.split(';').next().unwrap();
    let over_tls = |cookie: String| {
        let url = format!("{}/v1/session", s.base);
        async move {
            let r = reqwest::Client::new().get(url).header("cookie", cookie).header("x-forwarded-proto", "https");
            r.send().await.unwrap().status()
        }
    };
    assert_eq!(over_tls(token.to_owned()).await, StatusCode::OK);
    // Under TLS the plain name is not read: a sibling subdomain could have planted it.
    let planted = token.replacen("__Host-aitrail_session", "aitrail_session", 1);
    assert_eq!(over_tls(planted).await, StatusCode::UNAUTHORIZED);
}
