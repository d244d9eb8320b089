//! Writing an export. The store is read a page at a time (the next page fetched while this
//! one is written), once per file that lists records; nothing grows with the export but
//! the usage totals and, for small exports, the seqs whose proofs are added.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use aitrail_core::merkle::leaf_hash;
use aitrail_core::note::NoteSigner;
use aitrail_core::tiles::{TILE_WIDTH, TileId};
use aitrail_core::{Query, TenantId, Timestamp};
use aitrail_store::{RawRow, Store, StoreError, StoredCheckpoint, proofs};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::line::{Line, Usage, audit_record, csv_header, csv_row, csv_writer};
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
        Format::Jsonl => records_jsonl(&rows, &mut out, &mut |_, _| {}, progress)?,
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
        mut f: impl FnMut(&RawRow) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        let mut query = self.request.query.clone();
        query.tenant_id = Some(self.request.tenant.clone());
        query.oldest_first = true;
        query.seq_below = Some(self.request.checkpoint.size);
        query.limit = PAGE;
        query.cursor = None;
        let fetch = |q: Query| {
            let store = self.store.clone();
            self.rt.spawn(async move { store.list_rows(&q).await })
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
            for row in &page.rows {
                f(row)?;
            }
        }
        Ok(())
    }
}

fn line_of(row: &RawRow) -> Result<Line<'_>, ExportError> {
    Line::of(row).ok_or_else(|| {
        ExportError::Corrupt(row.columns.id.clone(), "its entry is not UTF-8 text".into())
    })
}

fn fields_of(row: &RawRow) -> Result<serde_json::Map<String, serde_json::Value>, ExportError> {
    line_of(row)?.fields().map_err(|e| ExportError::Corrupt(row.columns.id.clone(), e))
}

/// records.jsonl; `seen` is told each record's seq and leaf hash.
fn records_jsonl(
    rows: &Rows<'_>,
    out: &mut dyn Write,
    seen: &mut dyn FnMut(u64, [u8; 32]),
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let mut n = 0u64;
    rows.each(|row| {
        let line = line_of(row)?;
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        seen(line.seq, leaf_hash(&row.entry));
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
        csv.write_record(csv_row(&fields_of(row)?)).map_err(std::io::Error::from)?;
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

/// A zip entry being written, hashed as it goes.
struct Hashed<'z> {
    zip: &'z mut dyn Write,
    sha: Sha256,
}

impl Write for Hashed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.zip.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.zip.flush()
    }
}

/// The zip, file after file; each file's SHA-256 goes into the manifest.
struct Bundle<W: Write> {
    zip: ZipWriter<zip::write::StreamWriter<W>>,
    files: Vec<(&'static str, String)>,
}

impl<W: Write> Bundle<W> {
    fn file<T>(
        &mut self,
        name: &'static str,
        body: impl FnOnce(&mut dyn Write) -> Result<T, ExportError>,
    ) -> Result<T, ExportError> {
        // Level 1: on this JSON and CSV nearly the ratio of level 6, at several times the
        // speed (BENCHMARKS.md).
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true);
        self.zip.start_file(name, options)?;
        let mut hashed =
            BufWriter::with_capacity(BUFFER, Hashed { zip: &mut self.zip, sha: Sha256::new() });
        let answer = body(&mut hashed)?;
        let hashed = hashed.into_inner().map_err(|e| e.into_error())?;
        self.files.push((name, hex::encode(hashed.sha.finalize())));
        Ok(answer)
    }
}

fn bundle<W: Write + Send>(
    rows: &Rows<'_>,
    signer: &NoteSigner,
    out: W,
    progress: Progress<'_>,
) -> Result<u64, ExportError> {
    let request = rows.request;
    let size = request.checkpoint.size;
    let mut zip = Bundle { zip: ZipWriter::new_stream(out), files: Vec::new() };
    zip.file(README, |w| Ok(w.write_all(README_TEXT.as_bytes())?))?;

    // Proofs: a path per record while that is smaller than every leaf of the log.
    let depth = u64::from(64 - size.saturating_sub(1).leading_zeros());
    let mut seqs = Some(Vec::new());
    let count = zip.file(RECORDS, |w| {
        let mut remember = |seq: u64, _leaf| {
            if let Some(s) = seqs.as_mut() {
                s.push(seq);
                if s.len() as u64 * depth >= size {
                    seqs = None;
                }
            }
        };
        records_jsonl(rows, w, &mut remember, progress)
    })?;

    let mut usage = Usage::default();
    zip.file(CONVERSATIONS, |w| {
        let mut csv = csv_writer(w);
        csv.write_record(csv_header()).map_err(std::io::Error::from)?;
        let mut n = 0u64;
        rows.each(|row| {
            let fields = fields_of(row)?;
            usage.add(&fields);
            csv.write_record(csv_row(&fields)).map_err(std::io::Error::from)?;
            n += 1;
            if n.is_multiple_of(10_000) {
                progress(CONVERSATIONS, n);
            }
            Ok(())
        })?;
        csv.flush()?;
        Ok(())
    })?;
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
        zip.files.iter().map(|(name, sha)| (name.to_string(), json!(sha))).collect();
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
    });
    let mut manifest = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::from)?;
    manifest.push(b'\n');
    zip.file(MANIFEST, |w| Ok(w.write_all(&manifest)?))?;
    let note = signer
        .sign(&format!("{MANIFEST_NOTE_PREFIX}{}\n", hex::encode(Sha256::digest(&manifest))))?;
    zip.file(MANIFEST_SIG, |w| Ok(w.write_all(note.as_bytes())?))?;
    let mut out = zip.zip.finish()?;
    out.flush()?;
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
