//! The proxy's spool: records the store would not take yet (fail mode open), in order, each
//! also kept in a file of its own when the spool has a directory, so they outlive the node.
//!
//! A record's file (`<uuid v7>.json`, mode 0600, the record as the store would take it:
//! after the tenant's policy, so no text the policy keeps out is on disk) is written and
//! synced before the record joins the queue, and removed once the store has it. A node
//! starting on the directory queues the files it finds, oldest first. Every record carries
//! its own external id, so one stored twice (a crash between commit and removal) is refused
//! as a duplicate and counts as stored.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aitrail_core::Record;

/// Records held at most; past that a record is lost (and the log says so).
const MAX: usize = 100_000;

/// A record waiting for the store.
pub(crate) struct Spooled {
    pub record: Record,
    /// Attempts the store refused for the record itself (not for being away).
    pub attempts: u32,
    /// Its file, when it has one.
    file: Option<PathBuf>,
}

#[derive(Default)]
pub(crate) struct Spool {
    dir: Option<PathBuf>,
    queue: Mutex<VecDeque<Spooled>>,
}

impl Spool {
    /// A spool keeping its records in `dir` too, with the records a node left there queued.
    pub fn in_dir(dir: &Path) -> Self {
        let spool = Self { dir: Some(dir.to_owned()), queue: Mutex::default() };
        spool.queue().extend(left_in(dir));
        spool
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Spooled>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// Queue records (each written to its file first).
    pub fn push(&self, records: Vec<Record>) {
        for record in records {
            if self.queue().len() >= MAX {
                tracing::error!("the proxy's spool is full; a record is lost");
                return;
            }
            let file = self.dir.as_deref().and_then(|dir| match keep(dir, &record) {
                Ok(file) => Some(file),
                Err(e) => {
                    tracing::error!(error = %e, dir = %dir.display(), "a spooled record could not be written to disk; it waits in memory only");
                    None
                }
            });
            self.queue().push_back(Spooled { record, attempts: 0, file });
        }
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

    /// The store has the record: its file goes.
    pub fn stored(&self, record: Spooled) {
        if let Some(file) = record.file
            && let Err(e) = fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(error = %e, file = %file.display(), "a stored record's spool file could not be removed; a restart will find it stored already");
        }
    }

    /// The store refused the record for good: its file is kept aside (`.refused`) for an
    /// operator, and no longer retried.
    pub fn given_up(&self, record: Spooled) {
        if let Some(file) = record.file {
            let _ = fs::rename(&file, file.with_extension("refused"));
        }
    }
}

/// Write a record to a new file of `dir`, durably: a temporary file synced, renamed, and
/// the directory synced.
fn keep(dir: &Path, record: &Record) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let name = uuid::Uuid::now_v7().to_string();
    let (partial, file) = (dir.join(format!("{name}.partial")), dir.join(format!("{name}.json")));
    let mut out = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
    out.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
    out.sync_all()?;
    fs::rename(&partial, &file)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// The records a node left in `dir`, oldest first. A file that does not read as a record is
/// set aside (`.unreadable`) and named in the log; a `.partial` one never held a whole
/// record and goes.
fn left_in(dir: &Path) -> Vec<Spooled> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    let mut left = Vec::new();
    for file in files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("json") => {}
            Some("partial") => {
                let _ = fs::remove_file(&file);
                continue;
            }
            _ => continue,
        }
        let record = fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string()));
        match record {
            Ok(record) => left.push(Spooled { record, attempts: 0, file: Some(file) }),
            Err(e) => {
                tracing::error!(error = %e, file = %file.display(), "a spool file is not a record; set aside");
                let _ = fs::rename(&file, file.with_extension("unreadable"));
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

    fn record(model: &str) -> Record {
        let text = format!(
            r#"{{"tenant_id":"acme","model_name":"{model}","temperature":0.70,"external_id":"aitrail-proxy:{model}"}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn records_outlive_the_spool_in_order_until_stored_or_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::in_dir(dir.path());
        spool.push(vec![record("a"), record("b"), record("c")]);
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions())
        };
        for f in fs::read_dir(dir.path()).unwrap() {
            assert_eq!(mode(&f.unwrap().path()) & 0o777, 0o600);
        }
        let mut taken = spool.take(2);
        spool.given_up(taken.pop().unwrap()); // b
        spool.stored(taken.pop().unwrap()); // a
        fs::write(dir.path().join("0-torn.partial"), b"{\"tenant").unwrap();
        fs::write(dir.path().join("1-bad.json"), b"not json").unwrap();

        // Another node on the same directory: only c is left to store, exactly as it was.
        let again = Spool::in_dir(dir.path());
        let left = again.take(10);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].record, record("c"));
        assert_eq!(serde_json::to_value(&left[0].record).unwrap()["temperature"], "0.70");
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path().extension().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["json", "refused", "unreadable"],
            "c kept; b set aside; the torn file gone"
        );
        again.stored(left.into_iter().next().unwrap());
        assert!(Spool::in_dir(dir.path()).is_empty());
    }

    #[test]
    fn without_a_usable_directory_records_wait_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("a-file");
        fs::write(&blocked, b"").unwrap();
        let spool = Spool::in_dir(&blocked);
        spool.push(vec![record("a")]);
        let taken = spool.take(1);
        assert_eq!(taken.len(), 1);
        assert!(taken[0].file.is_none());
    }
}
