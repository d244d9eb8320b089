//! The log's signing key: made on first start, kept in the data dir with mode 0600, or
//! given whole in AITRAIL_LOG_KEY. Never printed, never logged.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aitrail_core::note::{NoteSigner, Verifier};
use anyhow::{Context, bail};

/// The file holding the private key (`PRIVATE+KEY+…`), inside the data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("log-key")
}

/// The signer for `name`: from AITRAIL_LOG_KEY, else the key file, else a new key written
/// to the key file.
pub fn load_or_create(data_dir: &Path, name: &str) -> anyhow::Result<NoteSigner> {
    let signer = match load(data_dir)? {
        Some(signer) => signer,
        None => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
            let signer = NoteSigner::from_seed(name, seed).with_context(|| {
                format!("--log-name {name:?} cannot name a key (no spaces or '+')")
            })?;
            let file = path(data_dir);
            // With --database nothing else lives in the data dir, which may not exist yet.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot create the log key file {}", file.display()))?;
            writeln!(f, "{}", signer.to_private_string())?;
            f.sync_all()?;
            tracing::info!(key = %signer.verifier(), "made a new log signing key");
            signer
        }
    };
    let have = signer.verifier();
    if have.name() != name {
        bail!(
            "the log key is named {:?} but --log-name is {name:?}; checkpoints signed so far carry the key's name, so keep it (--log-name {:?})",
            have.name(),
            have.name()
        );
    }
    Ok(signer)
}

/// The signer from AITRAIL_LOG_KEY or the key file, if there is one.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<NoteSigner>> {
    if let Ok(key) = std::env::var("AITRAIL_LOG_KEY") {
        return NoteSigner::parse(&key)
            .map(Some)
            .context("AITRAIL_LOG_KEY is not a PRIVATE+KEY+… key");
    }
    let file = path(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => NoteSigner::parse(&text)
            .map(Some)
            .with_context(|| format!("{} does not hold a PRIVATE+KEY+… key", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// The verifier key to check against: `--key` when given, else the local key's public half.
pub fn verifier(key: Option<&str>, data_dir: &Path) -> anyhow::Result<Verifier> {
    if let Some(key) = key {
        return Verifier::parse(key).context("--key is not a verifier key (name+keyid+base64)");
    }
    match load(data_dir)? {
        Some(signer) => Ok(signer.verifier()),
        None => bail!("no --key given and no log key in {}", data_dir.display()),
    }
}

/// The secret tenants' content-hash keys derive from, as a server on this data dir's log
/// key derives it (a lookup reads: no key is made).
pub fn content_hash_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let Some(signer) = load(data_dir)? else {
        bail!(
            "no log key in {}: texts are looked up by keyed hashes derived from it",
            data_dir.display()
        )
    };
    Ok(aitrail_service::LogSigner::new(signer, std::time::Duration::from_secs(1))
        .content_hash_secret())
}
