//! Soak: the real `aitrail serve` under a steady mixed load for minutes, then a check.
//!
//! For the whole run, at once: writers POST batches at a fixed rate (every acknowledged id
//! kept); readers list records, fetch inclusion proofs of acknowledged records, checkpoints
//! with consistency proofs, and exports of one user; an erasure every minute (a user or a
//! session written); and the server's own retention job runs once, in the middle, over a
//! tenant whose policy keeps no content. The server's RSS and open file descriptors are
//! sampled all along. At the end every acknowledged record must be listed, the content
//! missing must be exactly what the erasures and the retention run say they removed, and
//! the store must verify. Any error, loss, growth of memory or descriptors fails the run.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    LOGS_VIEWS, Server, bench_dir, ms, percentile, record, start_node_with, start_server_with,
    status_kib, xorshift,
};

/// Writers sharing the target rate, each with a batch in flight at most (unless behind).
const WRITERS: usize = 4;
/// Reads a second of each kind: a page of the list, an inclusion proof, a checkpoint and a
/// consistency proof.
const LISTS_PER_S: f64 = 10.0;
const PROOFS_PER_S: f64 = 10.0;
const CONSISTENCY_PER_S: f64 = 4.0;
/// An export of one user's records this often.
const EXPORT_EVERY: Duration = Duration::from_secs(15);
/// How often the server's memory and descriptors are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Proofs are asked of records acknowledged at least this long ago (a checkpoint is signed
/// every second).
const SETTLED: Duration = Duration::from_secs(3);
/// The tenant whose policy keeps no content (content_retention_days 0) while the load runs:
/// the retention run deletes its content. Erasures pick the other tenants, so what each
/// removed is counted apart.
const RETAINED: &str = "tenant-3";

const WRITE: &str = "POST /v1/records";
const LIST: &str = "GET /v1/records";
const PROOF: &str = "GET /v1/records/{id}/proof";
const CHECKPOINT: &str = "GET /v1/checkpoint";
const CONSISTENCY: &str = "GET /v1/consistency";
const EXPORT: &str = "GET /v1/export";
const ERASURE: &str = "POST /v1/erasure";
const POLICY: &str = "PUT /v1/tenants/{id}/policy";
/// The checks after the load: not part of the load's latencies, but errors count.
const FINAL_LIST: &str = "GET /v1/records (final check, 1,000 a page)";
const SYSTEM_LOG: &str = "GET /v1/records (system log)";
const VERIFICATION: &str = "POST /v1/verification";

pub struct Options {
    pub minutes: u64,
    /// Records a second, all writers together.
    pub rate: u64,
    /// Records a POST.
    pub batch: usize,
    /// An erasure this often (the first half of it after the start); zero: none.
    pub erase_every: Duration,
    /// PostgreSQL server (no database name): a fresh database on it instead of SQLite.
    pub postgres: Option<String>,
}

/// Latencies and errors of one route.
#[derive(Default)]
struct Route {
    lat: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// A row of the server's table: what, and its value in a sample.
type Row = (&'static str, fn(&Sample) -> f64);

/// One sample of the server process.
struct Sample {
    at: Duration,
    rss_kib: u64,
    /// The process's own memory: what a leak grows.
    anon_kib: u64,
    /// Pages of files it maps: SQLite's database files (read through a map, up to 16 GiB),
    /// which grow with the data read.
    file_kib: u64,
    /// Open descriptors: files (the database's, logs) and, apart, sockets (the clients'
    /// connections, which follow how many requests the load has in flight; PostgreSQL's).
    files: usize,
    sockets: usize,
    /// Of the files, the SQLite database's own: one a connection (the writer's, the
    /// readers' pool), so how many it has open.
    connections: usize,
}

/// What the load shares.
struct Load {
    base: String,
    key: String,
    client: reqwest::Client,
    routes: Mutex<BTreeMap<&'static str, Route>>,
    /// Every record id the server acknowledged (201), with when.
    acked: Mutex<Vec<(Instant, Uuid)>>,
    /// The index of the next record to send (`record(i)`).
    sent: AtomicUsize,
}

impl Load {
    /// Send `request` with the key; its body if the answer is `want`, else an error of
    /// `route` (and None). Latency counts for answers as wanted only.
    async fn call(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
        want: StatusCode,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        let outcome = async {
            let answer = request.bearer_auth(&self.key).send().await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            anyhow::ensure!(status == want, "{status}: {text}");
            Ok(body.to_vec())
        }
        .await;
        let took = started.elapsed();
        match outcome {
            Ok(body) => {
                self.routes.lock().expect("not poisoned").entry(route).or_default().lat.push(took);
                Some(body)
            }
            Err(e) => {
                self.fail(route, e);
                None
            }
        }
    }

    /// [`Load::call`], the answer parsed as JSON (a body that is not: an error).
    async fn call_json(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
        want: StatusCode,
    ) -> Option<Value> {
        let body = self.call(route, request, want).await?;
        serde_json::from_slice(&body).map_err(|e| self.fail(route, e.into())).ok()
    }

    fn fail(&self, route: &'static str, e: anyhow::Error) {
        let mut routes = self.routes.lock().expect("not poisoned");
        let stats = routes.entry(route).or_default();
        stats.errors += 1;
        if stats.errors <= 3 {
            eprintln!("soak: {route}: {e:#}");
        }
        stats.first_error.get_or_insert_with(|| format!("{e:#}"));
    }

    fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path_and_query}", self.base))
    }

    fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base)).json(body)
    }

    fn put_policy(&self, tenant: &str, policy: &Value) -> reqwest::RequestBuilder {
        self.client.put(format!("{}/v1/tenants/{tenant}/policy", self.base)).json(policy)
    }

    /// A random id acknowledged at least [`SETTLED`] ago.
    fn settled_id(&self, x: &mut u64) -> Option<Uuid> {
        let acked = self.acked.lock().expect("not poisoned");
        let settled = acked.partition_point(|(at, _)| at.elapsed() >= SETTLED);
        (settled > 0).then(|| acked[(xorshift(x) % settled as u64) as usize].1)
    }
}

/// Ticks every `period` from `first` on (catching up when behind), until `end`.
struct Pacer {
    interval: tokio::time::Interval,
    end: Instant,
}

impl Pacer {
    fn new(first: Duration, period: Duration, end: Instant) -> Self {
        let interval = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        Self { interval, end }
    }

    /// `rate` ticks a second, from [`SETTLED`] on (when the logs have checkpoints).
    fn per_second(rate: f64, end: Instant) -> Self {
        Self::new(SETTLED, Duration::from_secs_f64(1.0 / rate), end)
    }

    /// Wait for the next tick; false once the end has come.
    async fn tick(&mut self) -> bool {
        let end = tokio::time::Instant::from_std(self.end);
        tokio::time::timeout_at(end, self.interval.tick()).await.is_ok()
            && Instant::now() < self.end
    }
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let duration = Duration::from_secs(options.minutes * 60);
    // The server's retention job runs at its start (nothing yet), at 60% of the run, and
    // next after the run: its policy is lifted before then.
    let retention_every = (duration.as_secs() * 3 / 5).max(1).to_string();
    let retention = ("AITRAIL_RETENTION_INTERVAL_S", retention_every.as_str());
    let dir = bench_dir()?;
    // Dropped after the server (declared before it).
    let database = options
        .postgres
        .as_ref()
        .map(|url| rt.block_on(aitrail_store_postgres::testing::TestDatabase::on(url)));
    let server = match &database {
        Some(db) => {
            let data = dir.path().display().to_string();
            println!("soak on PostgreSQL ({}), the server's data dir {data}", db.url);
            start_node_with(&db.url, &[retention, ("AITRAIL_DATA_DIR", &data)])?
        }
        None => {
            println!("soak on SQLite in {}", dir.path().display());
            start_server_with(dir, &[retention])?
        }
    };
    println!(
        "{} min at {} records/s in batches of {}, {WRITERS} writers; reads a second: {LISTS_PER_S} list pages, {PROOFS_PER_S} inclusion proofs, {CONSISTENCY_PER_S} checkpoints with a consistency proof; an export every {} s; an erasure every {} s; retention every {retention_every} s",
        options.minutes,
        options.rate,
        options.batch,
        EXPORT_EVERY.as_secs(),
        options.erase_every.as_secs()
    );
    let load = Arc::new(Load {
        base: server.base.clone(),
        key: server.key.clone(),
        client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
        routes: Mutex::default(),
        acked: Mutex::default(),
        sent: AtomicUsize::new(0),
    });
    let report = rt.block_on(soak(&load, &server, options, duration))?;
    report.print(&load, options);
    let failures = report.failures(&load);
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    println!("\nsoak passed");
    Ok(())
}

/// What the run found, besides the routes' figures.
struct Report {
    took: Duration,
    samples: Vec<Sample>,
    acked: usize,
    present: usize,
    lost: usize,
    unacknowledged: usize,
    erasures: usize,
    erased: u64,
    retention_runs: usize,
    retained: u64,
    without_content: u64,
    verification: Value,
    logged_errors: usize,
}

async fn soak(
    load: &Arc<Load>,
    server: &Server,
    options: &Options,
    duration: Duration,
) -> anyhow::Result<Report> {
    let no_content = json!({"content_retention_days": 0});
    load.call(POLICY, load.put_policy(RETAINED, &no_content), StatusCode::OK).await;
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64((WRITERS * options.batch) as f64 / options.rate as f64);
    for w in 0..WRITERS {
        // Staggered, so the writers' batches do not arrive together.
        let first = period.mul_f64(w as f64 / WRITERS as f64);
        tasks.spawn(write(load.clone(), Pacer::new(first, period, end), options.batch));
    }
    tasks.spawn(list(load.clone(), Pacer::per_second(LISTS_PER_S, end)));
    tasks.spawn(prove(load.clone(), Pacer::per_second(PROOFS_PER_S, end)));
    tasks.spawn(consistency(load.clone(), Pacer::per_second(CONSISTENCY_PER_S, end)));
    tasks.spawn(export(load.clone(), Pacer::new(EXPORT_EVERY / 2, EXPORT_EVERY, end)));
    let erasures = match options.erase_every {
        Duration::ZERO => tokio::spawn(async { (0, 0) }),
        every => tokio::spawn(erase(load.clone(), Pacer::new(every / 2, every, end))),
    };
    let samples =
        tokio::spawn(sample(server.child.id(), Pacer::new(Duration::ZERO, SAMPLE_EVERY, end)));
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let (erasures, erased) = erasures.await?;
    let mut samples = samples.await??;
    let took = started.elapsed();
    // The last sample, taken as the load stopped.
    samples.push(sample_once(server.child.id(), took)?);

    // The check: the retention policy lifted (the job's next run then deletes nothing),
    // then every tenant's records listed.
    load.call(POLICY, load.put_policy(RETAINED, &json!({})), StatusCode::OK).await;
    let acked: Vec<Uuid> =
        load.acked.lock().expect("not poisoned").iter().map(|(_, id)| *id).collect();
    let mut listed = HashSet::with_capacity(acked.len());
    let mut without_content = 0;
    for t in 0..4 {
        let tenant = format!("tenant-{t}");
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("tenant_id", tenant.as_str()), ("limit", "1000")];
            query.extend(cursor.as_deref().map(|c| ("cursor", c)));
            let request = load.get("/v1/records").query(&query);
            let Some(page) = load.call_json(FINAL_LIST, request, StatusCode::OK).await else {
                break;
            };
            for r in page["records"].as_array().into_iter().flatten() {
                listed.extend(r["id"].as_str().and_then(|id| id.parse::<Uuid>().ok()));
                without_content += u64::from(r.get("prompt").is_none_or(Value::is_null));
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    let present = acked.iter().filter(|id| listed.contains(*id)).count();
    let (retention_runs, retained) = retention_runs(load).await;
    let verification = load
        .call_json(VERIFICATION, load.post_json("/v1/verification", &json!({})), StatusCode::OK)
        .await
        .unwrap_or(Value::Null);
    Ok(Report {
        took,
        samples,
        acked: acked.len(),
        present,
        lost: acked.len() - present,
        unacknowledged: listed.len().saturating_sub(present),
        erasures,
        erased,
        retention_runs,
        retained,
        without_content,
        verification,
        logged_errors: server.logged_errors.load(Ordering::Relaxed),
    })
}

/// Batches of `batch` fresh records (users and sessions as `record` spreads them), every
/// acknowledged id kept.
async fn write(load: Arc<Load>, mut pace: Pacer, batch: usize) {
    while pace.tick().await {
        let from = load.sent.fetch_add(batch, Ordering::Relaxed);
        let body = Value::Array((from..from + batch).map(record).collect()).to_string();
        let request = load
            .client
            .post(format!("{}/v1/records", load.base))
            .header("content-type", "application/json")
            .body(body);
        let Some(answer) = load.call_json(WRITE, request, StatusCode::CREATED).await else {
            continue;
        };
        let ids: Option<Vec<Uuid>> = answer["results"]
            .as_array()
            .filter(|r| r.len() == batch)
            .and_then(|r| r.iter().map(|r| r["id"].as_str()?.parse().ok()).collect());
        match ids {
            Some(ids) => {
                let now = Instant::now();
                load.acked
                    .lock()
                    .expect("not poisoned")
                    .extend(ids.into_iter().map(|id| (now, id)));
            }
            None => load.fail(WRITE, anyhow::anyhow!("201 without {batch} receipts: {answer}")),
        }
    }
}

/// First pages of the dashboard's filter views, 50 records each.
async fn list(load: Arc<Load>, mut pace: Pacer) {
    let mut n = 0;
    while pace.tick().await {
        let view = LOGS_VIEWS[n % LOGS_VIEWS.len()];
        load.call(LIST, load.get(&format!("/v1/records?limit=50&{view}")), StatusCode::OK).await;
        n += 1;
    }
}

/// Inclusion proofs of random settled records.
async fn prove(load: Arc<Load>, mut pace: Pacer) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while pace.tick().await {
        if let Some(id) = load.settled_id(&mut x) {
            load.call(PROOF, load.get(&format!("/v1/records/{id}/proof")), StatusCode::OK).await;
        }
    }
}

/// A tenant's latest checkpoint, then a consistency proof to it from a random earlier size.
async fn consistency(load: Arc<Load>, mut pace: Pacer) {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut n = 0;
    while pace.tick().await {
        let tenant = format!("tenant-{}", n % 4);
        n += 1;
        let query = format!("/v1/checkpoint?tenant_id={tenant}");
        // Not a tenant's log yet (the first second): nothing to ask.
        let Some(note) = load.call(CHECKPOINT, load.get(&query), StatusCode::OK).await else {
            continue;
        };
        // A checkpoint's second line is its tree size.
        let size = String::from_utf8_lossy(&note).lines().nth(1).and_then(|l| l.parse().ok());
        let Some(size) = size.filter(|s: &u64| *s >= 2) else {
            load.fail(CHECKPOINT, anyhow::anyhow!("no size of 2 or more in {note:?}"));
            continue;
        };
        let from = 1 + xorshift(&mut x) % (size - 1);
        let query = format!("/v1/consistency?tenant_id={tenant}&from={from}&to={size}");
        load.call(CONSISTENCY, load.get(&query), StatusCode::OK).await;
    }
}

/// The zip export of one user's records (a few hundred by the end), checked to be a zip.
async fn export(load: Arc<Load>, mut pace: Pacer) {
    let mut n = 0;
    while pace.tick().await {
        let user = n % 1000;
        n += 7;
        let query = format!("/v1/export?tenant_id=tenant-{}&user_id=user-{user}", user % 4);
        if let Some(zip) = load.call(EXPORT, load.get(&query), StatusCode::OK).await
            && !zip.starts_with(b"PK")
        {
            load.fail(EXPORT, anyhow::anyhow!("not a zip: {} bytes", zip.len()));
        }
    }
}

/// An erasure a tick, in turn of a user (of tenant-1) and of a session written a little
/// earlier (of tenant-0): never the retained tenant, never the same records twice. How many there were, and how many records' content they removed.
async fn erase(load: Arc<Load>, mut pace: Pacer) -> (usize, u64) {
    let (mut done, mut erased) = (0, 0);
    while pace.tick().await {
        let body = if done % 2 == 0 {
            // user-k is tenant-(k % 4)'s; k % 4 == 1.
            json!({"tenant_id": "tenant-1", "user_id": format!("user-{}", 4 * done + 1)})
        } else {
            // sess-s holds records 10s..10s+10, one tenant a record in turn: with s even,
            // records 10s, 10s+4 and 10s+8 are tenant-0's. One a thousand sessions back.
            let s = (load.sent.load(Ordering::Relaxed) / 10).saturating_sub(1000) & !1;
            json!({"tenant_id": "tenant-0", "session_id": format!("sess-{s}")})
        };
        let started = std::time::Instant::now();
        if let Some(answer) =
            load.call_json(ERASURE, load.post_json("/v1/erasure", &body), StatusCode::OK).await
        {
            println!("erasure of {body} in {:.2} s: {answer}", started.elapsed().as_secs_f64());
            erased += answer["records"].as_u64().unwrap_or(0);
        }
        done += 1;
    }
    (done, erased)
}

/// The retention runs the system log holds, and how many records' content of the retained
/// tenant they removed.
async fn retention_runs(load: &Load) -> (usize, u64) {
    let query = "/v1/records?tenant_id=aitrail.system&operation_type=retention&limit=1000";
    let Some(page) = load.call_json(SYSTEM_LOG, load.get(query), StatusCode::OK).await else {
        return (0, 0);
    };
    let runs = page["records"].as_array().cloned().unwrap_or_default();
    let retained = runs
        .iter()
        .flat_map(|r| r["attributes"]["tenants"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["tenant_id"] == RETAINED)
        .map(|t| t["records"].as_u64().unwrap_or(0))
        .sum();
    for r in &runs {
        println!("retention run: {}", r["attributes"]);
    }
    (runs.len(), retained)
}

/// The server's RSS and descriptors every tick until the end.
async fn sample(pid: u32, mut pace: Pacer) -> anyhow::Result<Vec<Sample>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while pace.tick().await {
        samples.push(sample_once(pid, started.elapsed())?);
    }
    Ok(samples)
}

fn sample_once(pid: u32, at: Duration) -> anyhow::Result<Sample> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("the server is gone")?;
    let fds: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .collect();
    let sockets = fds.iter().filter(|fd| fd.to_string_lossy().starts_with("socket:")).count();
    let db = std::ffi::OsStr::new(aitrail_store_sqlite::DB_FILE);
    let connections = fds.iter().filter(|fd| fd.file_name() == Some(db)).count();
    Ok(Sample {
        at,
        rss_kib: status_kib(&status, "VmRSS:"),
        anon_kib: status_kib(&status, "RssAnon:"),
        file_kib: status_kib(&status, "RssFile:"),
        files: fds.len() - sockets,
        sockets,
        connections,
    })
}

impl Report {
    /// The samples at the start, nearest the middle, and at the end.
    fn marks(&self) -> [&Sample; 3] {
        let middle = self.took / 2;
        let mid =
            self.samples.iter().min_by_key(|s| s.at.abs_diff(middle)).expect("a sample at least");
        [&self.samples[0], mid, self.samples.last().expect("a sample at least")]
    }

    fn print(&self, load: &Load, options: &Options) {
        let routes = load.routes.lock().expect("not poisoned");
        println!("\n| route | requests | errors | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        for (route, stats) in routes.iter() {
            let mut lat = stats.lat.clone();
            lat.sort_unstable();
            let (p50, p99, max) = match lat.last() {
                Some(max) => (ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), ms(*max)),
                None => Default::default(),
            };
            let requests = lat.len() as u64 + stats.errors;
            println!("| {route} | {requests} | {} | {p50} | {p99} | {max} |", stats.errors);
        }
        for (route, stats) in routes.iter() {
            if let Some(e) = &stats.first_error {
                println!("first error of {route}: {e}");
            }
        }
        let secs = self.took.as_secs_f64();
        println!(
            "\nwrites: {} records acknowledged in {secs:.0} s = {:.0} records/s (target {})",
            self.acked,
            self.acked as f64 / secs,
            options.rate
        );
        println!(
            "final check: acknowledged {}, listed {}, lost {}; listed but never acknowledged {}",
            self.acked, self.present, self.lost, self.unacknowledged
        );
        println!(
            "content: {} erasures removed {} records' content, {} retention run(s) {}: expected without content {}, found {}",
            self.erasures,
            self.erased,
            self.retention_runs,
            self.retained,
            self.erased + self.retained,
            self.without_content
        );
        let v = &self.verification;
        println!(
            "verification (POST /v1/verification): ok {}, {} records, {} findings {}",
            v["ok"], v["records"], v["findings"], v["examples"]
        );
        let [start, mid, end] = self.marks();
        println!(
            "\n| server | start ({:.0} s) | middle ({:.0} s) | end ({:.0} s) | end / middle |",
            start.at.as_secs_f64(),
            mid.at.as_secs_f64(),
            end.at.as_secs_f64()
        );
        println!("|---|---|---|---|---|");
        let rows: [Row; 6] = [
            ("RSS (VmRSS) MiB", |s| s.rss_kib as f64 / 1024.0),
            ("RssAnon MiB (its own memory)", |s| s.anon_kib as f64 / 1024.0),
            ("RssFile MiB (mapped files)", |s| s.file_kib as f64 / 1024.0),
            ("open fds: files", |s| s.files as f64),
            ("open fds: sockets", |s| s.sockets as f64),
            ("SQLite connections", |s| s.connections as f64),
        ];
        for (what, value) in rows {
            let (a, b, c) = (value(start), value(mid), value(end));
            if a + b + c == 0.0 {
                continue; // no SQLite connections on PostgreSQL
            }
            println!("| {what} | {a:.1} | {b:.1} | {c:.1} | {:.3} |", c / b);
        }
        // Every sample, to see a trend the three marks would miss.
        let all: Vec<String> = self
            .samples
            .iter()
            .map(|s| {
                let (rss, anon) = (s.rss_kib / 1024, s.anon_kib / 1024);
                format!("{rss}/{anon}/{}/{}/{}", s.files, s.sockets, s.connections)
            })
            .collect();
        println!(
            "every {} s, RSS MiB/RssAnon MiB/file fds/sockets/SQLite connections: {}",
            SAMPLE_EVERY.as_secs(),
            all.join(" ")
        );
        let peak = self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let peak_anon = self.samples.iter().map(|s| s.anon_kib).max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "peak RSS {peak:.1} MiB, peak RssAnon {peak_anon:.1} MiB; server ERROR log lines: {}",
            self.logged_errors
        );
    }

    /// What failed, if anything.
    fn failures(&self, load: &Load) -> Vec<String> {
        let mut failures = Vec::new();
        let errors: u64 =
            load.routes.lock().expect("not poisoned").values().map(|r| r.errors).sum();
        if errors > 0 {
            failures.push(format!("{errors} errors"));
        }
        if self.logged_errors > 0 {
            failures.push(format!("{} ERROR lines in the server's log", self.logged_errors));
        }
        if self.lost > 0 {
            failures.push(format!("{} acknowledged records lost", self.lost));
        }
        if self.without_content != self.erased + self.retained {
            failures.push(format!(
                "{} records without content where erasures and retention removed {}",
                self.without_content,
                self.erased + self.retained
            ));
        }
        if self.verification["ok"] != json!(true) {
            failures.push("the store did not verify".into());
        }
        let [_, mid, end] = self.marks();
        // The process's own memory: VmRSS also counts the pages of the database files
        // SQLite reads through a map, which grow with the data read (printed above).
        let anon = end.anon_kib as f64 / mid.anon_kib as f64;
        if !(0.9..=1.1).contains(&anon) {
            failures.push(format!("RssAnon end / middle = {anon:.3}, outside ±10%"));
        }
        if end.files.abs_diff(mid.files) > (mid.files / 10).max(3) {
            failures
                .push(format!("file fds {} in the middle, {} at the end", mid.files, end.files));
        }
        failures
    }
}
