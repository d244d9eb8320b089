//! Offline verification of a bundle: no server, no database, the verifier key at most.
//! Each file is streamed; records.jsonl, conversation_logs.csv and the proof file are read
//! side by side (all are in seq order), so memory stays flat whatever the size.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use aitrail_core::entry::{Commitments, commitment};
use aitrail_core::merkle::{CompactRange, Hash, verify_inclusion};
use aitrail_core::note::{Checkpoint, Verifier};
use base64::Engine;
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zip::ZipArchive;

use crate::csv_stream::{Cells, CsvStream, Next, cells_of};
use crate::line::{ReadLine, Usage, csv_header, csv_writer};
use crate::*;

/// What checking a bundle found.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub tenant: String,
    pub checkpoint_size: u64,
    /// The key the signatures were checked with.
    pub key: String,
    /// The key came from the bundle itself, not from the caller.
    pub key_from_bundle: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One problem, named by the file and, where there is one, the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: &'static str,
    /// `id (seq n)` of the record, when the problem is one record's.
    pub record: Option<String>,
    pub what: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(r) => write!(f, "{}: record {r}: {}", self.file, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

/// Why a bundle could not be checked at all (as opposed to checked and found wrong).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("not a zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("{0} is missing: this is not an aitrail export")]
    Missing(&'static str),
    #[error("{0}")]
    Unusable(String),
}

#[derive(Deserialize)]
struct Manifest {
    format: String,
    tenant_id: String,
    records: u64,
    checkpoint: ManifestCheckpoint,
    proof: String,
    files: BTreeMap<String, String>,
    /// What each file inflates to; bundles written before 0.1 have none.
    #[serde(default)]
    sizes: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct ManifestCheckpoint {
    size: u64,
    root: String,
}

#[derive(Deserialize)]
struct ProofLine {
    seq: u64,
    audit_path: Vec<String>,
}

/// Check the bundle at `path`. `key`: the verifier key to trust; without it, the bundle's
/// own log-key.txt (which proves only that the bundle is consistent with itself).
pub fn bundle(path: &Path, key: Option<&Verifier>) -> Result<Report, CheckError> {
    let mut zip = open_zip(path)?;
    let mut report = Report::default();
    let mut find = |file, record: Option<String>, what: String| {
        report.findings.push(Finding { file, record, what })
    };

    let small = |zip: &mut ZipArchive<_>, name: &'static str| {
        let f = zip.by_name(name).map_err(|_| CheckError::Missing(name))?;
        read_capped(f, name, SMALL_FILE_LIMIT)
    };
    let text = |bytes: Vec<u8>, name: &str| {
        String::from_utf8(bytes).map_err(|_| CheckError::Unusable(format!("{name} is not UTF-8")))
    };
    let bundled_key = text(small(&mut zip, LOG_KEY)?, LOG_KEY)?;
    let bundled_key = bundled_key.trim();
    let verifier = match key {
        Some(k) => {
            if k.to_string() != bundled_key {
                find(
                    LOG_KEY,
                    None,
                    format!("names the key {bundled_key}, not the one given ({k})"),
                );
            }
            k.clone()
        }
        None => Verifier::parse(bundled_key)
            .map_err(|e| CheckError::Unusable(format!("{LOG_KEY} holds no verifier key: {e}")))?,
    };

    // The manifest: its signature, then every file's hash.
    let manifest_bytes = small(&mut zip, MANIFEST)?;
    let sig = text(small(&mut zip, MANIFEST_SIG)?, MANIFEST_SIG)?;
    match verifier.open(&sig) {
        Err(e) => find(MANIFEST_SIG, None, format!("signature check failed: {e}")),
        Ok(signed) => {
            let want =
                format!("{MANIFEST_NOTE_PREFIX}{}\n", hex::encode(Sha256::digest(&manifest_bytes)));
            if signed != want {
                find(
                    MANIFEST,
                    None,
                    "does not match the signed digest in manifest.sig: it was edited".into(),
                );
            }
        }
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| CheckError::Unusable(format!("{MANIFEST} is unreadable: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(CheckError::Unusable(format!("unknown bundle format {}", manifest.format)));
    }
    let names: Vec<String> = zip.file_names().filter_map(|n| Some(n.ok()?.into_owned())).collect();
    for name in &names {
        let declared = zip.by_name(name)?.size();
        if let Some(&size) = manifest.sizes.get(name)
            && declared > allowance(size)
        {
            return Err(CheckError::Unusable(format!(
                "{name}: the zip says it inflates to {declared} bytes, far past the manifest's {size}: the bundle is refused unread"
            )));
        }
    }
    for name in &names {
        // The big files are hashed as they are streamed, in records().
        if [MANIFEST, MANIFEST_SIG, RECORDS, CONVERSATIONS, LEAVES, PROOFS].contains(&name.as_str())
        {
            continue;
        }
        let Some(want) = manifest.files.get(name) else {
            find(MANIFEST, None, format!("{name} is in the zip but not in the manifest"));
            continue;
        };
        let cap = manifest.sizes.get(name).map_or(SMALL_FILE_LIMIT, |&size| allowance(size));
        let read = capped(zip.by_name(name)?, cap);
        if sha256_of(read).map_err(|e| CheckError::Io(name.clone(), e))? != *want {
            find(MANIFEST, None, format!("{name}: SHA-256 differs from the manifest's"));
        }
    }
    for name in manifest.files.keys().filter(|n| !names.contains(n)) {
        find(MANIFEST, None, format!("{name} is listed but not in the zip"));
    }

    // The checkpoint, by the key.
    let note = text(small(&mut zip, CHECKPOINT)?, CHECKPOINT)?;
    let root = match Checkpoint::open(&note, &verifier) {
        Err(e) => {
            find(CHECKPOINT, None, format!("signature check failed: {e}"));
            None
        }
        Ok(cp) => {
            let origin = format!("{}/{}", verifier.name(), manifest.tenant_id);
            let b64 = base64::engine::general_purpose::STANDARD.encode(cp.root);
            if cp.origin != origin {
                find(CHECKPOINT, None, format!("origin is {}, expected {origin}", cp.origin));
            }
            if cp.size != manifest.checkpoint.size || b64 != manifest.checkpoint.root {
                find(CHECKPOINT, None, "size or root differ from the manifest's".into());
            }
            Some(cp.root)
        }
    };
    report.tenant = manifest.tenant_id.clone();
    report.checkpoint_size = manifest.checkpoint.size;
    report.key = verifier.to_string();
    report.key_from_bundle = key.is_none();

    records(path, &manifest, root, &mut report)?;
    Ok(report)
}

/// records.jsonl with conversation_logs.csv and the proofs beside it.
fn records(
    path: &Path,
    manifest: &Manifest,
    root: Option<Hash>,
    report: &mut Report,
) -> Result<(), CheckError> {
    let size = manifest.checkpoint.size;
    let proof_name = if manifest.proof == LEAVES { LEAVES } else { PROOFS };
    let mut streams = Vec::new();
    let mut stream = |name: &'static str| -> Result<Inflated, CheckError> {
        let (reader, digest) = Inflated::spawn(path, name, manifest.sizes.get(name).copied())?;
        streams.push((name, digest));
        Ok(reader)
    };
    let lines = stream(RECORDS)?;
    let mut csv = CsvStream::new(stream(CONVERSATIONS)?);
    let header: Vec<&str> = csv_header();
    let mut header_row = csv_writer(Vec::new());
    header_row.write_record(&header).and_then(|()| Ok(header_row.flush()?)).expect("to memory");
    if csv.next_is(header_row.get_ref()).map_err(|e| CheckError::Io(CONVERSATIONS.into(), e))?
        != Next::Same
    {
        report.findings.push(Finding {
            file: CONVERSATIONS,
            record: None,
            what: "the header row is not the export's".into(),
        });
    }
    let proofs = Proofs::new(proof_name, stream(proof_name)?);
    let mut in_order = InOrder {
        csv,
        header,
        proofs,
        proof_name,
        size,
        root,
        last_seq: None,
        usage: Usage::default(),
        findings: Vec::new(),
        unlisted: 0,
        usage_names: 0,
    };

    // Three stages at once: lines are split on one thread, read and checked a batch at a
    // time on every core, and taken in order (CSV rows, seqs, proofs) on a third.
    let (batches_tx, batches) = std::sync::mpsc::sync_channel::<Batch>(2);
    let (spent_tx, spent) = std::sync::mpsc::channel::<Batch>();
    let (checked_tx, checked) = std::sync::mpsc::sync_channel::<Vec<CheckedChunk>>(2);
    let (n, (findings, usage)) = std::thread::scope(|scope| {
        // One line past the manifest's count is enough to tell it holds more.
        let most = manifest.records.saturating_add(1);
        let splitter = scope.spawn(move || split_lines(lines, most, batches_tx, spent));
        let taker = scope.spawn(move || {
            for chunks in checked {
                in_order.take(chunks)?;
            }
            in_order.finish()
        });
        for batch in batches {
            let pairs = batch.pairs();
            let chunks = pairs.par_chunks(64).map(check_chunk).collect();
            drop(pairs);
            // The splitter may be done: then the batch is simply dropped.
            let _ = spent_tx.send(batch);
            if checked_tx.send(chunks).is_err() {
                break;
            }
        }
        drop(checked_tx);
        let failed = |name: &str| CheckError::Unusable(format!("checking {name} failed"));
        let in_order = taker.join().map_err(|_| failed(RECORDS))?;
        let n = splitter.join().map_err(|_| failed(RECORDS))?;
        Ok::<_, CheckError>((n.map_err(|e| CheckError::Io(RECORDS.into(), e))?, in_order?))
    })?;
    report.findings.extend(findings);
    if n != manifest.records {
        let what = if n > manifest.records {
            format!(
                "holds more than the {} records the manifest says; the rest is not read",
                manifest.records
            )
        } else {
            format!("holds {n} records; the manifest says {}", manifest.records)
        };
        report.findings.push(Finding { file: RECORDS, record: None, what });
    }
    for (name, digest) in streams {
        let sha =
            digest.join().map_err(|_| CheckError::Unusable(format!("reading {name} failed")))?;
        let sha = sha.map_err(|e| CheckError::Io(name.into(), e))?;
        if manifest.files.get(name) != Some(&sha) {
            report.findings.push(Finding {
                file: MANIFEST,
                record: None,
                what: format!("{name}: SHA-256 differs from the manifest's"),
            });
        }
    }
    let mut zip = open_zip(path)?;
    let file = zip.by_name(USAGE).map_err(|_| CheckError::Missing(USAGE))?;
    let summary = read_capped(file, USAGE, SMALL_FILE_LIMIT)?;
    if summary != usage.to_csv() {
        report.findings.push(Finding {
            file: USAGE,
            record: None,
            what: "differs from the totals of records.jsonl".into(),
        });
    }
    report.records = n;
    Ok(())
}

/// Split records.jsonl into numbered lines, a batch at a time, `most` lines at most; the
/// number of lines. Batches the checkers are done with come back on `spent` and are
/// filled again, so the lines of a whole file take a few buffers, not an allocation each.
fn split_lines(
    mut lines: impl BufRead,
    most: u64,
    batches: std::sync::mpsc::SyncSender<Batch>,
    spent: std::sync::mpsc::Receiver<Batch>,
) -> std::io::Result<u64> {
    let mut n = 0;
    loop {
        let mut batch = spent.try_recv().unwrap_or_default();
        batch.bytes.clear();
        batch.lines.clear();
        batch.first = n + 1;
        while batch.lines.len() < BATCH && batch.bytes.len() < BATCH_BYTES && n < most {
            let start = batch.bytes.len();
            let read =
                (&mut lines).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut batch.bytes)?;
            if read == 0 {
                break;
            }
            let end = batch.bytes.len() - usize::from(batch.bytes.last() == Some(&b'\n'));
            if end - start > MAX_LINE {
                return Err(std::io::Error::other(format!(
                    "line {} is longer than {MAX_LINE} bytes: no record is",
                    n + 1
                )));
            }
            batch.lines.push(start..end);
            n += 1;
        }
        // An empty batch, or a checker that stopped: done.
        if batch.lines.is_empty() || batches.send(batch).is_err() {
            return Ok(n);
        }
    }
}

/// Lines of records.jsonl in one buffer.
#[derive(Default)]
struct Batch {
    /// The first line's 1-based number.
    first: u64,
    bytes: Vec<u8>,
    lines: Vec<std::ops::Range<usize>>,
}

impl Batch {
    fn pairs(&self) -> Vec<Pair<'_>> {
        (self.first..)
            .zip(&self.lines)
            .map(|(number, range)| Pair { number, line: &self.bytes[range.clone()] })
            .collect()
    }
}

/// Records checked on their own, with their usage and the CSV bytes their rows make.
type CheckedChunk = (Vec<Checked>, Usage, Vec<u8>);

fn check_chunk(chunk: &[Pair<'_>]) -> CheckedChunk {
    let mut usage = Usage::default();
    let mut rows = csv_writer(Vec::with_capacity(64 * 1024));
    let mut scratch = String::with_capacity(4096);
    let checked =
        chunk.iter().map(|p| check_pair(p, &mut rows, &mut usage, &mut scratch)).collect();
    (checked, usage, rows.into_inner().expect("writing to memory"))
}

/// The checks that take records in order: their CSV rows against the file, seqs rising,
/// and proofs.
struct InOrder<C, P: BufRead> {
    csv: CsvStream<C>,
    header: Vec<&'static str>,
    proofs: Proofs<P>,
    proof_name: &'static str,
    size: u64,
    root: Option<Hash>,
    last_seq: Option<u64>,
    usage: Usage,
    findings: Vec<Finding>,
    /// Findings past [`MAX_FINDINGS`], counted.
    unlisted: u64,
    /// The bytes of the usage groups' names so far.
    usage_names: usize,
}

impl<C: BufRead, P: BufRead> InOrder<C, P> {
    fn take(&mut self, chunks: Vec<CheckedChunk>) -> Result<(), CheckError> {
        let io = |e| CheckError::Io(CONVERSATIONS.into(), e);
        let size = self.size;
        for (records, partial, rows) in chunks {
            self.usage_names += self.usage.merge(partial);
            if self.usage_names > MAX_USAGE_NAMES {
                return Err(CheckError::Unusable(format!(
                    "{RECORDS} names providers and models past {MAX_USAGE_NAMES} bytes in all: \
                     no export's do, and the bundle is refused"
                )));
            }
            for c in records {
                let mut problems = c.problems;
                match c.csv_row {
                    Some(want) => {
                        let got = self.csv.next_is(&rows[want.clone()]).map_err(io)?;
                        if let Some(what) = csv_finding(c.number, got, &rows[want], &self.header) {
                            problems.push((CONVERSATIONS, what));
                        }
                    }
                    // A record that gives no row (its finding is made): the row is skipped.
                    None => drop(self.csv.next_row().map_err(io)?),
                }
                if let Some((seq, leaf)) = c.seq_leaf {
                    if let Some(last) = self.last_seq
                        && seq <= last
                    {
                        let why = format!("comes after seq {last}: lines are out of log order");
                        problems.insert(0, (RECORDS, why));
                    }
                    self.last_seq = Some(seq);
                    if seq >= size {
                        problems
                            .push((RECORDS, format!("seq is beyond the checkpoint's size {size}")));
                    }
                    if let Some(why) = self.proofs.check(seq, leaf, size, self.root) {
                        problems.push((self.proof_name, why));
                    }
                }
                let name = match (&c.id, c.seq_leaf) {
                    (Some(id), Some((seq, _))) if !problems.is_empty() => {
                        Some(format!("{id} (seq {seq})"))
                    }
                    _ => None,
                };
                for (file, what) in problems {
                    self.find(Finding { file, record: name.clone(), what });
                }
            }
        }
        Ok(())
    }

    /// A finding, listed while there are fewer than [`MAX_FINDINGS`], else counted.
    fn find(&mut self, finding: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        } else {
            self.unlisted += 1;
        }
    }

    /// After the last record: rows the records did not account for, and the proof file's
    /// end.
    fn finish(mut self) -> Result<(Vec<Finding>, Usage), CheckError> {
        while let Some(row) =
            self.csv.next_row().map_err(|e| CheckError::Io(CONVERSATIONS.into(), e))?
        {
            let id = row.first().map(|id| String::from_utf8_lossy(id).into_owned());
            self.find(Finding {
                file: CONVERSATIONS,
                record: Some(id.unwrap_or_default()),
                what: "has a row for a record records.jsonl does not hold".into(),
            });
        }
        let Self { proofs, proof_name, size, root, usage, mut findings, unlisted, .. } = self;
        if unlisted > 0 {
            let what = format!("and {unlisted} more findings, not listed");
            findings.push(Finding { file: RECORDS, record: None, what });
        }
        if let Some(why) = proofs.finish(size, root) {
            findings.push(Finding { file: proof_name, record: None, what: why });
        }
        Ok((findings, usage))
    }
}

/// The proof file, read along with the records.
enum Proofs<R: BufRead> {
    /// leaves.bin: read up to each record's seq, all of it hashed into the tree.
    Leaves { file: R, tree: CompactRange, last: Hash },
    /// proofs.jsonl: one line per record.
    Paths { file: R, line: Vec<u8> },
}

impl<R: BufRead> Proofs<R> {
    fn new(name: &str, file: R) -> Self {
        if name == LEAVES {
            Proofs::Leaves { file, tree: CompactRange::default(), last: [0; 32] }
        } else {
            Proofs::Paths { file, line: Vec::new() }
        }
    }

    /// What is wrong with the proof of the record at `seq` with `leaf`, if anything.
    fn check(&mut self, seq: u64, leaf: Hash, size: u64, root: Option<Hash>) -> Option<String> {
        match self {
            Proofs::Leaves { file, tree, last } => {
                while tree.size() <= seq && tree.size() < size {
                    let Some(next) = next_leaf(file) else {
                        return Some(format!("{LEAVES} ends before this record's seq"));
                    };
                    tree.push(next);
                    *last = next;
                }
                // The logged leaf at seq is the last one pushed.
                (tree.size() != seq + 1 || *last != leaf)
                    .then(|| "its leaf hash is not the logged leaf at its seq".into())
            }
            Proofs::Paths { file, line } => {
                if !next_proof_line(file, line) {
                    return Some("has no inclusion proof".into());
                }
                let Ok(proof) = serde_json::from_slice::<ProofLine>(line) else {
                    return Some("its inclusion proof is unreadable".into());
                };
                let path: Option<Vec<Hash>> = proof
                    .audit_path
                    .iter()
                    .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
                    .collect();
                let root = root?;
                match path {
                    Some(path)
                        if proof.seq == seq
                            && verify_inclusion(&leaf, seq, size, &path, &root).is_ok() =>
                    {
                        None
                    }
                    _ => Some("its inclusion proof does not lead to the checkpoint's root".into()),
                }
            }
        }
    }

    /// After the last record: leaves.bin must hold exactly the log and give the root.
    fn finish(self, size: u64, root: Option<Hash>) -> Option<String> {
        match self {
            Proofs::Leaves { mut file, mut tree, .. } => {
                while tree.size() < size {
                    match next_leaf(&mut file) {
                        Some(leaf) => tree.push(leaf),
                        None => return Some(format!("holds {} leaves, not {size}", tree.size())),
                    }
                }
                if file.fill_buf().is_ok_and(|b| !b.is_empty()) {
                    return Some(format!("holds more than {size} leaves"));
                }
                (Some(tree.root()) != root)
                    .then(|| "the leaves do not hash to the checkpoint's root".into())
            }
            Proofs::Paths { mut file, mut line } => next_proof_line(&mut file, &mut line)
                .then(|| "holds proofs of records records.jsonl does not".into()),
        }
    }
}

/// The longest line of proofs.jsonl read: a proof of 64 levels is under 5 KB.
const MAX_PROOF_LINE: u64 = 64 << 10;

/// Read proofs.jsonl's next line into `line`, up to [`MAX_PROOF_LINE`] bytes (a longer
/// one is read no further, and then does not parse); whether there was one.
fn next_proof_line(file: &mut impl BufRead, line: &mut Vec<u8>) -> bool {
    line.clear();
    let read = file.take(MAX_PROOF_LINE).read_until(b'\n', line);
    if line.last() != Some(&b'\n') && line.len() as u64 == MAX_PROOF_LINE {
        // The rest of an over-long line, skipped without holding it.
        let _ = skip_line(file);
    }
    matches!(read, Ok(n) if n > 0)
}

/// Consume up to and including the next newline, holding nothing.
fn skip_line(file: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = file.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| *b == b'\n') {
            Some(at) => {
                file.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                file.consume(n);
            }
        }
    }
}

fn next_leaf(file: &mut impl Read) -> Option<Hash> {
    let mut leaf = [0; 32];
    file.read_exact(&mut leaf).ok().map(|()| leaf)
}

/// Bytes handed from an inflating thread to the checker.
const CHUNK: usize = 1 << 16;

fn open_zip(path: &Path) -> Result<ZipArchive<BufReader<File>>, CheckError> {
    let file = File::open(path).map_err(|e| CheckError::Io(path.display().to_string(), e))?;
    let zip = ZipArchive::new(BufReader::new(file))?;
    refuse_unsafe_members(path, zip.central_directory_start())?;
    Ok(zip)
}

/// A bundle is made by the party being audited, so its members are taken only by the
/// names this format gives them, each once. A name given twice would let this check read
/// one copy (the zip library keeps the last) while `unzip` shows the auditor the other; a
/// path out of the folder, or another archive inside, is something to extract or open that
/// no bundle holds. The central directory is read as it is, every entry.
fn refuse_unsafe_members(path: &Path, start: u64) -> Result<(), CheckError> {
    use std::io::Seek;
    const ENTRY: u32 = 0x0201_4b50;
    let io = |e: std::io::Error| CheckError::Io("the zip's central directory".into(), e);
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    reader.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    let mut seen = std::collections::HashSet::new();
    let mut header = [0u8; 46];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
        if u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) != ENTRY {
            break;
        }
        let length = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let mut name = vec![0u8; length(28)];
        reader.read_exact(&mut name).map_err(io)?;
        let skip = (length(30) + length(32)) as i64;
        reader.seek_relative(skip).map_err(io)?;
        let name = String::from_utf8_lossy(&name).into_owned();
        if let Some(why) = unsafe_member(&name) {
            return Err(CheckError::Unusable(format!(
                "the zip holds a member named {name:?}, {why}: the bundle is refused unread"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(CheckError::Unusable(format!(
                "the zip holds two members named {name}: a zip tool and this check could read different ones"
            )));
        }
    }
    Ok(())
}

/// Why a member name is not one a bundle may hold, if it is not.
fn unsafe_member(name: &str) -> Option<&'static str> {
    const MEMBERS: [&str; 10] = [
        README,
        RECORDS,
        CONVERSATIONS,
        USAGE,
        CHECKPOINT,
        LOG_KEY,
        LEAVES,
        PROOFS,
        MANIFEST,
        MANIFEST_SIG,
    ];
    let archive = [".zip", ".jar", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".zst", ".7z", ".rar"];
    let lower = name.to_ascii_lowercase();
    if name.starts_with(['/', '\\']) || name.as_bytes().get(1) == Some(&b':') {
        Some("an absolute path")
    } else if name.split(['/', '\\']).any(|part| part == "..") {
        Some("a path out of the folder it is extracted to")
    } else if archive.iter().any(|ext| lower.ends_with(ext)) {
        Some("an archive inside the archive")
    } else if !MEMBERS.contains(&name) {
        Some("which no aitrail bundle holds")
    } else {
        None
    }
}

/// A file of the zip inflated and hashed on a thread of its own (so the big files use
/// every core), read here as it comes. The thread reads and hashes to the end even when
/// the reader stops early, and answers the file's SHA-256. Chunks go back to the thread
/// once read, so it fills the same few buffers.
struct Inflated {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    spent: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

/// The thread's answer: the file's SHA-256.
type FileDigest = std::thread::JoinHandle<std::io::Result<String>>;

impl Inflated {
    /// `size`: what the manifest says the file inflates to; reading stops one byte past
    /// it (or past what the zip says, for a manifest that gives no sizes).
    fn spawn(
        path: &Path,
        name: &'static str,
        size: Option<u64>,
    ) -> Result<(Self, FileDigest), CheckError> {
        let mut zip = open_zip(path)?;
        if zip.index_for_name(name).is_none() {
            return Err(CheckError::Missing(name));
        }
        let (tx, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let (spent, reuse) = std::sync::mpsc::channel::<Vec<u8>>();
        let digest = std::thread::spawn(move || {
            let file = zip.by_name(name).map_err(std::io::Error::other)?;
            let (cap, whose) = match size {
                Some(size) => (allowance(size), "the manifest's size allows"),
                None => (file.size(), "the zip says it holds"),
            };
            let mut file = capped(file, cap);
            let mut sha = Sha256::new();
            let (mut open, mut read) = (true, 0u64);
            loop {
                let mut chunk = reuse.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                chunk.resize(CHUNK, 0);
                let n = read_full(&mut file, &mut chunk)?;
                if n == 0 {
                    return Ok(hex::encode(sha.finalize()));
                }
                read += n as u64;
                if read > cap {
                    return Err(std::io::Error::other(format!(
                        "it inflates past the {cap} bytes {whose}: the bundle is refused"
                    )));
                }
                chunk.truncate(n);
                sha.update(&chunk);
                open = open && tx.send(chunk).is_ok();
            }
        });
        Ok((Self { chunks, spent, current: Vec::new(), at: 0 }, digest))
    }
}

impl BufRead for Inflated {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.at == self.current.len()
            && let Ok(chunk) = self.chunks.recv()
        {
            let spent = std::mem::replace(&mut self.current, chunk);
            // The thread may be done: then the buffer is simply dropped.
            let _ = self.spent.send(spent);
            self.at = 0;
        }
        Ok(&self.current[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current.len());
    }
}

impl Read for Inflated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Fill `buf` as far as the reader goes; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// SHA-256 of everything `r` reads, as hex.
fn sha256_of(mut r: impl Read) -> std::io::Result<String> {
    let mut sha = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(hex::encode(sha.finalize())),
            n => sha.update(&buf[..n]),
        }
    }
}

/// Lines of records.jsonl checked at once, and the bytes they may take together.
const BATCH: usize = 4096;
const BATCH_BYTES: usize = 16 << 20;

/// The longest line of records.jsonl read: a record is at most the API's body limit
/// (10 MiB by default), its line that and its entry.
const MAX_LINE: usize = 32 << 20;

/// The bytes of usage group names (provider, model, currency) summed from records.jsonl:
/// real exports hold a few kilobytes; a hostile one could name a model per record.
const MAX_USAGE_NAMES: usize = 16 << 20;

/// The small files (key, checkpoint, manifest, its signature, usage totals) are read
/// whole, up to this; no bundle's comes near it.
const SMALL_FILE_LIMIT: u64 = 16 << 20;

/// Findings listed one by one; past this they are only counted.
const MAX_FINDINGS: usize = 10_000;

/// What a member the manifest gives `size` bytes may inflate to before the check stops
/// reading it. Slack, so that a file edited by a few bytes is still read and its changes
/// named; a bomb is stopped within a megabyte or two of the size.
fn allowance(size: u64) -> u64 {
    size.saturating_mul(2).saturating_add(1 << 20)
}

/// `r`, cut one byte past `cap` so that reading tells whether it holds more.
fn capped<R: Read>(r: R, cap: u64) -> std::io::Take<R> {
    r.take(cap.saturating_add(1))
}

/// A small member of the bundle, whole, refused past `cap` bytes.
fn read_capped(r: impl Read, name: &str, cap: u64) -> Result<Vec<u8>, CheckError> {
    let mut buf = Vec::new();
    capped(r, cap).read_to_end(&mut buf).map_err(|e| CheckError::Io(name.into(), e))?;
    if buf.len() as u64 > cap {
        return Err(CheckError::Unusable(format!(
            "{name} is larger than {cap} bytes: the bundle is refused"
        )));
    }
    Ok(buf)
}

/// A line of records.jsonl.
struct Pair<'a> {
    /// 1-based line number.
    number: u64,
    line: &'a [u8],
}

/// What checking one record on its own found; its seq and leaf go on to the checks that
/// need the records in order, its CSV row to the comparison with the file.
struct Checked {
    number: u64,
    /// The record's id, when the line could be read.
    id: Option<String>,
    seq_leaf: Option<(u64, Hash)>,
    /// Where in the chunk's CSV bytes the record's row is, when it gives one.
    csv_row: Option<std::ops::Range<usize>>,
    problems: Vec<(&'static str, String)>,
}

/// What is wrong with the CSV row read where record line `number`'s row `want` was
/// expected, if anything.
fn csv_finding(number: u64, got: Next, want: &[u8], header: &[&str]) -> Option<String> {
    match got {
        Next::Same => None,
        Next::End => Some("has no row for this record".into()),
        Next::Differs(got) => {
            let want = cells_of(want);
            if got.first() != want.first() {
                let id = got.first().map(|id| String::from_utf8_lossy(id).into_owned());
                return Some(format!(
                    "row {} is record {}, not this one",
                    number + 1,
                    id.unwrap_or_default()
                ));
            }
            fn cell(row: &Cells, i: usize) -> &[u8] {
                row.get(i).map(Vec::as_slice).unwrap_or_default()
            }
            let differs: Vec<&str> = (1..header.len())
                .filter(|&i| cell(&want, i) != cell(&got, i))
                .map(|i| header[i])
                .collect();
            Some(match differs.as_slice() {
                [] => "row is not laid out as the export writes it".into(),
                columns => columns
                    .iter()
                    .map(|c| format!("column {c} differs from the record"))
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        }
    }
}

/// Check one record against its own entry and commitments, and its CSV row against it.
fn check_pair(
    pair: &Pair<'_>,
    rows: &mut csv::Writer<Vec<u8>>,
    usage: &mut Usage,
    scratch: &mut String,
) -> Checked {
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let line = match std::str::from_utf8(pair.line)
        .map_err(|e| e.to_string())
        .and_then(|l| ReadLine::read(l, scratch))
    {
        Ok(l) => l,
        Err(e) => {
            let what = format!("line {} is not a record: {e}", pair.number);
            let problems = vec![(RECORDS, what)];
            return Checked {
                number: pair.number,
                id: None,
                seq_leaf: None,
                csv_row: None,
                problems,
            };
        }
    };
    let leaf = line.leaf();
    let mut csv_row = None;
    match &line.row {
        Err(e) => problems.push((RECORDS, e.clone())),
        Ok(cells) => {
            // The entry must say what the line says, and the content must match its
            // commitments.
            if cells.get("id") != line.id || cells.get("seq").parse() != Ok(line.seq) {
                problems.push((RECORDS, "id or seq differ from the entry's".into()));
            }
            let committed: Commitments<'_> = cells
                .commitments
                .and_then(|c| serde_json::from_str(c.get()).ok())
                .unwrap_or_default();
            let salt = line.salt.as_deref().and_then(|s| {
                let mut salt = [0u8; 32];
                hex::decode_to_slice(s, &mut salt).ok().map(|()| salt)
            });
            for field in &line.content {
                let ok = salt.is_some_and(|salt| {
                    let mut ours = [0u8; 64];
                    hex::encode_to_slice(commitment(&salt, field, cells.get(field)), &mut ours)
                        .expect("64 bytes hold 32 as hex");
                    committed.get(field).map(str::as_bytes) == Some(&ours[..])
                });
                if !ok {
                    problems
                        .push((RECORDS, format!("content {field} does not match its commitment")));
                }
            }
            // Its CSV row, to compare with the file's.
            usage.add(cells);
            let start = rows.get_ref().len();
            if cells.write(rows).and_then(|()| Ok(rows.flush()?)).is_ok() {
                csv_row = Some(start..rows.get_ref().len());
            }
        }
    }
    Checked {
        number: pair.number,
        id: Some(line.id.into_owned()),
        seq_leaf: Some((line.seq, leaf)),
        csv_row,
        problems,
    }
}
