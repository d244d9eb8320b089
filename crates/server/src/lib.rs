//! The aitrail HTTP API. Thin: parse the request, call core and the store, render. Every
//! error leaves through [`problem::ApiError`] as problem+json.

mod problem;
mod records;

use std::sync::Arc;

use aitrail_store::Store;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};

pub use problem::ApiError;

/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The OpenAPI 3 description of every route, served at /openapi.json.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
}

/// The whole API as an axum router.
pub fn router(store: Arc<dyn Store>, config: Config) -> Router {
    let state = AppState { store, config: Arc::new(config) };
    Router::new()
        .route("/healthz", only(get(healthz), "GET, HEAD"))
        .route("/openapi.json", only(get(openapi), "GET, HEAD"))
        .route("/v1/records", only(post(records::append).get(records::list), "GET, HEAD, POST"))
        .route("/v1/records/{id}", only(get(records::get_one), "GET, HEAD"))
        .route("/audit/log", only(post(records::audit_log), "POST"))
        .fallback(|| async { ApiError::NoRoute })
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

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Serve until `shutdown` resolves, then finish the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
