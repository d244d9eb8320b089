//! What every request is checked for before any route, and what every answer carries: a
//! URI within bounds, whose path and query parameters decode (percent-decoding) to UTF-8
//! without NUL, and `X-Content-Type-Options: nosniff` on the answer, whatever it is.

use aitrail_core::FieldError;
use axum::extract::Request;
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;

/// The longest URI taken, in bytes: a listing's filters fit many times over. (Past 64 KiB
/// the HTTP parser itself answers 414, before any of this runs, with no body; the
/// connection puts the problem in its place: `crate::listener`.)
pub const MAX_URI_BYTES: usize = 16 * 1024;

pub async fn checked(req: Request, next: Next) -> Response {
    let mut answer = match check(req.uri()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    answer
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    answer
}

fn check(uri: &Uri) -> Result<(), ApiError> {
    let length = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong { limit: MAX_URI_BYTES });
    }
    if decoded(uri.path()).is_err() {
        return Err(ApiError::BadPath("the path is not UTF-8 once percent-decoded".into()));
    }
    for pair in uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decoded(key).map_err(|_| {
            let shown = String::from_utf8_lossy(&form_bytes(key)).into_owned();
            ApiError::BadQuery(FieldError::new(shown, "the name is not UTF-8 once decoded"))
        })?;
        let value = decoded(value).map_err(|_| {
            ApiError::BadQuery(FieldError::new(name.clone(), "not UTF-8 once decoded"))
        })?;
        if name.contains('\0') || value.contains('\0') {
            let shown = name.replace('\0', "\u{FFFD}");
            return Err(ApiError::BadQuery(FieldError::new(shown, "contains a NUL character")));
        }
    }
    Ok(())
}

/// Form-decoded bytes of a query component: `+` is a space, `%XX` a byte.
fn form_bytes(component: &str) -> Vec<u8> {
    let spaced = component.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).collect()
}

fn decoded(component: &str) -> Result<String, std::string::FromUtf8Error> {
    String::from_utf8(form_bytes(component))
}
