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

use crate::line::{Line, Usage, csv_header};
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

    let small = |zip: &mut ZipArchive<_>, name: &'static str| -> Result<Vec<u8>, CheckError> {
        let mut f = zip.by_name(name).map_err(|_| CheckError::Missing(name))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| CheckError::Io(name.into(), e))?;
        Ok(buf)
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
        // The big files are hashed as they are streamed, in records().
        if [MANIFEST, MANIFEST_SIG, RECORDS, CONVERSATIONS, LEAVES, PROOFS].contains(&name.as_str())
        {
            continue;
        }
        let Some(want) = manifest.files.get(name) else {
            find(MANIFEST, None, format!("{name} is in the zip but not in the manifest"));
            continue;
        };
        if sha256_of(zip.by_name(name)?).map_err(|e| CheckError::Io(name.clone(), e))? != *want {
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
    let mut stream = |name: &'static str| -> Result<BufReader<Inflated>, CheckError> {
        let (reader, digest) = Inflated::spawn(path, name)?;
        streams.push((name, digest));
        Ok(BufReader::with_capacity(CHUNK, reader))
    };
    let lines = stream(RECORDS)?;
    let mut csv = csv::ReaderBuilder::new().has_headers(false).from_reader(stream(CONVERSATIONS)?);
    let mut csv_rows = csv.byte_records();
    let header: Vec<&str> = csv_header();
    match csv_rows.next() {
        Some(Ok(h)) if h.iter().eq(header.iter().map(|h| h.as_bytes())) => {}
        _ => report.findings.push(Finding {
            file: CONVERSATIONS,
            record: None,
            what: "the header row is not the export's".into(),
        }),
    }
    let mut proofs = Proofs::new(proof_name, stream(proof_name)?);

    let mut usage = Usage::default();
    let mut last_seq: Option<u64> = None;
    let mut n = 0u64;
    let mut lines = lines;
    loop {
        // A batch of lines with their CSV rows, checked on every core, then taken in order.
        // Lines are split here and read (UTF-8 and JSON) there.
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let mut line = Vec::new();
            if lines.read_until(b'\n', &mut line).map_err(|e| CheckError::Io(RECORDS.into(), e))?
                == 0
            {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            n += 1;
            batch.push(Pair { number: n, line, csv: csv_rows.next() });
        }
        if batch.is_empty() {
            break;
        }
        let checked: Vec<(Vec<Checked>, Usage)> = batch
            .par_chunks(64)
            .map(|chunk| {
                let mut usage = Usage::default();
                let checked = chunk.iter().map(|p| check_pair(p, &header, &mut usage)).collect();
                (checked, usage)
            })
            .collect();
        for (records, partial) in checked {
            usage.merge(partial);
            for c in records {
                let mut problems = c.problems;
                if let Some((seq, leaf)) = c.seq_leaf {
                    if let Some(last) = last_seq
                        && seq <= last
                    {
                        let why = format!("comes after seq {last}: lines are out of log order");
                        problems.insert(0, (RECORDS, why));
                    }
                    last_seq = Some(seq);
                    if seq >= size {
                        problems
                            .push((RECORDS, format!("seq is beyond the checkpoint's size {size}")));
                    }
                    if let Some(why) = proofs.check(seq, leaf, size, root) {
                        problems.push((proof_name, why));
                    }
                }
                let name = match (&c.id, c.seq_leaf) {
                    (Some(id), Some((seq, _))) if !problems.is_empty() => {
                        Some(format!("{id} (seq {seq})"))
                    }
                    _ => None,
                };
                for (file, what) in problems {
                    report.findings.push(Finding { file, record: name.clone(), what });
                }
            }
        }
    }
    for row in csv_rows {
        let id = row.ok().and_then(|r| r.get(0).map(|id| String::from_utf8_lossy(id).into_owned()));
        let id = id.unwrap_or_default();
        report.findings.push(Finding {
            file: CONVERSATIONS,
            record: Some(id),
            what: "has a row for a record records.jsonl does not hold".into(),
        });
    }
    if let Some(why) = proofs.finish(size, root) {
        report.findings.push(Finding { file: proof_name, record: None, what: why });
    }
    if n != manifest.records {
        report.findings.push(Finding {
            file: RECORDS,
            record: None,
            what: format!("holds {n} records; the manifest says {}", manifest.records),
        });
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
    let mut summary = Vec::new();
    open_zip(path)?
        .by_name(USAGE)
        .map_err(|_| CheckError::Missing(USAGE))?
        .read_to_end(&mut summary)
        .map_err(|e| CheckError::Io(USAGE.into(), e))?;
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

/// The proof file, read along with the records.
enum Proofs<R: BufRead> {
    /// leaves.bin: read up to each record's seq, all of it hashed into the tree.
    Leaves { file: R, tree: CompactRange, last: Hash },
    /// proofs.jsonl: one line per record.
    Paths { lines: std::io::Lines<R> },
}

impl<R: BufRead> Proofs<R> {
    fn new(name: &str, file: R) -> Self {
        if name == LEAVES {
            Proofs::Leaves { file, tree: CompactRange::default(), last: [0; 32] }
        } else {
            Proofs::Paths { lines: file.lines() }
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
            Proofs::Paths { lines } => {
                let line = match lines.next() {
                    Some(Ok(l)) => l,
                    _ => return Some("has no inclusion proof".into()),
                };
                let Ok(proof) = serde_json::from_str::<ProofLine>(&line) else {
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
            Proofs::Paths { mut lines } => {
                lines.next().map(|_| "holds proofs of records records.jsonl does not".into())
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
    Ok(ZipArchive::new(BufReader::new(file))?)
}

/// A file of the zip inflated and hashed on a thread of its own (so the big files use
/// every core), read here as it comes. The thread reads and hashes to the end even when
/// the reader stops early, and answers the file's SHA-256.
struct Inflated {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

/// The thread's answer: the file's SHA-256.
type FileDigest = std::thread::JoinHandle<std::io::Result<String>>;

impl Inflated {
    fn spawn(path: &Path, name: &'static str) -> Result<(Self, FileDigest), CheckError> {
        let mut zip = open_zip(path)?;
        if zip.index_for_name(name).is_none() {
            return Err(CheckError::Missing(name));
        }
        let (tx, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let digest = std::thread::spawn(move || {
            let mut file = zip.by_name(name).map_err(std::io::Error::other)?;
            let mut sha = Sha256::new();
            let mut open = true;
            loop {
                let mut chunk = vec![0; CHUNK];
                let n = read_full(&mut file, &mut chunk)?;
                if n == 0 {
                    return Ok(hex::encode(sha.finalize()));
                }
                chunk.truncate(n);
                sha.update(&chunk);
                open = open && tx.send(chunk).is_ok();
            }
        });
        Ok((Self { chunks, current: Vec::new(), at: 0 }, digest))
    }
}

impl Read for Inflated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => (self.current, self.at) = (chunk, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
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

/// Lines of records.jsonl checked at once.
const BATCH: usize = 4096;

/// A line of records.jsonl and the CSV row beside it.
struct Pair {
    /// 1-based line number.
    number: u64,
    line: Vec<u8>,
    csv: Option<csv::Result<csv::ByteRecord>>,
}

/// What checking one record on its own found; its seq and leaf go on to the checks that
/// need the records in order.
struct Checked {
    /// The record's id, when the line could be read.
    id: Option<String>,
    seq_leaf: Option<(u64, Hash)>,
    problems: Vec<(&'static str, String)>,
}

/// Check one record against its own entry and commitments, and its CSV row against it.
fn check_pair(pair: &Pair, header: &[&str], usage: &mut Usage) -> Checked {
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let line: Line<'_> = match std::str::from_utf8(&pair.line)
        .map_err(|e| e.to_string())
        .and_then(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            let what = format!("line {} is not a record: {e}", pair.number);
            return Checked { id: None, seq_leaf: None, problems: vec![(RECORDS, what)] };
        }
    };
    let leaf = line.leaf();
    match line.row() {
        Err(e) => problems.push((RECORDS, e)),
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
            for (field, text) in &line.content {
                let ok = salt.is_some_and(|salt| {
                    let mut ours = [0u8; 64];
                    hex::encode_to_slice(commitment(&salt, field, text), &mut ours)
                        .expect("64 bytes hold 32 as hex");
                    committed.get(field).map(str::as_bytes) == Some(&ours[..])
                });
                if !ok {
                    problems
                        .push((RECORDS, format!("content {field} does not match its commitment")));
                }
            }
            // The CSV row must be what this record gives.
            match &pair.csv {
                None => problems.push((CONVERSATIONS, "has no row for this record".into())),
                Some(Err(e)) => problems.push((CONVERSATIONS, format!("row unreadable: {e}"))),
                Some(Ok(row)) => {
                    usage.add(&cells);
                    let mut want = cells.csv();
                    let first = want.next().unwrap_or_default();
                    if row.get(0) != Some(first.as_bytes()) {
                        let what = format!(
                            "row {} is record {}, not this one",
                            pair.number + 1,
                            String::from_utf8_lossy(row.get(0).unwrap_or_default())
                        );
                        problems.push((CONVERSATIONS, what));
                    } else {
                        let got = row.iter().skip(1).chain(std::iter::repeat(&b""[..]));
                        for ((column, want), got) in header.iter().skip(1).zip(want).zip(got) {
                            if want.as_bytes() != got {
                                problems.push((
                                    CONVERSATIONS,
                                    format!("column {column} differs from the record"),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    Checked { id: Some(line.id.into_owned()), seq_leaf: Some((line.seq, leaf)), problems }
}
