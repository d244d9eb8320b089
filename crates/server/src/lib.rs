//! The aitrail HTTP API. Thin: parse the request, call core and the store, render. Every
//! error leaves through [`problem::ApiError`] as problem+json.

mod access;
mod auth;
mod dashboard;
mod export;
mod hygiene;
mod integrity;
mod keys;
mod listener;
mod otlp;
mod policy;
mod problem;
mod proxy;
mod records;
mod retention;
mod seen;
mod session;
mod spool;
mod usage;
mod verification;

use std::sync::Arc;

use aitrail_store::Store;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};

pub use aitrail_capture::proxy::Provider;
pub use aitrail_service::LogSigner;
pub use auth::KeyRing;
pub use problem::ApiError;
pub use proxy::ProxyTarget;
pub use retention::run_job as retention_job;

/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The OpenAPI 3 description of every route, served at /openapi.json.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Serve GET /v1/checkpoint without a key, so anyone may check the log's signatures
    /// (GET /v1/log-key never needs one).
    pub public_log: bool,
    /// Requests a second each API key may make on this node (0: no limit); a key over it
    /// gets 429 with Retry-After.
    pub rate_limit: u32,
    /// Mark the dashboard's session cookie Secure even without an `X-Forwarded-Proto:
    /// https` from a TLS-terminating proxy (which sets it anyway).
    pub secure_cookies: bool,
    /// Upstreams of the logging proxy (`/proxy/<provider>/…`).
    pub proxies: Vec<ProxyTarget>,
    /// Where the proxy keeps records the store has not taken yet, a file each, so they
    /// outlive the node (None: in memory only).
    pub proxy_spool: Option<std::path::PathBuf>,
    /// How much of each proxied answer its record keeps (the rest is named by its size
    /// and SHA-256). Whole answers up to 16 MiB (or this, if larger) are held and read,
    /// longer ones streamed through.
    pub proxy_record_answer_bytes: usize,
    /// The longest upstream answer the proxy passes on; past it the call is cut and
    /// recorded as failed.
    pub proxy_max_answer_bytes: u64,
    /// How often a tenant's key may start a full verification on a node.
    pub verification_cooldown: std::time::Duration,
}

/// Default of `Config::proxy_record_answer_bytes`.
pub const DEFAULT_PROXY_RECORD_ANSWER_BYTES: usize = aitrail_capture::proxy::ANSWER_KEPT;

/// Default of `Config::proxy_max_answer_bytes`: far past any model's answer.
pub const DEFAULT_PROXY_MAX_ANSWER_BYTES: u64 = 256 << 20;

/// Default per-key request rate: batch above it.
pub const DEFAULT_RATE_LIMIT: u32 = 5_000;

/// Body limit of the routes that take small JSON (keys).
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            public_log: false,
            rate_limit: DEFAULT_RATE_LIMIT,
            secure_cookies: false,
            proxies: Vec::new(),
            proxy_spool: None,
            proxy_record_answer_bytes: DEFAULT_PROXY_RECORD_ANSWER_BYTES,
            proxy_max_answer_bytes: DEFAULT_PROXY_MAX_ANSWER_BYTES,
            verification_cooldown: std::time::Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub log: Arc<LogSigner>,
    pub keys: Arc<KeyRing>,
    /// The use cases the server shares with the CLI (`aitrail-service`).
    pub trail: Arc<aitrail_service::Trail>,
    /// Held while a full verification runs on this node; when each tenant last started one.
    pub verifying: Arc<
        tokio::sync::Mutex<std::collections::HashMap<aitrail_core::TenantId, std::time::Instant>>,
    >,
    pub proxy: Arc<proxy::Proxy>,
}

/// Every path the router serves; the OpenAPI document must describe exactly these (a test
/// holds the two together). Add a route here when you add it below.
pub const PATHS: &[&str] = &[
    "/healthz",
    "/openapi.json",
    "/v1/records",
    "/v1/records/{id}",
    "/v1/records/{id}/proof",
    "/v1/checkpoint",
    "/v1/consistency",
    "/v1/log-key",
    "/v1/keys",
    "/v1/keys/{id}/revoke",
    "/v1/access-log",
    "/v1/export",
    "/v1/tenants/{id}/policy",
    "/v1/erasure",
    "/v1/holds",
    "/v1/holds/release",
    "/audit/log",
    "/v1/session",
    "/v1/usage",
    "/v1/verification",
    "/v1/traces",
    "/proxy/{provider}/{rest}",
];

/// The whole API as an axum router. Run `log.run(store)` beside it to sign checkpoints.
pub fn router(store: Arc<dyn Store>, log: Arc<LogSigner>, config: Config) -> Router {
    let keys = Arc::new(KeyRing::new(log.api_key_secret(), config.rate_limit));
    let trail = Arc::new(aitrail_service::Trail::new(store.clone(), log.clone()));
    let verifying = Arc::default();
    let spool_secret = log.signer().derive_secret("proxy-spool");
    let proxy = Arc::new(proxy::Proxy::new(config.proxy_spool.as_deref(), spool_secret));
    let state = AppState { store, config: Arc::new(config), log, keys, trail, verifying, proxy };
    proxy::resume(&state);
    Router::new()
        .route("/healthz", only(get(healthz), "GET, HEAD"))
        .route("/openapi.json", only(get(openapi), "GET, HEAD"))
        .route("/v1/records", only(post(records::append).get(records::list), "GET, HEAD, POST"))
        .route("/v1/records/{id}", only(get(records::get_one), "GET, HEAD"))
        .route("/v1/records/{id}/proof", only(get(integrity::proof), "GET, HEAD"))
        .route("/v1/checkpoint", only(get(integrity::checkpoint), "GET, HEAD"))
        .route("/v1/consistency", only(get(integrity::consistency), "GET, HEAD"))
        .route("/v1/log-key", only(get(integrity::log_key), "GET, HEAD"))
        .route(
            "/v1/keys",
            only(post(keys::create).get(keys::list), "GET, HEAD, POST")
                .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY_BYTES)),
        )
        .route("/v1/keys/{id}/revoke", only(post(keys::revoke), "POST"))
        .route("/v1/access-log", only(get(access::list), "GET, HEAD"))
        .route("/v1/export", only(get(export::export), "GET, HEAD"))
        .route(
            "/v1/tenants/{id}/policy",
            only(get(policy::get).put(policy::put), "GET, HEAD, PUT")
                .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY_BYTES)),
        )
        .route("/v1/erasure", only(post(retention::erase), "POST"))
        .route("/v1/holds", only(get(retention::list).post(retention::place), "GET, HEAD, POST"))
        .route("/v1/holds/release", only(post(retention::release), "POST"))
        .route("/audit/log", only(post(records::audit_log), "POST"))
        .route(
            "/v1/session",
            only(
                post(session::sign_in).get(session::current).delete(session::sign_out),
                "GET, HEAD, POST, DELETE",
            )
            .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY_BYTES)),
        )
        .route("/v1/usage", only(get(usage::usage), "GET, HEAD"))
        .route("/v1/traces", only(post(otlp::traces), "POST"))
        .route(
            "/v1/verification",
            only(get(verification::latest).post(verification::run), "GET, HEAD, POST"),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), access::record))
        .route("/proxy/{provider}/{*rest}", axum::routing::any(proxy::forward))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NoRoute })
        .layer(axum::middleware::from_fn(hygiene::checked))
        .with_state(state)
}

/// A route that answers any other method with 405 problem+json naming the allowed ones;
/// in particular no route updates or deletes a record.
fn only(methods: MethodRouter<AppState>, allow: &'static str) -> MethodRouter<AppState> {
    methods.fallback(move || async move { ApiError::MethodNotAllowed { allow } })
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi(_: auth::Caller) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Serve until `shutdown` resolves, then finish the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener::Listener(listener), app).with_graceful_shutdown(shutdown).await?;
    // Longer than a commit may wait for SQLite's lock, so a record that then fails still
    // reaches the spool's file before the process ends.
    if !proxy::settle(std::time::Duration::from_secs(15)).await {
        tracing::error!("stopping with proxied calls' records still in flight; they are lost");
    }
    Ok(())
}
