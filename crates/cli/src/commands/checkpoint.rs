use aitrail_core::TenantId;
use anyhow::bail;

use crate::Global;
use crate::target::{Intent, Target};

#[derive(clap::Args)]
pub struct Args {
    /// Whose log; may be left out when the local store holds one tenant only.
    #[arg(long)]
    tenant_id: Option<String>,
}

/// Prints the latest signed checkpoint (a C2SP signed note). Save it: `aitrail verify
/// --checkpoint FILE` later proves the log only grew since.
pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let target = Target::open(global, Intent::Read).await?;
    let tenant = tenant_or_only(&target, args.tenant_id.as_deref()).await?;
    print!("{}", target.checkpoint(&tenant).await?);
    Ok(())
}

/// The given tenant, or the only one in a local store (its system logs aside).
pub async fn tenant_or_only(target: &Target, given: Option<&str>) -> anyhow::Result<TenantId> {
    if let Some(t) = given {
        return TenantId::parse(t).map_err(|e| anyhow::anyhow!("--tenant-id: {e}"));
    }
    if let Target::Local(store) = target {
        // The system's own logs are not whose log anyone means here.
        let mut tenants = store.tenants().await?;
        tenants.retain(|t| !t.is_reserved());
        if tenants.len() == 1 {
            return Ok(tenants.remove(0));
        }
    }
    bail!("say whose log with --tenant-id")
}
