//! Moving in from the conversation-audit-log service: its PostgreSQL table or its compliance CSV.
//! Each old row becomes a new log entry (aitrail_core::legacy maps the columns); its Log ID becomes
//! the record's external_id, which is what makes a re-run import nothing twice.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use aitrail_core::Record;
use aitrail_core::ingest::BodyFormat;
use aitrail_core::legacy::{self, LegacyRow, csv_rows, record_from_row};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::Global;
use crate::target::{Intent, Target};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_postgres", "csv"])))]
pub struct Args {
    /// The old system's database (postgres://user@host:port/database).
    #[arg(long, requires = "table")]
    from_postgres: Option<String>,
    /// Its table of logs.
    #[arg(long, default_value = "conversation_audit_logs")]
    table: String,
    /// Its compliance export (conversation_logs.csv, RFC 4180, first line the headers).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The tenant of rows that name none (the CSV has no tenant column).
    #[arg(long)]
    tenant_id: Option<String>,
}

/// Records sent per append.
const BATCH: usize = 1000;
/// External ids asked about per lookup.
const LOOKUP: usize = 100;

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let (source, rows) = match (&args.from_postgres, &args.csv) {
        (Some(url), _) => (format!("table {}", args.table), read_table(url, &args.table).await?),
        (None, Some(file)) => (file.display().to_string(), read_csv(file)?),
        (None, None) => unreachable!("clap requires a source"),
    };
    let records = to_records(rows, args.tenant_id.as_deref())?;
    let target = Target::open(global, Intent::Change).await?;
    let fresh = not_yet_imported(global, &target, records).await?;
    let (total, new) = (fresh.total, fresh.records.len());
    let bar = ProgressBar::new(new as u64).with_style(
        ProgressStyle::with_template("importing {bar:40} {pos}/{len} records {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut bodies = Bodies::default();
    let mut records = fresh.records.iter();
    loop {
        let record = records.next();
        let json = record.map(serde_json::to_vec).transpose()?;
        if let Some((body, n)) = bodies.add(json) {
            target
                .append(global, body, BodyFormat::Json)
                .await
                .context("appending imported records")?;
            bar.inc(n as u64);
        }
        if record.is_none() {
            break;
        }
    }
    bar.finish_and_clear();
    println!(
        "imported {new} record(s) from {source}; {} of {total} were imported before",
        total - new
    );
    Ok(())
}

/// Records made into POST bodies of [`BATCH`] records at most, each within the API's
/// body limit (a row alone is: `read_csv` sees to that).
#[derive(Default)]
struct Bodies {
    body: Vec<u8>,
    n: usize,
}

impl Bodies {
    /// Add a record's JSON (`None`: there are no more); a body that is full, or the last,
    /// with its number of records.
    fn add(&mut self, json: Option<Vec<u8>>) -> Option<(Vec<u8>, usize)> {
        let full = match &json {
            Some(j) => self.n == BATCH || self.body.len() + j.len() + 2 > MAX_ROW_BYTES,
            None => true,
        };
        let done = (full && self.n > 0).then(|| {
            self.body.push(b']');
            (std::mem::take(&mut self.body), std::mem::take(&mut self.n))
        });
        if let Some(json) = json {
            self.body.push(if self.n == 0 { b'[' } else { b',' });
            self.body.extend_from_slice(&json);
            self.n += 1;
        }
        done
    }
}

/// Every row, as `to_jsonb` gives it, in the table's own column names.
async fn read_table(url: &str, table: &str) -> anyhow::Result<Vec<LegacyRow>> {
    let client =
        aitrail_store_postgres::connect(url).await.context("cannot connect to --from-postgres")?;
    let sql = format!("SELECT to_jsonb(t) FROM {} t", quote_table(table)?);
    let rows = client.query(&sql, &[]).await.with_context(|| format!("cannot read {table}"))?;
    rows.iter()
        .map(|row| match row.try_get::<_, Value>(0)? {
            Value::Object(map) => Ok(map.into_iter().collect()),
            _ => bail!("{table}: a row is not an object"),
        })
        .collect()
}

/// `schema.table` as quoted identifiers; refuses anything else.
fn quote_table(table: &str) -> anyhow::Result<String> {
    let ok = |part: &str| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| ok(p)) {
        bail!(
            "--table {table:?} is not a table name (letters, digits, _; optionally schema.table)"
        );
    }
    Ok(parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."))
}

/// The largest row read from a CSV, in bytes: what one record may take through the API
/// (its default body limit), so an import is held to the same bound as a POST.
const MAX_ROW_BYTES: usize = aitrail_server::DEFAULT_MAX_BODY_BYTES;

fn read_csv(file: &Path) -> anyhow::Result<Vec<LegacyRow>> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (headers, rows) = csv_rows(input, MAX_ROW_BYTES).map_err(|e| match e {
        legacy::CsvError::TooLong(what, limit) => anyhow::anyhow!(
            "{} {what} is longer than {limit} bytes, the API's body limit",
            file.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot read {}", file.display())),
    })?;
    refuse_unknown_columns(&headers).with_context(|| file.display().to_string())?;
    Ok(rows)
}

/// Every column must be one the old system's export or aitrail's has (a record field, or
/// an alias of one): an unknown one is refused by name rather than kept or dropped unseen.
fn refuse_unknown_columns(headers: &[String]) -> anyhow::Result<()> {
    let known: HashSet<String> = aitrail_export::line::csv_header()
        .into_iter()
        .chain(["log_id", "created_at"])
        .map(legacy::column_key)
        .collect();
    let unknown: Vec<&String> =
        headers.iter().filter(|h| !known.contains(&legacy::column_key(h))).collect();
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(10).map(|h| format!("{h:?}")).collect();
        let more = unknown.len().saturating_sub(10);
        bail!(
            "refused, nothing imported: {} column(s) that no record holds: {}{}",
            unknown.len(),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    Ok(())
}

/// Every row as a record, in the old system's time order; refuses the whole import,
/// naming each bad row, if any row is not a valid record or has no Log ID.
fn to_records(rows: Vec<LegacyRow>, tenant_id: Option<&str>) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::with_capacity(rows.len());
    let mut problems = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        match record_from_row(row, tenant_id) {
            Ok(r) if r.external_id.is_none() => problems.push(format!(
                "row {}: no Log ID (or id), so it could not be imported exactly once",
                i + 1
            )),
            Ok(r) => match serde_json::to_vec(&r).map(|json| json.len()) {
                // As JSON a row can grow (an escaped newline is two bytes): each must go
                // in a body of its own at the least, or nothing is imported.
                Ok(n) if n + 2 > MAX_ROW_BYTES => problems.push(format!(
                    "row {}: {n} bytes as JSON, past the API's body limit of {MAX_ROW_BYTES}",
                    i + 1
                )),
                Ok(_) => records.push(r),
                Err(e) => problems.push(format!("row {}: {e}", i + 1)),
            },
            Err(errors) => {
                for e in errors {
                    problems.push(format!("row {}: {}: {}", i + 1, e.field, e.message));
                }
            }
        }
    }
    if !problems.is_empty() {
        let shown: Vec<_> = problems.iter().take(20).cloned().collect();
        bail!(
            "refused, nothing imported: {} problem(s): {}{}",
            problems.len(),
            shown.join("; "),
            if problems.len() > 20 { "; …" } else { "" }
        );
    }
    records.sort_by_key(|r| r.event_time);
    Ok(records)
}

struct Fresh {
    total: usize,
    records: Vec<Record>,
}

/// The records whose (tenant, external_id) the store does not hold yet.
async fn not_yet_imported(
    global: &Global,
    target: &Target,
    records: Vec<Record>,
) -> anyhow::Result<Fresh> {
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &records {
        let id = r.external_id.as_ref().expect("checked above").as_str().to_owned();
        wanted.entry(r.tenant_id.to_string()).or_default().push(id);
    }
    let mut present: HashSet<(String, String)> = HashSet::new();
    for (tenant, ids) in &wanted {
        for chunk in ids.chunks(LOOKUP) {
            let mut pairs = vec![("tenant_id".to_owned(), tenant.clone())];
            pairs.push(("limit".into(), "1000".into()));
            pairs.extend(chunk.iter().map(|id| ("external_id".to_owned(), id.clone())));
            for r in target.list(global, &pairs).await?.records {
                if let Some(id) = &r.record.external_id {
                    present.insert((tenant.clone(), id.as_str().to_owned()));
                }
            }
        }
    }
    let total = records.len();
    let records = records
        .into_iter()
        .filter(|r| {
            let id = r.external_id.as_ref().map(|i| i.as_str().to_owned()).unwrap_or_default();
            !present.contains(&(r.tenant_id.to_string(), id))
        })
        .collect();
    Ok(Fresh { total, records })
}
