//! `aitrail config get|set`: a tenant's privacy policy (docs/PRIVACY.md), on the store
//! directly or through --server (GET/PUT /v1/tenants/{id}/policy, access-logged).

use aitrail_core::TenantId;
use aitrail_core::access::Change;
use aitrail_core::policy::{Policy, SETTINGS};
use aitrail_service::Changed;
use anyhow::{Context, bail};
use serde::Deserialize;

use crate::Global;
use crate::target::{Intent, Target, json_answer, local_trail};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the tenant's policy, or one setting of it.
    Get {
        /// One setting (content_mode, retention_days, ...; `audit.` prefix allowed).
        setting: Option<String>,
        #[arg(long)]
        tenant_id: String,
    },
    /// Change one setting: `aitrail config set audit.retention_days 365 --tenant-id T`.
    Set {
        setting: String,
        value: String,
        #[arg(long)]
        tenant_id: String,
    },
}

#[derive(Deserialize)]
struct Answer {
    policy: serde_json::Value,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Get { setting, tenant_id } => {
            let target = Target::open(global, Intent::Read).await?;
            let policy = current(&target, &tenant(&tenant_id)?).await?;
            let policy = serde_json::to_value(&policy)?;
            match setting {
                None => println!("{}", serde_json::to_string_pretty(&policy)?),
                Some(s) => {
                    let name = s.strip_prefix("audit.").unwrap_or(&s);
                    let Some(value) = policy.get(name) else {
                        bail!(
                            "{s} is not a policy setting; the settings are {}",
                            SETTINGS.join(", ")
                        )
                    };
                    println!("{}", value.as_str().map_or_else(|| value.to_string(), str::to_owned));
                }
            }
        }
        Command::Set { setting, value, tenant_id } => {
            let tenant = tenant(&tenant_id)?;
            let target = Target::open(global, Intent::Change).await?;
            let policy = current(&target, &tenant)
                .await?
                .with(&setting, &value)
                .map_err(|e| anyhow::anyhow!("refused, nothing changed: {e}"))?;
            let set = match target {
                Target::Local(store) => {
                    let trail = local_trail(global, store, Intent::Change).await?;
                    trail.set_policy(&tenant, &policy).await?;
                    let changed = Changed {
                        tenant: Some(tenant.clone()),
                        records: 0,
                        details: vec![("policy".into(), policy.to_json())],
                    };
                    trail.record_offline(Change::PolicySet, "aitrail config set", changed).await?;
                    policy
                }
                remote => {
                    let path = format!("/v1/tenants/{tenant}/policy");
                    let response = remote
                        .request(reqwest::Method::PUT, &path)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(policy.to_json())
                        .send();
                    let answer: Answer =
                        json_answer(response.await.context("cannot reach the server")?).await?;
                    Policy::parse(&answer.policy.to_string()).map_err(anyhow::Error::msg)?
                }
            };
            eprintln!("tenant {tenant}: {setting} set");
            println!("{}", serde_json::to_string_pretty(&serde_json::to_value(&set)?)?);
        }
    }
    Ok(())
}

fn tenant(id: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(id).map_err(|e| anyhow::anyhow!("--tenant-id: {e}"))
}

/// The tenant's policy in force (the default if it never set one).
async fn current(target: &Target, tenant: &TenantId) -> anyhow::Result<Policy> {
    match target {
        Target::Local(store) => Ok(aitrail_store::policy_of(store.as_ref(), tenant).await?),
        remote => {
            let response = remote
                .request(reqwest::Method::GET, &format!("/v1/tenants/{tenant}/policy"))
                .send();
            let answer: Answer =
                json_answer(response.await.context("cannot reach the server")?).await?;
            Policy::parse(&answer.policy.to_string()).map_err(anyhow::Error::msg)
        }
    }
}
