//! An async client that records LLM calls in aitrail without slowing the calls down:
//! [`Client::record`] only queues (a bounded queue: a full one says so rather than grow);
//! a background task sends batches, retries what fails with exponential backoff, and when
//! the server stays down writes batches to an on-disk spool that it sends once the server
//! is back. [`Client::flush`] waits until everything queued is stored or spooled;
//! [`Client::shutdown`] flushes and stops.
//!
//! Each record without an `external_id` gets one (`aitrail-client:<UUIDv7>`), so a batch
//! retried after its answer was lost is refused as a duplicate (`409`) instead of stored
//! twice: the client takes that 409 as "already stored".
//!
//! ```no_run
//! # async fn example() -> Result<(), aitrail_client::Error> {
//! let client = aitrail_client::Client::new(aitrail_client::Config {
//!     spool_dir: Some("/var/spool/aitrail".into()),
//!     ..aitrail_client::Config::new("http://127.0.0.1:8080", "ait_…")
//! })?;
//! client.record(serde_json::json!({"tenant_id": "acme", "model_name": "gpt-4o"}))?;
//! client.shutdown().await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// How the client sends.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// A key that may write (ingest).
    pub api_key: String,
    /// Records per request.
    pub batch_size: usize,
    /// A partial batch is sent after this long.
    pub flush_interval: Duration,
    /// Records waiting to be sent at most; beyond, [`Client::record`] refuses.
    pub queue_capacity: usize,
    /// Attempts per batch before it is spooled.
    pub max_attempts: u32,
    /// The first retry's wait, doubled each time up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Where batches wait while the server is down; without it they are dropped (and
    /// [`Client::flush`] says so).
    pub spool_dir: Option<PathBuf>,
    /// Each request's time limit.
    pub timeout: Duration,
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Config {
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            queue_capacity: 10_000,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            spool_dir: None,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the queue is full ({0} records wait): the server is slow or down")]
    QueueFull(usize),
    #[error("the client has shut down")]
    Closed,
    #[error("the server refused records ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("{0} records could not be sent and there is no spool_dir to keep them")]
    Lost(usize),
    #[error("the spool: {0}")]
    Spool(#[from] std::io::Error),
    #[error("the client could not be built: {0}")]
    Build(reqwest::Error),
}

enum Message {
    Record(Value),
    Flush(oneshot::Sender<Result<(), Error>>),
}

/// The client: cheap to share behind an `Arc`; must be made inside a tokio runtime.
pub struct Client {
    tx: mpsc::Sender<Message>,
    capacity: usize,
    worker: tokio::task::JoinHandle<()>,
}

impl Client {
    pub fn new(config: Config) -> Result<Self, Error> {
        let http =
            reqwest::Client::builder().timeout(config.timeout).build().map_err(Error::Build)?;
        if let Some(dir) = &config.spool_dir {
            std::fs::create_dir_all(dir)?;
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let capacity = config.queue_capacity;
        let worker = tokio::spawn(
            Worker { config, http, batch: Vec::new(), problem: None, spooled: 0 }.run(rx),
        );
        Ok(Self { tx, capacity, worker })
    }

    /// Queue one record (the JSON of POST /v1/records); never waits.
    pub fn record(&self, mut record: Value) -> Result<(), Error> {
        with_external_id(&mut record);
        self.tx.try_send(Message::Record(record)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull(self.capacity),
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })
    }

    /// Queue one record, waiting for room.
    pub async fn record_wait(&self, mut record: Value) -> Result<(), Error> {
        with_external_id(&mut record);
        self.tx.send(Message::Record(record)).await.map_err(|_| Error::Closed)
    }

    /// Send what is queued and what is spooled. Ok once every record queued before is
    /// stored — or spooled, when the server is down: then a later flush sends it. An error
    /// says what was refused or lost since the last flush.
    pub async fn flush(&self) -> Result<(), Error> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Message::Flush(ack)).await.map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)?
    }

    /// Flush, then stop the background task.
    pub async fn shutdown(self) -> Result<(), Error> {
        let flushed = self.flush().await;
        drop(self.tx);
        let _ = self.worker.await;
        flushed
    }

    /// Batches waiting in the spool directory.
    pub fn spooled_files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .collect();
        files.sort();
        Ok(files)
    }
}

fn with_external_id(record: &mut Value) {
    if let Some(fields) = record.as_object_mut()
        && !fields.contains_key("external_id")
    {
        fields.insert(
            "external_id".into(),
            format!("aitrail-client:{}", uuid::Uuid::now_v7()).into(),
        );
    }
}

/// What one attempt to send came to.
enum Sent {
    Stored,
    /// A record's external id is already stored.
    Duplicate,
    /// Worth another try: the server is unreachable, busy or failing.
    Retry(String),
    /// Never worth retrying as it is.
    Refused {
        status: u16,
        detail: String,
    },
}

struct Worker {
    config: Config,
    http: reqwest::Client,
    batch: Vec<Value>,
    /// The first problem since the last flush, for that flush to return.
    problem: Option<Error>,
    spooled: u64,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let every = self.config.flush_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Record(r)) => {
                        self.batch.push(r);
                        if self.batch.len() >= self.config.batch_size {
                            self.send_batch().await;
                        }
                    }
                    Some(Message::Flush(ack)) => {
                        self.send_batch().await;
                        self.drain_spool().await;
                        let _ = ack.send(self.problem.take().map_or(Ok(()), Err));
                    }
                    None => {
                        self.send_batch().await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    self.send_batch().await;
                    self.drain_spool().await;
                }
            }
        }
    }

    fn note(&mut self, problem: Error) {
        tracing::warn!(%problem, "aitrail client");
        self.problem.get_or_insert(problem);
    }

    async fn post(&self, body: &[u8]) -> Sent {
        let url = format!("{}/v1/records", self.config.url.trim_end_matches('/'));
        let answer = self
            .http
            .post(url)
            .bearer_auth(&self.config.api_key)
            .header("content-type", "application/x-ndjson")
            .body(body.to_vec())
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return Sent::Retry(e.to_string()),
        };
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|p| p["detail"].as_str().map(str::to_owned))
            .unwrap_or(text);
        match status {
            200..=299 => Sent::Stored,
            // A repeated external id: stored by an earlier attempt whose answer was lost, or
            // the caller's own id repeated; told apart record by record (`one_by_one`).
            409 => Sent::Duplicate,
            // A key or address problem is the operator's to fix: the records are kept.
            401 | 403 | 404 => Sent::Retry(format!("HTTP {status}: {detail}")),
            408 | 429 | 500..=599 => Sent::Retry(format!("HTTP {status}")),
            _ => Sent::Refused { status, detail },
        }
    }

    fn ndjson(records: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(r.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Send the batch, retrying with backoff; spool it if the server stays away.
    async fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let body = Self::ndjson(&batch);
        let mut wait = self.config.backoff;
        let mut last = String::new();
        for attempt in 1..=self.config.max_attempts.max(1) {
            match self.post(&body).await {
                Sent::Stored => return,
                Sent::Duplicate | Sent::Refused { .. } => {
                    self.one_by_one(batch).await;
                    return;
                }
                Sent::Retry(why) => last = why,
            }
            if attempt < self.config.max_attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
        tracing::warn!(why = %last, records = batch.len(), "aitrail server unreachable; spooling");
        self.spool(&body, batch.len());
        if last.starts_with("HTTP 40") {
            // Kept, but said: a key or URL problem does not heal itself.
            self.note(Error::Refused { status: 0, detail: last });
        }
    }

    /// A batch is all or nothing: when one record is refused (or already stored), send each
    /// alone so the others are kept, and report the first refusal. Whether every record
    /// ended stored, refused for good, or spooled anew.
    async fn one_by_one(&mut self, batch: Vec<Value>) -> bool {
        let mut kept = true;
        for record in batch {
            let body = Self::ndjson(std::slice::from_ref(&record));
            match self.post(&body).await {
                Sent::Stored | Sent::Duplicate => {}
                Sent::Refused { status, detail } => self.note(Error::Refused { status, detail }),
                Sent::Retry(_) => kept &= self.spool(&body, 1),
            }
        }
        kept
    }

    /// Keep a batch on disk; whether it is there.
    fn spool(&mut self, body: &[u8], records: usize) -> bool {
        let Some(dir) = &self.config.spool_dir else {
            self.note(Error::Lost(records));
            return false;
        };
        self.spooled += 1;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name = format!("{:020}-{:06}.ndjson", now.as_nanos(), self.spooled % 1_000_000);
        let (temp, path) = (dir.join(format!("{name}.tmp")), dir.join(name));
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(body)?;
            f.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        match written {
            Ok(()) => true,
            Err(e) => {
                self.note(Error::Spool(e));
                false
            }
        }
    }

    /// Send spooled batches, oldest first, until one fails to go. A file is removed only
    /// once each of its records is stored, refused for good, or spooled anew.
    async fn drain_spool(&mut self) {
        let Some(dir) = self.config.spool_dir.clone() else { return };
        let Ok(files) = Client::spooled_files(&dir) else { return };
        for file in files {
            let Ok(body) = std::fs::read(&file) else { continue };
            let done = match self.post(&body).await {
                Sent::Stored => true,
                Sent::Retry(why) => {
                    if why.starts_with("HTTP 40") {
                        self.note(Error::Refused { status: 0, detail: why });
                    }
                    return;
                }
                Sent::Duplicate | Sent::Refused { .. } => {
                    let batch: Vec<Value> = body
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .filter_map(|l| serde_json::from_slice(l).ok())
                        .collect();
                    self.one_by_one(batch).await
                }
            };
            if !done {
                return;
            }
            if let Err(e) = std::fs::remove_file(&file) {
                self.note(Error::Spool(e));
            }
        }
    }
}
