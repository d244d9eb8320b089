use std::io::Read;
use std::path::PathBuf;

use aitrail_core::ingest::BodyFormat;
use anyhow::Context;

use crate::Global;
use crate::target::{Intent, Target};

#[derive(clap::Args)]
pub struct Args {
    /// A file of records: one JSON object, a JSON array, or NDJSON (one object per line).
    /// `-` or nothing reads stdin.
    file: Option<PathBuf>,
}

/// Prints one receipt per record (`{"id":…,"seq":…,"recorded_at":…}`), one per line.
pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let body = match args.file.as_deref() {
        None => read_stdin()?,
        Some(p) if p.as_os_str() == "-" => read_stdin()?,
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
    };
    let receipts = Target::open(global, Intent::Change)
        .await?
        .append(global, body.clone(), sniff(&body))
        .await?;
    for r in &receipts {
        println!("{}", serde_json::to_string(r)?);
    }
    eprintln!("logged {} record(s)", receipts.len());
    Ok(())
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("cannot read stdin")?;
    Ok(buf)
}

/// A JSON document (object or array) or NDJSON: several top-level objects on lines of their
/// own.
fn sniff(body: &[u8]) -> BodyFormat {
    let text = String::from_utf8_lossy(body);
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let starts_array = text.trim_start().starts_with('[');
    if lines > 1 && !starts_array && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
    {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    }
}
