//! Dashboard sign-in: an API key is exchanged once for a session cookie (HttpOnly,
//! SameSite=Strict, Secure under TLS), so the browser never keeps the key. Every request
//! that changes something and is authenticated by the cookie must also carry the session's
//! CSRF token in `X-CSRF-Token`; API clients sending `Authorization` are unaffected.
//! Sign-in takes JSON only, so a cross-site form cannot sign a browser in either.

use aitrail_core::Timestamp;
use aitrail_core::access::Principal;
use aitrail_core::ingest::FieldError;
use aitrail_core::session::{SESSION_SECONDS, Session};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::seen::Seen;
use crate::{ApiError, AppState};

/// The session cookie's name; under TLS with the `__Host-` prefix, which browsers only
/// accept from this very host over HTTPS (no sibling subdomain can plant one).
pub(crate) const COOKIE: &str = "aitrail_session";
const SECURE_COOKIE: &str = "__Host-aitrail_session";
/// The header a cookie-authenticated change must carry its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's value, if the request has one. Under TLS only the `__Host-` name
/// counts, so a cookie planted by a sibling subdomain is never read.
pub(crate) fn cookie(headers: &HeaderMap, secure: bool) -> Option<&str> {
    let name = if secure { SECURE_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// A request authenticated by a live session cookie (and, unless it only reads, by the
/// session's CSRF token).
pub(crate) struct SignedIn(pub Principal, pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = cookie(&parts.headers, secure(app, &parts.headers))
            .ok_or(ApiError::Unauthorized("not signed in"))?;
        let (principal, session) = app.keys.authenticate_session(app.store.as_ref(), token).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !presented.is_some_and(|t| session.csrf_matches(app.keys.secret(), t)) {
                return Err(ApiError::Forbidden(
                    "this change needs the session's CSRF token in X-CSRF-Token".into(),
                ));
            }
        }
        if let Some(seen) = parts.extensions.get::<Seen>() {
            seen.set(&principal);
        }
        Ok(SignedIn(principal, session))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    api_key: String,
}

/// Who is signed in, and the CSRF token their changes must carry.
#[derive(Serialize)]
struct SessionBody {
    key_id: String,
    role: String,
    tenant_id: Option<String>,
    expires_at: String,
    csrf_token: String,
}

fn session_body(app: &AppState, principal: &Principal, session: &Session) -> SessionBody {
    let expires = Timestamp::from_unix_nanos(session.expires.saturating_mul(1_000_000_000));
    SessionBody {
        key_id: principal.key_id.to_string(),
        role: principal.role.to_string(),
        tenant_id: principal.tenant.as_ref().map(ToString::to_string),
        expires_at: expires.map(|t| t.to_string()).unwrap_or_default(),
        csrf_token: session.csrf_token(app.keys.secret()),
    }
}

/// Whether the cookie should be Secure: always when configured, and when a TLS-terminating
/// proxy says the browser came over HTTPS.
pub(crate) fn secure(app: &AppState, headers: &HeaderMap) -> bool {
    app.config.secure_cookies
        || headers.get("x-forwarded-proto").is_some_and(|p| p.as_bytes() == b"https")
}

fn set_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let (name, secure) = if secure { (SECURE_COOKIE, "; Secure") } else { (COOKIE, "") };
    let cookie =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&cookie).expect("a session token is a valid header value")
}

/// POST /v1/session {"api_key": "ait_…"}: sign in; sets the session cookie.
pub(crate) async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    seen: Option<axum::Extension<Seen>>,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(SignIn { api_key }) =
        body.map_err(|e| ApiError::Malformed(FieldError::new("body", e.body_text())))?;
    let principal = app.keys.authenticate_key(app.store.as_ref(), api_key.trim()).await?;
    if let Some(axum::Extension(seen)) = seen {
        seen.set(&principal);
    }
    let stored = app.store.key(&principal.key_id).await?;
    let now = Timestamp::now().unix_nanos() / 1_000_000_000;
    let key_expires =
        stored.and_then(|k| k.expires_at).map_or(i64::MAX, |t| t.unix_nanos() / 1_000_000_000);
    let expires = (now + SESSION_SECONDS).min(key_expires);
    let session = Session::mint(app.keys.secret(), principal.key_id.clone(), expires, nonce()?);
    let cookie = set_cookie(session.token(), expires - now, secure(&app, &headers));
    let body = session_body(&app, &principal, &session);
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(body),
    )
        .into_response())
}

/// GET /v1/session: who is signed in, with the session's CSRF token.
pub(crate) async fn current(
    State(app): State<AppState>,
    SignedIn(principal, session): SignedIn,
) -> Response {
    let headers = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    (headers, Json(session_body(&app, &principal, &session))).into_response()
}

/// DELETE /v1/session: sign out; clears the cookie.
pub(crate) async fn sign_out(
    State(app): State<AppState>,
    headers: HeaderMap,
    _: SignedIn,
) -> Response {
    let cookie = set_cookie("", 0, secure(&app, &headers));
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

fn nonce() -> Result<[u8; 16], ApiError> {
    let mut nonce = [0; 16];
    getrandom::fill(&mut nonce)
        .map_err(|e| ApiError::Internal(format!("no randomness for a session: {e}")))?;
    Ok(nonce)
}
