//! Value types of the record: each can only hold a valid value, and each says what was
//! wrong with a rejected one in words a client can act on.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest accepted identifier-like text (ids, names, labels), in bytes.
pub const MAX_SHORT_TEXT: usize = 1024;

/// A tenant id: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
///
/// Narrow on purpose: it names a log (checkpoint origin `<name>/<tenant_id>`) and appears in
/// file names and URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if s.is_empty() || s.len() > 64 || !ok_start || !ok_chars {
            return Err(
                "must be 1 to 64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                    .into(),
            );
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// aitrail's own logs (the access log) have ids beginning with `aitrail.`, in any
    /// case (`AITRAIL.system` would read as the system log to a person); no client record
    /// may name one.
    pub fn is_reserved(&self) -> bool {
        self.0.get(..8).is_some_and(|prefix| prefix.eq_ignore_ascii_case("aitrail."))
    }

    /// The access log's tenant id.
    pub fn access_log() -> Self {
        Self("aitrail.access".to_owned())
    }

    /// The system log's tenant id: retention runs, erasures, legal holds.
    pub fn system_log() -> Self {
        Self("aitrail.system".to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

/// Identifier-like text: non-empty, at most [`MAX_SHORT_TEXT`] bytes, no NUL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ShortText(String);

impl ShortText {
    pub fn parse(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty (omit the field or send null instead)".into());
        }
        if s.len() > MAX_SHORT_TEXT {
            return Err(format!("longer than {MAX_SHORT_TEXT} bytes"));
        }
        reject_nul(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ShortText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// Free text of any length (prompts, responses, error messages). Only NUL is refused: no
/// backend can store it in text and it is never meaningful in a prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub fn parse(s: String) -> Result<Self, String> {
        reject_nul(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(de::Error::custom)
    }
}

fn reject_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err("must not contain NUL (\\u0000) characters".into());
    }
    Ok(())
}

/// A decimal number kept as the exact text the client sent (`"0.70"` stays `"0.70"`), with
/// its value as `f64` for numeric comparison. Accepts a JSON string or a JSON number; the
/// grammar is JSON's number grammar.
#[derive(Clone, Debug, PartialEq)]
pub struct Decimal {
    literal: String,
    value: f64,
}

impl Decimal {
    pub fn parse(literal: &str) -> Result<Self, String> {
        if !is_json_number(literal) {
            return Err("not a decimal number".into());
        }
        let value: f64 = literal.parse().map_err(|_| "not a decimal number".to_string())?;
        if !value.is_finite() {
            return Err("out of range".into());
        }
        Ok(Self { literal: literal.to_owned(), value })
    }

    pub fn as_str(&self) -> &str {
        &self.literal
    }

    pub fn value(&self) -> f64 {
        self.value
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.literal)
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

impl Serialize for Decimal {
    /// Always as a JSON string, so no reader can lose the literal to floating point.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.literal)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The raw JSON text is the only way to keep a number's literal ("0.70", "1e-3").
        // Owned: a JSON value being deserialized (not text) can only give it so.
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        let literal = if text.starts_with('"') {
            serde_json::from_str::<String>(text).map_err(de::Error::custom)?
        } else if is_json_number(text) {
            text.to_owned()
        } else {
            return Err(de::Error::custom("not a decimal number"));
        };
        Self::parse(&literal).map_err(de::Error::custom)
    }
}

/// A decimal that must not be negative (temperature, cost).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NonNegativeDecimal(Decimal);

impl NonNegativeDecimal {
    pub fn parse(literal: &str) -> Result<Self, String> {
        Self::new(Decimal::parse(literal)?)
    }

    fn new(d: Decimal) -> Result<Self, String> {
        if d.value < 0.0 || d.literal.starts_with('-') {
            return Err("must not be negative".into());
        }
        Ok(Self(d))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn value(&self) -> f64 {
        self.0.value()
    }
}

impl fmt::Display for NonNegativeDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for NonNegativeDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Decimal::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A count (tokens, milliseconds, records): a whole number from 0 to 2^63-1, the range every
/// backend stores natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Count(u64);

impl Count {
    pub const MAX: u64 = i64::MAX as u64;

    pub fn new(n: u64) -> Result<Self, String> {
        if n > Self::MAX {
            return Err(format!("larger than {}", Self::MAX));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative whole number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Count::new(n).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom("must not be negative")),
                }
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
                Err(E::custom("must be a whole number"))
            }
        }
        // Not deserialize_any: with arbitrary_precision that hands numbers over as maps.
        d.deserialize_u64(CountVisitor)
    }
}

/// A point in time, always held in UTC. Parsed from RFC 3339; written as RFC 3339 in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        // Microseconds: what every backend stores exactly (PostgreSQL timestamptz).
        let micros = now.microsecond();
        Self(now.replace_microsecond(micros).unwrap_or(now))
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| "not an RFC 3339 timestamp (e.g. 2026-01-30T10:30:00Z)".to_string())?;
        Self::from_datetime(t)
    }

    pub fn from_datetime(t: OffsetDateTime) -> Result<Self, String> {
        let t = t.to_offset(time::UtcOffset::UTC);
        if !(1970..=9999).contains(&t.year()) {
            return Err("year out of range 1970..9999".into());
        }
        Ok(Self(t))
    }

    pub fn from_unix_nanos(n: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).ok().map(Self)
    }

    /// Nanoseconds since 1970 (fits i64 until 2262, checked at parse by the year range).
    pub fn unix_nanos(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos()).unwrap_or(i64::MAX)
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.format(&Rfc3339).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(de::Error::custom)
    }
}

/// A JSON object (model_config, prompt_variables, attributes). Its strings and keys may not
/// hold NUL, for the same reason as [`Text`].
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
#[serde(transparent)]
pub struct JsonObject(serde_json::Map<String, serde_json::Value>);

impl JsonObject {
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    pub fn into_map(self) -> serde_json::Map<String, serde_json::Value> {
        self.0
    }

    pub fn from_map(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        fn check(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::String(s) => !s.contains('\0'),
                serde_json::Value::Array(a) => a.iter().all(check),
                serde_json::Value::Object(o) => {
                    o.iter().all(|(k, v)| !k.contains('\0') && check(v))
                }
                _ => true,
            }
        }
        if !map.iter().all(|(k, v)| !k.contains('\0') && check(v)) {
            return Err("must not contain NUL (\\u0000) characters".into());
        }
        Ok(Self(map))
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(CheckedValue)? {
            serde_json::Value::Object(map) => Self::from_map(map).map_err(de::Error::custom),
            _ => Err(de::Error::custom("must be a JSON object")),
        }
    }
}

/// A JSON value read with every object's keys checked: a key given twice is refused (the
/// entry is evidence; serde_json's own `Value` would keep the last one silently). Numbers
/// keep their literal, as `Value` does with `arbitrary_precision`.
struct CheckedValue;

/// The key under which serde_json (`arbitrary_precision`) hands a number's literal over.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

struct Checked(serde_json::Value);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedValue).map(Checked)
    }
}

impl<'de> de::Visitor<'de> for CheckedValue {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(CheckedValue)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(Checked(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(serde_json::Value::Array(values))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == NUMBER_TOKEN && object.is_empty() {
                let literal: String = map.next_value()?;
                let number = literal.parse().map_err(|_| de::Error::custom("not a number"))?;
                return Ok(serde_json::Value::Number(number));
            }
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} appears twice in one object: each key may appear once"
                )));
            }
            let Checked(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_tenant_prefixes_are_reserved_in_any_case() {
        for reserved in ["aitrail.system", "AITRAIL.system", "Aitrail.access", "aItRaIl.x"] {
            assert!(TenantId::parse(reserved).unwrap().is_reserved(), "{reserved}");
        }
        for free in ["aitrail", "aitrailx.system", "org-1", "a"] {
            assert!(!TenantId::parse(free).unwrap().is_reserved(), "{free}");
        }
    }

    use super::*;

    #[test]
    fn json_number_grammar() {
        for ok in ["0", "0.7", "0.70", "1e-3", "2E+10", "-1.5", "10"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "abc", ".7", "07", "1.", "1e", "+1", "0x10", "1 ", "NaN", "inf", "-"] {
            assert!(!is_json_number(bad), "{bad:?}");
        }
    }

    #[test]
    fn decimal_keeps_literal_from_number_and_string() {
        let d: Decimal = serde_json::from_str("0.70").unwrap();
        assert_eq!(d.as_str(), "0.70");
        let d: Decimal = serde_json::from_str("\"0.7\"").unwrap();
        assert_eq!(d.as_str(), "0.7");
        assert!((d.value() - 0.7).abs() < f64::EPSILON);
        let e = serde_json::from_str::<Decimal>("\"abc\"").unwrap_err();
        assert!(e.to_string().starts_with("not a decimal number"), "{e}");
        let e = serde_json::from_str::<Decimal>("1e400").unwrap_err();
        assert!(e.to_string().starts_with("out of range"), "{e}");
    }

    #[test]
    fn non_negative_refuses_negative_zero_literal_too() {
        assert!(NonNegativeDecimal::parse("-0.0").is_err());
        assert!(NonNegativeDecimal::parse("0").is_ok());
    }

    #[test]
    fn count_messages() {
        let e = serde_json::from_str::<Count>("-3").unwrap_err().to_string();
        assert!(e.starts_with("must not be negative"), "{e}");
        let e = serde_json::from_str::<Count>("1.5").unwrap_err().to_string();
        assert!(e.starts_with("must be a whole number"), "{e}");
        let e = serde_json::from_str::<Count>("\"5\"").unwrap_err().to_string();
        assert!(e.contains("a non-negative whole number"), "{e}");
        assert_eq!(serde_json::from_str::<Count>("42").unwrap().get(), 42);
    }

    #[test]
    fn tenant_ids() {
        assert!(TenantId::parse("org-123").is_ok());
        assert!(TenantId::parse("a.b_c").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_normalise_to_utc() {
        let t = Timestamp::parse_rfc3339("2026-01-30T12:30:00+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-01-30T10:30:00Z");
        assert!(Timestamp::parse_rfc3339("2026-01-30").is_err());
        assert!(Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").is_err());
        let t = Timestamp::parse_rfc3339("2026-01-30T10:30:00.123456789Z").unwrap();
        assert_eq!(Timestamp::from_unix_nanos(t.unix_nanos()), Some(t));
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `records[3].temperature`, `temperature`, `body`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A keyed hash, shown as `hmac-sha256:<hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyedHash(pub [u8; 32]);

impl KeyedHash {
    const PREFIX: &'static str = "hmac-sha256:";
}

impl std::fmt::Display for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl serde::Serialize for KeyedHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyedHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for KeyedHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex, &mut hash)
            .map_err(|_| "not a keyed hash (hmac-sha256: and 64 hex digits)".to_owned())?;
        Ok(Self(hash))
    }
}

/// HMAC-SHA256(key, text): a content field's keyed hash.
pub fn keyed_hash(key: &[u8; 32], text: &str) -> KeyedHash {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(text.as_bytes());
    KeyedHash(mac.finalize().into_bytes().into())
}

/// How much of a record's content (prompt, response, prompt variables) is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// None of it: the record says only that there was content.
    None,
    /// Only keyed hashes of prompt and response: a known text can be looked up, nothing
    /// can be read.
    Hash,
    /// The first `preview_chars` characters of prompt and response; no prompt variables.
    #[default]
    Preview,
    /// All of it (the tenant opted in).
    Full,
}
