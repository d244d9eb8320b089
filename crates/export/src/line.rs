//! One exported record and what is read from it: the line of records.jsonl (the record
//! exactly as stored: its entry and its content), its fields, its row of
//! conversation_logs.csv and its seed 004 audit record. The exporter and the offline
//! verifier both derive the CSV row from the line with these functions, so a cell that
//! differs from its record is found.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aitrail_core::entry::{ENTRY_PREFIX, canonical_json};
use aitrail_core::record::RECORD_FIELDS;
use aitrail_store::RawRow;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A line of records.jsonl: `id` and `seq` for reading; `entry` the logged bytes (its leaf
/// is SHA-256(0x00 ‖ entry)); `salt` (hex) and `content` the kept content, each field as
/// the exact text committed to (prompt_variables as canonical JSON). Purged content is
/// absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow)]
    pub entry: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub content: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'a> Line<'a> {
    /// The line of a stored row; `None` when its entry is not text (a corrupt row).
    pub fn of(row: &'a RawRow) -> Option<Self> {
        let content = row.content.as_ref();
        Some(Self {
            id: Cow::Borrowed(&row.columns.id),
            seq: u64::try_from(row.columns.seq).ok()?,
            entry: Cow::Borrowed(std::str::from_utf8(&row.entry).ok()?),
            salt: content.map(|c| Cow::Owned(hex::encode(c.salt))),
            content: content
                .map(|c| {
                    c.fields
                        .iter()
                        .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                })
                .into_iter()
                .flatten()
                .collect(),
        })
    }

    /// The record's fields: the server's (id, seq, recorded_at), the entry's record
    /// without its commitments, and the kept content.
    pub fn fields(&self) -> Result<Map<String, Value>, String> {
        let json = self
            .entry
            .as_bytes()
            .strip_prefix(ENTRY_PREFIX)
            .ok_or("the entry does not start with the v1 prefix")?;
        let mut top: Map<String, Value> =
            serde_json::from_slice(json).map_err(|e| format!("the entry is not JSON: {e}"))?;
        let Some(Value::Object(record)) = top.remove("record") else {
            return Err("the entry has no record".into());
        };
        let mut fields = Map::new();
        for key in ["id", "seq", "recorded_at"] {
            fields.insert(key.into(), top.remove(key).unwrap_or(Value::Null));
        }
        fields.extend(record.into_iter().filter(|(k, _)| k != "commitments"));
        for (name, text) in &self.content {
            let value = if name == "prompt_variables" {
                serde_json::from_str(text).map_err(|e| format!("prompt_variables: {e}"))?
            } else {
                Value::String(text.to_string())
            };
            fields.insert(name.to_string(), value);
        }
        Ok(fields)
    }
}

/// conversation_logs.csv: seed 000's columns, exact headers in its order, each with the
/// record field it shows.
pub const SEED_COLUMNS: [(&str, &str); 15] = [
    ("Log ID", "id"),
    ("Timestamp", "event_time"),
    ("Agent ID", "agent_id"),
    ("Session ID", "session_id"),
    ("Channel", "channel"),
    ("Prompt", "prompt"),
    ("Response", "response"),
    ("Model Info", "model_info"),
    ("Model Provider", "model_provider"),
    ("Model Name", "model_name"),
    ("Model Version", "model_version"),
    ("Deployment ID", "deployment_id"),
    ("Temperature", "temperature"),
    ("Safety Mode", "safety_mode"),
    ("Model Config", "model_config"),
];

/// The columns after seed 000's: every other field, by its API name.
pub fn other_columns() -> impl Iterator<Item = &'static str> {
    let shown = |f: &&str| SEED_COLUMNS.iter().any(|(_, field)| field == f);
    ["seq", "recorded_at"]
        .into_iter()
        .chain(RECORD_FIELDS.iter().copied().filter(move |f| !shown(f)))
}

/// The header row of conversation_logs.csv.
pub fn csv_header() -> Vec<&'static str> {
    SEED_COLUMNS.iter().map(|(h, _)| *h).chain(other_columns()).collect()
}

/// A record's row of conversation_logs.csv, neutralised against formula injection.
/// Timestamp is when the call happened: event_time, or recorded_at when the client sent
/// none (recorded_at has its own column too).
pub fn csv_row(fields: &Map<String, Value>) -> Vec<String> {
    let timestamp = fields.get("event_time").or_else(|| fields.get("recorded_at"));
    let seed = SEED_COLUMNS
        .iter()
        .map(|(header, field)| if *header == "Timestamp" { timestamp } else { fields.get(*field) });
    let others = other_columns().map(|f| fields.get(f));
    seed.chain(others).map(|v| aitrail_core::csv::safe_cell(&cell(v)).into_owned()).collect()
}

/// A value as a cell: text as is, numbers as their literal, objects as canonical JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => canonical_json(other),
    }
}

/// Seed 004's audit record shape (docs/EXPORT.md has the mapping); what has no place
/// there is kept under `aitrail`.
pub fn audit_record(fields: &Map<String, Value>) -> Value {
    let get = |k: &str| fields.get(k).cloned().unwrap_or(Value::Null);
    let sub = |k: &str, inner: &str| {
        fields.get(k).and_then(|v| v.get(inner)).cloned().unwrap_or(Value::Null)
    };
    let timestamp = fields.get("event_time").or_else(|| fields.get("recorded_at")).cloned();
    json!({
        "audit_id": get("id"),
        "timestamp": timestamp,
        "tool_version": sub("environment", "tool_version"),
        "session": {
            "user": fields.get("username").or_else(|| fields.get("user_id")).cloned(),
            "user_id": get("user_id"),
            "session_id": get("session_id"),
            "agent_id": get("agent_id"),
            "environment": sub("environment", "runtime"),
            "host": sub("environment", "host"),
        },
        "input": {
            "data_hash": sub("input", "data_hash"),
            "data_path": sub("input", "data_path"),
            "record_count": sub("input", "record_count"),
            "prompt": get("prompt"),
            "prompt_variables": get("prompt_variables"),
        },
        "generation": {
            "provider": get("model_provider"),
            "model": get("model_name"),
            "model_version": get("model_version"),
            "deployment_id": get("deployment_id"),
            "temperature": get("temperature"),
            "max_tokens": sub("model_config", "max_tokens"),
            "model_config": get("model_config"),
            "prompt_template": get("prompt_template"),
            "prompt_template_version": get("prompt_template_version"),
            "safety_mode": get("safety_mode"),
        },
        "output": {
            "response": get("response"),
            "artifact_hash": sub("output", "artifact_hash"),
            "output_path": sub("output", "artifact_path"),
            "generation_time_ms": get("processing_time_ms"),
            "tokens_input": get("tokens_input"),
            "tokens_output": get("tokens_output"),
            "cost_amount": get("cost_amount"),
            "cost_currency": get("cost_currency"),
            "success": get("success"),
            "error_message": get("error_message"),
        },
        "quality": {
            "validation_passed": sub("quality", "validation_passed"),
            "quality_scores": sub("quality", "scores"),
        },
        "reproducibility": {
            "seed": sub("reproducibility", "seed"),
            "deterministic": sub("reproducibility", "deterministic"),
            "api_call_ids": sub("reproducibility", "api_call_ids"),
        },
        "aitrail": {
            "tenant_id": get("tenant_id"),
            "seq": get("seq"),
            "recorded_at": get("recorded_at"),
            "external_id": get("external_id"),
            "feature_code": get("feature_code"),
            "channel": get("channel"),
            "operation_type": get("operation_type"),
            "attributes": get("attributes"),
        },
    })
}

/// usage_summary.csv: records, tokens and cost by provider and by model, per currency.
#[derive(Debug, Default)]
pub struct Usage {
    /// (by, provider, model, currency) → totals; by provider first, then by model.
    groups: BTreeMap<(By, String, String, String), Totals>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum By {
    Provider,
    Model,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    records: u64,
    tokens_input: u64,
    tokens_output: u64,
    /// In units of 10^-COST_SCALE.
    cost: i128,
}

/// Decimal places costs are summed to (exactly; digits beyond are dropped).
const COST_SCALE: u32 = 12;

impl Usage {
    pub fn add(&mut self, fields: &Map<String, Value>) {
        let text = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let count = |k: &str| {
            fields
                .get(k)
                .and_then(|v| v.as_u64().or_else(|| v.to_string().parse().ok()))
                .unwrap_or(0)
        };
        let (provider, model, currency) =
            (text("model_provider"), text("model_name"), text("cost_currency"));
        let cost = fields.get("cost_amount").and_then(Value::as_str).map_or(0, fixed);
        for key in [
            (By::Provider, provider.clone(), String::new(), currency.clone()),
            (By::Model, provider, model, currency),
        ] {
            let t = self.groups.entry(key).or_default();
            t.records += 1;
            t.tokens_input += count("tokens_input");
            t.tokens_output += count("tokens_output");
            t.cost += cost;
        }
    }

    /// The file's bytes (CRLF lines, as RFC 4180).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv_writer(Vec::new());
        let header = [
            "by",
            "model_provider",
            "model_name",
            "cost_currency",
            "records",
            "tokens_input",
            "tokens_output",
            "cost_amount",
        ];
        w.write_record(header).expect("writing to memory");
        for ((by, provider, model, currency), t) in &self.groups {
            let by = match by {
                By::Provider => "provider",
                By::Model => "model",
            };
            let row = [
                by.to_owned(),
                provider.clone(),
                model.clone(),
                currency.clone(),
                t.records.to_string(),
                t.tokens_input.to_string(),
                t.tokens_output.to_string(),
                decimal(t.cost),
            ];
            w.write_record(row.iter().map(|c| aitrail_core::csv::safe_cell(c).into_owned()))
                .expect("writing to memory");
        }
        w.into_inner().expect("writing to memory")
    }
}

/// A decimal literal in units of 10^-COST_SCALE.
fn fixed(s: &str) -> i128 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac: String =
        frac.chars().chain(std::iter::repeat('0')).take(COST_SCALE as usize).collect();
    let whole: i128 = whole.parse().unwrap_or(0);
    whole * 10i128.pow(COST_SCALE) + frac.parse::<i128>().unwrap_or(0)
}

fn decimal(units: i128) -> String {
    let scale = 10i128.pow(COST_SCALE);
    let frac = format!("{:0width$}", units % scale, width = COST_SCALE as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() { (units / scale).to_string() } else { format!("{}.{frac}", units / scale) }
}

/// The CSV dialect of every CSV file in an export: RFC 4180 (CRLF, quotes where needed).
pub fn csv_writer<W: std::io::Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_sum_exactly() {
        assert_eq!(decimal(fixed("0.0042") + fixed("1.1") + fixed("2")), "3.1042");
        assert_eq!(decimal(fixed("0.1") * 3), "0.3");
        assert_eq!(decimal(0), "0");
    }

    #[test]
    fn the_header_starts_with_seed_000s_columns() {
        let header = csv_header();
        assert_eq!(
            header[..15].join(","),
            "Log ID,Timestamp,Agent ID,Session ID,Channel,Prompt,Response,Model Info,Model Provider,Model Name,Model Version,Deployment ID,Temperature,Safety Mode,Model Config"
        );
        assert_eq!(&header[15..18], ["seq", "recorded_at", "tenant_id"]);
        // Every field has a column, once.
        for f in RECORD_FIELDS {
            let shown = SEED_COLUMNS.iter().any(|(_, field)| field == f);
            assert!(shown || header.contains(f), "{f} has no column");
        }
        let mut sorted = header.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), header.len());
    }

    #[test]
    fn cells_are_neutralised_and_objects_canonical() {
        let fields: Map<String, Value> = serde_json::from_str(
            r#"{"id":"x","recorded_at":"2026-01-01T00:00:00Z","prompt":"=HYPERLINK(1)","model_config":{"b":1,"a":0.50}}"#,
        )
        .unwrap();
        let row = csv_row(&fields);
        assert_eq!(row[0], "x");
        assert_eq!(row[1], "2026-01-01T00:00:00Z"); // no event_time: recorded_at
        assert_eq!(row[5], "'=HYPERLINK(1)");
        assert_eq!(row[14], r#"{"a":0.50,"b":1}"#);
    }
}
