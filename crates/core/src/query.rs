//! The listing query: filters an auditor asks with, parsed from `key=value` pairs (the HTTP
//! query string, or the CLI's flags) into a value every backend can run.

use std::fmt;
use std::str::FromStr;

use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

pub use crate::record::TextField;
use crate::value::{FieldError, ShortText, TenantId, Timestamp};

/// Records per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most records per page.
pub const MAX_LIMIT: u32 = 1000;

/// A numeric comparison on temperature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
    Above(f64),
    Below(f64),
}

/// Where a page starts: an opaque position in the store's insertion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Cursor).map_err(|_| "not a cursor from a previous page".into())
    }
}

/// A listing: every filter is optional and they all must hold. Newest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub tenant_id: Option<TenantId>,
    /// Inclusive lower bound on event_time.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on event_time.
    pub until: Option<Timestamp>,
    /// Each field must equal one of its values.
    pub text: Vec<(TextField, Vec<ShortText>)>,
    pub temperature: Vec<Bound>,
    pub success: Option<bool>,
    /// Only these records (`id=` given once or more).
    pub ids: Vec<Uuid>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
    /// Oldest first (the cursor then moves forward): how exports read a log in seq order.
    /// Not a query parameter.
    pub oldest_first: bool,
    /// Only records below this seq (an export's checkpoint size). Not a query parameter.
    pub seq_below: Option<u64>,
    /// `prompt_text` / `response_text`: records whose prompt (response) is exactly this
    /// text, before [`Query::hash_texts`] turns them into `content_hashes`.
    pub content_texts: Vec<(ContentField, String)>,
    /// Records whose content field has this keyed hash (docs/PRIVACY.md).
    pub content_hashes: Vec<(ContentField, crate::value::KeyedHash)>,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            tenant_id: None,
            since: None,
            until: None,
            text: Vec::new(),
            temperature: Vec::new(),
            success: None,
            ids: Vec::new(),
            limit: DEFAULT_LIMIT,
            cursor: None,
            oldest_first: false,
            seq_below: None,
            content_texts: Vec::new(),
            content_hashes: Vec::new(),
        }
    }
}

/// The parameters that take one value: given twice, a query is refused (a filter such as
/// `model_name` may be repeated, and matches any of its values).
pub const SINGLE_VALUED: &[&str] = &[
    "tenant_id",
    "since",
    "until",
    "temperature_min",
    "temperature_max",
    "temperature_gt",
    "temperature_lt",
    "success",
    "limit",
    "cursor",
];

/// Every query parameter a listing accepts.
pub const QUERY_PARAMS: &[&str] = &[
    "tenant_id",
    "since",
    "until",
    "model_provider",
    "model_name",
    "model_version",
    "deployment_id",
    "safety_mode",
    "temperature_min",
    "temperature_max",
    "temperature_gt",
    "temperature_lt",
    "operation_type",
    "user_id",
    "agent_id",
    "session_id",
    "feature_code",
    "external_id",
    "success",
    "id",
    "prompt_text",
    "response_text",
    "limit",
    "cursor",
];

/// A content field a lookup by keyed hash can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentField {
    Prompt,
    Response,
}

impl ContentField {
    /// Its keyed hash's column.
    pub fn hash_column(self) -> &'static str {
        match self {
            ContentField::Prompt => "prompt_hash",
            ContentField::Response => "response_hash",
        }
    }
}

/// A text looked up without its tenant: each tenant's texts are hashed under its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("texts are looked up by each tenant's own keyed hash: name the tenant")]
pub struct TextsNeedTenant;

impl Query {
    /// Turn `prompt_text` / `response_text` into keyed hashes under the query's tenant's
    /// key, derived from `secret` (`policy::tenant_hash_key`), so the text itself goes no
    /// further. The server and the CLI on a store both look texts up through this.
    pub fn hash_texts(&mut self, secret: &[u8; 32]) -> Result<(), TextsNeedTenant> {
        if self.content_texts.is_empty() {
            return Ok(());
        }
        let Some(tenant) = &self.tenant_id else { return Err(TextsNeedTenant) };
        let key = crate::policy::tenant_hash_key(secret, tenant);
        for (field, text) in std::mem::take(&mut self.content_texts) {
            self.content_hashes.push((field, crate::value::keyed_hash(&key, &text)));
        }
        Ok(())
    }
}

impl Query {
    /// Parse `key=value` pairs. A text filter given more than once matches any of its values
    /// (`model_provider=openai&model_provider=anthropic`); unknown keys are refused so a typo
    /// never silently widens an auditor's answer.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, FieldError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut q = Query::default();
        let mut unknown = Vec::new();
        let mut given = [false; SINGLE_VALUED.len()];
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            let err = |m: String| FieldError::new(key, m);
            // A second value of a single-valued parameter is refused, not one of them kept.
            if let Some(at) = SINGLE_VALUED.iter().position(|k| *k == key)
                && std::mem::replace(&mut given[at], true)
            {
                return Err(err("given twice: this parameter takes one value".into()));
            }
            match key {
                "tenant_id" => q.tenant_id = Some(TenantId::parse(value).map_err(err)?),
                "since" => q.since = Some(parse_time(value).map_err(err)?),
                "until" => q.until = Some(parse_time(value).map_err(err)?),
                "temperature_min" => {
                    q.temperature.push(Bound::AtLeast(number(value).map_err(err)?))
                }
                "temperature_max" => q.temperature.push(Bound::AtMost(number(value).map_err(err)?)),
                "temperature_gt" => q.temperature.push(Bound::Above(number(value).map_err(err)?)),
                "temperature_lt" => q.temperature.push(Bound::Below(number(value).map_err(err)?)),
                "success" => {
                    q.success = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(err("must be true or false".into())),
                    })
                }
                "limit" => {
                    q.limit =
                        value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                            || err(format!("must be a whole number from 1 to {MAX_LIMIT}")),
                        )?
                }
                "cursor" => q.cursor = Some(value.parse().map_err(err)?),
                "prompt_text" => q.content_texts.push((ContentField::Prompt, value.to_owned())),
                "response_text" => q.content_texts.push((ContentField::Response, value.to_owned())),
                "id" => q.ids.push(
                    Uuid::parse_str(value).map_err(|_| err("not a record id (a UUID)".into()))?,
                ),
                _ => match TextField::ALL.iter().find(|f| f.name() == key) {
                    Some(&field) => {
                        let v = ShortText::parse(value.to_owned()).map_err(err)?;
                        match q.text.iter_mut().find(|(f, _)| *f == field) {
                            Some((_, values)) => values.push(v),
                            None => q.text.push((field, vec![v])),
                        }
                    }
                    None => unknown.push(key.to_owned()),
                },
            }
        }
        if !unknown.is_empty() {
            return Err(FieldError::new(
                "query",
                format!(
                    "unknown parameters: {} (known: {})",
                    unknown.join(", "),
                    QUERY_PARAMS.join(", ")
                ),
            ));
        }
        Ok(q)
    }

    /// The values a text field must match, if it is filtered on.
    pub fn text_values(&self, field: TextField) -> Option<&[ShortText]> {
        self.text.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_slice())
    }
}

/// RFC 3339, or a date `YYYY-MM-DD` meaning its midnight UTC.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    const MSG: &str = "not an RFC 3339 timestamp or a YYYY-MM-DD date";
    if s.len() == 10 {
        let date = Date::parse(s, format_description!("[year]-[month]-[day]")).map_err(|_| MSG)?;
        return Timestamp::from_datetime(OffsetDateTime::new_utc(date, Time::MIDNIGHT));
    }
    Timestamp::parse_rfc3339(s).map_err(|_| MSG.to_owned())
}

fn number(s: &str) -> Result<f64, String> {
    crate::value::Decimal::parse(s).map(|d| d.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_auditor_questions() {
        let q = Query::from_pairs([("temperature_gt", "0.8")]).unwrap();
        assert_eq!(q.temperature, [Bound::Above(0.8)]);
        let q = Query::from_pairs([("model_provider", "anthropic"), ("model_provider", "openai")])
            .unwrap();
        let values: Vec<_> =
            q.text_values(TextField::ModelProvider).unwrap().iter().map(|v| v.as_str()).collect();
        assert_eq!(values, ["anthropic", "openai"]);
        let q = Query::from_pairs([("since", "2026-10-01"), ("until", "2026-11-01T00:00:00Z")])
            .unwrap();
        assert_eq!(q.since.unwrap().to_string(), "2026-10-01T00:00:00Z");
        assert_eq!(q.until.unwrap().to_string(), "2026-11-01T00:00:00Z");
    }

    #[test]
    fn names_bad_parameters() {
        let e = Query::from_pairs([("since", "yesterday")]).unwrap_err();
        assert_eq!(e.to_string(), "since: not an RFC 3339 timestamp or a YYYY-MM-DD date");
        let e = Query::from_pairs([("limit", "0")]).unwrap_err();
        assert_eq!(e.field, "limit");
        let e = Query::from_pairs([("temprature_min", "1"), ("x", "2")]).unwrap_err();
        assert!(e.message.starts_with("unknown parameters: temprature_min, x"), "{e}");
        assert!(Query::from_pairs([("success", "yes")]).is_err());
        assert!(Query::from_pairs([("temperature_min", "abc")]).is_err());
        // A single-valued parameter given twice is refused, whichever value came last.
        for key in SINGLE_VALUED {
            let value = if *key == "tenant_id" { "t" } else { "x" };
            let e = Query::from_pairs([(*key, value), (*key, value)]).unwrap_err();
            assert_eq!(e.field, *key);
        }
        let e = Query::from_pairs([("tenant_id", "a"), ("tenant_id", "b")]).unwrap_err();
        assert_eq!(e.to_string(), "tenant_id: given twice: this parameter takes one value");
    }
}
