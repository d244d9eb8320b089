// Filters: one fixture, and for each filter the expected answer computed from the fixture
// by a predicate written here, not by the code under test.

struct Row {
    tenant: &'static str,
    provider: &'static str,
    model: &'static str,
    version: &'static str,
    deployment: Option<&'static str>,
    safety: &'static str,
    temperature: Option<&'static str>,
    op: &'static str,
    user: &'static str,
    agent: &'static str,
    session: &'static str,
    feature: &'static str,
    success: bool,
    day: u32,
}

const ROWS: &[Row] = &[
    Row {
        tenant: "org-1",
        provider: "openai",
        model: "gpt-4o",
        version: "2024-08-06",
        deployment: None,
        safety: "strict",
        temperature: Some("0.7"),
        op: "chat",
        user: "u1",
        agent: "a1",
        session: "s1",
        feature: "workspace",
        success: true,
        day: 1,
    },
    Row {
        tenant: "org-1",
        provider: "anthropic",
        model: "claude-3-sonnet",
        version: "20240229",
        deployment: None,
        safety: "balanced",
        temperature: Some("0.9"),
        op: "chat",
        user: "u2",
        agent: "a1",
        session: "s2",
        feature: "trustee",
        success: true,
        day: 5,
    },
    Row {
        tenant: "org-1",
        provider: "azure",
        model: "gpt-35-turbo",
        version: "0613",
        deployment: Some("prod-east"),
        safety: "relaxed",
        temperature: Some("0.80"),
        op: "completion",
        user: "u1",
        agent: "a2",
        session: "s1",
        feature: "workspace",
        success: false,
        day: 12,
    },
    Row {
        tenant: "org-2",
        provider: "azure",
        model: "gpt-4o",
        version: "2024-08-06",
        deployment: Some("prod-west"),
        safety: "strict",
        temperature: Some("1.2"),
        op: "embedding",
        user: "u3",
        agent: "a3",
        session: "s3",
        feature: "search",
        success: true,
        day: 20,
    },
    Row {
        tenant: "org-2",
        provider: "openai",
        model: "text-embedding-3",
        version: "1",
        deployment: None,
        safety: "strict",
        temperature: None,
        op: "embedding",
        user: "u3",
        agent: "a3",
        session: "s4",
        feature: "search",
        success: true,
        day: 28,
    },
    Row {
        tenant: "org-1",
        provider: "anthropic",
        model: "claude-3-haiku",
        version: "20240307",
        deployment: None,
        safety: "strict",
        temperature: Some("0.0"),
        op: "chat",
        user: "u2",
        agent: "a2",
        session: "s2",
        feature: "trustee",
        success: false,
        day: 30,
    },
];

fn temp(r: &Row) -> Option<f64> {
    r.temperature.map(|t| t.parse().unwrap())
}

async fn filter_case(query: &str, expect: impl Fn(&Row) -> bool) {
    let Some(s) = Server::start(BACKEND).await else { return };
    let mut ids = Vec::new();
    for r in ROWS {
        let mut v = json!({
            "tenant_id": r.tenant, "model_provider": r.provider, "model_name": r.model,
            "model_version": r.version, "deployment_id": r.deployment, "safety_mode": r.safety,
            "operation_type": r.op, "user_id": r.user, "agent_id": r.agent, "session_id": r.session,
            "feature_code": r.feature, "success": r.success,
            "event_time": format!("2026-10-{:02}T12:00:00Z", r.day),
        });
        if let Some(t) = r.temperature {
            v["temperature"] = Value::String(t.into());
        }
        let (status, receipt) = s.post_json(&v).await;
        assert_eq!(status, StatusCode::CREATED, "{receipt}");
        ids.push(receipt["id"].as_str().unwrap().to_owned());
    }
    let (status, page) = s.get(&format!("/v1/records?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    let got: Vec<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    // Newest first: the fixture in reverse order of insertion.
    let want: Vec<String> =
        ROWS.iter().zip(&ids).filter(|(r, _)| expect(r)).map(|(_, id)| id.clone()).rev().collect();
    assert!(
        !want.is_empty() && want.len() < ROWS.len(),
        "fixture should make {query} discriminate"
    );
    assert_eq!(got, want, "{query}");
}

macro_rules! filter_tests {
    ($($name:ident: $query:expr => $pred:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            filter_case($query, $pred).await;
        }
    )*};
}

filter_tests! {
    filter_tenant_id: "tenant_id=org-2" => |r| r.tenant == "org-2";
    filter_since_date: "since=2026-10-12" => |r| r.day >= 12;
    filter_since_rfc3339: "since=2026-10-12T12:00:01Z" => |r| r.day > 12;
    filter_until: "until=2026-10-12" => |r| r.day < 12;
    filter_model_provider: "model_provider=anthropic" => |r| r.provider == "anthropic";
    filter_model_provider_any_of: "model_provider=anthropic&model_provider=openai" => |r| r.provider != "azure";
    filter_model_name: "model_name=gpt-4o" => |r| r.model == "gpt-4o";
    filter_model_version: "model_version=2024-08-06" => |r| r.version == "2024-08-06";
    filter_deployment_id: "deployment_id=prod-east" => |r| r.deployment == Some("prod-east");
    filter_safety_mode: "safety_mode=strict" => |r| r.safety == "strict";
    filter_temperature_min: "temperature_min=0.8" => |r| temp(r).is_some_and(|t| t >= 0.8);
    filter_temperature_max: "temperature_max=0.8" => |r| temp(r).is_some_and(|t| t <= 0.8);
    filter_temperature_gt: "temperature_gt=0.8" => |r| temp(r).is_some_and(|t| t > 0.8);
    filter_temperature_lt: "temperature_lt=0.8" => |r| temp(r).is_some_and(|t| t < 0.8);
    filter_operation_type: "operation_type=embedding" => |r| r.op == "embedding";
    filter_user_id: "user_id=u1" => |r| r.user == "u1";
    filter_agent_id: "agent_id=a2" => |r| r.agent == "a2";
    filter_session_id: "session_id=s2" => |r| r.session == "s2";
    filter_feature_code: "feature_code=search" => |r| r.feature == "search";
    filter_success: "success=false" => |r| !r.success;
    // The auditor questions of the conversation-audit-log service, one call each.
    question_temperature_above_0_8: "temperature_gt=0.8" => |r| temp(r).is_some_and(|t| t > 0.8);
    question_claude_vs_gpt: "model_provider=anthropic&model_provider=openai&operation_type=chat" => |r| r.provider != "azure" && r.op == "chat";
    question_azure_last_month: "model_provider=azure&since=2026-10-01&until=2026-10-15" => |r| r.provider == "azure" && r.day < 15;
}

#[tokio::test]
async fn pagination_walks_every_record_once_newest_first() {
    let Some(s) = Server::start(BACKEND).await else { return };
    let batch: Vec<Value> = (0..7).map(|_| json!({"tenant_id": "p"})).collect();
    let (_, body) = s.post_json(&Value::Array(batch)).await;
    let inserted: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = Vec::new();
    let mut q = "/v1/records?limit=3".to_owned();
    loop {
        let (status, page) = s.get(&q).await;
        assert_eq!(status, StatusCode::OK);
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 3);
        seen.extend(records.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => q = format!("/v1/records?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, inserted);
}
