//! Writing an export. The store is read a page at a time (the next page fetched while this
//! one is written), once per file that lists records; nothing grows with the export but
//! the usage totals and, for small exports, the seqs whose proofs are added.

use std::io::{BufWriter, Seek, Write};
use std::sync::Arc;

use aitrail_core::note::NoteSigner;
use aitrail_core::tiles::{TILE_WIDTH, TileId};
use aitrail_core::{Query, TenantId, Timestamp};
use aitrail_store::{EntryRow, Store, StoreError, StoredCheckpoint, proofs};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::line::{Line, Usage, audit_record, csv_header, csv_writer};
use crate::*;

/// Rows read from the store per page.
const PAGE: u32 = 2_000;
/// Leaf tiles read per call when writing leaves.bin.
const TILES_PER_FETCH: u64 = 64;
/// Buffer between the formatting and the compressor.
const BUFFER: usize = 256 * 1024;

/// What is exported, by whom, against which checkpoint.
#[derive(Debug, Clone)]
pub struct Request {
    pub tenant: TenantId,
    /// The filters as given (for the manifest); `query` is them parsed, its tenant set.
    pub filters: Vec<(String, String)>,
    pub query: Query,
    pub format: Format,
    /// The key id of the caller, or `None` for a local export by the operator.
    pub exported_by: Option<String>,
    /// The signed checkpoint the export proves against; only records below its size are
    /// exported.
    pub checkpoint: StoredCheckpoint,
    pub generated_at: Timestamp,
}

/// How far an export is: `phase` is the file being written.
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Sync);

/// Write the export `request` asks for to `out`; the number of records exported. Runs on
/// a blocking thread: `rt` is the runtime the store lives on.
pub fn write<W: Write + Send>(
    store: Arc<dyn Store>,
    rt: &Handle,
    signer: &NoteSigner,
    request: &Request,
    out: W,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let rows = Rows { store, rt, request };
    let mut out = BufWriter::with_capacity(BUFFER, out);
    let count = match request.format {
        Format::Zip => return bundle(&rows, signer, out, progress),
        Format::Jsonl => records_jsonl(&rows, &mut out, progress)?,
        Format::Csv => conversations_csv(&rows, &mut out, progress)?,
        Format::Json => audit_json(&rows, &mut out, progress)?,
    };
    out.flush()?;
    Ok(count)
}

/// The store's rows an export covers, in seq order.
struct Rows<'a> {
    store: Arc<dyn Store>,
    rt: &'a Handle,
    request: &'a Request,
}

impl Rows<'_> {
    fn each(
        &self,
        mut f: impl FnMut(&EntryRow) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        self.pages(|page| page.iter().try_for_each(&mut f))
    }

    /// The rows a page at a time, the next page read while `f` works on this one.
    fn pages(
        &self,
        mut f: impl FnMut(Vec<EntryRow>) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let mut query = self.request.query.clone();
        query.tenant_id = Some(self.request.tenant.clone());
        query.oldest_first = true;
        query.seq_below = Some(self.request.checkpoint.size);
        query.limit = PAGE;
        query.cursor = None;
        let fetch = |q: Query| {
            let store = self.store.clone();
            self.rt.spawn(async move { store.list_entries(&q).await })
        };
        let mut next = Some(fetch(query.clone()));
        while let Some(page) = next.take() {
            let page = self
                .rt
                .block_on(page)
                .map_err(|e| StoreError::Backend(format!("reading task failed: {e}")))??;
            if let Some(cursor) = page.next_cursor {
                query.cursor = Some(cursor);
                next = Some(fetch(query.clone()));
            }
            f(page.rows)?;
        }
        Ok(())
    }
}

fn line_of(row: &EntryRow) -> Result<Line<'_>, ExportError> {
    Line::of(row).map_err(|e| ExportError::Corrupt(row.id.clone(), e))
}

fn fields_of(row: &EntryRow) -> Result<serde_json::Map<String, serde_json::Value>, ExportError> {
    line_of(row)?.fields().map_err(|e| ExportError::Corrupt(row.id.clone(), e))
}

/// records.jsonl alone.
fn records_jsonl(
    rows: &Rows<'_>,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let mut n = 0u64;
    let mut line_bytes = Vec::new();
    rows.each(|row| {
        line_bytes.clear();
        serde_json::to_writer(&mut line_bytes, &line_of(row)?).map_err(std::io::Error::from)?;
        line_bytes.push(b'\n');
        out.write_all(&line_bytes)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(RECORDS, n);
        }
        Ok(())
    })?;
    progress(RECORDS, n);
    Ok(n)
}

fn conversations_csv(
    rows: &Rows<'_>,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let mut csv = csv_writer(out);
    csv.write_record(csv_header()).map_err(std::io::Error::from)?;
    let mut n = 0u64;
    rows.each(|row| {
        let line = line_of(row)?;
        let cells = line.row().map_err(|e| ExportError::Corrupt(row.id.clone(), e))?;
        cells.write(&mut csv).map_err(std::io::Error::from)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(CONVERSATIONS, n);
        }
        Ok(())
    })?;
    csv.flush()?;
    progress(CONVERSATIONS, n);
    Ok(n)
}

fn audit_json(
    rows: &Rows<'_>,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    out.write_all(b"[")?;
    let mut n = 0u64;
    rows.each(|row| {
        out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, &audit_record(&fields_of(row)?))
            .map_err(std::io::Error::from)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress("json", n);
        }
        Ok(())
    })?;
    out.write_all(b"\n]\n")?;
    progress("json", n);
    Ok(n)
}

/// What the formatting side sends the zip thread.
enum ToZip {
    Start(&'static str),
    Data(Vec<u8>),
    /// The file is complete: answer its SHA-256 and size.
    End(std::sync::mpsc::Sender<Written>),
    /// Copy this file, compressed as it is, from a zip another thread wrote.
    Copy(Box<zip::ZipArchive<std::fs::File>>, &'static str),
}

/// The zip, file after file, written and compressed on a thread of its own while the
/// records are read and formatted; each file's SHA-256 and size go into the manifest.
struct Bundle {
    tx: std::sync::mpsc::SyncSender<ToZip>,
    files: Vec<(&'static str, Written)>,
}

/// A file as written into the zip, before compression.
struct Written {
    sha256: String,
    size: u64,
}

/// The zip thread is gone: its own error says why.
fn zip_gone() -> ExportError {
    ExportError::Io(std::io::Error::other("the zip writer stopped"))
}

impl Bundle {
    fn file<T>(
        &mut self,
        name: &'static str,
        body: impl FnOnce(&mut dyn Write) -> Result<T, ExportError>,
    ) -> Result<T, ExportError> {
        self.tx.send(ToZip::Start(name)).map_err(|_| zip_gone())?;
        let mut chunks = BufWriter::with_capacity(BUFFER, Chunks(&self.tx));
        let answer = body(&mut chunks)?;
        chunks.flush()?;
        drop(chunks);
        let (tx, sha) = std::sync::mpsc::channel();
        self.tx.send(ToZip::End(tx)).map_err(|_| zip_gone())?;
        self.files.push((name, sha.recv().map_err(|_| zip_gone())?));
        Ok(answer)
    }
}

/// Bytes for the zip thread, a buffer at a time.
struct Chunks<'a>(&'a std::sync::mpsc::SyncSender<ToZip>);

impl Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(ToZip::Data(buf.to_vec()))
            .map_err(|_| std::io::Error::other("the zip writer stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The zip thread: compress and hash what comes, file by file; the writer at the end.
fn zip_thread<W: Write>(out: W, files: std::sync::mpsc::Receiver<ToZip>) -> Result<W, ExportError> {
    // Level 1: on this JSON and CSV nearly the ratio of level 6, at several times the
    // speed.
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    let mut zip = ZipWriter::new_stream(out);
    let (mut sha, mut size) = (Sha256::new(), 0u64);
    for message in files {
        match message {
            ToZip::Start(name) => {
                // Hashes do not compress: stored as they are.
                let options = if name == LEAVES {
                    options
                        .compression_method(zip::CompressionMethod::Stored)
                        .compression_level(None)
                } else {
                    options
                };
                zip.start_file(name, options)?;
                (sha, size) = (Sha256::new(), 0);
            }
            ToZip::Data(bytes) => {
                zip.write_all(&bytes)?;
                sha.update(&bytes);
                size += bytes.len() as u64;
            }
            ToZip::End(answer) => {
                let sha256 = hex::encode(std::mem::take(&mut sha).finalize());
                let _ = answer.send(Written { sha256, size });
            }
            ToZip::Copy(mut from, name) => zip.raw_copy_file(from.by_name(name)?)?,
        }
    }
    let mut out = zip.finish()?.into_inner();
    out.flush()?;
    Ok(out)
}

fn bundle<W: Write + Send>(
    rows: &Rows<'_>,
    signer: &NoteSigner,
    out: W,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let side = tempfile::tempfile()?;
    std::thread::scope(|scope| {
        let (tx, files) = std::sync::mpsc::sync_channel(8);
        let writer = scope.spawn(move || zip_thread(out, files));
        let written =
            bundle_files(scope, Bundle { tx, files: Vec::new() }, side, rows, signer, progress);
        let zipped = writer.join().map_err(|_| panicked())?;
        // When both failed, the zip thread's error is the cause.
        zipped.and(written)
    })
}

fn panicked() -> ExportError {
    ExportError::Io(std::io::Error::other("an export thread panicked"))
}

/// The CSV thread's answer: the usage totals, the CSV as written, the zip holding it.
type CsvThread<'scope> =
    std::thread::ScopedJoinHandle<'scope, Result<(Usage, Written, std::fs::File), ExportError>>;

/// conversation_logs.csv and the usage totals, from the pages records.jsonl was written
/// from, on a thread of their own into their own zip (`temp`); then the CSV's SHA-256 and
/// the zip, to copy the CSV from as it is.
fn conversations<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    temp: std::fs::File,
) -> (std::sync::mpsc::SyncSender<Vec<EntryRow>>, CsvThread<'scope>) {
    let (pages_tx, pages) = std::sync::mpsc::sync_channel::<Vec<EntryRow>>(4);
    let thread = scope.spawn(move || {
        let (tx, files) = std::sync::mpsc::sync_channel(8);
        let writer = scope.spawn(move || zip_thread(temp, files));
        let mut zip = Bundle { tx, files: Vec::new() };
        let mut usage = Usage::default();
        let written = zip.file(CONVERSATIONS, |w| {
            let mut csv = csv_writer(w);
            csv.write_record(csv_header()).map_err(std::io::Error::from)?;
            for page in pages {
                for row in &page {
                    let corrupt = |e| ExportError::Corrupt(row.id.clone(), e);
                    let entry = crate::line::entry_text(&row.entry).map_err(corrupt)?;
                    let content = row.content.iter().flat_map(|c| &c.fields);
                    let cells = crate::line::row(entry, content.map(|(k, v)| (&**k, &**v)))
                        .map_err(corrupt)?;
                    usage.add(&cells);
                    cells.write(&mut csv).map_err(std::io::Error::from)?;
                }
            }
            csv.flush()?;
            Ok(())
        });
        let csv = zip.files.pop().map(|(_, csv)| csv);
        drop(zip);
        let temp = writer.join().map_err(|_| panicked())?;
        written?;
        Ok((usage, csv.ok_or_else(zip_gone)?, temp?))
    });
    (pages_tx, thread)
}

/// Every file of the bundle, in order; the Bundle is dropped at the end, which ends the zip.
fn bundle_files<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut zip: Bundle,
    temp: std::fs::File,
    rows: &Rows<'_>,
    signer: &NoteSigner,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let request = rows.request;
    let size = request.checkpoint.size;
    zip.file(README, |w| Ok(w.write_all(README_TEXT.as_bytes())?))?;

    // Proofs: a path per record while that is smaller than every leaf of the log.
    let depth = u64::from(64 - size.saturating_sub(1).leading_zeros());
    let mut seqs = Some(Vec::new());
    let (pages_tx, csv_thread) = conversations(scope, temp);
    let count = zip.file(RECORDS, |jsonl| {
        let mut line_bytes = Vec::new();
        let mut n = 0u64;
        rows.pages(|page| {
            for row in &page {
                line_bytes.clear();
                crate::line::write_line(row, &mut line_bytes)
                    .map_err(|e| ExportError::Corrupt(row.id.clone(), e))?;
                jsonl.write_all(&line_bytes)?;
                if let Some(s) = seqs.as_mut() {
                    s.push(row.seq as u64);
                    if s.len() as u64 * depth >= size {
                        seqs = None;
                    }
                }
            }
            n += page.len() as u64;
            progress(RECORDS, n);
            // The CSV thread went away only on an error, which its join tells.
            let _ = pages_tx.send(page);
            Ok(())
        })?;
        Ok(n)
    });
    drop(pages_tx);
    let csv = csv_thread.join().map_err(|_| panicked())?;
    let count = count?;
    let (usage, csv, mut temp) = csv?;
    temp.seek(std::io::SeekFrom::Start(0))?;
    let temp = zip::ZipArchive::new(temp)?;
    zip.tx.send(ToZip::Copy(Box::new(temp), CONVERSATIONS)).map_err(|_| zip_gone())?;
    zip.files.push((CONVERSATIONS, csv));
    zip.file(USAGE, |w| Ok(w.write_all(&usage.to_csv())?))?;
    zip.file(CHECKPOINT, |w| Ok(w.write_all(request.checkpoint.note.as_bytes())?))?;
    zip.file(LOG_KEY, |w| Ok(writeln!(w, "{}", signer.verifier())?))?;
    let proof = match seqs {
        Some(seqs) => {
            zip.file(PROOFS, |w| inclusion_proofs(rows, &seqs, w))?;
            PROOFS
        }
        None => {
            zip.file(LEAVES, |w| leaves(rows, w))?;
            LEAVES
        }
    };
    progress(proof, count);

    let files: serde_json::Map<String, serde_json::Value> =
        zip.files.iter().map(|(name, w)| (name.to_string(), json!(w.sha256))).collect();
    // What each file inflates to, so a check stops at the first byte past it.
    let sizes: serde_json::Map<String, serde_json::Value> =
        zip.files.iter().map(|(name, w)| (name.to_string(), json!(w.size))).collect();
    let filters: Vec<[&str; 2]> =
        request.filters.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    let manifest = json!({
        "format": BUNDLE_FORMAT,
        "tool": "aitrail",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "generated_at": request.generated_at.to_string(),
        "exported_by": request.exported_by,
        "tenant_id": request.tenant.as_str(),
        "filters": filters,
        "records": count,
        "checkpoint": {
            "size": size,
            "root": base64::engine::general_purpose::STANDARD.encode(request.checkpoint.root),
        },
        "proof": proof,
        "files": files,
        "sizes": sizes,
    });
    let mut manifest = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::from)?;
    manifest.push(b'\n');
    zip.file(MANIFEST, |w| Ok(w.write_all(&manifest)?))?;
    let note = signer
        .sign(&format!("{MANIFEST_NOTE_PREFIX}{}\n", hex::encode(Sha256::digest(&manifest))))?;
    zip.file(MANIFEST_SIG, |w| Ok(w.write_all(note.as_bytes())?))?;
    Ok(count)
}

/// proofs.jsonl: `{"seq":…,"audit_path":["hex",…]}` per exported record.
fn inclusion_proofs(rows: &Rows<'_>, seqs: &[u64], w: &mut dyn Write) -> Result<(), ExportError> {
    let (store, tenant, size) =
        (rows.store.as_ref(), &rows.request.tenant, rows.request.checkpoint.size);
    for &seq in seqs {
        let path = rows.rt.block_on(proofs::inclusion(store, tenant, seq, size))?;
        let path: Vec<String> = path.iter().map(hex::encode).collect();
        serde_json::to_writer(&mut *w, &json!({"seq": seq, "audit_path": path}))
            .map_err(std::io::Error::from)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// leaves.bin: the log's leaf hashes from seq 0 to the checkpoint, from its tiles.
fn leaves(rows: &Rows<'_>, w: &mut dyn Write) -> Result<(), ExportError> {
    let (tenant, size) = (&rows.request.tenant, rows.request.checkpoint.size);
    let tiles = size.div_ceil(TILE_WIDTH);
    for first in (0..tiles).step_by(TILES_PER_FETCH as usize) {
        let ids: Vec<TileId> = (first..(first + TILES_PER_FETCH).min(tiles))
            .map(|index| TileId { level: 0, index })
            .collect();
        let mut fetched = rows.rt.block_on(rows.store.tiles(tenant, &ids))?;
        fetched.sort_by_key(|t| t.id.index);
        for id in &ids {
            let want = TILE_WIDTH.min(size - id.index * TILE_WIDTH) as usize;
            let tile = fetched.iter().find(|t| t.id == *id).filter(|t| t.hashes.len() >= want);
            let Some(tile) = tile else {
                return Err(StoreError::Corrupt(format!(
                    "tenant {tenant}: leaf tile {} is missing; run aitrail verify",
                    id.index
                ))
                .into());
            };
            for hash in &tile.hashes[..want] {
                w.write_all(hash)?;
            }
        }
    }
    Ok(())
}
