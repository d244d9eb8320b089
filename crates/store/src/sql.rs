//! The SQL every relational backend shares: the listing query, built once with the
//! backend's placeholder style and mapped to its own value types. Column names come from
//! a closed enum, so nothing of the client's reaches the SQL text.

use aitrail_core::query::{Bound, TextField};
use aitrail_core::{Cursor, Query, Timestamp};
use uuid::Uuid;

use crate::StoreError;

/// The columns every record read selects, over `records r`, `contents c`, the data
/// keys `k` (`data_keys`, joined on `c.key_id`) and their bucket keys `b` (`bucket_keys`,
/// joined on `k.bucket_key`); `entry` names
/// where the backend keeps the entry (`r.entry`, `e.entry`). Readers find them by name
/// ([`RecordColumns::find`]), so their order here is free.
pub fn record_columns(entry: &str) -> String {
    let text: Vec<String> = TextField::ALL.iter().map(|f| format!("r.{}", f.name())).collect();
    format!(
        "r.pos, r.id, r.tenant_id, r.seq, r.recorded_at, r.event_time, {}, r.temperature, \
         r.success, {entry}, c.key_id, c.sealed, {KEY_COLUMNS}, c.prompt_hash, c.response_hash",
        text.join(", ")
    )
}

/// The data key columns a read of sealed content selects: the key wrapped, the bucket key
/// it is wrapped under, and that bucket key's row.
pub const KEY_COLUMNS: &str = "k.wrapped, k.bucket_key, b.bucket, b.wrapped AS bucket_wrapped";

/// Where each column of a record read stands in a result, found once per statement from
/// its column names: a row is then read by position at no cost, yet the select list and
/// the readers agree by name, so a column added, dropped or moved is found or named as
/// missing, never read in another's place. To add a column: the select list above, a
/// field here, and the readers of both backends (`read.rs`).
#[derive(Clone, Debug)]
pub struct RecordColumns {
    pub pos: usize,
    pub id: usize,
    pub tenant_id: usize,
    pub seq: usize,
    pub recorded_at: usize,
    pub event_time: usize,
    /// The filterable text columns, in [`TextField::ALL`]'s order.
    pub text: [usize; TextField::ALL.len()],
    pub temperature: usize,
    pub success: usize,
    pub entry: usize,
    pub key_id: usize,
    pub sealed: usize,
    pub wrapped: usize,
    pub bucket_key: usize,
    pub bucket: usize,
    pub bucket_wrapped: usize,
    pub prompt_hash: usize,
    pub response_hash: usize,
}

impl RecordColumns {
    /// The columns among a result's `names`; an error names one that is missing or there
    /// twice.
    pub fn find(names: &[&str]) -> Result<Self, StoreError> {
        let at = |name: &str| column_at(names, name);
        let mut text = [0; TextField::ALL.len()];
        for (at_text, field) in text.iter_mut().zip(TextField::ALL) {
            *at_text = at(field.name())?;
        }
        Ok(Self {
            pos: at("pos")?,
            id: at("id")?,
            tenant_id: at("tenant_id")?,
            seq: at("seq")?,
            recorded_at: at("recorded_at")?,
            event_time: at("event_time")?,
            text,
            temperature: at("temperature")?,
            success: at("success")?,
            entry: at("entry")?,
            key_id: at("key_id")?,
            sealed: at("sealed")?,
            wrapped: at("wrapped")?,
            bucket_key: at("bucket_key")?,
            bucket: at("bucket")?,
            bucket_wrapped: at("bucket_wrapped")?,
            prompt_hash: at("prompt_hash")?,
            response_hash: at("response_hash")?,
        })
    }
}

/// Where the column `name` is among a result's `names`: exactly one, or an error.
pub fn column_at(names: &[&str], name: &str) -> Result<usize, StoreError> {
    let mut found = names.iter().enumerate().filter(|(_, n)| **n == name).map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(i), None) => Ok(i),
        (None, _) => Err(StoreError::Backend(format!("the query reads no column {name}"))),
        (Some(_), Some(_)) => Err(StoreError::Backend(format!("the query reads {name} twice"))),
    }
}

/// A query parameter, before the backend turns it into its own value type.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Compared with `event_time` (SQLite: Unix nanoseconds; PostgreSQL: timestamptz).
    Time(Timestamp),
    /// Compared with `id` (SQLite: hyphenated text; PostgreSQL: uuid).
    Uuid(Uuid),
    Bytes(Vec<u8>),
}

/// The SQL of a listing, with its parameters; `mark(i)` is the backend's placeholder for
/// the i-th (1-based). The page (n+1 rows, newest first unless the query says oldest
/// first) is cut from `records r` first and only then joined (`join`, e.g. to the
/// contents), so a join never runs over every match:
///
/// `SELECT {columns} FROM (SELECT * FROM records r WHERE … ORDER BY r.pos DESC LIMIT n+1)
/// r {join} ORDER BY r.pos DESC`
pub fn list(
    q: &Query,
    columns: &str,
    join: &str,
    content_key: &str,
    mark: impl Fn(usize) -> String,
) -> (String, Vec<Param>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut add = |clause: &str, values: Vec<Param>| {
        let marks: Vec<String> = (0..values.len()).map(|i| mark(params.len() + i + 1)).collect();
        clauses.push(clause.replace("{}", &marks.join(", ")));
        params.extend(values);
    };
    match &q.tenant_id {
        Some(t) => add("r.tenant_id = {}", vec![Param::Text(t.as_str().to_owned())]),
        // aitrail's own logs (the access log) are listed only when named.
        None => add("r.tenant_id NOT LIKE 'aitrail.%'", Vec::new()),
    }
    if let Some(t) = q.since {
        add("r.event_time >= {}", vec![Param::Time(t)]);
    }
    if let Some(t) = q.until {
        add("r.event_time < {}", vec![Param::Time(t)]);
    }
    for field in TextField::ALL {
        if let Some(values) = q.text_values(field) {
            let values = values.iter().map(|v| Param::Text(v.as_str().to_owned())).collect();
            add(&format!("r.{} IN ({{}})", field.name()), values);
        }
    }
    for bound in &q.temperature {
        let (op, v) = match *bound {
            Bound::AtLeast(v) => (">=", v),
            Bound::AtMost(v) => ("<=", v),
            Bound::Above(v) => (">", v),
            Bound::Below(v) => ("<", v),
        };
        add(&format!("r.temperature {op} {{}}"), vec![Param::Real(v)]);
    }
    if let Some(s) = q.success {
        add("r.success = {}", vec![Param::Bool(s)]);
    }
    if !q.ids.is_empty() {
        add("r.id IN ({})", q.ids.iter().copied().map(Param::Uuid).collect());
    }
    // Text not yet hashed (a caller without the tenant's key) matches nothing.
    if !q.content_texts.is_empty() {
        add("1 = 0", Vec::new());
    }
    for (field, hash) in &q.content_hashes {
        let column = field.hash_column();
        add(
            &format!(
                "EXISTS (SELECT 1 FROM contents h WHERE h.{content_key} = r.{content_key} AND h.{column} = {{}})"
            ),
            vec![Param::Bytes(hash.0.to_vec())],
        );
    }
    if let Some(below) = q.seq_below {
        add("r.seq < {}", vec![Param::Int(i64::try_from(below).unwrap_or(i64::MAX))]);
    }
    let (after, order) = if q.oldest_first { (">", "ASC") } else { ("<", "DESC") };
    if let Some(Cursor(pos)) = q.cursor {
        add(&format!("r.pos {after} {{}}"), vec![Param::Int(pos)]);
    }
    let mut page = "SELECT * FROM records r".to_owned();
    if !clauses.is_empty() {
        page.push_str(" WHERE ");
        page.push_str(&clauses.join(" AND "));
    }
    page.push_str(&format!(" ORDER BY r.pos {order} LIMIT {}", mark(params.len() + 1)));
    params.push(Param::Int(i64::from(q.limit) + 1));
    (format!("SELECT {columns} FROM ({page}) r {join} ORDER BY r.pos {order}"), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_columns_are_found_by_name_wherever_they_stand() {
        let select = record_columns("e.entry");
        let names: Vec<&str> =
            select.split(", ").map(|c| c.rsplit([' ', '.']).next().unwrap()).collect();
        let found = RecordColumns::find(&names).unwrap();
        assert_eq!(names[found.pos], "pos");
        assert_eq!(names[found.entry], "entry");
        assert_eq!(names[found.text[0]], TextField::ALL[0].name());
        assert_eq!(names[found.response_hash], "response_hash");
        let mut moved = names.clone();
        moved.reverse();
        assert_eq!(moved[RecordColumns::find(&moved).unwrap().seq], "seq");
        let missing: Vec<&str> = names.iter().copied().filter(|n| *n != "sealed").collect();
        let error = RecordColumns::find(&missing).unwrap_err().to_string();
        assert!(error.contains("no column sealed"), "{error}");
        let twice = [names.as_slice(), &["pos"]].concat();
        assert!(RecordColumns::find(&twice).unwrap_err().to_string().contains("pos twice"));
    }

    #[test]
    fn placeholders_number_every_parameter_in_order() {
        let q = Query::from_pairs([
            ("model_provider", "openai"),
            ("model_provider", "anthropic"),
            ("temperature_gt", "0.8"),
            ("success", "true"),
        ])
        .unwrap();
        let (sql, params) = list(&q, "r.pos", "", "pos", |i| format!("${i}"));
        assert!(sql.contains("r.model_provider IN ($1, $2)"), "{sql}");
        assert!(sql.contains("r.temperature > $3 AND r.success = $4"), "{sql}");
        assert!(sql.contains("ORDER BY r.pos DESC LIMIT $5) r"), "{sql}");
        assert_eq!(params.len(), 5);
        assert_eq!(params[0], Param::Text("openai".into()));
        assert_eq!(params[4], Param::Int(51));
    }
}
