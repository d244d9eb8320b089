//! Where a command's records are: a running server over HTTP, or the local data dir.

use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_core::{Query, Receipt, StoredRecord};
use aitrail_store::Store;
use aitrail_store_sqlite::SqliteStore;
use anyhow::{Context, bail};
use serde::Deserialize;

use crate::Global;

pub enum Target {
    Remote { client: reqwest::Client, base: String },
    Local(SqliteStore),
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

#[derive(Deserialize)]
#[serde(untagged)]
enum AppendAnswer {
    Batch { results: Vec<Receipt> },
    One(Receipt),
}

impl Target {
    pub fn open(global: &Global) -> anyhow::Result<Self> {
        match &global.server {
            Some(url) => Ok(Target::Remote {
                client: reqwest::Client::new(),
                base: url.trim_end_matches('/').to_owned(),
            }),
            None => Ok(Target::Local(SqliteStore::open(&global.data_dir)?)),
        }
    }

    /// Append a JSON or NDJSON body as the API would: all or nothing.
    pub async fn append(&self, body: Vec<u8>, format: BodyFormat) -> anyhow::Result<Vec<Receipt>> {
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
                Ok(match answer::<AppendAnswer>(response).await? {
                    AppendAnswer::Batch { results } => results,
                    AppendAnswer::One(r) => vec![r],
                })
            }
            Target::Local(store) => {
                let records = parse_body(&body, format)
                    .map_err(|e| anyhow::anyhow!("refused, nothing stored: {}", describe(e)))?
                    .into_records();
                Ok(store.append(records).await?)
            }
        }
    }

    /// One page of records; `pairs` are the API's query parameters.
    pub async fn list(&self, pairs: &[(String, String)]) -> anyhow::Result<Page> {
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
                let query = Query::from_pairs(pairs.iter().map(|(k, v)| (k, v)))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
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
