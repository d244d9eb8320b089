//! The logging proxy: `/proxy/<provider>/…` forwards each request to the provider's
//! upstream unchanged (the provider key in it passes through and is never stored; only
//! `Accept-Encoding` is dropped, so answers arrive readable) and streams the answer back
//! chunk by chunk, reading it as it passes to make the call's record (docs/PROXY.md).
//!
//! The aitrail key travels in `X-Aitrail-Key`. The tenant's fail mode decides what happens
//! while records cannot be committed: `closed` refuses calls (503) before they reach the
//! upstream; `strict` also holds each answer until its record is committed (a whole answer
//! is withheld with 503, a stream broken off before its end); `open` lets calls through.
//! A record the store did not take after its answer went back waits in a spool
//! (crate::spool), retried every second.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aitrail_capture::proxy::{Call, Provider, WHOLE_ANSWER_READ, operation};
use aitrail_core::access::{Action, Principal};
use aitrail_core::ingest::{FieldError, parse_record_value};
use aitrail_core::policy::FailMode;
use aitrail_core::{Record, Sent, TenantId, Timestamp};
use aitrail_store::StoreError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;

use crate::records::read_limited;
use crate::spool::{Spool, Spooled};
use crate::{ApiError, AppState};

/// An upstream the proxy forwards to.
#[derive(Clone, Debug)]
pub struct ProxyTarget {
    pub provider: Provider,
    /// The provider's base URL, e.g. `https://api.openai.com`.
    pub url: String,
}

/// How long after the last commit that went through the store is asked again before a
/// call in fail mode closed or strict.
const PROBE_AFTER: Duration = Duration::from_millis(250);
/// How long after a failed commit calls in fail mode closed or strict are refused outright.
const REFUSE_FOR: Duration = Duration::from_secs(5);

/// Calls and records still on their way after their request was answered (or its client
/// left): exchanges, background commits, spool writes. `serve` waits for them at shutdown,
/// so a restart loses no record in flight. Process-wide: a node serves one router.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one piece of such work while it lives.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wait, at most `within`, for the proxy's work in flight to end; whether it did.
pub async fn settle(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The HTTP client to upstreams: redirects are not followed (a redirect could carry the
/// provider key elsewhere); the client gets them as the upstream sent them.
struct ProxyClient(reqwest::Client);

impl Default for ProxyClient {
    fn default() -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build();
        Self(client.unwrap_or_default())
    }
}

impl std::ops::Deref for ProxyClient {
    type Target = reqwest::Client;
    fn deref(&self) -> &reqwest::Client {
        &self.0
    }
}

/// The proxy's shared state: the HTTP client, the spool, and when a commit last failed.
#[derive(Default)]
pub(crate) struct Proxy {
    client: ProxyClient,
    /// Records waiting for the store.
    spool: Spool,
    retrying: AtomicBool,
    /// Milliseconds since `epoch` of the last failed commit (0: none yet).
    failed_at: AtomicU64,
    /// Milliseconds since `epoch` of the last commit that went through (0: none yet).
    committed_at: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Proxy {
    /// The proxy's state, its spool also kept in `spool_dir` when given (records a node
    /// left there are queued).
    pub(crate) fn new(spool_dir: Option<&std::path::Path>, spool_secret: [u8; 32]) -> Self {
        let spool = spool_dir.map(|dir| Spool::in_dir(dir, spool_secret)).unwrap_or_default();
        Self { spool, ..Self::default() }
    }

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
        if committed {
            self.committed_at.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Whether a commit went through within the last [`PROBE_AFTER`]: then the store is
    /// taking writes and need not be asked (under load it never is: asking takes the
    /// write lock, which commits need).
    fn committed_lately(&self) -> bool {
        let at = self.committed_at.load(Ordering::Relaxed);
        at != 0 && self.now_ms() - at < PROBE_AFTER.as_millis() as u64
    }
}

/// Who the call is recorded for, from the `X-Aitrail-*` headers.
struct RecordedFor {
    tenant: TenantId,
    fields: Vec<(&'static str, String)>,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn recorded_for(app: &AppState, headers: &HeaderMap) -> Result<RecordedFor, ApiError> {
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
    Ok(RecordedFor { tenant, fields })
}

/// Request headers forwarded: end to end ones only. Not hop-by-hop ones; not
/// Accept-Encoding (the answer must arrive readable); and no credential that is not the
/// provider's: no cookie (the dashboard's session cookie among them), no proxy or
/// forwarding header, none of ours (`X-Aitrail-*`), and no header carrying an aitrail key
/// (`ait_…`, as `Authorization: Bearer ait_…` by mistake).
fn forwarded(name: &HeaderName, value: &axum::http::HeaderValue) -> bool {
    let name = name.as_str();
    let dropped = matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authorization"
            | "content-length"
            | "accept-encoding"
            | "cookie"
            | "forwarded"
            | "x-real-ip"
    ) || name.starts_with("x-aitrail-")
        || name.starts_with("x-forwarded-");
    !dropped && !carries_aitrail_key(value)
}

/// Whether a header's value is, or bears, an aitrail API key.
fn carries_aitrail_key(value: &axum::http::HeaderValue) -> bool {
    let text = String::from_utf8_lossy(value.as_bytes());
    let token = text.trim();
    let token =
        token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer ")).unwrap_or(token);
    token.trim_start().starts_with("ait_")
}

/// Answer headers not passed back: hop-by-hop ones, and the length (the body streams).
fn returned(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

/// The provider path of a proxied request, from the raw (still percent-encoded) URI so
/// that what is recorded is what is sent. Dot segments and encoded separators are refused:
/// they could make the upstream serve another path than the one recorded.
fn provider_path(uri: &Uri, provider: Provider) -> Result<String, ApiError> {
    let prefix = format!("/proxy/{}", provider.name());
    let path = uri.path().strip_prefix(&prefix).filter(|p| p.starts_with('/')).unwrap_or("/");
    let lower = path.to_ascii_lowercase();
    let dots = path.split('/').any(|seg| seg == "." || seg == "..");
    // Any escape: `%63ompletions` would be recorded as no model call yet served as one.
    let encoded = lower.contains('%');
    if dots || encoded || path.contains('\\') {
        return Err(ApiError::BadQuery(FieldError::new(
            "path",
            "dot segments and percent-escapes are not forwarded",
        )));
    }
    Ok(path.to_owned())
}

/// ANY /proxy/{provider}/{*rest}
pub(crate) async fn forward(
    State(app): State<AppState>,
    Path((provider, _)): Path<(String, String)>,
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
    let who = recorded_for(&app, &headers).await?;
    let path = provider_path(&uri, target.provider)?;
    let body = read_limited(body, app.config.max_body_bytes).await?;
    let operation = (method == Method::POST).then(|| operation(target.provider, &path)).flatten();
    let fail_mode = app.trail.policy(&who.tenant).await?.fail_mode();
    if let Some(operation) = operation {
        // Fail modes closed and strict: no call goes out while its record could not be
        // committed.
        if fail_mode.refuses_unrecorded_calls() {
            if app.proxy.commits_failing() {
                return Err(ApiError::RecordsUnavailable);
            }
            if !app.proxy.committed_lately()
                && let Err(e) = app.store.probe_write().await
            {
                tracing::error!(error = %e, "the store takes no write; a proxied call is refused");
                app.proxy.note(false);
                return Err(ApiError::RecordsUnavailable);
            }
        }
        // What can be refused of the record is refused before the call: its X-Aitrail-*
        // fields, and the request's content under the tenant's policy.
        let request_only = Call::new(target.provider, operation, &body).record(0, None);
        prepare(&app, &who, request_only).await?;
    }
    let mut url = format!("{}{path}", target.url.trim_end_matches('/'));
    if let Some(q) = uri.query() {
        url = format!("{url}?{q}");
    }
    let mut request = app.proxy.client.request(method, &url).body(body.clone());
    for (name, value) in headers.iter().filter(|(n, v)| forwarded(n, v)) {
        request = request.header(name, value);
    }
    let max = app.config.proxy_max_answer_bytes;
    let Some(operation) = operation else {
        // Not a model call (listing models): forwarded, not recorded.
        let answer = request.send().await.map_err(|e| ApiError::Upstream(e.to_string()))?;
        let (status, headers) = (answer.status(), answer.headers().clone());
        return Ok(pass_back(status, &headers, answer.bytes_stream(), None, max));
    };
    let call =
        Call::new(target.provider, operation, &body).keeping(app.config.proxy_record_answer_bytes);
    // The exchange runs in a task of its own: a client that hangs up mid-call cancels
    // neither the call nor its record.
    let in_flight = InFlight::new();
    let exchange = tokio::spawn(async move {
        let _in_flight = in_flight;
        exchange(app, who, call, request, fail_mode).await
    });
    exchange.await.map_err(|e| ApiError::Internal(format!("proxy task failed: {e}")))?
}

/// Send the call upstream and answer with what comes back, recording it.
async fn exchange(
    app: AppState,
    who: RecordedFor,
    mut call: Call,
    request: reqwest::RequestBuilder,
    fail_mode: FailMode,
) -> Result<Response, ApiError> {
    let started = Started::now();
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => {
            let why = format!("the upstream could not be reached: {e}");
            call.answered(0, false);
            record_call(&app, who, started.record(call, Some(&why)), fail_mode).await?;
            return Err(ApiError::Upstream(why));
        }
    };
    let event_stream = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    call.answered(answer.status().as_u16(), event_stream);
    let (status, answer_headers) = (answer.status(), answer.headers().clone());
    let max = app.config.proxy_max_answer_bytes;
    let mut upstream = answer.bytes_stream();
    let mut held = Vec::new();
    if !event_stream {
        // A whole answer, up to what its record is made from: read, recorded, then
        // returned (in fail mode strict, only once the record is committed).
        let hold = WHOLE_ANSWER_READ.max(app.config.proxy_record_answer_bytes);
        while held.len() <= hold {
            match upstream.next().await {
                Some(Ok(bytes)) => held.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    let why = format!("the upstream's answer broke off: {e}");
                    call.chunk(&held);
                    record_call(&app, who, started.record(call, Some(&why)), fail_mode).await?;
                    return Err(ApiError::Upstream(why));
                }
                None => {
                    call.chunk(&held);
                    record_call(&app, who, started.record(call, None), fail_mode).await?;
                    let mut response = Response::new(Body::from(held));
                    *response.status_mut() =
                        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                    copy_headers(&answer_headers, response.headers_mut());
                    return Ok(response);
                }
            }
        }
        // Longer than that: streamed through from here, as event streams are.
    }
    let recorder =
        Recorder { app: app.clone(), who: Some(who), call: Some(call), started, fail_mode };
    let held = futures_util::stream::iter((!held.is_empty()).then(|| Ok(held.into())));
    Ok(pass_back(status, &answer_headers, held.chain(upstream), Some(recorder), max))
}

fn copy_headers(from: &reqwest::header::HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from.iter().filter(|(n, _)| returned(n)) {
        to.append(name.clone(), value.clone());
    }
}

/// The upstream's answer streamed back as it comes, each chunk also shown to `recorder`,
/// `max` bytes at most: past them the stream is cut, and the call recorded as failed.
/// Nothing is held but the chunk in hand (the client's pace is the upstream's).
fn pass_back(
    status: reqwest::StatusCode,
    answer_headers: &reqwest::header::HeaderMap,
    upstream: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    recorder: Option<Recorder>,
    max: u64,
) -> Response {
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    copy_headers(answer_headers, &mut headers);
    let stream = futures_util::stream::unfold(
        (Box::pin(upstream), recorder, 0u64),
        move |(mut upstream, mut recorder, mut passed)| async move {
            match upstream.next().await {
                Some(Ok(bytes)) => {
                    passed += bytes.len() as u64;
                    if passed > max {
                        let why = format!(
                            "the upstream's answer passed the proxy's limit of {max} bytes \
                             (--proxy-max-answer-bytes): the call was cut"
                        );
                        if let Some(r) = recorder.take() {
                            let _ = r.finish(Some(why.clone())).await;
                        }
                        return Some((Err(std::io::Error::other(why)), (upstream, None, passed)));
                    }
                    if let Some(r) = recorder.as_mut() {
                        r.chunk(&bytes);
                    }
                    Some((Ok(bytes), (upstream, recorder, passed)))
                }
                Some(Err(e)) => {
                    if let Some(r) = recorder.take() {
                        let _ = r.finish(Some(format!("the upstream stream failed: {e}"))).await;
                    }
                    Some((Err(std::io::Error::other(e)), (upstream, None, passed)))
                }
                None => {
                    let finished = match recorder.take() {
                        Some(r) => r.finish(None).await,
                        None => Ok(()),
                    };
                    // Fail mode strict: a record that cannot be committed breaks the
                    // stream off before its end, so the client sees it incomplete.
                    let broken = |e: ApiError| std::io::Error::other(e.to_string());
                    finished.err().map(|e| (Err(broken(e)), (upstream, None, passed)))
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// When a call went out: its record's event_time (so a record stored late, from the
/// spool, still says when the call happened), and what its processing time counts from.
#[derive(Clone, Copy)]
struct Started {
    at: Instant,
    time: Timestamp,
}

impl Started {
    fn now() -> Self {
        Self { at: Instant::now(), time: Timestamp::now() }
    }

    /// The finished call's record. `failure`: why the answer did not arrive whole.
    fn record(&self, call: Call, failure: Option<&str>) -> Value {
        let mut record = call.record(self.at.elapsed().as_millis() as u64, failure);
        record["event_time"] = self.time.to_string().into();
        record
    }
}

/// A streamed call's record in the making; committed when the stream ends, fails, or the
/// client goes away (then dropped here).
struct Recorder {
    app: AppState,
    who: Option<RecordedFor>,
    call: Option<Call>,
    started: Started,
    fail_mode: FailMode,
}

impl Recorder {
    fn chunk(&mut self, bytes: &[u8]) {
        if let Some(call) = self.call.as_mut() {
            call.chunk(bytes);
        }
    }

    /// The stream ended (`failure`: how it broke off). In fail mode strict its end is
    /// passed on only once the record is committed; the chunks are with the client by then,
    /// so a record that cannot be committed is spooled, and the error breaks the stream off.
    async fn finish(mut self, failure: Option<String>) -> Result<(), ApiError> {
        let Some((who, record)) = self.take_record(failure.as_deref()) else { return Ok(()) };
        if self.fail_mode == FailMode::Strict {
            return commit_awaited(&self.app, who, record, OnFailure::SpoolAndFail).await;
        }
        commit_in_background(&self.app, who, record);
        Ok(())
    }

    fn take_record(&mut self, failure: Option<&str>) -> Option<(RecordedFor, Value)> {
        let (call, who) = (self.call.take()?, self.who.take()?);
        Some((who, self.started.record(call, failure)))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let why = "the client closed the connection before the answer ended";
        if let Some((who, record)) = self.take_record(Some(why)) {
            // Nobody is left to withhold an answer from: the record goes in the background.
            commit_in_background(&self.app, who, record);
        }
    }
}

/// The record as it will be stored: the caller's tenant and fields, parsed, through the
/// tenant's policy. Refusals name the problem.
async fn prepare(app: &AppState, who: &RecordedFor, mut record: Value) -> Result<Record, ApiError> {
    record["tenant_id"] = who.tenant.as_str().into();
    for (field, value) in &who.fields {
        record[*field] = value.clone().into();
    }
    let record = parse_record_value(&record, "").map_err(|e| ApiError::Invalid(vec![e]))?;
    Ok(app.trail.kept(vec![record], Sent::One).await?.remove(0))
}

/// The record of a call whose answer is going back. In fail mode strict it is committed
/// first, and if it cannot be the answer is withheld (503). Otherwise the answer does not
/// wait for it: it is committed in the background, and spooled if the store will not take
/// it (fail mode closed refuses the calls that come after, until commits go through).
async fn record_call(
    app: &AppState,
    who: RecordedFor,
    record: Value,
    fail_mode: FailMode,
) -> Result<(), ApiError> {
    if fail_mode == FailMode::Strict {
        return commit_awaited(app, who, record, OnFailure::Withhold).await;
    }
    commit_in_background(app, who, record);
    Ok(())
}

fn commit_in_background(app: &AppState, who: RecordedFor, record: Value) {
    let app = app.clone();
    let in_flight = InFlight::new();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        if let Err(e) = commit(&app, &who, record, OnFailure::Spool).await {
            tracing::error!(error = %e, tenant = %who.tenant, "a proxied call's record was lost");
        }
    });
}

/// Commit in a task of its own, and wait for it: a caller that is dropped (a stream whose
/// client left) does not cancel the commit halfway.
async fn commit_awaited(
    app: &AppState,
    who: RecordedFor,
    record: Value,
    on_failure: OnFailure,
) -> Result<(), ApiError> {
    let app = app.clone();
    let in_flight = InFlight::new();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        commit(&app, &who, record, on_failure).await
    })
    .await
    .map_err(|e| ApiError::Internal(format!("commit task failed: {e}")))?
}

/// What becomes of a record the store will not take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// Dropped, and 503: the answer waiting for it is withheld.
    Withhold,
    /// Kept in the spool and retried.
    Spool,
    /// Kept in the spool, and an error for the answer that waits (a stream's end).
    SpoolAndFail,
}

/// Commit a call's record. Each record carries an external id of its own, so a commit
/// retried after its answer was lost is refused as a duplicate rather than stored twice.
async fn commit(
    app: &AppState,
    who: &RecordedFor,
    record: Value,
    on_failure: OnFailure,
) -> Result<(), ApiError> {
    let mut record = record;
    record["external_id"] = format!("aitrail-proxy:{}", uuid::Uuid::now_v7()).into();
    let prepared = match prepare(app, who, record.clone()).await {
        Ok(r) => r,
        Err(e) => {
            // Checked before the call, so only the answer can be refused here (a secret in
            // it under `secrets: reject`): the call is still recorded, without its content.
            tracing::error!(error = %e, "a proxied call's content was refused; recorded without it");
            let fields = record.as_object_mut().expect("a record is an object");
            fields.remove("prompt");
            fields.remove("response");
            fields.remove("error_message");
            record["attributes"]["aitrail.content_refused"] = e.to_string().into();
            prepare(app, who, record).await?
        }
    };
    if on_failure == OnFailure::Spool && app.proxy.commits_failing() {
        // Commits are failing: straight to the spool rather than another wait on the store.
        spool(app, vec![prepared]);
        return Ok(());
    }
    match app.store.append(vec![prepared.clone()]).await {
        Ok(_) | Err(StoreError::DuplicateExternalId) => {
            app.proxy.note(true);
            Ok(())
        }
        Err(e) => {
            app.proxy.note(false);
            tracing::error!(error = %e, "a proxied call's record could not be committed");
            match on_failure {
                OnFailure::Withhold => Err(ApiError::AnswerWithheld),
                OnFailure::Spool => {
                    spool(app, vec![prepared]);
                    Ok(())
                }
                OnFailure::SpoolAndFail => {
                    spool(app, vec![prepared]);
                    Err(ApiError::AnswerWithheld)
                }
            }
        }
    }
}

/// Attempts at a spooled record before it is given up (about ten minutes).
const SPOOL_ATTEMPTS: u32 = 600;

fn spool(app: &AppState, records: Vec<Record>) {
    if !app.proxy.spool.reserve(records.len()) {
        return;
    }
    // Writing and syncing the records' files blocks: not on a worker that serves calls.
    let (app, in_flight) = (app.clone(), InFlight::new());
    tokio::task::spawn_blocking(move || {
        let _in_flight = in_flight;
        app.proxy.spool.push(records);
        retry_spool_soon(&app);
    });
}

/// The records' files go, off the async workers.
fn spooled_done(records: Vec<Spooled>) {
    if records.iter().any(Spooled::has_file) {
        tokio::task::spawn_blocking(move || Spool::done(records));
    }
}

/// Send what a node left in the spool, if anything (at start).
pub(crate) fn resume(app: &AppState) {
    if !app.proxy.spool.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
        retry_spool_soon(app);
    }
}

/// Start the spool's retries unless they are running.
fn retry_spool_soon(app: &AppState) {
    if !app.proxy.retrying.swap(true, Ordering::SeqCst) {
        tokio::spawn(retry_spool(app.clone()));
    }
}

/// Every second, the spooled records to the store: a batch at once, one by one when the
/// batch is refused (so one bad record holds up no other, and a duplicate — stored by an
/// attempt whose answer was lost — counts as stored).
async fn retry_spool(app: AppState) {
    let spool = &app.proxy.spool;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let batch = spool.take(1000);
        if batch.is_empty() {
            app.proxy.retrying.store(false, Ordering::SeqCst);
            // A record spooled between the take and the line above would wait for no one.
            if !spool.is_empty() && !app.proxy.retrying.swap(true, Ordering::SeqCst) {
                continue;
            }
            return;
        }
        let records: Vec<Record> = batch.iter().map(|s| s.record.clone()).collect();
        match app.store.append(records).await {
            Ok(_) => {
                app.proxy.note(true);
                spooled_done(batch);
                continue;
            }
            // The store is away: the whole batch waits, however long.
            Err(StoreError::Backend(_) | StoreError::Closed) => {
                spool.put_back(batch);
                continue;
            }
            Err(_) => {}
        }
        let (mut again, mut done) = (Vec::new(), Vec::new());
        for mut spooled in batch {
            match app.store.append(vec![spooled.record.clone()]).await {
                Ok(_) | Err(StoreError::DuplicateExternalId) => {
                    app.proxy.note(true);
                    done.push(spooled);
                }
                Err(e) if spooled.attempts + 1 >= SPOOL_ATTEMPTS => {
                    let (tenant, id) = (&spooled.record.tenant_id, &spooled.record.external_id);
                    tracing::error!(error = %e, %tenant, external_id = ?id, "a spooled record was refused for ten minutes; it is given up");
                    done.push(spooled);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a spooled record still cannot be committed");
                    spooled.attempts += 1;
                    again.push(spooled);
                }
            }
        }
        spool.put_back(again);
        spooled_done(done);
    }
}
