use aitrail_core::StoredRecord;
use aitrail_core::csv::safe_cell;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

use crate::Global;
use crate::commands::filters::Filters;
use crate::target::{Intent, Target};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filters: Filters,
    /// Records per page (1 to 1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Start at this cursor (printed after a page that has more).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow the cursor to the last page.
    #[arg(long)]
    all: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl Args {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.filters.pairs();
        if let Some(limit) = self.limit {
            pairs.push(("limit".into(), limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            pairs.push(("cursor".into(), cursor.clone()));
        }
        pairs
    }
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let target = Target::open(global, Intent::Read).await?;
    let mut pairs = args.pairs();
    let mut records = Vec::new();
    let next = loop {
        let page = target.list(global, &pairs).await?;
        records.extend(page.records);
        match page.next_cursor {
            Some(cursor) if args.all => {
                pairs.retain(|(k, _)| k != "cursor");
                pairs.push(("cursor".into(), cursor));
            }
            other => break other,
        }
    };
    match args.format {
        Format::Table => println!("{}", table(&records)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&records)?),
        Format::Csv => write_csv(&records)?,
    }
    if let Some(cursor) = next {
        eprintln!("more records: add --cursor {cursor} (or --all)");
    }
    Ok(())
}

fn table(records: &[StoredRecord]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "Time",
        "Tenant",
        "Agent",
        "User",
        "Provider",
        "Model",
        "Version",
        "Temp",
        "Safety",
        "Tokens in/out",
        "Cost",
        "OK",
        "ID",
    ]);
    let opt = |v: Option<&str>| v.unwrap_or("").to_owned();
    for s in records {
        let r = &s.record;
        let tokens = match (r.tokens_input, r.tokens_output) {
            (None, None) => String::new(),
            (i, o) => format!(
                "{}/{}",
                i.map(|n| n.get().to_string()).unwrap_or_default(),
                o.map(|n| n.get().to_string()).unwrap_or_default()
            ),
        };
        let cost = match (&r.cost_amount, &r.cost_currency) {
            (Some(a), Some(c)) => format!("{a} {}", c.as_str()),
            (Some(a), None) => a.to_string(),
            _ => String::new(),
        };
        t.add_row([
            s.event_time().to_string(),
            r.tenant_id.to_string(),
            opt(r.agent_id.as_ref().map(|v| v.as_str())),
            opt(r.user_id.as_ref().map(|v| v.as_str())),
            opt(r.model_provider.as_ref().map(|v| v.as_str())),
            opt(r.model_name.as_ref().map(|v| v.as_str())),
            opt(r.model_version.as_ref().map(|v| v.as_str())),
            opt(r.temperature.as_ref().map(|v| v.as_str())),
            opt(r.safety_mode.as_ref().map(|v| v.as_str())),
            tokens,
            cost,
            if r.success { "yes" } else { "no" }.to_owned(),
            s.id.to_string(),
        ]);
    }
    t
}

/// Columns: the server fields, then every record field in documentation order. Objects are
/// JSON text; cells are neutralised against spreadsheet formula injection.
fn write_csv(records: &[StoredRecord]) -> anyhow::Result<()> {
    let columns: Vec<&str> = ["id", "seq", "recorded_at"]
        .into_iter()
        .chain(aitrail_core::record::RECORD_FIELDS.iter().copied())
        .collect();
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    out.write_record(&columns)?;
    for r in records {
        let Value::Object(map) = serde_json::to_value(r)? else {
            continue;
        };
        let row = columns.iter().map(|c| match map.get(*c) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => safe_cell(s).into_owned(),
            Some(v) => safe_cell(&v.to_string()).into_owned(),
        });
        out.write_record(row)?;
    }
    out.flush()?;
    Ok(())
}
