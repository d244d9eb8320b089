//! The access log: every read of records, verification, key change and read of the access
//! log itself is appended to the log `aitrail.access`, a tenant log like any other
//! (Merkle tree, signed checkpoints, `aitrail verify`), before the answer goes out. If
//! that append fails, the answer is 503 instead: no access goes unrecorded.

use std::collections::{BTreeMap, BTreeSet};

use aitrail_core::access::{
    AccessEvent, AccessLogRefusal, Action, Actor, Change, access_log_query,
};
use aitrail_core::ingest::FieldError;
use aitrail_core::{StoredRecord, TenantId};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::Caller;
use crate::seen::Seen;
use crate::{ApiError, AppState};

/// What a handler tells the access log about its answer: the tenant it was about and
/// how many records it held.
#[derive(Clone, Debug)]
pub(crate) struct Accessed {
    pub tenant: Option<TenantId>,
    pub records: u64,
    /// What else the event keeps (a policy set), beside the request's query.
    pub details: Vec<(String, String)>,
}

impl Accessed {
    /// `response`, noted for the access log.
    pub(crate) fn on(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// The operation a route is, for the access log; `None` for routes not logged (writes are
/// their own record; the key and the API description are public facts).
fn operation(method: &Method, route: &str) -> Option<&'static str> {
    let read = *method == Method::GET || *method == Method::HEAD;
    Some(match (read, route) {
        (true, "/v1/records" | "/v1/records/{id}") => "read",
        (true, "/v1/records/{id}/proof" | "/v1/checkpoint" | "/v1/consistency") => "verify",
        (true, "/v1/access-log") => "access-log.read",
        (true, "/v1/export") => "export",
        (true, "/v1/keys") => "keys.list",
        (false, "/v1/keys") => Change::KeyCreate.operation(),
        (false, "/v1/keys/{id}/revoke") => Change::KeyRevoke.operation(),
        (true, "/v1/tenants/{id}/policy") => "policy.read",
        (false, "/v1/tenants/{id}/policy") => Change::PolicySet.operation(),
        (false, "/v1/erasure") => Change::Erasure.operation(),
        (true, "/v1/holds") => "holds.list",
        (false, "/v1/holds") => Change::HoldAdd.operation(),
        (false, "/v1/holds/release") => Change::HoldRemove.operation(),
        (true, "/v1/usage") => "usage.read",
        (true, "/v1/verification") => "verify",
        (false, "/v1/verification") => "verify.store",
        (false, "/v1/session") if method == Method::POST => "sign-in",
        (false, "/v1/session") => "sign-out",
        _ => return None,
    })
}

/// Middleware (after routing): append the access to the access log before answering.
pub(crate) async fn record(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let Some(operation) = route.as_deref().and_then(|r| operation(req.method(), r)) else {
        return next.run(req).await;
    };
    // A route about one tenant names it in its path, refused or not.
    let in_path = req
        .uri()
        .path()
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|t| TenantId::parse(t).ok());
    let route = format!("{} {}", req.method(), route.unwrap_or_default());
    let mut query: Vec<(String, String)> =
        axum::extract::Query::try_from_uri(req.uri()).map(|q| q.0).unwrap_or_default();
    // A text looked up is content: it is not kept, even here.
    for (key, value) in &mut query {
        if key == "prompt_text" || key == "response_text" {
            *value = "(withheld)".into();
        }
    }
    let seen = Seen::default();
    req.extensions_mut().insert(seen.clone());
    let response = next.run(req).await;
    // Requests without a valid key are not recorded: anyone could fill the log with them.
    let Some(principal) = seen.take() else { return response };
    let accessed = response.extensions().get::<Accessed>().cloned();
    query.extend(accessed.iter().flat_map(|a| a.details.iter().cloned()));
    let named =
        query.iter().find(|(k, _)| k == "tenant_id").and_then(|(_, v)| TenantId::parse(v).ok());
    let tenant = accessed
        .as_ref()
        .and_then(|a| a.tenant.clone())
        .or(in_path)
        .or(named)
        .or(principal.tenant.clone());
    let event = AccessEvent {
        actor: Actor::Key(&principal),
        operation,
        route: &route,
        tenant: tenant.as_ref(),
        query: &query,
        records: accessed.map(|a| a.records),
        status: response.status().as_u16(),
    };
    match app.trail.record_access(&event).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, "the access log could not be written; refusing the answer");
            ApiError::AccessLogUnavailable.into_response()
        }
    }
}

/// A page of the access log, and the labels of the keys it names: joined from the keys
/// table when read, never logged. Beside the events rather than in them, so a client that
/// reads each event as a record (the CLI) is not refused an unknown field.
#[derive(Serialize)]
struct EventsBody {
    records: Vec<StoredRecord>,
    next_cursor: Option<String>,
    key_labels: BTreeMap<String, String>,
}

/// GET /v1/access-log: the accesses of the caller's tenant (a global key: of every
/// tenant), newest first; filters tenant_id, key_id, operation, since, until.
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    pairs: Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.may(Action::Audit, None)?;
    let pairs = pairs.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let query = access_log_query(&pairs, caller.0.tenant.as_ref()).map_err(|r| match r {
        AccessLogRefusal::BadQuery(e) => ApiError::BadQuery(e),
        AccessLogRefusal::Hidden => ApiError::NotFound,
    })?;
    let page = app.store.list(&query).await?;
    let accessed = Accessed {
        tenant: caller.0.tenant.clone(),
        records: page.records.len() as u64,
        details: Vec::new(),
    };
    // Labels of the caller's tenant's keys (a global key: all): a tenant's key is not told
    // what a global key or another tenant's key is called.
    let named: BTreeSet<&str> =
        page.records.iter().filter_map(|r| r.record.user_id.as_ref()).map(|k| k.as_str()).collect();
    let key_labels = app
        .store
        .keys()
        .await?
        .into_iter()
        .filter(|k| caller.0.tenant.is_none() || k.tenant == caller.0.tenant)
        .filter(|k| named.contains(k.id.as_str()))
        .filter_map(|k| Some((k.id.to_string(), k.label?)))
        .collect();
    let body = EventsBody {
        records: page.records,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
        key_labels,
    };
    Ok(accessed.on(Json(body).into_response()))
}
