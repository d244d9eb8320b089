//! `aitrail retention run`, `aitrail erase` and `aitrail hold add|remove|list`
//! (docs/PRIVACY.md). Erasure and holds work on the store or through --server; a retention
//! run works on the store (the server runs it on its own every --retention-interval-s).

use aitrail_core::access::{Actor, Change};
use aitrail_core::{TenantId, Timestamp};
use aitrail_service::Changed;
use aitrail_store::retention::{Hold, Mode, Selector};
use anyhow::{Context, bail};
use serde_json::json;

use crate::Global;
use crate::target::{Intent, Target, json_answer, local_trail};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Count what would go, delete nothing, log nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Subcommand)]
pub enum RetentionCommand {
    /// Apply every tenant's retention now.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct EraseArgs {
    #[arg(long)]
    tenant_id: String,
    /// Erase this person's content.
    #[arg(long, conflicts_with = "session_id", required_unless_present = "session_id")]
    user_id: Option<String>,
    /// Erase this session's content.
    #[arg(long)]
    session_id: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum HoldCommand {
    /// Suspend deletion of a tenant, or of one of its sessions.
    Add {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        session_id: Option<String>,
        /// Why (a case number, a matter).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a hold.
    Remove {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        session_id: Option<String>,
    },
    /// The holds in place.
    List,
}

fn tenant(id: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(id).map_err(|e| anyhow::anyhow!("--tenant-id: {e}"))
}

pub async fn retention(global: &Global, command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run(args) = command;
    // A dry run counts and changes nothing: it reads.
    let intent = if args.dry_run { Intent::Read } else { Intent::Change };
    let Target::Local(store) = Target::open(global, intent).await? else {
        bail!(
            "a retention run works on the store: run it without --server (unset AITRAIL_SERVER), with --data-dir or --database; a server runs its own every hour"
        )
    };
    let trail = local_trail(global, store, intent).await?;
    let mode = if args.dry_run { Mode::DryRun } else { Mode::Delete };
    let run = trail.retention_run(Timestamp::now(), mode).await?;
    if run.event_id.is_some() {
        trail.sign_pending().await?;
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    for t in &run.tenants {
        if t.held {
            eprintln!("{}: under a legal hold, skipped", t.tenant_id);
        } else {
            eprintln!(
                "{}: {verb} {} records recorded before {} ({} held), and the content of {} more recorded before {} ({} held); leaves stay",
                t.tenant_id,
                t.records_removed,
                t.records_cutoff,
                t.records_held,
                t.purged.records,
                t.content_cutoff,
                t.purged.held
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&run)?);
    Ok(())
}

pub async fn erase(global: &Global, args: EraseArgs) -> anyhow::Result<()> {
    let tenant = tenant(&args.tenant_id)?;
    let answer = match Target::open(global, Intent::Change).await? {
        Target::Local(store) => {
            let selector = match (args.user_id, args.session_id) {
                (Some(u), _) => Selector::User(u),
                (None, Some(s)) => Selector::Session(s),
                (None, None) => bail!("give --user-id or --session-id"),
            };
            let trail = local_trail(global, store, Intent::Change).await?;
            let erased = trail.erase(&tenant, &selector, Actor::Operator).await?;
            let changed = Changed {
                tenant: Some(tenant.clone()),
                records: erased.purged.records,
                details: Vec::new(),
            };
            trail.record_offline(Change::Erasure, "aitrail erase", changed).await?;
            serde_json::to_value(erased)?
        }
        remote => {
            let body = json!({"tenant_id": tenant, "user_id": args.user_id, "session_id": args.session_id});
            let response = remote.request(reqwest::Method::POST, "/v1/erasure").json(&body).send();
            json_answer(response.await.context("cannot reach the server")?).await?
        }
    };
    eprintln!(
        "erased the content of {} records of tenant {tenant} ({} in held sessions kept); leaves and proofs stay",
        answer["records"], answer["held"]
    );
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub async fn hold(global: &Global, command: HoldCommand) -> anyhow::Result<()> {
    let intent = match command {
        HoldCommand::List => Intent::Read,
        HoldCommand::Add { .. } | HoldCommand::Remove { .. } => Intent::Change,
    };
    let target = Target::open(global, intent).await?;
    match command {
        HoldCommand::List => {
            let holds: serde_json::Value = match &target {
                Target::Local(store) => json!({ "holds": store.holds().await? }),
                remote => {
                    let response = remote.request(reqwest::Method::GET, "/v1/holds").send();
                    json_answer(response.await.context("cannot reach the server")?).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&holds["holds"])?);
        }
        HoldCommand::Add { tenant_id, session_id, reason } => {
            let tenant = tenant(&tenant_id)?;
            let held = held(&tenant, session_id.as_deref());
            match &target {
                Target::Local(store) => {
                    let hold = Hold {
                        tenant_id: tenant.clone(),
                        session_id,
                        placed_at: Timestamp::now(),
                        reason,
                    };
                    let trail = local_trail(global, store.clone(), intent).await?;
                    trail.place_hold(&hold, Actor::Operator).await?;
                    let changed = Changed { tenant: Some(tenant.clone()), ..Changed::default() };
                    trail.record_offline(Change::HoldAdd, "aitrail hold add", changed).await?;
                }
                remote => {
                    let body =
                        json!({"tenant_id": tenant, "session_id": session_id, "reason": reason});
                    let response =
                        remote.request(reqwest::Method::POST, "/v1/holds").json(&body).send();
                    let _: serde_json::Value =
                        json_answer(response.await.context("cannot reach the server")?).await?;
                }
            }
            eprintln!("hold placed on {held}");
        }
        HoldCommand::Remove { tenant_id, session_id } => {
            let tenant = tenant(&tenant_id)?;
            let held = held(&tenant, session_id.as_deref());
            match &target {
                Target::Local(store) => {
                    let trail = local_trail(global, store.clone(), intent).await?;
                    if !trail.release_hold(&tenant, session_id.as_deref(), Actor::Operator).await? {
                        bail!("no such hold on {held}");
                    }
                    let changed = Changed { tenant: Some(tenant.clone()), ..Changed::default() };
                    trail
                        .record_offline(Change::HoldRemove, "aitrail hold remove", changed)
                        .await?;
                }
                remote => {
                    let body = json!({"tenant_id": tenant, "session_id": session_id});
                    let response = remote
                        .request(reqwest::Method::POST, "/v1/holds/release")
                        .json(&body)
                        .send();
                    let _: serde_json::Value =
                        json_answer(response.await.context("cannot reach the server")?).await?;
                }
            }
            eprintln!("hold on {held} lifted");
        }
    }
    Ok(())
}

/// What a hold covers, as the messages name it.
fn held(tenant: &TenantId, session: Option<&str>) -> String {
    match session {
        Some(session) => format!("session {session} of tenant {tenant}"),
        None => format!("tenant {tenant}"),
    }
}
