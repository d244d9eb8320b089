//! The logging proxy: `/proxy/<provider>/…` forwards each request to the provider's
//! upstream unchanged (the provider key in it passes through and is never stored; only
//! `Accept-Encoding` is dropped, so answers arrive readable) and streams the answer back
//! chunk by chunk, reading it as it passes to make the call's record (docs/PROXY.md).
//!
//! The aitrail key travels in `X-Aitrail-Key`. The tenant's fail mode decides what a
//! record that cannot be committed does: `closed` answers 503 (for a whole answer, the
//! answer is withheld) and, while commits keep failing, refuses calls before they reach the
//! upstream; `open` lets calls through and keeps their records in a spool retried every
//! second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aitrail_capture::proxy::{Call, Provider, operation};
use aitrail_core::access::{Action, Principal};
use aitrail_core::ingest::{BodyFormat, FieldError, Parsed, parse_body};
use aitrail_core::policy::FailMode;
use aitrail_core::{Record, TenantId};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;

use crate::records::read_limited;
use crate::{ApiError, AppState, policy};

/// An upstream the proxy forwards to.
#[derive(Clone, Debug)]
pub struct ProxyTarget {
    pub provider: Provider,
    /// The provider's base URL, e.g. `https://api.openai.com`.
    pub url: String,
}

/// Records wait here while the store refuses them (fail mode open).
const SPOOL_MAX: usize = 100_000;
/// How long after a failed commit calls in fail mode closed are refused outright.
const REFUSE_FOR: Duration = Duration::from_secs(5);

/// The proxy's shared state: the HTTP client, the spool, and when a commit last failed.
#[derive(Default)]
pub(crate) struct Proxy {
    client: reqwest::Client,
    spool: Mutex<VecDeque<Record>>,
    retrying: AtomicBool,
    /// Milliseconds since `epoch` of the last failed commit (0: none yet).
    failed_at: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Proxy {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
    }

    fn commits_failing(&self) -> bool {
        let at = self.failed_at.load(Ordering::Relaxed);
        at != 0 && self.now_ms() - at < REFUSE_FOR.as_millis() as u64
    }

    fn note(&self, committed: bool) {
        let at = if committed { 0 } else { self.now_ms() };
        self.failed_at.store(at, Ordering::Relaxed);
    }
}

/// Who the call is recorded for, from the `X-Aitrail-*` headers.
struct Caller {
    tenant: TenantId,
    fields: Vec<(&'static str, String)>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = header_text(headers, "x-aitrail-key").ok_or(ApiError::Unauthorized(
        "no X-Aitrail-Key: the proxy needs an aitrail key that may write",
    ))?;
    let principal: Principal = app.keys.authenticate_key(app.store.as_ref(), key).await?;
    let named = header_text(headers, "x-aitrail-tenant")
        .map(TenantId::parse)
        .transpose()
        .map_err(|m| ApiError::BadQuery(FieldError::new("X-Aitrail-Tenant", m)))?;
    let tenant = named.or_else(|| principal.tenant.clone()).ok_or_else(|| {
        ApiError::BadQuery(FieldError::new("X-Aitrail-Tenant", "a global key must name the tenant"))
    })?;
    principal.may(Action::Write, Some(&tenant)).map_err(|_| {
        ApiError::Forbidden(format!("this key may not write records for tenant {tenant}"))
    })?;
    let fields = [
        ("x-aitrail-user", "user_id"),
        ("x-aitrail-session", "session_id"),
        ("x-aitrail-agent", "agent_id"),
        ("x-aitrail-feature", "feature_code"),
    ]
    .into_iter()
    .filter_map(|(h, f)| Some((f, header_text(headers, h)?.to_owned())))
    .collect();
    Ok(Caller { tenant, fields })
}

/// Request headers not forwarded: hop-by-hop ones, ours, and Accept-Encoding (the answer
/// must arrive readable).
fn forwarded(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "proxy-connection"
            | "content-length"
            | "accept-encoding"
    ) && !name.as_str().starts_with("x-aitrail-")
}

/// Answer headers not passed back: hop-by-hop ones, and the length (the body streams).
fn returned(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

/// ANY /proxy/{provider}/{*rest}
pub(crate) async fn forward(
    State(app): State<AppState>,
    Path((provider, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = app
        .config
        .proxies
        .iter()
        .find(|t| t.provider.name() == provider)
        .cloned()
        .ok_or_else(|| ApiError::NoProxy(provider.clone()))?;
    let who = caller(&app, &headers).await?;
    let body = read_limited(body, app.config.max_body_bytes).await?;
    let path = format!("/{rest}");
    let operation = operation(target.provider, &path);
    let fail_mode = app.policies.of(app.store.as_ref(), &who.tenant).await?.fail_mode();
    // Fail mode closed: no call goes out while its record could not be committed.
    if operation.is_some() && fail_mode == FailMode::Closed {
        if app.proxy.commits_failing() {
            return Err(ApiError::RecordsUnavailable);
        }
        if let Err(e) = app.store.probe_write().await {
            tracing::error!(error = %e, "the store takes no write; a proxied call is refused");
            app.proxy.note(false);
            return Err(ApiError::RecordsUnavailable);
        }
    }
    let mut url = format!("{}{path}", target.url.trim_end_matches('/'));
    if let Some(q) = uri.query() {
        url = format!("{url}?{q}");
    }
    let mut request = app.proxy.client.request(method, &url).body(body.clone());
    for (name, value) in headers.iter().filter(|(n, _)| forwarded(n)) {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let Some(operation) = operation else {
        // Not a model call (listing models): forwarded, not recorded.
        let answer = request.send().await.map_err(|e| ApiError::Upstream(e.to_string()))?;
        return Ok(pass_back(answer, None));
    };
    let mut call = Call::new(target.provider, operation, &body);
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => {
            let why = format!("the upstream could not be reached: {e}");
            call.answered(0, false);
            let record = call.record(started.elapsed().as_millis() as u64, Some(&why));
            commit(&app, &who, record, fail_mode).await?;
            return Err(ApiError::Upstream(why));
        }
    };
    let event_stream = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    call.answered(answer.status().as_u16(), event_stream);
    if !event_stream {
        // A whole answer: read, recorded, then returned (in fail mode closed, only once the
        // record is committed).
        let (status, answer_headers) = (answer.status(), answer.headers().clone());
        let bytes = answer.bytes().await.map_err(|e| ApiError::Upstream(e.to_string()))?;
        call.chunk(&bytes);
        let record = call.record(started.elapsed().as_millis() as u64, None);
        match fail_mode {
            FailMode::Closed => commit(&app, &who, record, fail_mode).await?,
            // The call goes through whatever becomes of its record.
            FailMode::Open => {
                let app = app.clone();
                tokio::spawn(async move { commit(&app, &who, record, fail_mode).await });
            }
        }
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        copy_headers(&answer_headers, response.headers_mut());
        return Ok(response);
    }
    let recorder = Recorder { app: app.clone(), who: Some(who), call: Some(call), started };
    Ok(pass_back(answer, Some(recorder)))
}

fn copy_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from.iter().filter(|(n, _)| returned(n)) {
        to.append(name.clone(), value.clone());
    }
}

/// The upstream's answer streamed back as it comes, each chunk also shown to `recorder`.
fn pass_back(answer: reqwest::Response, recorder: Option<Recorder>) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    copy_headers(answer.headers(), &mut headers);
    let stream = futures_util::stream::unfold(
        (answer.bytes_stream(), recorder),
        |(mut upstream, mut recorder)| async move {
            match upstream.next().await {
                Some(Ok(bytes)) => {
                    if let Some(r) = recorder.as_mut() {
                        r.chunk(&bytes);
                    }
                    Some((Ok(bytes), (upstream, recorder)))
                }
                Some(Err(e)) => {
                    if let Some(r) = recorder.take() {
                        r.finish(Some(format!("the upstream stream failed: {e}")));
                    }
                    Some((Err(std::io::Error::other(e)), (upstream, None)))
                }
                None => {
                    if let Some(r) = recorder.take() {
                        r.finish(None);
                    }
                    None
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A streamed call's record in the making; committed when the stream ends, fails, or the
/// client goes away (then dropped here).
struct Recorder {
    app: AppState,
    who: Option<Caller>,
    call: Option<Call>,
    started: Instant,
}

impl Recorder {
    fn chunk(&mut self, bytes: &[u8]) {
        if let Some(call) = self.call.as_mut() {
            call.chunk(bytes);
        }
    }

    fn finish(mut self, failure: Option<String>) {
        self.commit(failure);
    }

    fn commit(&mut self, failure: Option<String>) {
        let (Some(call), Some(who)) = (self.call.take(), self.who.take()) else { return };
        let record = call.record(self.started.elapsed().as_millis() as u64, failure.as_deref());
        let app = self.app.clone();
        // The answer has gone out: a record that cannot be committed now is spooled.
        tokio::spawn(async move {
            let _ = commit(&app, &who, record, FailMode::Open).await;
        });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.commit(Some("the client closed the connection before the answer ended".into()));
    }
}

/// Commit a call's record. If the store refuses it: in fail mode closed, 503; in open,
/// it is spooled and retried.
async fn commit(
    app: &AppState,
    who: &Caller,
    record: Value,
    fail_mode: FailMode,
) -> Result<(), ApiError> {
    let mut record = record;
    record["tenant_id"] = who.tenant.as_str().into();
    for (field, value) in &who.fields {
        record[*field] = value.clone().into();
    }
    let record = match parse_body(record.to_string().as_bytes(), BodyFormat::Json) {
        Ok(Parsed::One(r)) => *r,
        Ok(Parsed::Batch(_)) => unreachable!("one record"),
        Err(e) => {
            // A call whose record cannot be made (an X-Aitrail-* header too long, say):
            // its content is the caller's to fix; the call itself is not refused afterwards.
            tracing::warn!(error = %e, "a proxied call's record is invalid; not recorded");
            return Err(ApiError::from(e));
        }
    };
    let records = policy::apply(app, vec![record], true).await?;
    if fail_mode == FailMode::Open && app.proxy.commits_failing() {
        // Commits are failing: straight to the spool rather than another wait on the store.
        spool(app, records);
        return Ok(());
    }
    match app.store.append(records.clone()).await {
        Ok(_) => {
            app.proxy.note(true);
            Ok(())
        }
        Err(e) => {
            app.proxy.note(false);
            tracing::error!(error = %e, "a proxied call's record could not be committed");
            match fail_mode {
                FailMode::Closed => Err(ApiError::RecordsUnavailable),
                FailMode::Open => {
                    spool(app, records);
                    Ok(())
                }
            }
        }
    }
}

fn spool(app: &AppState, records: Vec<Record>) {
    {
        let mut queue = app.proxy.spool.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if queue.len() >= SPOOL_MAX {
                tracing::error!("the proxy's spool is full; a record is lost");
                break;
            }
            queue.push_back(r);
        }
    }
    if !app.proxy.retrying.swap(true, Ordering::SeqCst) {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let batch: Vec<Record> = {
                    let mut queue = app.proxy.spool.lock().unwrap_or_else(|e| e.into_inner());
                    let n = queue.len().min(1000);
                    queue.drain(..n).collect()
                };
                if batch.is_empty() {
                    app.proxy.retrying.store(false, Ordering::SeqCst);
                    return;
                }
                if let Err(e) = app.store.append(batch.clone()).await {
                    tracing::warn!(error = %e, spooled = batch.len(), "spooled records still cannot be committed");
                    let mut queue = app.proxy.spool.lock().unwrap_or_else(|e| e.into_inner());
                    for r in batch.into_iter().rev() {
                        queue.push_front(r);
                    }
                } else {
                    app.proxy.note(true);
                }
            }
        });
    }
}
