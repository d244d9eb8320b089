use anyhow::bail;

use crate::Global;
use crate::target::{Intent, Target};

#[derive(clap::Args)]
pub struct Args {
    /// The record's id (a UUID).
    id: String,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    match Target::open(global, Intent::Read).await?.get(&args.id).await? {
        Some(record) => {
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        None => bail!("no record with id {}", args.id),
    }
}
