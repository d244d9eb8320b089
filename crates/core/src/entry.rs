//! The log entry: the canonical, versioned bytes of a record that its Merkle leaf hashes.
//! Specified in docs/FORMAT.md; this module is the reference implementation.
//!
//! ```text
//! entry = "aitrail.entry.v1\n" ‖ canonical-JSON({"id", "record", "recorded_at", "seq"})
//! ```
//!
//! `record` is the record's JSON with its content fields (prompt, response,
//! prompt_variables) replaced by salted commitments under `"commitments"`, so content and
//! salt can later be deleted while the entry, its leaf and every proof stay valid.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::merkle::Hash;
use crate::record::TextField;
use crate::record::{Record, StoredRecord};
use crate::value::Timestamp;

pub use crate::value::KeyedHash;

/// First bytes of every version-1 entry.
pub const ENTRY_PREFIX: &[u8] = b"aitrail.entry.v1\n";

/// Record fields that are content: kept outside the entry, committed to inside it.
pub const CONTENT_FIELDS: [&str; 3] = ["prompt", "response", "prompt_variables"];

/// Domain separation for content commitments.
const COMMITMENT_TAG: &[u8] = b"aitrail.commitment.v1\0";

/// A record's content, kept apart from its entry (and purgeable): the per-record salt and
/// each present content field as the exact bytes committed to (text as UTF-8;
/// prompt_variables as canonical JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub salt: [u8; 32],
    pub fields: BTreeMap<String, String>,
    /// Keyed hashes of prompt and response (docs/PRIVACY.md), for lookups by text; kept
    /// and deleted with the content, never in the entry.
    pub hashes: KeyedHashes,
}

/// HMAC-SHA256 of prompt and response under the tenant's content-hash key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyedHashes {
    pub prompt: Option<KeyedHash>,
    pub response: Option<KeyedHash>,
}

/// SHA-256(tag ‖ salt ‖ field ‖ 0x00 ‖ content).
pub fn commitment(salt: &[u8; 32], field: &str, content: &str) -> Hash {
    commitment_of_bytes(salt, field, content.as_bytes())
}

/// [`commitment`] of content as stored bytes.
pub fn commitment_of_bytes(salt: &[u8], field: &str, content: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(COMMITMENT_TAG);
    h.update(salt);
    h.update(field.as_bytes());
    h.update([0u8]);
    h.update(content);
    h.finalize().into()
}

/// A record made ready for its entry: canonical JSON with commitments, its content, and
/// the columns a backend indexes.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Canonical JSON of the record object that goes inside the entry.
    pub record_json: String,
    /// `None` when the record has no content fields.
    pub content: Option<Content>,
    pub columns: FieldColumns,
}

/// Split a record into its canonical entry part and its content, committing with `salt`
/// (32 random bytes, fresh for each record).
pub fn prepare(record: &Record, salt: [u8; 32]) -> Prepared {
    let Value::Object(mut map) = serde_json::to_value(record).expect("a record is JSON") else {
        unreachable!("a record serialises to an object")
    };
    let mut fields = BTreeMap::new();
    let mut commitments = Map::new();
    // Keyed hashes are kept beside the content, never in the entry.
    map.remove("prompt_hash");
    map.remove("response_hash");
    let hashes = KeyedHashes { prompt: record.prompt_hash, response: record.response_hash };
    for name in CONTENT_FIELDS {
        let Some(v) = map.remove(name) else { continue };
        let text = match v {
            Value::String(s) => s,
            other => canonical_json(&other),
        };
        let c = commitment(&salt, name, &text);
        commitments.insert(name.to_owned(), Value::String(hex::encode(c)));
        fields.insert(name.to_owned(), text);
    }
    if !commitments.is_empty() {
        map.insert("commitments".to_owned(), Value::Object(commitments));
    }
    let kept = !fields.is_empty() || hashes != KeyedHashes::default();
    let content = kept.then_some(Content { salt, fields, hashes });
    let record = Value::Object(map);
    let record_json = canonical_json(&record);
    let view = RecordView::deserialize(&record).expect("a record's JSON has a tenant_id");
    let columns = FieldColumns::of(&view);
    Prepared { record_json, content, columns }
}

/// The entry bytes. `record_json` is [`Prepared::record_json`]; the keys come out in
/// canonical order: id, record, recorded_at, seq.
pub fn encode(id: &Uuid, recorded_at: Timestamp, seq: u64, record_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_PREFIX.len() + record_json.len() + 120);
    out.extend_from_slice(ENTRY_PREFIX);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(id.hyphenated().to_string().as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    out.extend_from_slice(record_json.as_bytes());
    out.extend_from_slice(b",\"recorded_at\":\"");
    out.extend_from_slice(recorded_at.to_string().as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b'}');
    out
}

/// Why entry bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry does not start with the v1 prefix")]
    UnknownVersion,
    #[error("entry is not valid JSON: {0}")]
    NotJson(String),
    #[error("entry is not in canonical form")]
    NotCanonical,
    #[error("entry field {0} is missing or malformed")]
    BadField(&'static str),
    #[error("content {0} does not match its commitment")]
    ContentMismatch(String),
    #[error("content {0} has no commitment in the entry")]
    UncommittedContent(String),
}

/// An entry taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: Uuid,
    pub seq: u64,
    pub recorded_at: Timestamp,
    /// The record object as in the entry: no content, `commitments` instead.
    pub record: Map<String, Value>,
}

impl Entry {
    /// Parse entry bytes. They must be exactly canonical: re-encoding gives the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let json = bytes.strip_prefix(ENTRY_PREFIX).ok_or(EntryError::UnknownVersion)?;
        let value: Value =
            serde_json::from_slice(json).map_err(|e| EntryError::NotJson(e.to_string()))?;
        if canonical_json(&value).as_bytes() != json {
            return Err(EntryError::NotCanonical);
        }
        let Value::Object(mut top) = value else { return Err(EntryError::BadField("entry")) };
        let id = top
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(EntryError::BadField("id"))?;
        let seq = top.get("seq").and_then(Value::as_u64).ok_or(EntryError::BadField("seq"))?;
        let recorded_at = top
            .get("recorded_at")
            .and_then(Value::as_str)
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .ok_or(EntryError::BadField("recorded_at"))?;
        let Some(Value::Object(record)) = top.remove("record") else {
            return Err(EntryError::BadField("record"));
        };
        if top.len() != 3 {
            return Err(EntryError::BadField("entry (unexpected keys)"));
        }
        Ok(Self { id, seq, recorded_at, record })
    }

    /// The commitment the entry holds for a content field.
    pub fn commitment(&self, field: &str) -> Option<&str> {
        self.record.get("commitments")?.get(field)?.as_str()
    }

    /// Check content against the entry's commitments.
    pub fn check_content(&self, content: &Content) -> Result<(), EntryError> {
        for (field, text) in &content.fields {
            let want = self
                .commitment(field)
                .ok_or_else(|| EntryError::UncommittedContent(field.clone()))?;
            if hex::encode(commitment(&content.salt, field, text)) != want {
                return Err(EntryError::ContentMismatch(field.clone()));
            }
        }
        Ok(())
    }

    /// The stored record: the entry's fields plus whatever content is still kept (content
    /// purged by retention or erasure is simply absent). Content is checked first.
    pub fn to_stored(&self, content: Option<&Content>) -> Result<StoredRecord, EntryError> {
        let mut map = self.record.clone();
        map.remove("commitments");
        if let Some(content) = content {
            self.check_content(content)?;
            for (field, text) in &content.fields {
                let v = if field == "prompt_variables" {
                    serde_json::from_str(text).map_err(|e| EntryError::NotJson(e.to_string()))?
                } else {
                    Value::String(text.clone())
                };
                map.insert(field.clone(), v);
            }
        }
        // Through text: decimals are read from their raw JSON literal.
        let text = serde_json::to_string(&map).map_err(|e| EntryError::NotJson(e.to_string()))?;
        let mut record: Record =
            serde_json::from_str(&text).map_err(|e| EntryError::NotJson(e.to_string()))?;
        if let Some(c) = content {
            (record.prompt_hash, record.response_hash) = (c.hashes.prompt, c.hashes.response);
        }
        Ok(StoredRecord { id: self.id, seq: self.seq, recorded_at: self.recorded_at, record })
    }
}

/// The copies of record fields a backend keeps as columns, for filtering and sorting. They
/// are derived in one place ([`FieldColumns::of`], from a [`RecordView`]) both when a
/// record is written and when `verify` checks a stored row against its entry, so a row
/// edited behind the log's back is caught even where the entry is intact.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldColumns {
    pub tenant_id: String,
    /// The client's event_time in Unix nanoseconds; the row stores recorded_at when absent.
    /// Backends may keep it to the microsecond (PostgreSQL does).
    pub event_time: Option<i64>,
    pub text: [Option<String>; TextField::ALL.len()],
    pub temperature: Option<f64>,
    pub success: bool,
}

impl FieldColumns {
    pub fn of(r: &RecordView<'_>) -> Self {
        Self {
            tenant_id: r.tenant_id.clone().into_owned(),
            event_time: r.event_time_nanos(),
            text: r.text().map(|t| t.map(str::to_owned)),
            temperature: r.temperature_value(),
            success: r.success,
        }
    }
}

/// The parts of a record's JSON that columns and commitments come from, borrowed from the
/// bytes: reading it skips everything else without allocating, which is what lets
/// `verify` check a million entries in seconds.
#[derive(Debug, Deserialize)]
pub struct RecordView<'a> {
    #[serde(borrow)]
    pub tenant_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model_provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub deployment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub safety_mode: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub operation_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub agent_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub feature_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub external_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub temperature: Option<Cow<'a, str>>,
    #[serde(default = "yes")]
    pub success: bool,
    #[serde(borrow, default)]
    pub commitments: Commitments<'a>,
}

/// The content commitments an entry holds, as lower-case hex. A struct, not a map: one
/// allocation fewer for every entry `verify` reads.
#[derive(Debug, Default, Deserialize)]
pub struct Commitments<'a> {
    #[serde(borrow, default)]
    pub prompt: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub prompt_variables: Option<Cow<'a, str>>,
}

impl Commitments<'_> {
    /// Whether the entry commits to any content (so the record was stored with some).
    pub fn is_some(&self) -> bool {
        self.prompt.is_some() || self.response.is_some() || self.prompt_variables.is_some()
    }

    /// The commitment to a content field, if the entry holds one.
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "prompt" => self.prompt.as_deref(),
            "response" => self.response.as_deref(),
            "prompt_variables" => self.prompt_variables.as_deref(),
            _ => None,
        }
    }
}

fn yes() -> bool {
    true
}

impl RecordView<'_> {
    fn event_time_nanos(&self) -> Option<i64> {
        let t = Timestamp::parse_rfc3339(self.event_time.as_deref()?).ok()?;
        Some(t.unix_nanos())
    }

    fn temperature_value(&self) -> Option<f64> {
        self.temperature.as_deref()?.parse().ok()
    }

    /// The text columns, in [`TextField::ALL`] order.
    fn text(&self) -> [Option<&str>; TextField::ALL.len()] {
        TextField::ALL.map(|f| {
            match f {
                TextField::ModelProvider => &self.model_provider,
                TextField::ModelName => &self.model_name,
                TextField::ModelVersion => &self.model_version,
                TextField::DeploymentId => &self.deployment_id,
                TextField::SafetyMode => &self.safety_mode,
                TextField::OperationType => &self.operation_type,
                TextField::UserId => &self.user_id,
                TextField::AgentId => &self.agent_id,
                TextField::SessionId => &self.session_id,
                TextField::FeatureCode => &self.feature_code,
                TextField::ExternalId => &self.external_id,
            }
            .as_deref()
        })
    }
}

/// An entry read quickly, borrowing from its bytes: what `verify` needs, no more. It does
/// not check canonical form (the leaf hash already pins the exact bytes).
#[derive(Debug, Deserialize)]
pub struct EntryView<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub record: RecordView<'a>,
    #[serde(borrow)]
    pub recorded_at: Cow<'a, str>,
    pub seq: u64,
}

impl<'a> EntryView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EntryError> {
        let json = bytes.strip_prefix(ENTRY_PREFIX).ok_or(EntryError::UnknownVersion)?;
        // UTF-8 checked once for the whole entry: from bytes, serde_json would check every
        // string it borrows, one by one, at several times the cost.
        let json = std::str::from_utf8(json).map_err(|e| EntryError::NotJson(e.to_string()))?;
        Self::parse_json(json)
    }

    /// A v1 entry's JSON, after its version line.
    pub fn parse_json(json: &'a str) -> Result<Self, EntryError> {
        serde_json::from_str(json).map_err(|e| EntryError::NotJson(e.to_string()))
    }

    /// Check content against the entry's commitments.
    pub fn check_content(&self, content: &Content) -> Result<(), EntryError> {
        let fields = content.fields.iter().map(|(f, t)| (f.as_str(), t.as_bytes()));
        self.check_stored_content(&content.salt, fields)
    }

    /// Check content as stored (the salt's bytes, each field's bytes) against the entry's
    /// commitments.
    pub fn check_stored_content<'c>(
        &self,
        salt: &[u8],
        fields: impl IntoIterator<Item = (&'c str, &'c [u8])>,
    ) -> Result<(), EntryError> {
        for (field, text) in fields {
            let want = self
                .record
                .commitments
                .get(field)
                .ok_or_else(|| EntryError::UncommittedContent(field.to_owned()))?;
            // Encoding ours (a table lookup) is much cheaper than decoding theirs, and the
            // canonical entry holds lower-case hex, so the texts must be equal.
            let mut ours = [0u8; 64];
            hex::encode_to_slice(commitment_of_bytes(salt, field, text), &mut ours)
                .expect("64 bytes hold 32 as hex");
            if ours != want.as_bytes() {
                return Err(EntryError::ContentMismatch(field.to_owned()));
            }
        }
        Ok(())
    }
}

/// Every column a stored row keeps: the server's fields and the [`FieldColumns`].
#[derive(Debug, Clone, PartialEq)]
pub struct RowColumns {
    pub id: String,
    pub seq: i64,
    pub recorded_at: String,
    pub event_time: i64,
    pub fields: FieldColumns,
}

impl RowColumns {
    pub fn new(id: &Uuid, seq: u64, recorded_at: Timestamp, fields: FieldColumns) -> Self {
        Self {
            id: id.hyphenated().to_string(),
            seq: seq as i64,
            recorded_at: recorded_at.to_string(),
            event_time: fields.event_time.unwrap_or_else(|| recorded_at.unix_nanos()),
            fields,
        }
    }

    /// The columns, borrowed.
    pub fn borrow(&self) -> ColumnsRef<'_> {
        ColumnsRef {
            id: &self.id,
            seq: self.seq,
            recorded_at: &self.recorded_at,
            event_time: self.event_time,
            tenant_id: &self.fields.tenant_id,
            text: self.fields.text.each_ref().map(|t| t.as_deref()),
            temperature: self.fields.temperature,
            success: self.fields.success,
        }
    }

    /// Names of the columns where this stored row differs from what its entry says they
    /// must hold.
    pub fn differences(&self, entry: &EntryView<'_>) -> Vec<&'static str> {
        self.borrow().differences(entry)
    }
}

/// A stored row's columns, borrowed from a backend's buffers (verify reads millions of
/// rows without copying them) or from a [`RowColumns`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnsRef<'a> {
    pub id: &'a str,
    pub seq: i64,
    pub recorded_at: &'a str,
    pub event_time: i64,
    pub tenant_id: &'a str,
    pub text: [Option<&'a str>; TextField::ALL.len()],
    pub temperature: Option<f64>,
    pub success: bool,
}

impl ColumnsRef<'_> {
    /// Names of the columns where this stored row differs from what its entry says they
    /// must hold (computed with the same functions the writer used).
    pub fn differences(&self, entry: &EntryView<'_>) -> Vec<&'static str> {
        let r = &entry.record;
        let mut diff = Vec::new();
        let mut check = |same: bool, name| {
            if !same {
                diff.push(name)
            }
        };
        let event_time = r.event_time_nanos().or_else(|| {
            Timestamp::parse_rfc3339(&entry.recorded_at).ok().map(Timestamp::unix_nanos)
        });
        check(self.id == entry.id, "id");
        check(self.tenant_id == r.tenant_id, "tenant_id");
        check(self.seq == entry.seq as i64, "seq");
        check(self.recorded_at == entry.recorded_at, "recorded_at");
        // Microseconds: what every backend's column holds (PostgreSQL's timestamptz); the
        // entry keeps the client's exact text.
        let micros = |nanos: i64| nanos.div_euclid(1000);
        check(Some(micros(self.event_time)) == event_time.map(micros), "event_time");
        for ((f, stored), logged) in TextField::ALL.iter().zip(self.text).zip(r.text()) {
            check(stored == logged, f.name());
        }
        check(self.temperature == r.temperature_value(), "temperature");
        check(self.success == r.success, "success");
        diff
    }
}

/// Canonical JSON (docs/FORMAT.md): no whitespace; object keys sorted by their UTF-8
/// bytes; strings escaped as JSON requires and nothing more (`"`, `\`, and U+0000–U+001F,
/// as `\b \f \n \r \t` or `\u00xx`); numbers as the client wrote them, except that an
/// exponent without a sign gets `+` (`2e3` is written `2e+3`).
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    // serde_json's compact writer escapes exactly as canonical JSON requires.
    let write_str = |s: &str, out: &mut Vec<u8>| {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    };
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here, whatever order the map keeps.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_record;

    fn sample() -> Record {
        parse_record(
            r#"{"tenant_id":"org-1","model_name":"gpt-4o","temperature":0.70,
                "prompt":"What is AI?","response":"AI is…","prompt_variables":{"b":1.50,"a":"x"},
                "model_config":{"top_p":0.90,"z":[1,2e3]}}"#,
            "",
        )
        .unwrap()
    }

    #[test]
    fn entry_is_canonical_and_round_trips() {
        let p = prepare(&sample(), [3; 32]);
        let id = Uuid::now_v7();
        let at = Timestamp::parse_rfc3339("2026-01-30T10:30:00.5Z").unwrap();
        let bytes = encode(&id, at, 7, &p.record_json);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("aitrail.entry.v1\n{\"id\":"), "{text}");
        // Literals kept (an exponent gets an explicit sign), keys sorted, no content.
        assert!(text.contains(r#""model_config":{"top_p":0.90,"z":[1,2e+3]}"#), "{text}");
        assert!(!text.contains("What is AI?"));
        assert!(text.contains(r#""commitments":{"prompt":""#));
        let e = Entry::decode(&bytes).unwrap();
        assert_eq!((e.id, e.seq, e.recorded_at), (id, 7, at));
        let view = EntryView::parse(&bytes).unwrap();
        let columns = RowColumns::new(&id, 7, at, p.columns.clone());
        assert!(columns.differences(&view).is_empty(), "{:?}", columns.differences(&view));
        assert_eq!(columns.fields.text[1].as_deref(), Some("gpt-4o")); // model_name
        assert_eq!(columns.fields.temperature, Some(0.7));
        let mut edited = columns.clone();
        edited.fields.text[1] = Some("gpt-5".into());
        edited.recorded_at = "2020-01-01T00:00:00Z".into();
        assert_eq!(edited.differences(&view), ["recorded_at", "model_name"]);
        let stored = e.to_stored(p.content.as_ref()).unwrap();
        assert_eq!(stored.record, sample());
        // Purged content: the record reads back without it, the entry is unchanged.
        let purged = e.to_stored(None).unwrap();
        assert!(purged.record.prompt.is_none() && purged.record.model_name.is_some());
    }

    #[test]
    fn content_must_match_its_commitment() {
        let p = prepare(&sample(), [3; 32]);
        let bytes = encode(&Uuid::now_v7(), Timestamp::now(), 0, &p.record_json);
        let e = Entry::decode(&bytes).unwrap();
        let mut content = p.content.unwrap();
        content.fields.insert("prompt".into(), "What is AI!".into());
        assert_eq!(e.check_content(&content), Err(EntryError::ContentMismatch("prompt".into())));
    }

    #[test]
    fn a_guess_cannot_be_confirmed_without_the_salt() {
        // Same content, different salts: unrelated commitments.
        assert_ne!(commitment(&[1; 32], "prompt", "hi"), commitment(&[2; 32], "prompt", "hi"));
        assert_ne!(commitment(&[1; 32], "prompt", "hi"), commitment(&[1; 32], "response", "hi"));
    }

    #[test]
    fn non_canonical_entries_are_refused() {
        let p = prepare(&sample(), [3; 32]);
        let bytes = encode(&Uuid::now_v7(), Timestamp::now(), 0, &p.record_json);
        let spaced = String::from_utf8(bytes).unwrap().replacen("\"seq\":", "\"seq\": ", 1);
        assert_eq!(Entry::decode(spaced.as_bytes()), Err(EntryError::NotCanonical));
        assert_eq!(Entry::decode(b"{}"), Err(EntryError::UnknownVersion));
    }

    #[test]
    fn canonical_escaping() {
        let v: Value = serde_json::from_str(r#"{"b":"\u0001\n\"\\é\u2028","a":null}"#).unwrap();
        assert_eq!(canonical_json(&v), "{\"a\":null,\"b\":\"\\u0001\\n\\\"\\\\é\u{2028}\"}");
    }
}
