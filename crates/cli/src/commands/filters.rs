//! The listing's filters as flags, shared by the commands that select records.

/// The API's filters as flags; text filters may be repeated to match any of their values.
#[derive(clap::Args)]
pub struct Filters {
    #[arg(long)]
    tenant_id: Option<String>,
    /// event_time at or after: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    since: Option<String>,
    /// event_time before (exclusive): RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, alias = "provider")]
    model_provider: Vec<String>,
    #[arg(long, alias = "model")]
    model_name: Vec<String>,
    #[arg(long)]
    model_version: Vec<String>,
    #[arg(long)]
    deployment_id: Vec<String>,
    #[arg(long)]
    safety_mode: Vec<String>,
    #[arg(long)]
    operation_type: Vec<String>,
    #[arg(long)]
    user_id: Vec<String>,
    #[arg(long)]
    agent_id: Vec<String>,
    #[arg(long)]
    session_id: Vec<String>,
    #[arg(long)]
    feature_code: Vec<String>,
    /// The caller's own id of a call (e.g. an imported Log ID).
    #[arg(long)]
    external_id: Vec<String>,
    /// temperature >= this.
    #[arg(long)]
    temperature_min: Option<String>,
    /// temperature <= this.
    #[arg(long)]
    temperature_max: Option<String>,
    /// temperature > this.
    #[arg(long)]
    temperature_gt: Option<String>,
    /// temperature < this.
    #[arg(long)]
    temperature_lt: Option<String>,
    #[arg(long)]
    success: Option<bool>,
    /// Only this record (repeat for more).
    #[arg(long)]
    id: Vec<String>,
    /// Records whose prompt is exactly this text (looked up by its keyed hash; needs
    /// --tenant-id).
    #[arg(long)]
    prompt_text: Option<String>,
    /// Records whose response is exactly this text (as --prompt-text).
    #[arg(long)]
    response_text: Option<String>,
}

impl Filters {
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut one = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                pairs.push((k.to_owned(), v.clone()));
            }
        };
        one("tenant_id", &self.tenant_id);
        one("since", &self.since);
        one("until", &self.until);
        one("temperature_min", &self.temperature_min);
        one("temperature_max", &self.temperature_max);
        one("temperature_gt", &self.temperature_gt);
        one("temperature_lt", &self.temperature_lt);
        one("success", &self.success.map(|b| b.to_string()));
        one("prompt_text", &self.prompt_text);
        one("response_text", &self.response_text);
        for (k, values) in [
            ("model_provider", &self.model_provider),
            ("model_name", &self.model_name),
            ("model_version", &self.model_version),
            ("deployment_id", &self.deployment_id),
            ("safety_mode", &self.safety_mode),
            ("operation_type", &self.operation_type),
            ("user_id", &self.user_id),
            ("agent_id", &self.agent_id),
            ("session_id", &self.session_id),
            ("feature_code", &self.feature_code),
            ("external_id", &self.external_id),
            ("id", &self.id),
        ] {
            pairs.extend(values.iter().map(|v| (k.to_owned(), v.clone())));
        }
        pairs
    }
}
