//! A tenant's privacy policy, and what it does to a record at ingest (docs/PRIVACY.md).
//!
//! Applied before a record is logged: credentials in model_config or attributes refuse the
//! record (naming where, never echoing them); credentials in content are redacted or refuse
//! it, by policy; then only as much content as the tenant keeps goes on.

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::secrets;
use crate::value::{Count, JsonObject, ShortText, Text};

pub use crate::value::{ContentMode, FieldError, keyed_hash};

/// What a credential found in content does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsAction {
    /// Replaced by `[REDACTED:<rule>]` and counted in `secrets_redacted`.
    #[default]
    Redact,
    /// The record is refused (422) naming the field and the rule.
    Reject,
}

/// What capture clients (proxy, SDKs) do when aitrail cannot log a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// No call goes out while records cannot be committed; a record that fails after its
    /// answer went back is kept (the proxy's spool) until the store takes it.
    #[default]
    Closed,
    /// As closed, and no answer goes back before its record is committed: the client waits
    /// one durable commit more, and a record that cannot be committed withholds the answer.
    Strict,
    /// The call goes through whatever the store's state; its record is kept (the proxy's
    /// spool) until the store takes it.
    Open,
}

impl FailMode {
    /// Whether a call may go out only while records can be committed.
    pub fn refuses_unrecorded_calls(self) -> bool {
        self != Self::Open
    }
}

/// The least retention without an explicit override: six months, as the EU AI Act asks
/// of high-risk systems' logs (Art. 19).
pub const MIN_RETENTION_DAYS: u32 = 180;

/// The most a preview keeps.
pub const MAX_PREVIEW_CHARS: u32 = 100_000;

/// A tenant's policy. Only valid policies exist: build one with [`Policy::parse`] or
/// [`Policy::with`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    content_mode: ContentMode,
    preview_chars: u32,
    retention_days: u32,
    retention_override: bool,
    content_retention_days: u32,
    secrets: SecretsAction,
    fail_mode: FailMode,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            content_mode: ContentMode::Preview,
            preview_chars: 200,
            retention_days: MIN_RETENTION_DAYS,
            retention_override: false,
            content_retention_days: MIN_RETENTION_DAYS,
            secrets: SecretsAction::Redact,
            fail_mode: FailMode::Closed,
        }
    }
}

/// A policy as written: every field optional (absent: the default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    content_mode: Option<ContentMode>,
    preview_chars: Option<u32>,
    retention_days: Option<u32>,
    retention_override: Option<bool>,
    content_retention_days: Option<u32>,
    secrets: Option<SecretsAction>,
    fail_mode: Option<FailMode>,
}

/// The settings, by the names `aitrail config set` takes (also with an `audit.` prefix).
pub const SETTINGS: [&str; 7] = [
    "content_mode",
    "preview_chars",
    "retention_days",
    "retention_override",
    "content_retention_days",
    "secrets",
    "fail_mode",
];

impl Policy {
    /// A policy from its JSON; errors name the setting.
    pub fn parse(json: &str) -> Result<Self, FieldError> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let doc: PolicyDoc = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { "policy".to_owned() } else { field };
            FieldError::new(field, e.into_inner().to_string())
        })?;
        Self::from_doc(doc)
    }

    fn from_doc(doc: PolicyDoc) -> Result<Self, FieldError> {
        let d = Self::default();
        let retention_days = doc.retention_days.unwrap_or(d.retention_days);
        let policy = Self {
            content_mode: doc.content_mode.unwrap_or(d.content_mode),
            preview_chars: doc.preview_chars.unwrap_or(d.preview_chars),
            retention_days,
            retention_override: doc.retention_override.unwrap_or(false),
            // Content is kept as long as records unless the tenant says otherwise.
            content_retention_days: doc.content_retention_days.unwrap_or(retention_days),
            secrets: doc.secrets.unwrap_or(d.secrets),
            fail_mode: doc.fail_mode.unwrap_or(d.fail_mode),
        };
        if !(1..=MAX_PREVIEW_CHARS).contains(&policy.preview_chars) {
            return Err(FieldError::new(
                "preview_chars",
                format!("must be from 1 to {MAX_PREVIEW_CHARS}"),
            ));
        }
        if policy.retention_days == 0 {
            return Err(FieldError::new("retention_days", "must be at least 1"));
        }
        if policy.retention_days < MIN_RETENTION_DAYS && !policy.retention_override {
            return Err(FieldError::new(
                "retention_days",
                format!(
                    "less than {MIN_RETENTION_DAYS} days (the EU AI Act's six months) needs retention_override: true, which is logged"
                ),
            ));
        }
        if policy.content_retention_days > policy.retention_days {
            return Err(FieldError::new(
                "content_retention_days",
                "must not exceed retention_days: content cannot outlive its record",
            ));
        }
        Ok(policy)
    }

    /// This policy with one setting changed (`aitrail config set`); the value is JSON or,
    /// failing that, a bare word.
    pub fn with(&self, setting: &str, value: &str) -> Result<Self, FieldError> {
        let setting = setting.strip_prefix("audit.").unwrap_or(setting);
        if !SETTINGS.contains(&setting) {
            return Err(FieldError::new(
                setting,
                format!("not a policy setting; the settings are {}", SETTINGS.join(", ")),
            ));
        }
        let mut doc = serde_json::to_value(self).expect("a policy is JSON");
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        doc[setting] = value;
        // An explicit content_retention_days stays; one that followed retention_days
        // follows it.
        if setting == "retention_days" && self.content_retention_days == self.retention_days {
            doc.as_object_mut().expect("an object").remove("content_retention_days");
        }
        Self::parse(&doc.to_string())
    }

    pub fn content_mode(&self) -> ContentMode {
        self.content_mode
    }
    pub fn preview_chars(&self) -> u32 {
        self.preview_chars
    }
    pub fn retention_days(&self) -> u32 {
        self.retention_days
    }
    pub fn content_retention_days(&self) -> u32 {
        self.content_retention_days
    }
    pub fn secrets(&self) -> SecretsAction {
        self.secrets
    }
    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }
    /// Whether retention below [`MIN_RETENTION_DAYS`] was explicitly allowed.
    pub fn retention_override(&self) -> bool {
        self.retention_override
    }

    /// The JSON the API answers and stores.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a policy is JSON")
    }

    /// Apply the policy to a record about to be logged. `prefix` names the record in a
    /// batch (`records[3].`); `hash_key` is the tenant's content-hash key
    /// ([`tenant_hash_key`]). The error never holds the secret.
    pub fn apply(
        &self,
        mut record: Record,
        prefix: &str,
        hash_key: &[u8; 32],
    ) -> Result<Record, FieldError> {
        for (name, object) in
            [("model_config", &record.model_config), ("attributes", &record.attributes)]
        {
            let Some(object) = object else { continue };
            if let Some((path, rule)) = secrets::find_in_object(name, object.as_map()) {
                return Err(FieldError::new(
                    format!("{prefix}{path}"),
                    format!("holds a credential ({rule}); aitrail never stores secrets: remove it"),
                ));
            }
        }
        let mut redacted = self.scrub_short_texts(&mut record, prefix)?;
        for (name, text) in [
            ("prompt", &mut record.prompt),
            ("response", &mut record.response),
            ("prompt_template", &mut record.prompt_template),
            ("error_message", &mut record.error_message),
        ] {
            let Some(t) = text else { continue };
            match self.secrets {
                SecretsAction::Reject => {
                    if let Some(rule) = secrets::find_in_text(t.as_str()) {
                        return Err(reject(prefix, name, rule));
                    }
                }
                SecretsAction::Redact => {
                    let (clean, n) = secrets::redact_text(t.as_str());
                    if n > 0 {
                        *t = Text::parse(clean).map_err(|e| FieldError::new(name, e))?;
                        redacted += n;
                    }
                }
            }
        }
        if let Some(vars) = record.prompt_variables.take() {
            let mut value = serde_json::Value::Object(vars.into_map());
            if self.secrets == SecretsAction::Reject
                && let Some((path, rule)) = secrets::find_in_json("prompt_variables", &value)
            {
                return Err(reject(prefix, &path, rule));
            }
            redacted += secrets::redact_json(&mut value);
            let serde_json::Value::Object(map) = value else { unreachable!("stays an object") };
            record.prompt_variables = Some(
                JsonObject::from_map(map).map_err(|e| FieldError::new("prompt_variables", e))?,
            );
        }
        if redacted > 0 {
            let before = record.secrets_redacted.map_or(0, Count::get);
            record.secrets_redacted = Some(
                Count::new(before.saturating_add(redacted))
                    .map_err(|e| FieldError::new("secrets_redacted", e))?,
            );
        }

        // Hashed whole and after redaction, whatever is kept: a known text is found by its
        // hash even where only its preview (or nothing) is kept.
        record.prompt_hash = record.prompt.as_ref().map(|t| keyed_hash(hash_key, t.as_str()));
        record.response_hash = record.response.as_ref().map(|t| keyed_hash(hash_key, t.as_str()));
        match self.content_mode {
            ContentMode::Full => {}
            ContentMode::Preview => {
                let cut = |t: Text| -> Text {
                    match t.as_str().char_indices().nth(self.preview_chars as usize) {
                        Some((at, _)) => Text::parse(t.as_str()[..at].to_owned())
                            .expect("a prefix of valid text is valid"),
                        None => t,
                    }
                };
                record.prompt = record.prompt.map(cut);
                record.response = record.response.map(cut);
                record.prompt_variables = None;
            }
            ContentMode::Hash | ContentMode::None => {
                record.prompt = None;
                record.response = None;
                record.prompt_variables = None;
            }
        }
        if self.content_mode == ContentMode::None {
            (record.prompt_hash, record.response_hash) = (None, None);
        }
        record.content_mode = Some(self.content_mode);
        Ok(record)
    }
}

impl Policy {
    /// Credentials in the identifier-like fields, which go into the leaf as sent: refused,
    /// or redacted as the policy says; how many were redacted. A tenant id is never
    /// redacted (it names the log): one holding a credential is refused. The fields are
    /// scanned joined first, so a record without any (nearly all) costs one search.
    fn scrub_short_texts(&self, record: &mut Record, prefix: &str) -> Result<u64, FieldError> {
        if let Some(rule) = secrets::find_in_text(record.tenant_id.as_str()) {
            return Err(FieldError::new(
                format!("{prefix}tenant_id"),
                format!(
                    "holds a credential ({rule}); a tenant id is never stored redacted: use another"
                ),
            ));
        }
        let mut joined = String::new();
        record.each_short_text_mut(&mut |_, text| {
            joined.push_str(text.as_str());
            joined.push('\n');
        });
        let scores = record.quality.as_ref().map(|q| &q.scores);
        for name in scores.into_iter().flat_map(|s| s.keys()) {
            joined.push_str(name);
            joined.push('\n');
        }
        if secrets::find_in_text(&joined).is_none() {
            return Ok(0);
        }
        let (mut redacted, mut refused) = (0, None);
        record.each_short_text_mut(&mut |path, text| {
            if refused.is_some() {
                return;
            }
            // An external id is the key duplicates are refused by: redacted, different ids
            // would collide, so one holding a credential is refused whatever the policy.
            let keyed = path.field == "external_id";
            match self.secrets {
                _ if keyed => {
                    if let Some(rule) = secrets::find_in_text(text.as_str()) {
                        refused = Some(FieldError::new(
                            format!("{prefix}{path}"),
                            format!("holds a credential ({rule}); an external_id is never stored redacted: use another"),
                        ));
                    }
                }
                SecretsAction::Reject => {
                    if let Some(rule) = secrets::find_in_text(text.as_str()) {
                        refused = Some(reject(prefix, &path.to_string(), rule));
                    }
                }
                SecretsAction::Redact => {
                    let (clean, n) = secrets::redact_text(text.as_str());
                    if n > 0 {
                        match ShortText::parse(clean) {
                            Ok(clean) => *text = clean,
                            Err(e) => refused = Some(FieldError::new(format!("{prefix}{path}"), e)),
                        }
                        redacted += n;
                    }
                }
            }
        });
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        if let Some(quality) = &mut record.quality {
            let scores = std::mem::take(&mut quality.scores);
            for (name, score) in scores {
                let name = match (secrets::find_in_text(&name), self.secrets) {
                    (None, _) => name,
                    (Some(rule), SecretsAction::Reject) => {
                        return Err(reject(prefix, "quality.scores", rule));
                    }
                    (Some(_), SecretsAction::Redact) => {
                        let (clean, n) = secrets::redact_text(&name);
                        redacted += n;
                        clean
                    }
                };
                quality.scores.insert(name, score);
            }
        }
        Ok(redacted)
    }
}

/// Apply each record's tenant's policy, given by `of` with the tenant's content-hash key;
/// a batch's records are named `records[i].` in errors, and every refusal is returned.
pub fn apply_all<'p>(
    records: Vec<Record>,
    sent: crate::Sent,
    of: impl Fn(&crate::TenantId) -> (&'p Policy, [u8; 32]),
) -> Result<Vec<Record>, Vec<FieldError>> {
    let mut kept = Vec::with_capacity(records.len());
    let mut refused = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let (policy, key) = of(&record.tenant_id);
        let prefix = match sent {
            crate::Sent::One => String::new(),
            crate::Sent::Batch => format!("records[{i}]."),
        };
        match policy.apply(record, &prefix, &key) {
            Ok(r) => kept.push(r),
            Err(e) => refused.push(e),
        }
    }
    if refused.is_empty() { Ok(kept) } else { Err(refused) }
}

/// Apply each record's tenant's policy, as [`apply_all`], keeping each outcome on its own:
/// for senders whose records stand alone (OTLP spans), so one refusal drops only its record.
pub fn apply_each<'p>(
    records: Vec<Record>,
    of: impl Fn(&crate::TenantId) -> (&'p Policy, [u8; 32]),
) -> Vec<Result<Record, FieldError>> {
    records
        .into_iter()
        .map(|record| {
            let (policy, key) = of(&record.tenant_id);
            policy.apply(record, "", &key)
        })
        .collect()
}

fn reject(prefix: &str, field: &str, rule: &str) -> FieldError {
    FieldError::new(
        format!("{prefix}{field}"),
        format!(
            "holds a credential ({rule}); this tenant's policy refuses records that hold secrets"
        ),
    )
}

/// A record of the system log (`aitrail.system`): a retention run, an erasure, a legal
/// hold placed or released. `tenant`: the tenant it concerned (its `session_id`); `by`: who
/// did it (a key id, or `retention` for the job; its `user_id`).
pub fn system_event(
    operation: &str,
    tenant: Option<&crate::TenantId>,
    by: &str,
    attributes: serde_json::Value,
) -> Record {
    let record = serde_json::json!({
        "tenant_id": crate::TenantId::system_log(),
        "operation_type": operation,
        "session_id": tenant.map_or("*", crate::TenantId::as_str),
        "user_id": by,
        "attributes": attributes,
    });
    serde_json::from_value(record).expect("a system event is a valid record")
}

/// A tenant's content-hash key, from the server's secret (derived from the log key, so the
/// nodes that share one share the other): HMAC-SHA256(secret, "aitrail.content-hash.v1" ‖
/// 0x00 ‖ tenant). Without it a dictionary cannot confirm a hashed text.
pub fn tenant_hash_key(secret: &[u8; 32], tenant: &crate::TenantId) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"aitrail.content-hash.v1\0");
    mac.update(tenant.as_str().as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every identifier-like field a client may send, as a record's JSON would hold it.
    const FIELDS: &[&str] = &[
        "external_id",
        "user_id",
        "username",
        "agent_id",
        "session_id",
        "channel",
        "feature_code",
        "feature_instance_id",
        "instance_label",
        "operation_type",
        "model_provider",
        "model_name",
        "model_version",
        "response_model",
        "deployment_id",
        "safety_mode",
        "model_info",
        "prompt_template_version",
        "input.data_hash",
        "input.data_path",
        "output.artifact_hash",
        "output.artifact_path",
        "environment.tool_version",
        "environment.runtime",
        "environment.host",
        "reproducibility.api_call_ids[0]",
    ];

    fn record_with(field: &str, text: &str) -> Record {
        let value = serde_json::Value::String(text.to_owned());
        let mut json = serde_json::json!({"tenant_id": "t"});
        match field.split_once('.') {
            None => json[field] = value,
            Some((outer, "api_call_ids[0]")) => {
                json[outer] = serde_json::json!({"api_call_ids": [value]})
            }
            Some((outer, inner)) => json[outer] = serde_json::json!({ inner: value }),
        }
        serde_json::from_value(json).expect("a valid record")
    }

    fn corpus() -> Vec<(String, String)> {
        include_str!("../tests/data/secrets.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (rule, text) = l.split_once('\t').expect("rule<TAB>text");
                (rule.to_owned(), text.replace("\\n", "\n"))
            })
            .collect()
    }

    /// Every rule of the corpus in every identifier-like field: refused naming the field and
    /// the rule (never the value) where the policy rejects, redacted where it redacts; and
    /// the look-alikes pass untouched in every field.
    #[test]
    fn a_credential_in_any_field_is_refused_or_redacted_never_kept() {
        let reject = Policy::default().with("secrets", "reject").unwrap();
        let redact = Policy::default();
        let key = [7u8; 32];
        for (rule, text) in corpus() {
            for field in FIELDS {
                let refused = reject.apply(record_with(field, &text), "", &key).unwrap_err();
                assert_eq!(refused.field, *field, "{rule} in {field}");
                assert!(refused.message.contains(&rule), "{rule} in {field}: {}", refused.message);
                assert!(!refused.message.contains(&text), "the refusal repeats the secret");

                if *field == "external_id" {
                    let refused = redact.apply(record_with(field, &text), "", &key).unwrap_err();
                    assert_eq!(refused.field, "external_id");
                    continue;
                }
                let kept = redact.apply(record_with(field, &text), "", &key).unwrap();
                let json = serde_json::to_string(&kept).unwrap();
                assert!(json.contains(&format!("[REDACTED:{rule}]")), "{rule} in {field}: {json}");
                let longest = text.split_whitespace().max_by_key(|w| w.len()).unwrap();
                if longest.len() >= 24 {
                    let middle = &longest[longest.len() / 2 - 6..longest.len() / 2 + 6];
                    assert!(!json.contains(middle), "{rule} in {field} kept: {json}");
                }
                assert!(kept.secrets_redacted.is_some_and(|n| n.get() >= 1));
            }
        }
        for text in include_str!("../tests/data/look-alikes.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            for field in FIELDS {
                let kept = reject.apply(record_with(field, text), "", &key);
                assert!(kept.is_ok(), "a look-alike in {field} refused: {text}");
            }
        }
        // A tenant id is never redacted: one holding a credential is refused, whatever the
        // policy.
        let token = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab";
        let record: Record =
            serde_json::from_value(serde_json::json!({"tenant_id": token})).unwrap();
        let refused = redact.apply(record, "records[2].", &key).unwrap_err();
        assert_eq!(refused.field, "records[2].tenant_id");
    }
}
