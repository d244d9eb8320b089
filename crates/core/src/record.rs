//! The audit record: one call to a model provider. Field by field in docs/RECORD.md.
//!
//! [`Record`] is what a client sends (and what we keep, unchanged); [`StoredRecord`] adds
//! what the server assigns. Every field is a type that can only hold a valid value, so a
//! `Record` that exists is valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::value::{
    ContentMode, Count, Decimal, JsonObject, KeyedHash, NonNegativeDecimal, ShortText, TenantId,
    Text, Timestamp,
};

/// What a client sends for one call. Unknown top-level fields are refused (extensions belong
/// in `attributes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub tenant_id: TenantId,
    /// The caller's own id for this call (the conversation-audit-log service's Log ID, a
    /// provider request id). Unique within the tenant: a second record with the same one is
    /// refused, so retries and re-imports never log a call twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ShortText>,

    // Who
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_code: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_instance_id: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_label: Option<ShortText>,

    // Which model, how configured
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_type: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<NonNegativeDecimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_mode: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_config: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<ShortText>,

    // What it cost
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_input: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_output: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_time_ms: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_amount: Option<NonNegativeDecimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_currency: Option<Currency>,

    // What went in and out
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template_version: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_variables: Option<JsonObject>,

    // Provenance (from the generation-audit-trail API)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputProvenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputProvenance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducibility: Option<Reproducibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,

    // Data protection (from the multi-tenant platform's AiAuditLogEntry)
    #[serde(default, deserialize_with = "null_as_false")]
    pub neutralization_active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutralization_mappings_count: Option<Count>,
    /// Credentials redacted from the content, by the client before sending and by
    /// aitrail's scan at ingest (docs/SECRETS.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_redacted: Option<Count>,
    /// How much content the tenant's policy kept (set at ingest; docs/PRIVACY.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_mode: Option<ContentMode>,
    /// Keyed hashes of prompt and response: set at ingest (a value a client sends is
    /// replaced), shown on reads, never in the entry; deleted with the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_hash: Option<KeyedHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_hash: Option<KeyedHash>,

    // Outcome
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<Text>,

    /// When the call happened, as the client says; the server's `recorded_at` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Timestamp>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<JsonObject>,
}

/// Where an identifier-like text sits in a record: a field, or an item of a list field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextPath {
    pub field: &'static str,
    pub index: Option<usize>,
}

impl std::fmt::Display for TextPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.field),
            None => f.write_str(self.field),
        }
    }
}

impl Record {
    /// Every identifier-like text a client sent (`ShortText`), outside content and the
    /// JSON objects: each goes into the leaf as sent, so the secret scanner reads them all.
    pub fn each_short_text_mut(&mut self, f: &mut dyn FnMut(TextPath, &mut ShortText)) {
        let mut one = |field: &'static str, text: &mut Option<ShortText>| {
            if let Some(text) = text {
                f(TextPath { field, index: None }, text);
            }
        };
        one("external_id", &mut self.external_id);
        one("user_id", &mut self.user_id);
        one("username", &mut self.username);
        one("agent_id", &mut self.agent_id);
        one("session_id", &mut self.session_id);
        one("channel", &mut self.channel);
        one("feature_code", &mut self.feature_code);
        one("feature_instance_id", &mut self.feature_instance_id);
        one("instance_label", &mut self.instance_label);
        one("operation_type", &mut self.operation_type);
        one("model_provider", &mut self.model_provider);
        one("model_name", &mut self.model_name);
        one("model_version", &mut self.model_version);
        one("response_model", &mut self.response_model);
        one("deployment_id", &mut self.deployment_id);
        one("safety_mode", &mut self.safety_mode);
        one("model_info", &mut self.model_info);
        one("prompt_template_version", &mut self.prompt_template_version);
        if let Some(input) = &mut self.input {
            one("input.data_hash", &mut input.data_hash);
            one("input.data_path", &mut input.data_path);
        }
        if let Some(output) = &mut self.output {
            one("output.artifact_hash", &mut output.artifact_hash);
            one("output.artifact_path", &mut output.artifact_path);
        }
        if let Some(environment) = &mut self.environment {
            one("environment.tool_version", &mut environment.tool_version);
            one("environment.runtime", &mut environment.runtime);
            one("environment.host", &mut environment.host);
        }
        if let Some(reproducibility) = &mut self.reproducibility {
            for (i, id) in reproducibility.api_call_ids.iter_mut().enumerate() {
                f(TextPath { field: "reproducibility.api_call_ids", index: Some(i) }, id);
            }
        }
    }
}

/// Every top-level field a client may send, in documentation order.
pub const RECORD_FIELDS: &[&str] = &[
    "tenant_id",
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
    "temperature",
    "safety_mode",
    "model_config",
    "model_info",
    "tokens_input",
    "tokens_output",
    "processing_time_ms",
    "cost_amount",
    "cost_currency",
    "prompt",
    "response",
    "prompt_template",
    "prompt_template_version",
    "prompt_variables",
    "input",
    "output",
    "quality",
    "reproducibility",
    "environment",
    "neutralization_active",
    "neutralization_mappings_count",
    "secrets_redacted",
    "content_mode",
    "success",
    "error_message",
    "event_time",
    "attributes",
];

fn yes() -> bool {
    true
}

fn null_as_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

fn null_as_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// ISO 4217 currency code: three upper-case letters (`USD`, `EUR`, `CHF`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be an ISO 4217 code of three upper-case letters, e.g. USD or CHF".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The data a generation read (the generation-audit-trail record's `input`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputProvenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_path: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_count: Option<Count>,
}

/// What a generation produced (the generation-audit-trail record's `output`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputProvenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_hash: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_path: Option<ShortText>,
}

/// Validation of the output (the generation-audit-trail record's `quality`). Scores keep their
/// decimal literal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_passed: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, Decimal>,
}

/// What is needed to reproduce the call (the generation-audit-trail record's `reproducibility`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reproducibility {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deterministic: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_call_ids: Vec<ShortText>,
}

/// Where the call was made from (the generation-audit-trail record's `session` environment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<ShortText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<ShortText>,
}

/// A record as stored: the client's [`Record`] plus what the server assigned. In JSON the
/// three server fields come first, then the record's own, in one flat object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredRecord {
    /// UUIDv7, assigned when the record was committed.
    pub id: Uuid,
    /// 0-based position in the tenant's log; contiguous, never reused.
    pub seq: u64,
    /// When the server committed the record (UTC).
    pub recorded_at: Timestamp,
    #[serde(flatten)]
    pub record: Record,
}

impl StoredRecord {
    /// When the call happened: the client's `event_time`, else when it was recorded.
    pub fn event_time(&self) -> Timestamp {
        self.record.event_time.unwrap_or(self.recorded_at)
    }
}

/// What a client is told for each record it appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: Uuid,
    pub seq: u64,
    pub recorded_at: Timestamp,
}

impl<'de> Deserialize<'de> for StoredRecord {
    /// By hand, because serde's `flatten` would lose decimal literals and unknown-field checks.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::value::RawValue;
        let mut fields = BTreeMap::<String, Box<RawValue>>::deserialize(d)?;
        let mut take = |name: &str| {
            fields.remove(name).ok_or_else(|| D::Error::custom(format!("missing field `{name}`")))
        };
        let id = serde_json::from_str(take("id")?.get()).map_err(D::Error::custom)?;
        let seq = serde_json::from_str(take("seq")?.get()).map_err(D::Error::custom)?;
        let recorded_at =
            serde_json::from_str(take("recorded_at")?.get()).map_err(D::Error::custom)?;
        let rest = serde_json::to_string(&fields).map_err(D::Error::custom)?;
        let record = serde_json::from_str(&rest).map_err(D::Error::custom)?;
        Ok(Self { id, seq, recorded_at, record })
    }
}

/// A record field filtered by exact match (any of the given values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextField {
    ModelProvider,
    ModelName,
    ModelVersion,
    DeploymentId,
    SafetyMode,
    OperationType,
    UserId,
    AgentId,
    SessionId,
    FeatureCode,
    ExternalId,
}

impl TextField {
    pub const ALL: [TextField; 11] = [
        Self::ModelProvider,
        Self::ModelName,
        Self::ModelVersion,
        Self::DeploymentId,
        Self::SafetyMode,
        Self::OperationType,
        Self::UserId,
        Self::AgentId,
        Self::SessionId,
        Self::FeatureCode,
        Self::ExternalId,
    ];

    /// The record field's name, which is also the query parameter's and the column's.
    pub fn name(self) -> &'static str {
        match self {
            Self::ModelProvider => "model_provider",
            Self::ModelName => "model_name",
            Self::ModelVersion => "model_version",
            Self::DeploymentId => "deployment_id",
            Self::SafetyMode => "safety_mode",
            Self::OperationType => "operation_type",
            Self::UserId => "user_id",
            Self::AgentId => "agent_id",
            Self::SessionId => "session_id",
            Self::FeatureCode => "feature_code",
            Self::ExternalId => "external_id",
        }
    }

    /// This field's value in a record.
    pub fn of(self, r: &Record) -> Option<&ShortText> {
        match self {
            Self::ModelProvider => r.model_provider.as_ref(),
            Self::ModelName => r.model_name.as_ref(),
            Self::ModelVersion => r.model_version.as_ref(),
            Self::DeploymentId => r.deployment_id.as_ref(),
            Self::SafetyMode => r.safety_mode.as_ref(),
            Self::OperationType => r.operation_type.as_ref(),
            Self::UserId => r.user_id.as_ref(),
            Self::AgentId => r.agent_id.as_ref(),
            Self::SessionId => r.session_id.as_ref(),
            Self::FeatureCode => r.feature_code.as_ref(),
            Self::ExternalId => r.external_id.as_ref(),
        }
    }
}
