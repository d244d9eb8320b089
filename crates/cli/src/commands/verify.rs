use std::path::PathBuf;

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, Entry};
use aitrail_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_store::verify::verify_store;
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use indicatif::{ProgressBar, ProgressStyle};

use crate::target::Target;
use crate::{Global, keyfile};

#[derive(clap::Args)]
pub struct Args {
    /// Check this one record's inclusion in the latest checkpoint. Without it (and without
    /// --checkpoint), verify the whole local store.
    id: Option<String>,
    /// A checkpoint saved earlier: prove today's log is an append-only extension of it.
    #[arg(long, conflicts_with = "id")]
    checkpoint: Option<PathBuf>,
    /// A compliance export (zip) to check offline: no server, no database.
    #[arg(long, conflicts_with_all = ["id", "checkpoint"])]
    export: Option<PathBuf>,
    /// The log's verifier key (name+keyid+base64), as published at GET /v1/log-key. Pin it:
    /// without it the local key file is used, or, against a server, the server's own word.
    #[arg(long, env = "AITRAIL_VERIFIER_KEY")]
    key: Option<String>,
}

/// Exit 0 when everything verifies; otherwise each problem is printed and the exit is 1.
pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    if let Some(bundle) = &args.export {
        return export(bundle, args.key.as_deref());
    }
    let target = Target::open(global).await?;
    let verifier = match (&args.key, &target) {
        (Some(k), _) => {
            Verifier::parse(k).context("--key is not a verifier key (name+keyid+base64)")?
        }
        (None, Target::Local(_)) => keyfile::verifier(None, &global.data_dir)?,
        (None, Target::Remote { .. }) => {
            let key = target.log_key().await?;
            eprintln!(
                "aitrail: warning: checking against the key the server publishes ({key}); pass --key to pin it"
            );
            Verifier::parse(&key).context("the server's log key")?
        }
    };
    match (&args.id, &args.checkpoint) {
        (Some(id), _) => one_record(&target, &verifier, id).await,
        (None, Some(file)) => extends(&target, &verifier, file).await,
        (None, None) => whole_store(&target, &verifier).await,
    }
}

async fn whole_store(target: &Target, verifier: &Verifier) -> anyhow::Result<()> {
    let Target::Local(store) = target else {
        bail!(
            "full verification reads the store itself: run it with --data-dir or --database, without --server"
        )
    };
    let total: u64 = store.logs().await?.iter().map(|h| h.size).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} records {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = verify_store(store.clone(), verifier, &|n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    for f in &report.findings {
        println!("{f}");
    }
    if !report.ok() {
        bail!(
            "verification FAILED: {} problem(s) in {} records of {} tenant log(s)",
            report.findings.len(),
            report.records,
            report.tenants
        );
    }
    println!(
        "OK: {} records in {} tenant log(s) match their leaves; {} signed checkpoint(s) verified with {}",
        report.records, report.tenants, report.checkpoints, verifier
    );
    Ok(())
}

async fn one_record(target: &Target, verifier: &Verifier, id: &str) -> anyhow::Result<()> {
    let proof = target.proof(id).await?;
    let cp = Checkpoint::open(&proof.checkpoint, verifier).context("the checkpoint")?;
    let entry_bytes = B64.decode(&proof.entry).context("entry is not base64")?;
    let entry = Entry::decode(&entry_bytes).context("the logged entry")?;
    if entry.id.to_string() != id.to_lowercase() || entry.seq != proof.leaf_index {
        bail!("the proof is for another record (id {}, seq {})", entry.id, entry.seq);
    }
    let tenant = entry.record.get("tenant_id").and_then(|t| t.as_str()).unwrap_or_default();
    if cp.size != proof.tree_size || cp.origin != format!("{}/{tenant}", verifier.name()) {
        bail!("the checkpoint is not the one of this tenant's log at size {}", proof.tree_size);
    }
    let path: Vec<Vec<u8>> = proof
        .audit_path
        .iter()
        .map(|h| B64.decode(h))
        .collect::<Result<_, _>>()
        .context("audit path")?;
    verify_inclusion(&leaf_hash(&entry_bytes), proof.leaf_index, proof.tree_size, &path, &cp.root)
        .with_context(|| format!("record {id} is NOT in the log"))?;
    // The record as shown must be the record as logged, content included.
    let mut shown =
        target.get(id).await?.with_context(|| format!("record {id} is logged but not shown"))?;
    // Keyed hashes are kept beside the log, not in it: nothing to check them against.
    (shown.record.prompt_hash, shown.record.response_hash) = (None, None);
    let content = content_of(&shown, proof.content_salt.as_deref())?;
    let logged = entry.to_stored(content.as_ref()).context("the shown content")?;
    if logged != shown {
        bail!("record {id} as shown differs from the record as logged");
    }
    println!(
        "OK: record {id} (tenant {tenant}, seq {}) is in the log of size {}, signed by {}",
        proof.leaf_index, cp.size, verifier
    );
    Ok(())
}

/// The content of a shown record, for checking against the entry's commitments.
fn content_of(
    shown: &aitrail_core::StoredRecord,
    salt: Option<&str>,
) -> anyhow::Result<Option<Content>> {
    let Some(salt) = salt else { return Ok(None) };
    let salt: [u8; 32] = B64
        .decode(salt)
        .ok()
        .and_then(|s| s.try_into().ok())
        .context("content_salt is not 32 bytes of base64")?;
    let r = &shown.record;
    let mut fields = std::collections::BTreeMap::new();
    if let Some(p) = &r.prompt {
        fields.insert("prompt".to_owned(), p.as_str().to_owned());
    }
    if let Some(p) = &r.response {
        fields.insert("response".to_owned(), p.as_str().to_owned());
    }
    if let Some(v) = &r.prompt_variables {
        let value = serde_json::Value::Object(v.as_map().clone());
        fields.insert("prompt_variables".to_owned(), aitrail_core::entry::canonical_json(&value));
    }
    Ok(Some(Content { salt, fields, hashes: Default::default() }))
}

async fn extends(target: &Target, verifier: &Verifier, file: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let old = Checkpoint::open(&text, verifier)
        .with_context(|| format!("{} is not a checkpoint signed by {verifier}", file.display()))?;
    let tenant = old
        .origin
        .strip_prefix(&format!("{}/", verifier.name()))
        .and_then(|t| TenantId::parse(t).ok())
        .with_context(|| format!("origin {} is not one of this log's", old.origin))?;
    let answer = target.consistency(&tenant, old.size).await?;
    let new = Checkpoint::open(&answer.checkpoint, verifier).context("the latest checkpoint")?;
    if new.origin != old.origin || new.size != answer.to {
        bail!("the latest checkpoint is not of the same log");
    }
    let proof: Vec<Vec<u8>> =
        answer.proof.iter().map(|h| B64.decode(h)).collect::<Result<_, _>>().context("proof")?;
    verify_consistency(old.size, new.size, &proof, &old.root, &new.root).with_context(|| {
        format!("the log of tenant {tenant} is NOT an extension of the saved checkpoint of size {}: history was rewritten", old.size)
    })?;
    println!(
        "OK: the log of tenant {tenant} at size {} extends the saved checkpoint of size {} (both signed by {verifier})",
        new.size, old.size
    );
    Ok(())
}

/// An export bundle, offline: every finding on stdout, then exit 1 if any.
fn export(bundle: &std::path::Path, key: Option<&str>) -> anyhow::Result<()> {
    let key = key
        .map(Verifier::parse)
        .transpose()
        .context("--key is not a verifier key (name+keyid+base64)")?;
    let report = aitrail_export::check::bundle(bundle, key.as_ref())
        .with_context(|| format!("cannot check {}", bundle.display()))?;
    if report.key_from_bundle {
        eprintln!(
            "aitrail: warning: checked against the key the bundle names ({}); pass --key to pin the log's published key",
            report.key
        );
    }
    for f in &report.findings {
        println!("{f}");
    }
    if !report.ok() {
        bail!(
            "export verification FAILED: {} problem(s) in {} records of tenant {}",
            report.findings.len(),
            report.records,
            report.tenant
        );
    }
    println!(
        "OK: {} records of tenant {} are in its log as signed at size {} by {}; every file matches the signed manifest",
        report.records, report.tenant, report.checkpoint_size, report.key
    );
    Ok(())
}
