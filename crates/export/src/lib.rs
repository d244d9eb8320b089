//! Compliance exports (docs/EXPORT.md): a tenant's records, filtered like a listing,
//! streamed as a zip bundle that proves itself offline with the log's public key alone,
//! or as one plain CSV, JSON Lines or JSON file.
//!
//! Written on a blocking thread ([`write`]), reading the store a page at a time, so memory
//! stays flat whatever the size; checked by [`check::bundle`] with no store at all.

pub mod check;
mod csv_stream;
pub mod line;
mod write;

use std::fmt;
use std::str::FromStr;

pub use write::{Progress, Request, write};

use aitrail_core::Query;
use aitrail_core::ingest::FieldError;

/// The files of a bundle, in the order they are written.
pub const README: &str = "README.txt";
pub const RECORDS: &str = "records.jsonl";
pub const CONVERSATIONS: &str = "conversation_logs.csv";
pub const USAGE: &str = "usage_summary.csv";
pub const CHECKPOINT: &str = "checkpoint.txt";
pub const LOG_KEY: &str = "log-key.txt";
/// Every leaf hash of the log up to the checkpoint (32 bytes each), when that is smaller
/// than an inclusion proof per record.
pub const LEAVES: &str = "leaves.bin";
/// One inclusion proof per exported record, otherwise.
pub const PROOFS: &str = "proofs.jsonl";
pub const MANIFEST: &str = "manifest.json";
/// A signed note over the manifest's SHA-256, by the log key.
pub const MANIFEST_SIG: &str = "manifest.sig";

/// What the manifest signature's note says before the digest.
pub const MANIFEST_NOTE_PREFIX: &str = "aitrail export manifest\nsha256 ";
/// The bundle format, as the manifest names it.
pub const BUNDLE_FORMAT: &str = "aitrail-export/1";

/// The auditor's guide inside every bundle.
pub const README_TEXT: &str = include_str!("README.txt");

/// What an export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// compliance_export.zip: the verifiable bundle.
    Zip,
    /// conversation_logs.csv alone.
    Csv,
    /// records.jsonl alone.
    Jsonl,
    /// Generation-audit-trail records, as one JSON array.
    Json,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Zip, Format::Csv, Format::Jsonl, Format::Json];

    pub fn name(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Zip => "application/zip",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
            Format::Json => "application/json",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Zip => "compliance_export.zip",
            Format::Csv => CONVERSATIONS,
            Format::Jsonl => RECORDS,
            Format::Json => "audit_records.json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown export format {s:?}: one of zip, csv, jsonl, json"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] aitrail_store::StoreError),
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the zip failed: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("signing the manifest failed: {0}")]
    Sign(#[from] aitrail_core::note::NoteError),
    #[error("stored record {0} cannot be exported: {1}")]
    Corrupt(String, String),
}

/// An export's parameters, parsed.
#[derive(Debug, Clone)]
pub struct Params {
    pub format: Format,
    /// The filters as given, for the manifest.
    pub filters: Vec<(String, String)>,
    pub query: Query,
}

/// An export's parameters: `format` (default zip) and the listing's filters (not `limit`
/// or `cursor`: an export is every match).
pub fn parse_params(pairs: Vec<(String, String)>) -> Result<Params, FieldError> {
    let mut format = Format::Zip;
    let mut filters = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "format" => format = v.parse().map_err(|e| FieldError::new("format", e))?,
            "limit" | "cursor" => {
                return Err(FieldError::new(&k, "an export holds every match; it has no pages"));
            }
            // The manifest lists the filters: a looked-up text would be kept in it.
            "prompt_text" | "response_text" => {
                return Err(FieldError::new(
                    &k,
                    "not an export filter; find the records' ids first (GET /v1/records?prompt_text=...) and export by id",
                ));
            }
            _ => filters.push((k, v)),
        }
    }
    let query = Query::from_pairs(filters.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    Ok(Params { format, filters, query })
}
