//! The one API error type, rendered as RFC 9457 problem+json at the edge.

use aitrail_core::{BodyError, FieldError};
use aitrail_store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not UTF-8 or not JSON.
    #[error("{0}")]
    Malformed(FieldError),
    /// JSON, but not valid records (every problem, in order).
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<FieldError>),
    /// A query parameter is unknown or not a valid value.
    #[error("{0}")]
    BadQuery(FieldError),
    #[error("body larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// A body within the byte limit that holds or decodes to more than a request may.
    #[error("{0}")]
    TooMuch(String),
    #[error("the request's URI is longer than the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    /// The path does not decode to UTF-8.
    #[error("{0}")]
    BadPath(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("not found")]
    NotFound,
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("this tenant's log has no signed checkpoint yet")]
    NoCheckpoint,
    #[error("no full verification has run yet: POST /v1/verification runs one")]
    NoVerification,
    #[error("no proxy for provider {0}: start the server with --proxy {0}=URL")]
    NoProxy(String),
    #[error(
        "audit records cannot be committed now, and the tenant's fail mode does not let a call go unrecorded: the call was not made"
    )]
    RecordsUnavailable,
    #[error(
        "the call was made, but its audit record could not be committed, and the tenant's fail mode is strict: its answer is withheld"
    )]
    AnswerWithheld,
    #[error("{0}")]
    Upstream(String),
    /// Something that runs one at a time is running.
    #[error("{0}")]
    Busy(String),
    #[error(
        "the record is not yet in a signed checkpoint; checkpoints are signed every second, retry shortly"
    )]
    NotYetCheckpointed,
    /// The access log could not be written, so the answer is withheld.
    #[error("the access log could not be written; the answer is withheld")]
    AccessLogUnavailable,
    /// The key spent its request budget; retry after that many seconds.
    #[error("this API key made more requests than its limit; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// No key, or not a live one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The key may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A legal hold stops a deletion.
    #[error("{0}")]
    Held(String),
    #[error("{}; nothing of this request was stored", StoreError::DuplicateExternalId)]
    DuplicateExternalId,
    #[error("storage failed; nothing of this request was stored")]
    Storage(StoreError),
    #[error("internal error; nothing of this request was stored")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateExternalId => ApiError::DuplicateExternalId,
            e => ApiError::Storage(e),
        }
    }
}

impl From<aitrail_service::keys::KeyError> for ApiError {
    fn from(e: aitrail_service::keys::KeyError) -> Self {
        match e {
            aitrail_service::keys::KeyError::Refused(field) => ApiError::Invalid(vec![field]),
            aitrail_service::keys::KeyError::Store(e) => e.into(),
        }
    }
}

impl From<aitrail_service::IngestError> for ApiError {
    fn from(e: aitrail_service::IngestError) -> Self {
        match e {
            aitrail_service::IngestError::Refused(fields) => ApiError::Invalid(fields),
            aitrail_service::IngestError::Store(e) => e.into(),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Malformed(f) => ApiError::Malformed(f),
            BodyError::Invalid(fs) => ApiError::Invalid(fs),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldProblem<'a>>,
}

#[derive(Serialize)]
struct FieldProblem<'a> {
    field: &'a str,
    message: &'a str,
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Malformed(_) => (StatusCode::BAD_REQUEST, "malformed-body", "Malformed request body"),
            Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-record", "Invalid record"),
            BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter"),
            TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large"),
            TooMuch(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-much", "Request holds too much"),
            UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            BadPath(_) => (StatusCode::BAD_REQUEST, "invalid-path", "Invalid path"),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported content type",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            NoRoute => (StatusCode::NOT_FOUND, "no-route", "No such route"),
            NoCheckpoint => (StatusCode::NOT_FOUND, "no-checkpoint", "No checkpoint yet"),
            NoVerification => (StatusCode::NOT_FOUND, "no-verification", "No verification yet"),
            NoProxy(_) => (StatusCode::NOT_FOUND, "no-proxy", "No such proxy"),
            RecordsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "records-unavailable",
                "Audit records cannot be committed",
            ),
            AnswerWithheld => (
                StatusCode::SERVICE_UNAVAILABLE,
                "answer-withheld",
                "The answer is withheld: its audit record could not be committed",
            ),
            Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream", "The upstream failed"),
            Busy(_) => (StatusCode::CONFLICT, "busy", "Already running"),
            NotYetCheckpointed => {
                (StatusCode::CONFLICT, "not-yet-checkpointed", "Not yet in a checkpoint")
            }
            MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
            }
            AccessLogUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "access-log-unavailable",
                "Access log unavailable",
            ),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Held(_) => (StatusCode::CONFLICT, "legal-hold", "Under legal hold"),
            DuplicateExternalId => {
                (StatusCode::CONFLICT, "duplicate-external-id", "Duplicate external_id")
            }
            Storage(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable", "Storage unavailable")
            }
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

impl ApiError {
    /// The status, and the problem+json body saying what is wrong.
    pub(crate) fn problem(&self) -> (StatusCode, Vec<u8>) {
        let (status, slug, title) = self.status_and_kind();
        let kind = format!("urn:aitrail:problem:{slug}");
        let field_errors: &[FieldError] = match &self {
            ApiError::Invalid(fs) => fs,
            ApiError::Malformed(f) | ApiError::BadQuery(f) => std::slice::from_ref(f),
            _ => &[],
        };
        let problem = Problem {
            kind: &kind,
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            errors: field_errors
                .iter()
                .map(|f| FieldProblem { field: &f.field, message: &f.message })
                .collect(),
        };
        (status, serde_json::to_vec(&problem).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Storage(e) => tracing::error!(error = %e, "storage failure"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal failure"),
            _ => {}
        }
        let (status, body) = self.problem();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::NotYetCheckpointed => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"aitrail\""),
                );
            }
            _ => {}
        }
        response
    }
}
