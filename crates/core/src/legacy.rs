//! Moving in from the conversation-audit-log service: one row of its `conversation_audit_logs`
//! table, or of its compliance export `conversation_logs.csv`, becomes a record.
//!
//! Names are matched loosely (`Log ID`, `log_id` and `LOG ID` are one name): the CSV's
//! headers and the table's columns map alike. `Log ID` (or `id`) becomes `external_id`,
//! so a re-import finds what it brought in before; `Timestamp` (or `created_at`) becomes
//! `event_time`; names that are record fields keep their meaning; anything else is kept
//! under `attributes`, so nothing of the old row is lost. Empty cells and nulls are left
//! out. The record is then parsed like any other, with the same errors.

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::ingest::{BodyError, BodyFormat, FieldError, parse_body};
use crate::record::{RECORD_FIELDS, Record};

/// A row's values by column name, as read from the old system.
pub type LegacyRow = Vec<(String, Value)>;

/// The record of one old row; `tenant_id` is used where the row names none.
pub fn record_from_row(row: LegacyRow, tenant_id: Option<&str>) -> Result<Record, Vec<FieldError>> {
    let mut record = Map::new();
    let mut attributes = Map::new();
    for (name, value) in row {
        let Some(value) = present(value) else { continue };
        let key = column_key(&name);
        match key.as_str() {
            "log_id" | "id" => {
                record.insert("external_id".into(), Value::String(text(&value)));
            }
            "timestamp" | "created_at" => {
                record.insert("event_time".into(), Value::String(rfc3339(&text(&value))));
            }
            "model_config" | "prompt_variables" | "attributes" => {
                record.insert(key, json_object(value));
            }
            "temperature" | "cost_amount" => {
                record.insert(key, Value::String(text(&value)));
            }
            k if RECORD_FIELDS.contains(&k) => {
                record.insert(key, value);
            }
            _ => {
                attributes.insert(name, value);
            }
        }
    }
    if !record.contains_key("tenant_id")
        && let Some(t) = tenant_id
    {
        record.insert("tenant_id".into(), Value::String(t.to_owned()));
    }
    if !attributes.is_empty() {
        match record.entry("attributes") {
            serde_json::map::Entry::Occupied(mut o) => {
                if let Value::Object(existing) = o.get_mut() {
                    existing.extend(attributes);
                }
            }
            serde_json::map::Entry::Vacant(v) => {
                v.insert(Value::Object(attributes));
            }
        }
    }
    let body = Value::Object(record).to_string();
    match parse_body(body.as_bytes(), BodyFormat::Json) {
        Ok(parsed) => Ok(parsed.into_records().remove(0)),
        Err(BodyError::Invalid(errors)) => Err(errors),
        Err(BodyError::Malformed(e)) => Err(vec![e]),
    }
}

/// A column's name as matched: `Log ID`, `log_id` and `LOG-ID` are one name.
pub fn column_key(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

/// Why the old system's compliance CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("the header line: {0}")]
    Header(csv::Error),
    #[error("row {0}: {1}")]
    Row(usize, csv::Error),
    #[error("{0} is longer than {1} bytes")]
    TooLong(String, usize),
}

/// The headers and every row of the old system's compliance CSV (`conversation_logs.csv`,
/// RFC 4180, first line the headers), each cell as text under its column's header; the header line and
/// each row `max_row` bytes at most, read through a budget so that a longer one is never
/// held (the CSV reader holds a whole row, however long its cells). Public so that the
/// fuzz targets read CSV exactly as `aitrail import --csv` does.
pub fn csv_rows(
    input: impl std::io::Read,
    max_row: usize,
) -> Result<(Vec<String>, Vec<LegacyRow>), CsvError> {
    let budget = Rc::new(Cell::new(max_row + READ_AHEAD));
    let mut reader = csv::Reader::from_reader(RowBudget { inner: input, left: budget.clone() });
    let too_long = |what: String| CsvError::TooLong(what, max_row);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(_) if budget.get() == 0 => return Err(too_long("the header line".into())),
        Err(e) => return Err(CsvError::Header(e)),
    };
    let mut rows = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut start = reader.position().byte();
    for i in 1.. {
        budget.set(max_row + READ_AHEAD);
        match reader.read_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) if budget.get() == 0 => return Err(too_long(format!("row {i}"))),
            Err(e) => return Err(CsvError::Row(i, e)),
        }
        let end = reader.position().byte();
        if (end - start) as usize > max_row {
            return Err(too_long(format!("row {i}")));
        }
        start = end;
        let cells = headers.iter().zip(row.iter());
        rows.push(cells.map(|(h, v)| (h.to_owned(), Value::String(v.to_owned()))).collect());
    }
    Ok((headers.iter().map(str::to_owned).collect(), rows))
}

/// What the CSV reader may read past a row's end into its buffer.
const READ_AHEAD: usize = 64 << 10;

/// A reader that fails once it has read what `left` allows.
struct RowBudget<R> {
    inner: R,
    left: Rc<Cell<usize>>,
}

impl<R: std::io::Read> std::io::Read for RowBudget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(std::io::Error::other("row too long"));
        }
        let len = buf.len().min(left);
        let n = self.inner.read(&mut buf[..len])?;
        self.left.set(left - n);
        Ok(n)
    }
}

/// `None` for what counts as absent: null and empty or blank text.
fn present(v: Value) -> Option<Value> {
    match &v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        _ => Some(v),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    }
}

/// The old system's timestamps: RFC 3339, or PostgreSQL's text of a `timestamp` without
/// zone (`2026-01-30 10:30:00`, `2026-01-30T10:30:00`), which is taken as UTC.
fn rfc3339(s: &str) -> String {
    let s = s.replacen(' ', "T", 1);
    let has_zone = s.ends_with('Z')
        || s.get(19..).is_some_and(|rest| rest.contains('+') || rest.contains('-'));
    if has_zone { s } else { format!("{s}Z") }
}

/// A JSON object column: an object as is, or JSON text (the CSV's `"{...}"`). Anything
/// else is passed on for the record parser to refuse with the field's name.
fn json_object(v: Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(pairs: &[(&str, Value)]) -> LegacyRow {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn a_csv_row_of_seed_000_maps_field_by_field() {
        let r = record_from_row(
            row(&[
                ("Log ID", json!("log-123")),
                ("Timestamp", json!("2026-01-30T10:30:00Z")),
                ("Agent ID", json!("agent-001")),
                ("Session ID", json!("sess-abc")),
                ("Channel", json!("api")),
                ("Prompt", json!("What is AI?")),
                ("Response", json!("AI is...")),
                ("Model Info", json!("gpt-4-turbo")),
                ("Model Provider", json!("openai")),
                ("Model Name", json!("gpt-4-turbo")),
                ("Model Version", json!("2024-04-09")),
                ("Deployment ID", json!("")),
                ("Temperature", json!("0.7")),
                ("Safety Mode", json!("strict")),
                ("Model Config", json!("{\"top_p\": 0.9}")),
                ("Reviewer", json!("anna")),
            ]),
            Some("org-123"),
        )
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["tenant_id"], "org-123");
        assert_eq!(v["external_id"], "log-123");
        assert_eq!(v["event_time"], "2026-01-30T10:30:00Z");
        assert_eq!(v["channel"], "api");
        assert_eq!(v["model_info"], "gpt-4-turbo");
        assert_eq!(v["temperature"], "0.7");
        assert_eq!(v["model_config"]["top_p"].to_string(), "0.9");
        assert!(v.get("deployment_id").is_none(), "an empty cell is absent");
        assert_eq!(v["attributes"]["Reviewer"], "anna", "unknown columns are kept");
    }

    #[test]
    fn a_table_row_keeps_its_own_tenant_and_zoneless_time() {
        let r = record_from_row(
            row(&[
                ("id", json!(42)),
                ("tenant_id", json!("org-9")),
                ("created_at", json!("2026-01-30 10:30:00.5")),
                ("temperature", json!(0.25)),
                ("model_config", json!({"max_tokens": 10})),
                ("deployment_id", Value::Null),
            ]),
            Some("ignored"),
        )
        .unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["tenant_id"], "org-9");
        assert_eq!(v["external_id"], "42");
        assert_eq!(v["event_time"], "2026-01-30T10:30:00.5Z");
        assert_eq!(v["temperature"], "0.25");
    }

    #[test]
    fn bad_values_are_named_like_any_record_field() {
        let errors = record_from_row(
            row(&[("Log ID", json!("x")), ("Temperature", json!("hot"))]),
            Some("t"),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "temperature");
        let errors = record_from_row(row(&[("Log ID", json!("x"))]), None).unwrap_err();
        assert_eq!(errors[0].field, "tenant_id");
    }
}
