//! Usage over time: records, tokens and cost by provider and model, per hour or day, and
//! the top users and features, summed from entries as logged (so the figures cover every
//! record, whatever content was kept or erased). Costs are summed per currency exactly, as
//! [`Cost`]: the same arithmetic as the export's usage_summary.csv, so the two agree to the
//! last digit on the same records.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::entry::ENTRY_PREFIX;
use crate::value::Timestamp;

/// Most users (and features) listed as "top".
pub const TOP: usize = 10;

/// How finely usage is cut over time (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl FromStr for Bucket {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err("must be hour or day".into()),
        }
    }
}

impl Bucket {
    fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    /// The start of the bucket holding `t`.
    fn floor(self, t: Timestamp) -> Timestamp {
        let s = t.unix_nanos().div_euclid(1_000_000_000);
        let start = s - s.rem_euclid(self.seconds());
        Timestamp::from_unix_nanos(start * 1_000_000_000).unwrap_or(t)
    }
}

/// A sum of money, exact to [`Cost::SCALE`] decimal places: what a client sent as a
/// decimal literal (`0.0042`, `1.5e3`), added without rounding, so `0.1 + 0.2` is `0.3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(i128);

impl Cost {
    /// Decimal places kept; digits beyond are dropped.
    pub const SCALE: u32 = 12;

    /// A decimal literal (a JSON number) as a cost; `None` if it is not one, or does not fit
    /// (beyond about 10^26). Read for every record summed, so it allocates nothing.
    pub fn parse(s: &str) -> Option<Self> {
        let (mantissa, exponent) = match s.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let (negative, whole) = match whole.strip_prefix('-') {
            Some(w) => (true, w),
            None => (false, whole),
        };
        let digits = whole.bytes().chain(frac.bytes());
        if whole.is_empty() || !digits.clone().all(|d| d.is_ascii_digit()) {
            return None;
        }
        // The value is digits × 10^(exponent − frac.len()); in units, × 10^SCALE more.
        let shift = i64::from(exponent) - frac.len() as i64 + i64::from(Self::SCALE);
        // Digits past the scale (a negative shift) are dropped.
        let keep = usize::try_from(digits.clone().count() as i64 + shift.min(0)).unwrap_or(0);
        let mut units: i128 = 0;
        for d in digits.take(keep) {
            units = units.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
        }
        // (Zero stays zero whatever the exponent; anything else overflows within 39 steps.)
        if units != 0 {
            for _ in 0..shift.max(0) {
                units = units.checked_mul(10)?;
            }
        }
        Some(Self(if negative { -units } else { units }))
    }

    /// In units of 10^-SCALE.
    pub fn from_units(units: i128) -> Self {
        Self(units)
    }

    pub fn units(self) -> i128 {
        self.0
    }

    /// The sum; clients' amounts may be absurd, so it stops at the largest cost rather than
    /// wrap.
    #[must_use]
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl std::fmt::Display for Cost {
    /// The shortest exact decimal: `3.1042`, `2`, `-0.5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scale = 10u128.pow(Self::SCALE);
        let magnitude = self.0.unsigned_abs();
        let sign = if self.0 < 0 { "-" } else { "" };
        let frac = format!("{:0width$}", magnitude % scale, width = Self::SCALE as usize);
        match frac.trim_end_matches('0') {
            "" => write!(f, "{sign}{}", magnitude / scale),
            frac => write!(f, "{sign}{}.{frac}", magnitude / scale),
        }
    }
}

impl Serialize for Cost {
    /// A JSON number with the exact digits (serde_json keeps them: arbitrary_precision).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let number =
            serde_json::Number::from_str(&self.to_string()).map_err(serde::ser::Error::custom)?;
        number.serialize(serializer)
    }
}

/// Records, tokens and cost (per currency) of some group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub records: u64,
    pub failures: u64,
    pub tokens_input: u64,
    pub tokens_output: u64,
    pub cost: BTreeMap<String, Cost>,
}

impl Totals {
    fn add(&mut self, e: &UsageFields<'_>) {
        self.records += 1;
        self.failures += u64::from(!e.success);
        // Counts are the clients' and may be absurd: a sum saturates rather than wraps.
        self.tokens_input = self.tokens_input.saturating_add(e.tokens_input.unwrap_or(0));
        self.tokens_output = self.tokens_output.saturating_add(e.tokens_output.unwrap_or(0));
        if let Some(cost) = e.cost_amount.as_deref().and_then(Cost::parse) {
            let currency = e.cost_currency.as_deref().unwrap_or("");
            let sum = self.cost.entry(currency.to_owned()).or_default();
            *sum = sum.saturating_add(cost);
        }
    }
}

/// One group's totals, named.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One provider and model's totals in one time bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub at: Timestamp,
    pub provider: String,
    pub model: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// The usage report: what GET /v1/usage answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub bucket: Bucket,
    pub totals: Totals,
    pub by_provider: Vec<Group>,
    /// Keyed `provider/model`.
    pub by_model: Vec<Group>,
    pub over_time: Vec<Point>,
    pub top_users: Vec<Group>,
    pub top_features: Vec<Group>,
}

/// What usage needs of an entry; the rest is skipped unparsed.
#[derive(Deserialize)]
struct EntryFields<'a> {
    #[serde(borrow)]
    record: UsageFields<'a>,
    recorded_at: Cow<'a, str>,
}

#[derive(Deserialize)]
struct UsageFields<'a> {
    #[serde(borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model_provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    feature_code: Option<Cow<'a, str>>,
    #[serde(default)]
    tokens_input: Option<u64>,
    #[serde(default)]
    tokens_output: Option<u64>,
    #[serde(borrow, default)]
    cost_amount: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cost_currency: Option<Cow<'a, str>>,
    #[serde(default = "yes")]
    success: bool,
}

fn yes() -> bool {
    true
}

/// Sums entries into a [`Report`].
#[derive(Debug)]
pub struct Usage {
    bucket: Bucket,
    totals: Totals,
    by_provider: BTreeMap<String, Totals>,
    by_model: BTreeMap<String, Totals>,
    over_time: BTreeMap<(Timestamp, String, String), Totals>,
    users: BTreeMap<String, Totals>,
    features: BTreeMap<String, Totals>,
}

/// An entry that could not be read for usage.
#[derive(Debug, thiserror::Error)]
#[error("an entry could not be read for usage: {0}")]
pub struct UnreadableEntry(String);

const NONE: &str = "(none)";

impl Usage {
    pub fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            totals: Totals::default(),
            by_provider: BTreeMap::new(),
            by_model: BTreeMap::new(),
            over_time: BTreeMap::new(),
            users: BTreeMap::new(),
            features: BTreeMap::new(),
        }
    }

    /// Count one record, from its entry bytes.
    pub fn add_entry(&mut self, entry: &[u8]) -> Result<(), UnreadableEntry> {
        let json = entry
            .strip_prefix(ENTRY_PREFIX)
            .ok_or_else(|| UnreadableEntry("unknown entry version".into()))?;
        let e: EntryFields<'_> =
            serde_json::from_slice(json).map_err(|e| UnreadableEntry(e.to_string()))?;
        let at = e.record.event_time.as_deref().unwrap_or(&e.recorded_at);
        let at = Timestamp::parse_rfc3339(at).map_err(UnreadableEntry)?;
        let r = &e.record;
        let provider = r.model_provider.as_deref().unwrap_or(NONE);
        let model = r.model_name.as_deref().unwrap_or(NONE);
        self.totals.add(r);
        self.by_provider.entry(provider.to_owned()).or_default().add(r);
        self.by_model.entry(format!("{provider}/{model}")).or_default().add(r);
        let bucket = (self.bucket.floor(at), provider.to_owned(), model.to_owned());
        self.over_time.entry(bucket).or_default().add(r);
        self.users.entry(r.user_id.as_deref().unwrap_or(NONE).to_owned()).or_default().add(r);
        let feature = r.feature_code.as_deref().unwrap_or(NONE).to_owned();
        self.features.entry(feature).or_default().add(r);
        Ok(())
    }

    pub fn report(self) -> Report {
        let groups = |m: BTreeMap<String, Totals>| {
            let mut g: Vec<Group> =
                m.into_iter().map(|(key, totals)| Group { key, totals }).collect();
            g.sort_by(|a, b| b.totals.records.cmp(&a.totals.records).then(a.key.cmp(&b.key)));
            g
        };
        let top = |m| {
            let mut g = groups(m);
            g.truncate(TOP);
            g
        };
        Report {
            bucket: self.bucket,
            totals: self.totals,
            by_provider: groups(self.by_provider),
            by_model: groups(self.by_model),
            over_time: self
                .over_time
                .into_iter()
                .map(|((at, provider, model), totals)| Point { at, provider, model, totals })
                .collect(),
            top_users: top(self.users),
            top_features: top(self.features),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{encode, prepare};

    /// A real entry of a record with these JSON fields.
    fn entry_bytes_for_test(fields: &str, seq: u64) -> Vec<u8> {
        let record: crate::Record =
            serde_json::from_str(&format!(r#"{{"tenant_id":"t",{fields}}}"#)).unwrap();
        let prepared = prepare(&record, [0; 32]);
        encode(&uuid::Uuid::nil(), Timestamp::now(), seq, &prepared.record_json)
    }

    #[test]
    fn sums_by_provider_model_time_user_and_feature() {
        let mut usage = Usage::new(Bucket::Hour);
        let rows = [
            (
                r#""model_provider":"openai","model_name":"gpt-4o","user_id":"u1","tokens_input":10,"tokens_output":5,"cost_amount":"0.5","cost_currency":"USD","event_time":"2026-11-20T10:15:00Z""#,
                0,
            ),
            (
                r#""model_provider":"openai","model_name":"gpt-4o","user_id":"u2","tokens_input":1,"cost_amount":"0.25","cost_currency":"USD","event_time":"2026-11-20T10:59:59Z","success":false"#,
                1,
            ),
            (
                r#""model_provider":"anthropic","model_name":"claude","user_id":"u1","feature_code":"chat","event_time":"2026-11-20T11:00:00Z""#,
                2,
            ),
        ];
        for (fields, seq) in rows {
            usage.add_entry(&entry_bytes_for_test(fields, seq)).unwrap();
        }
        let r = usage.report();
        assert_eq!(r.totals.records, 3);
        assert_eq!(r.totals.failures, 1);
        assert_eq!(r.totals.tokens_input, 11);
        assert_eq!(r.totals.cost["USD"].to_string(), "0.75");
        assert_eq!(r.by_provider[0].key, "openai");
        assert_eq!(r.by_provider[0].totals.records, 2);
        assert_eq!(r.by_model[1].key, "anthropic/claude");
        // Two hours: 10:00 holds both openai calls, 11:00 the anthropic one.
        assert_eq!(r.over_time.len(), 2);
        assert_eq!(r.over_time[0].at.to_string(), "2026-11-20T10:00:00Z");
        assert_eq!(r.over_time[0].totals.records, 2);
        assert_eq!(r.over_time[1].provider, "anthropic");
        assert_eq!(r.top_users[0].key, "u1");
        assert_eq!(r.top_users[0].totals.records, 2);
        assert_eq!(r.top_features[0].key, "(none)");
        assert_eq!(r.top_features[1].key, "chat");
    }

    #[test]
    fn absurd_counts_and_costs_saturate() {
        let mut usage = Usage::new(Bucket::Day);
        for seq in 0..3 {
            let fields =
                r#""tokens_input":9223372036854775807,"cost_amount":"1e26","cost_currency":"USD""#;
            usage.add_entry(&entry_bytes_for_test(fields, seq)).unwrap();
        }
        // A cost beyond what a sum can hold counts nothing (as in the export).
        let beyond = r#""cost_amount":"1e308","cost_currency":"USD""#;
        usage.add_entry(&entry_bytes_for_test(beyond, 3)).unwrap();
        let r = usage.report();
        assert_eq!(r.totals.tokens_input, u64::MAX);
        assert_eq!(r.totals.cost["USD"], Cost::from_units(i128::MAX));
        assert!(serde_json::to_value(&r).unwrap()["totals"]["cost"]["USD"].is_number());
    }

    #[test]
    fn costs_are_summed_exactly_and_written_as_json_numbers() {
        let mut usage = Usage::new(Bucket::Day);
        for (seq, cost) in ["0.1", "0.2", "1e-13"].into_iter().enumerate() {
            let fields = format!(r#""cost_amount":"{cost}","cost_currency":"USD""#);
            usage.add_entry(&entry_bytes_for_test(&fields, seq as u64)).unwrap();
        }
        let json = serde_json::to_string(&usage.report().totals).unwrap();
        assert!(json.contains(r#""cost":{"USD":0.3}"#), "{json}");
        assert_eq!(Cost::from_units(-1_500_000_000_000).to_string(), "-1.5");
    }

    /// Text to units and back, as the export's usage summary uses them.
    fn fixed(s: &str) -> i128 {
        Cost::parse(s).map_or(0, Cost::units)
    }

    fn decimal(units: i128) -> String {
        Cost::from_units(units).to_string()
    }

    #[test]
    fn costs_sum_exactly() {
        assert_eq!(decimal(fixed("0.0042") + fixed("1.1") + fixed("2")), "3.1042");
        assert_eq!(decimal(fixed("0.1") * 3), "0.3");
        assert_eq!(decimal(0), "0");
        // Beyond the scale, digits are dropped; what is not digits counts nothing.
        assert_eq!(decimal(fixed("0.1234567890129")), "0.123456789012");
        assert_eq!(decimal(fixed("2.")), "2");
        assert_eq!(decimal(fixed("1.5e3")), "1500");
        assert_eq!(decimal(fixed("25E-4")), "0.0025");
        assert_eq!(decimal(fixed("1e-13")), "0");
        assert_eq!(decimal(fixed("1e40")), "0", "does not fit: counts nothing");
        assert_eq!(decimal(fixed("0e2000000000")), "0");
        assert_eq!(decimal(fixed("x")), "0");
    }

    #[test]
    fn days_start_at_utc_midnight() {
        let t = Timestamp::parse_rfc3339("2026-11-20T23:59:59.5Z").unwrap();
        assert_eq!(Bucket::Day.floor(t).to_string(), "2026-11-20T00:00:00Z");
        assert!("week".parse::<Bucket>().is_err());
    }
}
