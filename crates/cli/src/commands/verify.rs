use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aitrail_core::TenantId;
use aitrail_core::entry::{Content, Entry};
use aitrail_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use aitrail_core::note::{Checkpoint, Verifier};
use aitrail_store::verify::verify_store;
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::target::{Intent, Target, json_answer};
use crate::{Global, keyfile};

#[derive(clap::Args)]
pub struct Args {
    /// Check this one record's inclusion in the latest checkpoint. Without it (and without
    /// --checkpoint), verify the whole store: the local one, or, with --server, the
    /// server's (it runs the check; this command checks its checkpoints' signatures).
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
    /// With --export and no --key: accept the key the bundle names itself. It was chosen by
    /// whoever made the bundle, so the bundle is then only shown to agree with itself;
    /// without this flag, an unpinned check fails.
    #[arg(long, requires = "export", conflicts_with = "key")]
    trust_bundle_key: bool,
}

/// Exit 0 when everything verifies; otherwise each problem is printed and the exit is 1.
pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    if let Some(bundle) = &args.export {
        return export(bundle, args.key.as_deref(), args.trust_bundle_key);
    }
    let target = Target::open(global, Intent::Read).await?;
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
    let Target::Local(store) = target else { return whole_store_on_server(target, verifier).await };
    let heads = store.logs().await?;
    let logs = LogCounts::of(heads.iter().map(|h| (h.tenant_id.as_str(), h.size)), true);
    let total: u64 = heads.iter().map(|h| h.size).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} records {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = verify_store(store.clone(), verifier, &|n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    for f in &report.findings {
        println!("{f}");
    }
    if report.content_unchecked > 0 {
        println!(
            "NOTE: the content of {} record(s) is sealed and was not checked against its \
             commitments: no log key to open it (AITRAIL_LOG_KEY, or the data dir's log-key)",
            report.content_unchecked
        );
    }
    if !report.ok() {
        bail!("verification FAILED: {} problem(s) in {logs}", report.findings.len());
    }
    println!(
        "OK: {logs} match their leaves; {} signed checkpoint(s) verified with {verifier}",
        report.checkpoints
    );
    Ok(())
}

/// What a server answers to POST /v1/verification (the parts read here).
#[derive(Deserialize)]
struct ServerRun {
    ok: bool,
    findings: u64,
    examples: Vec<String>,
    /// Set when the key sees one tenant's log only, not aitrail's own logs.
    #[serde(default)]
    tenant: Option<String>,
    tenants: BTreeMap<String, ServerLog>,
}

#[derive(Deserialize)]
struct ServerLog {
    size: u64,
}

/// Through a server: the server runs the whole-store check on its own store (as the
/// dashboard's "verify now" does), and this command checks itself what it can with the
/// pinned key alone: that the key the server publishes is the pinned one, and that each
/// tenant log's latest checkpoint is signed by it.
async fn whole_store_on_server(target: &Target, verifier: &Verifier) -> anyhow::Result<()> {
    let published = target.log_key().await?;
    if published != verifier.to_string() {
        bail!("the server signs with {published}, not with the pinned key {verifier}");
    }
    let answer = target.request(reqwest::Method::POST, "/v1/verification").send().await;
    let run: ServerRun = json_answer(answer.context("cannot reach the server")?).await?;
    let own_logs_seen = run.tenant.is_none();
    let logs = LogCounts::of(run.tenants.iter().map(|(t, l)| (t.as_str(), l.size)), own_logs_seen);
    if !run.ok {
        for finding in &run.examples {
            println!("{finding}");
        }
        bail!("verification FAILED on the server: {} problem(s) in {logs}", run.findings);
    }
    for note in &run.examples {
        println!("note: {note}");
    }
    let (system, access) = (TenantId::system_log(), TenantId::access_log());
    for (name, log) in &run.tenants {
        // aitrail's own logs are left to the server's check: no tenant's key reads them.
        if log.size == 0 || name == system.as_str() || name == access.as_str() {
            continue;
        }
        let tenant = TenantId::parse(name)
            .map_err(|e| anyhow::anyhow!("the server reports a log {name:?}: {e}"))?;
        let note = target.checkpoint(&tenant).await?;
        let cp = Checkpoint::open(&note, verifier)
            .with_context(|| format!("the latest checkpoint of tenant {tenant}"))?;
        if cp.origin != format!("{}/{tenant}", verifier.name()) {
            bail!("the latest checkpoint of tenant {tenant} is of another log: {}", cp.origin);
        }
    }
    println!(
        "OK: the server verified {logs} against their leaves and signed checkpoints; each tenant log's latest checkpoint verified here with {verifier}"
    );
    println!(
        "(checked by the server on its own store: `aitrail verify ID` checks a record here, `aitrail verify --export` a bundle offline)"
    );
    Ok(())
}

/// Records per kind of log: the tenants' logs, and aitrail's own system and access logs
/// counted apart, so "3 records" never hides that 2 of them are our own events.
struct LogCounts {
    tenant_logs: usize,
    tenant_records: u64,
    /// `None` where the caller does not see aitrail's own logs (a tenant's key).
    system_records: Option<u64>,
    access_records: Option<u64>,
}

impl LogCounts {
    fn of<'a>(logs: impl Iterator<Item = (&'a str, u64)>, own_logs_seen: bool) -> Self {
        let (system, access) = (TenantId::system_log(), TenantId::access_log());
        let own = own_logs_seen.then_some(0);
        let mut counts =
            Self { tenant_logs: 0, tenant_records: 0, system_records: own, access_records: own };
        for (tenant, size) in logs {
            if tenant == system.as_str() {
                counts.system_records = Some(counts.system_records.unwrap_or(0) + size);
            } else if tenant == access.as_str() {
                counts.access_records = Some(counts.access_records.unwrap_or(0) + size);
            } else {
                counts.tenant_logs += 1;
                counts.tenant_records += size;
            }
        }
        counts
    }
}

impl std::fmt::Display for LogCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let records = if self.tenant_records == 1 { "record" } else { "records" };
        let logs = if self.tenant_logs == 1 { "log" } else { "logs" };
        write!(f, "{} {records} in {} tenant {logs}", self.tenant_records, self.tenant_logs)?;
        match (self.system_records, self.access_records) {
            (Some(system), Some(access)) => {
                write!(f, ", plus {system} in the system log and {access} in the access log")
            }
            _ => write!(f, " (this key does not see the system and access logs)"),
        }
    }
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

/// A checkpoint is a few hundred bytes; a file given as one is read this far at most.
const CHECKPOINT_FILE_LIMIT: u64 = 64 << 10;

fn read_checkpoint(file: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let cannot = || format!("cannot read {}", file.display());
    let mut text = String::new();
    std::fs::File::open(file)
        .with_context(cannot)?
        .take(CHECKPOINT_FILE_LIMIT + 1)
        .read_to_string(&mut text)
        .with_context(cannot)?;
    if text.len() as u64 > CHECKPOINT_FILE_LIMIT {
        anyhow::bail!(
            "{} is larger than {CHECKPOINT_FILE_LIMIT} bytes: not a checkpoint",
            file.display()
        );
    }
    Ok(text)
}

async fn extends(target: &Target, verifier: &Verifier, file: &Path) -> anyhow::Result<()> {
    let text = read_checkpoint(file)?;
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
fn export(
    bundle: &std::path::Path,
    key: Option<&str>,
    trust_bundle_key: bool,
) -> anyhow::Result<()> {
    let key = key
        .map(Verifier::parse)
        .transpose()
        .context("--key is not a verifier key (name+keyid+base64)")?;
    let report = aitrail_export::check::bundle(bundle, key.as_ref())
        .with_context(|| format!("cannot check {}", bundle.display()))?;
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
    // The bundle's author chose the key it names: without a pinned key, the bundle is
    // only shown to agree with itself.
    let pinned =
        if report.key_from_bundle { " (key not pinned: taken from the bundle)" } else { "" };
    println!(
        "OK: {} records of tenant {} are in its log as signed at size {} by {}{pinned}; every file matches the signed manifest",
        report.records, report.tenant, report.checkpoint_size, report.key
    );
    if report.key_from_bundle && !trust_bundle_key {
        bail!(
            "key not pinned: taken from the bundle, whose author chose it; pass --key with the \
             log's published key (GET /v1/log-key), or --trust-bundle-key to accept it"
        );
    }
    Ok(())
}
