//! One exported record and what is read from it: the line of records.jsonl (the record
//! exactly as stored: its entry and its content), its fields, its row of
//! conversation_logs.csv and its generation-audit-trail record. The exporter and the offline
//! verifier both derive the CSV row from the line with these functions, so a cell that
//! differs from its record is found.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use aitrail_core::entry::ENTRY_PREFIX;
use aitrail_core::record::RECORD_FIELDS;
use aitrail_core::usage::Cost;
use aitrail_store::EntryRow;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// A line of records.jsonl. `entry` comes first and is the logged entry's JSON exactly as
/// logged (canonical JSON, so it embeds as is; docs/FORMAT.md): the leaf is
/// SHA-256(0x00 ‖ "aitrail.entry.v1\n" ‖ those bytes). `id` and `seq` are for reading;
/// `salt` (hex) and `content` the kept content, each field as the exact text committed to
/// (prompt_variables as canonical JSON). Purged content is absent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'a> {
    #[serde(borrow)]
    pub entry: &'a RawValue,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub content: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'a> Line<'a> {
    /// The line of a stored row; why not, for a corrupt one.
    pub fn of(row: &'a EntryRow) -> Result<Self, String> {
        let content = row.content.as_ref();
        Ok(Self {
            entry: entry_json(&row.entry)?,
            id: Cow::Borrowed(&row.id),
            seq: u64::try_from(row.seq).map_err(|_| "a negative seq")?,
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
        let mut top: Map<String, Value> = serde_json::from_str(self.entry.get())
            .map_err(|e| format!("the entry is not JSON: {e}"))?;
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

/// conversation_logs.csv: the conversation-audit-log service's columns, exact headers in its
/// order, each with the record field it shows.
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

/// Every column of conversation_logs.csv as (header, field): the conversation-audit-log service's,
/// then every other field under its API name.
static COLUMNS: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    let shown = |f: &&str| SEED_COLUMNS.iter().any(|(_, field)| field == f);
    let others = ["seq", "recorded_at"].into_iter().chain(RECORD_FIELDS.iter().copied());
    SEED_COLUMNS.into_iter().chain(others.filter(|f| !shown(f)).map(|f| (f, f))).collect()
});

/// The column of each field, by (length, first letter, last letter), which tells today's
/// record fields apart: looked up for every field of every record, this costs a fraction of
/// hashing the name. A slot two fields share, or a field that has none, is found by looking
/// through the columns instead: slower, never wrong, and never a crash when a field is added.
static COLUMN_TABLE: LazyLock<Vec<Slot>> = LazyLock::new(|| {
    let mut table = vec![Slot::Empty; 64 * 26 * 26];
    for (column, (_, field)) in COLUMNS.iter().enumerate() {
        if let Some(slot) = slot(field) {
            table[slot] = match table[slot] {
                Slot::Empty => Slot::Column(column),
                Slot::Column(_) | Slot::Shared => Slot::Shared,
            };
        }
    }
    table
});

#[derive(Clone, Copy)]
enum Slot {
    Empty,
    Column(usize),
    Shared,
}

fn slot(field: &str) -> Option<usize> {
    let b = field.as_bytes();
    let letter = |c: u8| c.is_ascii_lowercase().then(|| usize::from(c - b'a'));
    let (first, last) = (letter(*b.first()?)?, letter(*b.last()?)?);
    (b.len() < 64).then(|| (b.len() * 26 + first) * 26 + last)
}

fn column_of(field: &str) -> Option<usize> {
    let by_search = || COLUMNS.iter().position(|(_, f)| *f == field);
    match slot(field).map(|s| COLUMN_TABLE[s]) {
        Some(Slot::Column(column)) => (COLUMNS[column].1 == field).then_some(column),
        Some(Slot::Empty) => None,
        Some(Slot::Shared) | None => by_search(),
    }
}

/// The header row of conversation_logs.csv.
pub fn csv_header() -> Vec<&'static str> {
    COLUMNS.iter().map(|(h, _)| *h).collect()
}

/// A record's cells, in column order, as exact values: text unescaped, numbers as their
/// literal, objects as canonical JSON (as the entry holds them), absent fields empty.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    cells: Vec<Cow<'a, str>>,
    /// The entry's content commitments (a JSON object of hex strings), if any.
    pub commitments: Option<&'a RawValue>,
}

/// The entry's top level, its record left as raw JSON.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    record: Pairs<'a>,
    #[serde(borrow)]
    recorded_at: &'a RawValue,
    #[serde(borrow)]
    seq: &'a RawValue,
}

/// A JSON object's members, borrowed, in order.
struct Pairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs<'a>, A::Error> {
                let mut pairs = Vec::with_capacity(32);
                while let Some(pair) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A JSON value as a cell.
fn raw_cell(raw: &RawValue) -> Result<Cow<'_, str>, String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => Ok(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => {
            serde_json::from_str::<String>(text).map(Cow::Owned).map_err(|e| e.to_string())
        }
        _ if text == "null" => Ok(Cow::Borrowed("")),
        _ => Ok(Cow::Borrowed(text)),
    }
}

impl Line<'_> {
    /// The record's row of conversation_logs.csv (before neutralising).
    pub fn row(&self) -> Result<Row<'_>, String> {
        row(self.entry.get(), self.content.iter().map(|(k, v)| (&**k, &**v)))
    }

    /// The leaf hash of the entry: SHA-256(0x00 ‖ "aitrail.entry.v1\n" ‖ entry).
    pub fn leaf(&self) -> aitrail_core::merkle::Hash {
        aitrail_core::merkle::leaf_hash_of_parts(&[ENTRY_PREFIX, self.entry.get().as_bytes()])
    }
}

/// A line of records.jsonl as the verifier reads it: the entry's exact text (for its
/// leaf), the line's own fields, and the row the entry and content give.
pub struct ReadLine<'a> {
    pub entry: &'a str,
    pub id: Cow<'a, str>,
    pub seq: u64,
    pub salt: Option<Cow<'a, str>>,
    /// The content fields the line holds; their texts are the row's cells.
    pub content: Vec<Cow<'a, str>>,
    /// The row, or why the entry gives none.
    pub row: Result<Row<'a>, String>,
}

/// The fields of a line after its entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tail<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    seq: u64,
    #[serde(borrow, default)]
    salt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

/// How the exporter starts every line.
const LINE_HEAD: &str = "{\"entry\":";

impl<'a> ReadLine<'a> {
    /// Read a line, its entry's JSON once. `scratch` holds the fields after the entry (a
    /// few hundred bytes copied, to read them as an object of their own). A line laid out
    /// otherwise than the exporter writes it is read the long way.
    pub fn read(line: &'a str, scratch: &'a mut String) -> Result<Self, String> {
        let Some(rest) = line.strip_prefix(LINE_HEAD) else { return Self::read_any(line) };
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<RawEntry<'a>>();
        let entry = match stream.next() {
            Some(Ok(entry)) => entry,
            _ => return Self::read_any(line),
        };
        let (json, tail) = rest.split_at(stream.byte_offset());
        let Some(tail) = tail.strip_prefix(',') else { return Self::read_any(line) };
        scratch.clear();
        scratch.push('{');
        scratch.push_str(tail);
        let scratch: &'a String = scratch;
        let tail: Tail<'a> = match serde_json::from_str(scratch) {
            Ok(tail) => tail,
            Err(_) => return Self::read_any(line),
        };
        let content = tail.content.keys().cloned().collect();
        let row = row_of(entry, tail.content.into_iter());
        Ok(Self { entry: json, id: tail.id, seq: tail.seq, salt: tail.salt, content, row })
    }

    /// Any JSON layout of a line.
    fn read_any(line: &'a str) -> Result<Self, String> {
        let line: Line<'a> = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let json = line.entry.get();
        let content = line.content.keys().cloned().collect();
        let row = serde_json::from_str(json)
            .map_err(|e| format!("the entry is not readable: {e}"))
            .and_then(|entry| row_of(entry, line.content.into_iter()));
        Ok(Self { entry: json, id: line.id, seq: line.seq, salt: line.salt, content, row })
    }

    /// The leaf hash of the entry: SHA-256(0x00 ‖ "aitrail.entry.v1\n" ‖ entry).
    pub fn leaf(&self) -> aitrail_core::merkle::Hash {
        aitrail_core::merkle::leaf_hash_of_parts(&[ENTRY_PREFIX, self.entry.as_bytes()])
    }
}

/// Append the line of a stored row to `out` (with its newline): the bytes serde would
/// write for [`Line::of`], written without parsing the entry. The entry is parsed once,
/// for its CSV row, where an entry that is not JSON fails the export.
pub fn write_line(row: &EntryRow, out: &mut Vec<u8>) -> Result<(), String> {
    let json = row
        .entry
        .strip_prefix(ENTRY_PREFIX)
        .ok_or("its entry does not start with the v1 prefix")?;
    let seq = u64::try_from(row.seq).map_err(|_| "a negative seq")?;
    out.extend_from_slice(b"{\"entry\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut *out, &row.id).map_err(|e| e.to_string())?;
    out.extend_from_slice(format!(",\"seq\":{seq}").as_bytes());
    if let Some(content) = &row.content {
        out.extend_from_slice(b",\"salt\":\"");
        let mut salt = [0u8; 64];
        hex::encode_to_slice(content.salt, &mut salt).expect("64 bytes hold 32 as hex");
        out.extend_from_slice(&salt);
        out.push(b'"');
        if !content.fields.is_empty() {
            out.extend_from_slice(b",\"content\":");
            serde_json::to_writer(&mut *out, &content.fields).map_err(|e| e.to_string())?;
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// A stored entry's text, after its version line (not parsed).
pub fn entry_text(entry: &[u8]) -> Result<&str, String> {
    let json =
        entry.strip_prefix(ENTRY_PREFIX).ok_or("its entry does not start with the v1 prefix")?;
    std::str::from_utf8(json).map_err(|_| "its entry is not UTF-8 text".into())
}

/// A stored entry's JSON, after its version line.
pub fn entry_json(entry: &[u8]) -> Result<&RawValue, String> {
    let json =
        entry.strip_prefix(ENTRY_PREFIX).ok_or("its entry does not start with the v1 prefix")?;
    let json = std::str::from_utf8(json).map_err(|_| "its entry is not UTF-8 text")?;
    serde_json::from_str(json).map_err(|e| format!("its entry is not JSON: {e}"))
}

/// A record's row of conversation_logs.csv (before neutralising), from its entry's JSON
/// and kept content. Timestamp is when the call happened: event_time, or recorded_at when the
/// client sent none (recorded_at has its own column too).
pub fn row<'s>(
    json: &'s str,
    content: impl Iterator<Item = (&'s str, &'s str)>,
) -> Result<Row<'s>, String> {
    let entry: RawEntry<'s> =
        serde_json::from_str(json).map_err(|e| format!("the entry is not readable: {e}"))?;
    row_of(entry, content.map(|(k, v)| (k, Cow::Borrowed(v))))
}

fn row_of<'s>(
    entry: RawEntry<'s>,
    content: impl Iterator<Item = (impl AsRef<str>, Cow<'s, str>)>,
) -> Result<Row<'s>, String> {
    let mut cells = vec![Cow::Borrowed(""); COLUMNS.len()];
    let mut set = |field: &str, value: Cow<'s, str>| {
        if let Some(i) = column_of(field) {
            cells[i] = value;
        }
    };
    set("id", raw_cell(entry.id)?);
    set("seq", raw_cell(entry.seq)?);
    set("recorded_at", raw_cell(entry.recorded_at)?);
    let mut event_time = false;
    let mut commitments = None;
    for (name, value) in &entry.record.0 {
        event_time |= name == "event_time";
        if name == "commitments" {
            commitments = Some(*value);
        }
        set(name, raw_cell(value)?);
    }
    for (name, text) in content {
        set(name.as_ref(), text);
    }
    if !event_time {
        set("event_time", raw_cell(entry.recorded_at)?);
    }
    Ok(Row { cells, commitments })
}

impl Row<'_> {
    /// The cells as written to the CSV: neutralised against formula injection.
    pub fn csv(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.cells.iter().map(|c| aitrail_core::csv::safe_cell(c))
    }

    /// Write the row as one CSV record.
    pub fn write<W: std::io::Write>(&self, csv: &mut csv::Writer<W>) -> csv::Result<()> {
        for cell in self.csv() {
            csv.write_field(cell.as_bytes())?;
        }
        csv.write_record(None::<&[u8]>)
    }

    /// The exact value of a field's column.
    pub fn get(&self, field: &str) -> &str {
        column_of(field).map_or("", |i| &self.cells[i])
    }
}

/// The generation-audit-trail record's shape (docs/EXPORT.md has the mapping); what has no place
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
    /// "by\0provider\0model\0currency" → totals; by is 0 (provider) or 1 (model), so
    /// providers come first.
    groups: BTreeMap<String, Totals>,
    key: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    records: u64,
    tokens_input: u64,
    tokens_output: u64,
    /// Summed as GET /v1/usage sums it: exactly.
    cost: Cost,
}

impl Usage {
    pub fn add(&mut self, row: &Row<'_>) {
        let count = |f: &str| row.get(f).parse::<u64>().unwrap_or(0);
        let cost = Cost::parse(row.get("cost_amount")).unwrap_or_default();
        let (provider, model, currency) =
            (row.get("model_provider"), row.get("model_name"), row.get("cost_currency"));
        for (by, model) in [("0", ""), ("1", model)] {
            self.key.clear();
            for part in [by, provider, model, currency] {
                self.key.push_str(part);
                self.key.push('\0');
            }
            let totals = match self.groups.get_mut(self.key.as_str()) {
                Some(t) => t,
                None => self.groups.entry(self.key.clone()).or_default(),
            };
            totals.records += 1;
            totals.tokens_input += count("tokens_input");
            totals.tokens_output += count("tokens_output");
            totals.cost = totals.cost.saturating_add(cost);
        }
    }

    /// Add another's totals (of other records) to these.
    /// Add `other`'s totals; the bytes of the group names this adds (what a hostile
    /// bundle's names could grow to).
    pub fn merge(&mut self, other: Usage) -> usize {
        let mut added = 0;
        for (key, t) in other.groups {
            if !self.groups.contains_key(&key) {
                added += key.len();
            }
            let mine = self.groups.entry(key).or_default();
            mine.records += t.records;
            mine.tokens_input += t.tokens_input;
            mine.tokens_output += t.tokens_output;
            mine.cost = mine.cost.saturating_add(t.cost);
        }
        added
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
        for (key, t) in &self.groups {
            let parts: Vec<&str> = key.split('\0').collect();
            let by = if parts[0] == "0" { "provider" } else { "model" };
            let row = [
                by.to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
                parts[3].to_owned(),
                t.records.to_string(),
                t.tokens_input.to_string(),
                t.tokens_output.to_string(),
                t.cost.to_string(),
            ];
            w.write_record(row.iter().map(|c| aitrail_core::csv::safe_cell(c).into_owned()))
                .expect("writing to memory");
        }
        w.into_inner().expect("writing to memory")
    }
}

/// The CSV dialect of every CSV file in an export: RFC 4180 (CRLF, quotes where needed).
pub fn csv_writer<W: std::io::Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(w)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_written_line_is_the_line_serde_writes() {
        let entry = |json: &str| [ENTRY_PREFIX, json.as_bytes()].concat();
        let content = |fields: &[(&str, &str)]| aitrail_core::entry::Content {
            salt: [0xab; 32],
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            hashes: Default::default(),
        };
        let rows = [
            EntryRow {
                pos: 1,
                id: "01a2".into(),
                seq: 7,
                entry: entry(
                    r#"{"id":"01a2","record":{"tenant_id":"t"},"recorded_at":"x","seq":7}"#,
                ),
                content: Some(content(&[
                    ("response", "two\nlines \"quoted\" é"),
                    ("prompt", "p"),
                    ("prompt_variables", r#"{"a":1}"#),
                ])),
            },
            EntryRow { pos: 2, id: "b".into(), seq: 0, entry: entry("{}"), content: None },
            EntryRow {
                pos: 3,
                id: "c".into(),
                seq: 1,
                entry: entry("{}"),
                content: Some(content(&[])),
            },
        ];
        for row in &rows {
            let mut ours = Vec::new();
            write_line(row, &mut ours).unwrap();
            let mut serde = serde_json::to_vec(&Line::of(row).unwrap()).unwrap();
            serde.push(b'\n');
            assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(serde).unwrap());
        }
    }
    use super::*;

    #[test]
    fn the_header_starts_with_the_conversation_logs_columns() {
        let header = csv_header();
        assert_eq!(
            header[..15].join(","),
            "Log ID,Timestamp,Agent ID,Session ID,Channel,Prompt,Response,Model Info,Model Provider,Model Name,Model Version,Deployment ID,Temperature,Safety Mode,Model Config"
        );
        assert_eq!(&header[15..18], ["seq", "recorded_at", "tenant_id"]);
        // Every field has a column, once.
        for f in RECORD_FIELDS {
            assert!(column_of(f).is_some(), "{f} has no column");
        }
        let mut sorted = header.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), header.len());
    }

    #[test]
    fn a_field_is_found_by_its_name_whatever_its_shape() {
        for (column, (_, field)) in COLUMNS.iter().enumerate() {
            assert_eq!(column_of(field), Some(column), "{field}");
        }
        // Shaped like tenant_id (length, first and last letter), but no field; and names
        // the fast table has no slot for.
        for not_a_field in ["tenant_ad", "Tenant_id", "", "x".repeat(80).as_str(), "é"] {
            assert_eq!(column_of(not_a_field), None, "{not_a_field}");
        }
    }

    #[test]
    fn cells_are_exact_then_neutralised_and_objects_canonical() {
        let entry = r#"{"id":"x","record":{"model_config":{"a":0.50,"b":1},"model_name":"say \"hi\"","tenant_id":"t","tokens_input":7},"recorded_at":"2026-01-01T00:00:00Z","seq":3}"#;
        let line = Line {
            entry: serde_json::from_str(entry).unwrap(),
            id: "x".into(),
            seq: 3,
            salt: None,
            content: [("prompt".into(), "=HYPERLINK(1)".into())].into_iter().collect(),
        };
        let row = line.row().unwrap();
        let csv: Vec<_> = row.csv().collect();
        assert_eq!(csv[0], "x");
        assert_eq!(csv[1], "2026-01-01T00:00:00Z"); // no event_time: recorded_at
        assert_eq!(csv[5], "'=HYPERLINK(1)");
        assert_eq!(csv[9], "say \"hi\"");
        assert_eq!(csv[14], r#"{"a":0.50,"b":1}"#);
        assert_eq!(csv[15], "3");
        assert_eq!(row.get("prompt"), "=HYPERLINK(1)", "exact before neutralising");
        let mut usage = Usage::default();
        usage.add(&row);
        usage.add(&row);
        let summary = String::from_utf8(usage.to_csv()).unwrap();
        assert!(summary.contains("provider,,,,2,14,0,0\r\n"), "{summary}");
    }
}
