//! Usage over time: records, tokens and cost by provider and model, per hour or day, and
//! the top users and features, summed from entries as logged (so the figures cover every
//! record, whatever content was kept or erased). Costs are summed per currency in floating
//! point, for charts; the export's usage_summary.csv has the exact decimal sums.

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

/// Records, tokens and cost (per currency) of some group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub records: u64,
    pub failures: u64,
    pub tokens_input: u64,
    pub tokens_output: u64,
    pub cost: BTreeMap<String, f64>,
}

impl Totals {
    fn add(&mut self, e: &UsageFields<'_>) {
        self.records += 1;
        self.failures += u64::from(!e.success);
        // Counts are the clients' and may be absurd: a sum saturates rather than wraps.
        self.tokens_input = self.tokens_input.saturating_add(e.tokens_input.unwrap_or(0));
        self.tokens_output = self.tokens_output.saturating_add(e.tokens_output.unwrap_or(0));
        let cost = e.cost_amount.as_deref().and_then(|c| c.parse::<f64>().ok());
        if let Some(cost) = cost.filter(|c| c.is_finite()) {
            let currency = e.cost_currency.as_deref().unwrap_or("");
            let sum = self.cost.entry(currency.to_owned()).or_default();
            // A sum past f64's range stays at the largest finite value (JSON has no infinity).
            *sum = (*sum + cost).min(f64::MAX);
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
        assert_eq!(r.totals.cost["USD"], 0.75);
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
                r#""tokens_input":9223372036854775807,"cost_amount":"1e308","cost_currency":"USD""#;
            usage.add_entry(&entry_bytes_for_test(fields, seq)).unwrap();
        }
        let r = usage.report();
        assert_eq!(r.totals.tokens_input, u64::MAX);
        assert_eq!(r.totals.cost["USD"], f64::MAX);
        assert!(serde_json::to_value(&r).unwrap()["totals"]["cost"]["USD"].is_number());
    }

    #[test]
    fn days_start_at_utc_midnight() {
        let t = Timestamp::parse_rfc3339("2026-11-20T23:59:59.5Z").unwrap();
        assert_eq!(Bucket::Day.floor(t).to_string(), "2026-11-20T00:00:00Z");
        assert!("week".parse::<Bucket>().is_err());
    }
}
