//! `aitrail export`: a compliance export to a file, from the store directly (signed with
//! the local log key) or from --server (GET /v1/export, streamed to the file).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aitrail_export::Format;
use aitrail_store_sqlite::ReadMode;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Global;
use crate::commands::filters::Filters;
use crate::target::{self, Intent, Target};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Zip,
    Csv,
    Jsonl,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filters: Filters,
    /// zip: the bundle an auditor verifies offline; csv, jsonl, json: one file.
    #[arg(long, value_enum, default_value = "zip")]
    format: FormatArg,
    /// Where to write it: a file (replaced only once the export is complete), a pipe or
    /// device (written as it streams), or - for standard output.
    #[arg(long, short)]
    output: PathBuf,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::Zip => Format::Zip,
            FormatArg::Csv => Format::Csv,
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Json => Format::Json,
        }
    }
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let format = args.format.format();
    let mut pairs = args.filters.pairs();
    pairs.push(("format".into(), format.name().into()));
    let mut sink = Sink::open(&args.output)?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("exporting {msg} {pos} {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let records = if global.server.is_some() {
        bar.set_message("bytes");
        remote(&Target::open(global, Intent::Read).await?, &pairs, sink.file(), &bar).await?;
        None
    } else {
        // A long streaming read: its resident size stays that of its buffers.
        let store = target::open_store_with(global, Intent::Read, ReadMode::Copied).await?;
        let file = sink.file().try_clone()?;
        local(global, store, pairs, file, &bar).await?
    };
    bar.finish_and_clear();
    sink.finish(&args.output)?;
    match records {
        Some(n) => eprintln!("exported {n} records to {}", args.output.display()),
        None => eprintln!("exported to {}", args.output.display()),
    }
    Ok(())
}

/// Where the export goes. A regular file is written beside its final name and renamed at
/// the end, so a failed export leaves nothing that looks whole; anything else (standard
/// output, a pipe, /dev/null) is written in place: renaming over it would replace the
/// device or pipe with a plain file.
enum Sink {
    Partial(tempfile::NamedTempFile),
    Stream(std::fs::File),
}

impl Sink {
    fn open(output: &Path) -> anyhow::Result<Sink> {
        if output.as_os_str() == "-" {
            let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
            return Ok(Sink::Stream(stdout.into()));
        }
        match std::fs::metadata(output) {
            Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                let file = std::fs::OpenOptions::new().write(true).open(output);
                Ok(Sink::Stream(
                    file.with_context(|| format!("cannot write {}", output.display()))?,
                ))
            }
            _ => {
                let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
                let dir = dir.unwrap_or(".".as_ref());
                let partial = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("cannot write in {}", dir.display()))?;
                Ok(Sink::Partial(partial))
            }
        }
    }

    fn file(&mut self) -> &mut std::fs::File {
        match self {
            Sink::Partial(partial) => partial.as_file_mut(),
            Sink::Stream(file) => file,
        }
    }

    fn finish(self, output: &Path) -> anyhow::Result<()> {
        match self {
            Sink::Partial(partial) => {
                partial.as_file().sync_all()?;
                partial
                    .persist(output)
                    .with_context(|| format!("cannot write {}", output.display()))?;
            }
            Sink::Stream(mut file) => file.flush()?,
        }
        Ok(())
    }
}

async fn local(
    global: &Global,
    store: Arc<dyn aitrail_store::Store>,
    pairs: Vec<(String, String)>,
    file: std::fs::File,
    bar: &ProgressBar,
) -> anyhow::Result<Option<u64>> {
    let mut params = aitrail_export::parse_params(pairs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(tenant) = params.query.tenant_id.take() else {
        bail!("an export proves one tenant's log against its checkpoint: give --tenant-id")
    };
    // An export reads: it proves the records against the log's latest signed checkpoint
    // (the server signs every second, an offline change at once) and signs nothing new.
    let trail = target::local_trail(global, store.clone(), Intent::Read).await?;
    let Some(request) = trail.export_request(tenant.clone(), params, None).await? else {
        bail!("tenant {tenant} has no signed checkpoint: it has no records yet")
    };
    let checkpoint = &request.checkpoint;
    let head = store.logs().await?.into_iter().find(|h| h.tenant_id == tenant);
    if let Some(unsigned) = head.map(|h| h.size.saturating_sub(checkpoint.size)).filter(|n| *n > 0)
    {
        eprintln!(
            "aitrail: warning: the last {unsigned} records of tenant {tenant} are not in a signed checkpoint yet, so not in this export; `aitrail serve` signs them"
        );
    }
    let log = trail.signer().clone();
    let rt = tokio::runtime::Handle::current();
    let bar = bar.clone();
    let n = tokio::task::spawn_blocking(move || {
        let progress = |phase: &str, n: u64| {
            bar.set_message(phase.to_owned());
            bar.set_position(n);
        };
        let out = std::io::BufWriter::new(file);
        aitrail_export::write(store, &rt, log.signer(), &request, out, &progress)
    })
    .await??;
    Ok(Some(n))
}

async fn remote(
    target: &Target,
    pairs: &[(String, String)],
    file: &mut std::fs::File,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut response =
        target.request(reqwest::Method::GET, "/v1/export").query(pairs).send().await?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|p| p["detail"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("server refused ({status}): {detail}");
    }
    let mut written = 0u64;
    while let Some(chunk) = response.chunk().await.context("the export was cut off")? {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        bar.set_position(written);
    }
    Ok(())
}
