//! Where a command's records are: a running server over HTTP, or a store it opens itself
//! (the local data dir, or PostgreSQL).

use std::sync::Arc;

use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_core::seal::ContentKey;
use aitrail_core::{Query, Receipt, StoredRecord, TenantId};
use aitrail_service::proofs::{self, ProofError};
use aitrail_store::Store;
use aitrail_store_postgres::PostgresStore;
use aitrail_store_sqlite::{ReadMode, SqliteStore};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::Global;

pub enum Target {
    Remote { client: reqwest::Client, base: String },
    Local(Arc<dyn Store>),
}

/// What a command does to the store it opens itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Reads: the store is opened read-only and nothing in it changes, not even a file's
    /// bytes, so an auditor can read a copy as it was made.
    Read,
    /// Changes (appends, keys, policies, holds, erasure, retention): logged and signed as
    /// the server logs and signs the same change.
    Change,
}

/// The store a command works on directly: PostgreSQL when --database is given, else the
/// embedded SQLite store in --data-dir. To change it, migrated to this binary's schema
/// first; to read it, it must have that schema already.
pub async fn open_store(global: &Global, intent: Intent) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(global, intent, ReadMode::Mapped).await
}

/// [`open_store`], the embedded store reading as `mode` says.
pub async fn open_store_with(
    global: &Global,
    intent: Intent,
    mode: ReadMode,
) -> anyhow::Result<Arc<dyn Store>> {
    let dir = &global.data_dir;
    Ok(match (&global.database, intent) {
        (Some(url), Intent::Change) => Arc::new(PostgresStore::open(url, change_key(dir)?).await?),
        (Some(url), Intent::Read) => {
            Arc::new(PostgresStore::open_read_only(url, read_key(dir)?).await?)
        }
        (None, Intent::Change) => Arc::new(SqliteStore::open_with(dir, mode, change_key(dir)?)?),
        (None, Intent::Read) => Arc::new(SqliteStore::open_read_only(dir, mode, read_key(dir)?)?),
    })
}

/// The content key of the data dir's log key, whatever its name (a key is made, named
/// `aitrail`, if there is none): what a store opened to change seals content with.
pub fn change_key(data_dir: &std::path::Path) -> anyhow::Result<ContentKey> {
    let signer = match crate::keyfile::load(data_dir)? {
        Some(signer) => signer,
        None => crate::keyfile::load_or_create(data_dir, "aitrail")?,
    };
    Ok(aitrail_service::content_key(&signer))
}

/// The content key of the data dir's log key, if there is one: without it content stays
/// sealed, and reads show none (said once, on stderr).
fn read_key(data_dir: &std::path::Path) -> anyhow::Result<Option<ContentKey>> {
    let key = crate::keyfile::load(data_dir)?.map(|signer| aitrail_service::content_key(&signer));
    if key.is_none() {
        eprintln!(
            "note: no log key (AITRAIL_LOG_KEY, or {}): content is sealed under keys derived \
             from it, so no content is shown",
            crate::keyfile::path(data_dir).display()
        );
    }
    Ok(key)
}

/// The service over a store the CLI opened itself, with the data dir's log key: made as
/// `serve` would make it to change a store no server ran on; to read, it must be there.
/// To change, the key is claimed first: a store signed with another key (the servers'
/// `AITRAIL_LOG_KEY`) refuses before anything is written.
pub async fn local_trail(
    global: &Global,
    store: Arc<dyn Store>,
    intent: Intent,
) -> anyhow::Result<aitrail_service::Trail> {
    let signer = match intent {
        Intent::Change => crate::keyfile::load_or_create(&global.data_dir, "aitrail")?,
        Intent::Read => crate::keyfile::load(&global.data_dir)?.with_context(|| {
            format!(
                "no log key in {} (AITRAIL_LOG_KEY, or the data dir's log-key file)",
                global.data_dir.display()
            )
        })?,
    };
    if intent == Intent::Change {
        store.claim_log_key(&signer.verifier().to_string()).await?;
    }
    let signer = aitrail_service::LogSigner::new(signer, std::time::Duration::from_secs(1));
    Ok(aitrail_service::Trail::new(store, Arc::new(signer)))
}

/// A page as both targets return it.
#[derive(Deserialize)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    detail: String,
    #[serde(default)]
    errors: Vec<ProblemField>,
}

#[derive(Deserialize)]
struct ProblemField {
    field: String,
    message: String,
}

/// A batch answer; a single record's answer is a bare receipt.
#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<Receipt>,
}

/// An inclusion proof as GET /v1/records/{id}/proof answers it.
#[derive(Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub audit_path: Vec<String>,
    pub checkpoint: String,
    pub entry: String,
    pub content_salt: Option<String>,
}

/// A consistency proof as GET /v1/consistency answers it.
#[derive(Deserialize)]
pub struct ConsistencyProof {
    pub to: u64,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

impl Target {
    /// The server (--server), else the store, opened for what the command does.
    pub async fn open(global: &Global, intent: Intent) -> anyhow::Result<Self> {
        match &global.server {
            Some(url) => Ok(Target::Remote {
                client: client(global.api_key.as_deref())?,
                base: url.trim_end_matches('/').to_owned(),
            }),
            None => Ok(Target::Local(open_store(global, intent).await?)),
        }
    }

    /// Append a JSON or NDJSON body as the API would: all or nothing.
    pub async fn append(
        &self,
        global: &Global,
        body: Vec<u8>,
        format: BodyFormat,
    ) -> anyhow::Result<Vec<Receipt>> {
        match self {
            Target::Remote { client, base } => {
                let content_type = match format {
                    BodyFormat::Json => "application/json",
                    BodyFormat::Ndjson => "application/x-ndjson",
                };
                let response = client
                    .post(format!("{base}/v1/records"))
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {base}"))?;
                let body: serde_json::Value = answer(response).await?;
                // Not an untagged enum: arbitrary_precision numbers do not survive one.
                if body.get("results").is_some() {
                    Ok(serde_json::from_value::<BatchAnswer>(body)?.results)
                } else {
                    Ok(vec![serde_json::from_value(body)?])
                }
            }
            Target::Local(store) => {
                let parsed = parse_body(&body, format)
                    .map_err(|e| anyhow::anyhow!("refused, nothing stored: {}", describe(e)))?;
                let sent = parsed.sent();
                let trail = local_trail(global, store.clone(), Intent::Change).await?;
                let receipts =
                    trail.append(parsed.into_records(), sent).await.map_err(|e| match e {
                        aitrail_service::IngestError::Refused(refused) => {
                            let refused: Vec<String> =
                                refused.iter().map(ToString::to_string).collect();
                            anyhow::anyhow!("refused, nothing stored: {}", refused.join("; "))
                        }
                        aitrail_service::IngestError::Store(e) => anyhow::Error::from(e),
                    })?;
                trail.sign_pending().await?;
                Ok(receipts)
            }
        }
    }

    /// One page of records; `pairs` are the API's query parameters. On the store, texts
    /// looked up are hashed with the tenant's key from the data dir's log key, as the
    /// server hashes them with its own.
    pub async fn list(&self, global: &Global, pairs: &[(String, String)]) -> anyhow::Result<Page> {
        match self {
            Target::Remote { client, base } => {
                let response = client
                    .get(format!("{base}/v1/records"))
                    .query(pairs)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {base}"))?;
                answer(response).await
            }
            Target::Local(store) => {
                let mut query = Query::from_pairs(pairs.iter().map(|(k, v)| (k, v)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if !query.content_texts.is_empty() {
                    let secret = crate::keyfile::content_hash_secret(&global.data_dir)?;
                    query.hash_texts(&secret).map_err(|_| {
                        anyhow::anyhow!(
                            "--prompt-text and --response-text need --tenant-id: texts are looked up by each tenant's own keyed hash"
                        )
                    })?;
                }
                let page = store.list(&query).await?;
                Ok(Page {
                    records: page.records,
                    next_cursor: page.next_cursor.map(|c| c.to_string()),
                })
            }
        }
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<Option<StoredRecord>> {
        match self {
            Target::Remote { client, base } => {
                let response = client
                    .get(format!("{base}/v1/records/{id}"))
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {base}"))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                answer(response).await.map(Some)
            }
            Target::Local(store) => match id.parse() {
                Ok(id) => Ok(store.get(id).await?),
                Err(_) => Ok(None),
            },
        }
    }
}

impl Target {
    async fn get_remote(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let Target::Remote { client, base } = self else { unreachable!("remote only") };
        client
            .get(format!("{base}{path}"))
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))
    }

    /// The latest signed checkpoint note of a tenant's log.
    pub async fn checkpoint(&self, tenant: &TenantId) -> anyhow::Result<String> {
        match self {
            Target::Remote { .. } => {
                let r =
                    self.get_remote("/v1/checkpoint", &[("tenant_id", tenant.to_string())]).await?;
                text_answer(r).await
            }
            Target::Local(store) => match store.checkpoint(tenant, None).await? {
                Some(cp) => Ok(cp.note),
                None => bail!(
                    "tenant {tenant} has no signed checkpoint yet (`aitrail serve` signs them)"
                ),
            },
        }
    }

    /// A record's inclusion proof against the latest checkpoint of its log.
    pub async fn proof(&self, id: &str) -> anyhow::Result<InclusionProof> {
        match self {
            Target::Remote { .. } => {
                answer(self.get_remote(&format!("/v1/records/{id}/proof"), &[]).await?).await
            }
            Target::Local(store) => {
                let uuid = id.parse().map_err(|_| anyhow::anyhow!("no record with id {id}"))?;
                let Some(entry) = store.entry(uuid).await? else { bail!("no record with id {id}") };
                let proof = match proofs::inclusion(store.as_ref(), &entry, None).await {
                    Err(ProofError::NotYetCheckpointed) => bail!(
                        "record {id} is not yet in a signed checkpoint; `aitrail serve` signs one every second"
                    ),
                    proof => proof?,
                };
                Ok(InclusionProof {
                    leaf_index: entry.seq,
                    tree_size: proof.checkpoint.size,
                    audit_path: proof.audit_path.iter().map(|h| B64.encode(h)).collect(),
                    checkpoint: proof.checkpoint.note,
                    entry: B64.encode(&entry.entry),
                    content_salt: entry.content.map(|c| B64.encode(c.salt)),
                })
            }
        }
    }

    /// A consistency proof from size `from` to the latest checkpoint of a tenant's log.
    pub async fn consistency(
        &self,
        tenant: &TenantId,
        from: u64,
    ) -> anyhow::Result<ConsistencyProof> {
        match self {
            Target::Remote { .. } => {
                let q = [("tenant_id", tenant.to_string()), ("from", from.to_string())];
                answer(self.get_remote("/v1/consistency", &q).await?).await
            }
            Target::Local(store) => {
                let proof = match proofs::consistency(store.as_ref(), tenant, from, None).await {
                    Err(ProofError::NoCheckpoint) => {
                        bail!("tenant {tenant} has no signed checkpoint")
                    }
                    Err(ProofError::FromBeyond { from, size }) => bail!(
                        "the saved checkpoint has size {from} but the log's latest has {size}: history was rewritten or truncated"
                    ),
                    proof => proof?,
                };
                Ok(ConsistencyProof {
                    to: proof.checkpoint.size,
                    proof: proof.proof.iter().map(|h| B64.encode(h)).collect(),
                    checkpoint: proof.checkpoint.note,
                })
            }
        }
    }

    /// The server's published verifier key (remote only).
    pub async fn log_key(&self) -> anyhow::Result<String> {
        text_answer(self.get_remote("/v1/log-key", &[]).await?).await.map(|k| k.trim().to_owned())
    }
}

/// An HTTP client that sends the API key with every request.
fn client(api_key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .context("--api-key is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder().default_headers(headers).build()?)
}

impl Target {
    /// A request to the server (remote only), for commands that have no store call.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let Target::Remote { client, base } = self else { unreachable!("remote only") };
        client.request(method, format!("{base}{path}"))
    }
}

/// The body of a successful answer, or the server's problem as one error line.
pub async fn json_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> anyhow::Result<T> {
    answer(response).await
}

async fn text_answer(response: reqwest::Response) -> anyhow::Result<String> {
    let status = response.status();
    let text = response.text().await.context("reading the server's answer")?;
    if !status.is_success() {
        let detail = serde_json::from_str::<Problem>(&text).map(|p| p.detail).unwrap_or(text);
        bail!("server refused ({status}): {detail}");
    }
    Ok(text)
}

/// The body of a successful answer, or the server's problem as one error line.
async fn answer<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response.bytes().await.context("reading the server's answer")?;
    if !status.is_success() {
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) if p.errors.len() > 1 => {
                let all: Vec<_> =
                    p.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
                bail!("server refused ({status}): {}", all.join("; "))
            }
            Ok(p) => bail!("server refused ({status}): {}", p.detail),
            Err(_) => bail!("server answered {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    serde_json::from_slice(&bytes).context("the server's answer is not what aitrail expects")
}

fn describe(e: aitrail_core::BodyError) -> String {
    match e {
        aitrail_core::BodyError::Malformed(f) => f.to_string(),
        aitrail_core::BodyError::Invalid(fs) => {
            fs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        }
    }
}
