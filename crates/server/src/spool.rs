//! The proxy's spool: records the store would not take yet after their answer went back
//! (any fail mode but a strict whole answer, which is withheld instead), each also kept
//! in a file of its own when the spool has a directory, so they outlive the node.
//!
//! A record's file (`<uuid v7>.json`, mode 0600, in a directory made 0700) holds the record
//! as the store would take it, after the tenant's policy, so no text the policy keeps out
//! is on disk; its first line is an HMAC of the rest under a secret derived from the log
//! key, so a file this deployment did not write (another deployment's, or one put there
//! by hand) is set aside, never stored. A file is synced before its record is queued and
//! removed once the store has it. A node starting on the directory queues the files it
//! finds, oldest first. Every record carries its own external id, so one stored twice (a
//! crash between commit and removal, or two nodes sharing the directory) is refused as a
//! duplicate and counts as stored.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aitrail_core::Record;
use aitrail_core::policy::keyed_hash;

/// Records held at most (queued, or on their way to the queue); past that a record is lost
/// (and the log says so).
const MAX: usize = 100_000;

/// A `.partial` file older than this was left by a writer that died; younger ones may be
/// another node's, being written.
const TORN_AFTER: Duration = Duration::from_secs(600);

/// A record waiting for the store.
pub(crate) struct Spooled {
    pub record: Record,
    /// Attempts the store refused for the record itself (not for being away).
    pub attempts: u32,
    /// Its file, when it has one.
    file: Option<PathBuf>,
}

impl Spooled {
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

#[derive(Default)]
pub(crate) struct Spool {
    /// The directory, and the key its files' MACs are made with.
    dir: Option<(PathBuf, [u8; 32])>,
    queue: Mutex<VecDeque<Spooled>>,
    /// Records accepted by [`Spool::reserve`] and not yet queued.
    incoming: AtomicUsize,
}

impl Spool {
    /// A spool keeping its records in `dir` too, MACed with `secret`, with the records a
    /// node left there queued.
    pub fn in_dir(dir: &Path, secret: [u8; 32]) -> Self {
        let spool = Self {
            dir: Some((dir.to_owned(), secret)),
            queue: Mutex::default(),
            incoming: 0.into(),
        };
        spool.queue().extend(left_in(dir, &secret));
        spool
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Spooled>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// Room for `n` more records, taken now (so what waits to be written counts against
    /// the bound too); false, and the log says so, when the spool is full.
    pub fn reserve(&self, n: usize) -> bool {
        let held = self.queue().len() + self.incoming.fetch_add(n, Ordering::SeqCst);
        if held + n > MAX {
            self.incoming.fetch_sub(n, Ordering::SeqCst);
            tracing::error!(records = n, "the proxy's spool is full; records are lost");
            return false;
        }
        true
    }

    /// Queue records [`Spool::reserve`] made room for, each written to its file first.
    /// Blocks on the disk: call it off the async workers.
    pub fn push(&self, records: Vec<Record>) {
        let n = records.len();
        let spooled: Vec<Spooled> = records
            .into_iter()
            .map(|record| {
                let file = self.dir.as_ref().and_then(|(dir, key)| match keep(dir, key, &record) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        tracing::error!(error = %e, dir = %dir.display(), "a spooled record could not be written to disk; it waits in memory only");
                        None
                    }
                });
                Spooled { record, attempts: 0, file }
            })
            .collect();
        self.queue().extend(spooled);
        self.incoming.fetch_sub(n, Ordering::SeqCst);
    }

    /// Up to `n` records from the front.
    pub fn take(&self, n: usize) -> Vec<Spooled> {
        let mut queue = self.queue();
        let n = queue.len().min(n);
        queue.drain(..n).collect()
    }

    /// Records taken and not stored, back to the front in their order.
    pub fn put_back(&self, records: Vec<Spooled>) {
        let mut queue = self.queue();
        for r in records.into_iter().rev() {
            queue.push_front(r);
        }
    }

    /// Records the store has, or refused for good: their files go. Blocks on the disk.
    pub fn done(records: Vec<Spooled>) {
        for file in records.into_iter().filter_map(|r| r.file) {
            if let Err(e) = fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(error = %e, file = %file.display(), "a spool file could not be removed; a restart will find its record stored already");
            }
        }
    }
}

/// The first line of a record's file: the MAC of the rest.
fn tag(key: &[u8; 32], json: &str) -> String {
    keyed_hash(key, json).to_string()
}

/// Write a record to a new file of `dir`, durably: a temporary file synced, renamed, and
/// the directory synced.
fn keep(dir: &Path, key: &[u8; 32], record: &Record) -> std::io::Result<PathBuf> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = uuid::Uuid::now_v7().to_string();
    let (partial, file) = (dir.join(format!("{name}.partial")), dir.join(format!("{name}.json")));
    let json = serde_json::to_string(record).map_err(std::io::Error::other)?;
    let mut out = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
    out.write_all(format!("{}\n{json}", tag(key, &json)).as_bytes())?;
    out.sync_all()?;
    fs::rename(&partial, &file)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// What a file holds, if it is a record this deployment wrote.
fn read_back(file: &Path, key: &[u8; 32]) -> std::io::Result<Result<Record, String>> {
    let text = fs::read_to_string(file)?;
    let Some((mac, json)) = text.split_once('\n') else {
        return Ok(Err("no MAC line".into()));
    };
    if mac != tag(key, json) {
        return Ok(Err("its MAC is not this deployment's (written elsewhere, or edited)".into()));
    }
    Ok(serde_json::from_str(json).map_err(|e| e.to_string()))
}

/// The records a node left in `dir`, oldest first, at most [`MAX`]. A file that is not a
/// record of this deployment is set aside (`.unreadable`) and named in the log; a
/// `.partial` one long untouched never held a whole record and goes.
fn left_in(dir: &Path, key: &[u8; 32]) -> Vec<Spooled> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    let mut left = Vec::new();
    for file in files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("json") => {}
            Some("partial") => {
                let old = fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > TORN_AFTER));
                if old {
                    let _ = fs::remove_file(&file);
                }
                continue;
            }
            _ => continue,
        }
        if left.len() == MAX {
            tracing::warn!(dir = %dir.display(), "the proxy's spool holds more records than it queues; the rest wait for the next start");
            break;
        }
        match read_back(&file, key) {
            Ok(Ok(record)) => left.push(Spooled { record, attempts: 0, file: Some(file) }),
            Ok(Err(e)) => {
                tracing::error!(error = %e, file = %file.display(), "a spool file is not a record of this deployment; set aside");
                let _ = fs::rename(&file, file.with_extension("unreadable"));
            }
            // Gone meanwhile: another node on the directory stored it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(error = %e, file = %file.display(), "a spool file cannot be read")
            }
        }
    }
    if !left.is_empty() {
        tracing::warn!(records = left.len(), dir = %dir.display(), "records a node left in the proxy's spool are queued for the store");
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn record(model: &str) -> Record {
        let text = format!(
            r#"{{"tenant_id":"acme","model_name":"{model}","temperature":0.70,"external_id":"aitrail-proxy:{model}"}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    fn push(spool: &Spool, records: Vec<Record>) {
        assert!(spool.reserve(records.len()));
        spool.push(records);
    }

    fn extensions(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path().extension().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn records_outlive_the_spool_in_order_until_done() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        let spool = Spool::in_dir(&dir, KEY);
        push(&spool, vec![record("a"), record("b"), record("c")]);
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        for f in fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&f.unwrap().path()), 0o600);
        }
        let taken = spool.take(2);
        assert_eq!(
            taken.iter().map(|s| s.record.clone()).collect::<Vec<_>>(),
            [record("a"), record("b")]
        );
        Spool::done(taken);
        // A torn write (another node's while recent), a file that is no record, one written
        // under another key, one edited.
        fs::write(dir.join("0-torn.partial"), b"{\"tenant").unwrap();
        fs::write(dir.join("1-bad.json"), b"not json").unwrap();
        let json = serde_json::to_string(&record("x")).unwrap();
        fs::write(dir.join("2-other.json"), format!("{}\n{json}", tag(&[8; 32], &json))).unwrap();
        let edited = json.replace("acme", "evil");
        fs::write(dir.join("3-edited.json"), format!("{}\n{edited}", tag(&KEY, &json))).unwrap();

        // Another node on the same directory: only c is left to store, exactly as it was.
        let again = Spool::in_dir(&dir, KEY);
        let left = again.take(10);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].record, record("c"));
        assert_eq!(serde_json::to_value(&left[0].record).unwrap()["temperature"], "0.70");
        assert_eq!(extensions(&dir), ["json", "partial", "unreadable", "unreadable", "unreadable"]);
        Spool::done(left);
        assert!(Spool::in_dir(&dir, KEY).is_empty());
    }

    #[test]
    fn the_bound_counts_what_is_being_written_and_a_bad_directory_leaves_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("a-file");
        fs::write(&blocked, b"").unwrap();
        let spool = Spool::in_dir(&blocked, KEY);
        assert!(spool.reserve(MAX - 1));
        assert!(!spool.reserve(2), "full while those wait to be written");
        assert!(spool.reserve(1));
        spool.incoming.store(0, Ordering::SeqCst);
        push(&spool, vec![record("a")]);
        let taken = spool.take(1);
        assert_eq!(taken.len(), 1);
        assert!(taken[0].file.is_none());
    }
}
