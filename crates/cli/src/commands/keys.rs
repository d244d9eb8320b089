//! `aitrail keys create|list|revoke`: on the store directly (works before any server ran:
//! how the first keys are made by hand), or through a server's admin API with --server.

use std::time::Duration;

use aitrail_core::access::{Change, KeyId, Role};
use aitrail_core::{TenantId, Timestamp};
use aitrail_service::keys::{KeyInfo, KeyRequest};
use aitrail_service::{Changed, LogSigner};
use anyhow::{Context, bail};
use serde_json::json;

use crate::target::{Intent, Target, json_answer, local_trail};
use crate::{Global, keyfile};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a key; it is printed this once and never again.
    Create(CreateArgs),
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke {
        /// The key's id (the 16 hex digits after `ait_`).
        id: String,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// ingest, viewer, auditor or admin.
    #[arg(long)]
    role: Role,
    /// The tenant the key acts for; without it, a global admin key.
    #[arg(long)]
    tenant_id: Option<String>,
    /// When it stops working: RFC 3339, or a number of days from now (`90d`).
    #[arg(long)]
    expires: Option<String>,
    /// What it is for, to recognise it in listings.
    #[arg(long)]
    label: Option<String>,
    /// The log's name, as `serve --log-name` (the key secret derives from the log key).
    #[arg(long, env = "AITRAIL_LOG_NAME", default_value = "aitrail")]
    log_name: String,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => create(global, args).await,
        Command::List => list(global).await,
        Command::Revoke { id } => revoke(global, &id).await,
    }
}

fn expiry(text: &str) -> anyhow::Result<Timestamp> {
    if let Some(days) = text.strip_suffix('d').and_then(|d| d.parse::<u64>().ok()) {
        let at = Timestamp::now().datetime() + Duration::from_secs(days * 86_400);
        return Timestamp::from_datetime(at).map_err(|e| anyhow::anyhow!("--expires: {e}"));
    }
    Timestamp::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("--expires: {e} (or days: 90d)"))
}

async fn create(global: &Global, args: CreateArgs) -> anyhow::Result<()> {
    let tenant =
        args.tenant_id.as_deref().map(TenantId::parse).transpose().map_err(anyhow::Error::msg)?;
    let expires_at = args.expires.as_deref().map(expiry).transpose()?;
    if global.server.is_none() {
        // A new log key is named --log-name: made before the store, which seals under it.
        keyfile::load_or_create(&global.data_dir, &args.log_name)?;
    }
    let made = match Target::open(global, Intent::Change).await? {
        Target::Local(store) => {
            let signer = keyfile::load_or_create(&global.data_dir, &args.log_name)?;
            // A store signed with another key refuses before the key is made.
            store.claim_log_key(&signer.verifier().to_string()).await?;
            let signer = LogSigner::new(signer, Duration::from_secs(1));
            let trail = aitrail_service::Trail::new(store, std::sync::Arc::new(signer));
            let request = KeyRequest { role: args.role, tenant, expires_at, label: args.label };
            let (key, stored) = trail.issue_key(request).await?;
            let changed = Changed { tenant: stored.tenant.clone(), ..Changed::default() };
            trail.record_offline(Change::KeyCreate, "aitrail keys create", changed).await?;
            KeyInfo { key: Some(key.reveal()), ..KeyInfo::from(&stored) }
        }
        remote => {
            let body = json!({
                "role": args.role.name(),
                "tenant_id": tenant.map(|t| t.to_string()),
                "expires_at": expires_at.map(|t| t.to_string()),
                "label": args.label,
            });
            let response = remote.request(reqwest::Method::POST, "/v1/keys").json(&body).send();
            json_answer(response.await.context("cannot reach the server")?).await?
        }
    };
    let Some(key) = &made.key else { bail!("the server made a key but did not show it") };
    println!("{key}");
    eprintln!(
        "made {} key {} for {}; this is the only time it is shown",
        made.role,
        made.id,
        made.tenant_id.as_deref().unwrap_or("every tenant")
    );
    Ok(())
}

async fn list(global: &Global) -> anyhow::Result<()> {
    let keys: Vec<KeyInfo> = match Target::open(global, Intent::Read).await? {
        Target::Local(store) => store.keys().await?.iter().map(KeyInfo::from).collect(),
        remote => {
            let response = remote.request(reqwest::Method::GET, "/v1/keys").send();
            json_answer(response.await.context("cannot reach the server")?).await?
        }
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["id", "role", "tenant", "label", "created", "expires", "revoked"]);
    for k in keys {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        table.add_row([
            k.id,
            k.role,
            k.tenant_id.unwrap_or_else(|| "*".into()),
            dash(k.label),
            k.created_at.to_string(),
            dash(k.expires_at.map(|t| t.to_string())),
            dash(k.revoked_at.map(|t| t.to_string())),
        ]);
    }
    println!("{table}");
    Ok(())
}

async fn revoke(global: &Global, id: &str) -> anyhow::Result<()> {
    let key_id = KeyId::parse(id).with_context(|| format!("{id:?} is not a key id"))?;
    match Target::open(global, Intent::Change).await? {
        Target::Local(store) => {
            let trail = local_trail(global, store, Intent::Change).await?;
            if !trail.revoke_key(&key_id).await? {
                bail!("no key with id {id}");
            }
            let key = trail.key(&key_id).await?.context("the key revoked is gone")?;
            let changed = Changed { tenant: key.tenant, ..Changed::default() };
            trail.record_offline(Change::KeyRevoke, "aitrail keys revoke", changed).await?;
        }
        remote => {
            let path = format!("/v1/keys/{key_id}/revoke");
            let response = remote.request(reqwest::Method::POST, &path).send();
            let _: serde_json::Value =
                json_answer(response.await.context("cannot reach the server")?).await?;
        }
    }
    println!("revoked {key_id}");
    Ok(())
}
