//! The web dashboard: a single page served at `/`, every asset compiled into the binary
//! (crates/server/ui). It talks to the same /v1 API as every other client, signed in with
//! a session cookie (crate::session), so roles, filters and the access log apply to it
//! unchanged. A strict Content-Security-Policy allows only these assets to run.

use axum::Router;
use axum::extract::Path;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{ApiError, AppState};

/// (file, media type, bytes) of every asset under /ui/.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../ui/app.js")),
    ("proof.js", "text/javascript; charset=utf-8", include_str!("../ui/proof.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("../ui/charts.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../ui/style.css")),
];

const INDEX: &str = include_str!("../ui/index.html");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{file}", get(asset))
}

fn page(media_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // Assets change with the binary: always revalidate.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, media_type, body) =
        ASSETS.iter().find(|(name, _, _)| *name == file).ok_or(ApiError::NoRoute)?;
    Ok(page(media_type, body))
}
