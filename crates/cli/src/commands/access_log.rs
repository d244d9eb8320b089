//! `aitrail access-log`: who read what, when: the access log, newest first.

use aitrail_core::StoredRecord;
use aitrail_core::access::{AccessLogRefusal, access_log_query};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use crate::Global;
use crate::commands::list::Format;
use crate::target::{Intent, Page, Target, json_answer};

#[derive(clap::Args)]
pub struct Args {
    /// The tenant accessed.
    #[arg(long)]
    tenant_id: Option<String>,
    /// The key that accessed (its 16-digit id).
    #[arg(long)]
    key_id: Option<String>,
    /// read, verify, access-log.read, keys.list, key.create, key.revoke.
    #[arg(long)]
    operation: Option<String>,
    /// At or after: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    since: Option<String>,
    /// Before: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let mut pairs = vec![("limit".to_owned(), args.limit.to_string())];
    for (k, v) in [
        ("tenant_id", &args.tenant_id),
        ("key_id", &args.key_id),
        ("operation", &args.operation),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        pairs.extend(v.iter().map(|v| (k.to_owned(), v.clone())));
    }
    let page: Page = match Target::open(global, Intent::Read).await? {
        Target::Local(store) => {
            let query = access_log_query(&pairs, None).map_err(|r| match r {
                AccessLogRefusal::BadQuery(e) => anyhow::anyhow!("{e}"),
                AccessLogRefusal::Hidden => anyhow::anyhow!("not this key's to see"),
            })?;
            let page = store.list(&query).await?;
            Page { records: page.records, next_cursor: page.next_cursor.map(|c| c.to_string()) }
        }
        remote => {
            let request = remote.request(reqwest::Method::GET, "/v1/access-log").query(&pairs);
            json_answer(request.send().await?).await?
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&page.records)?),
        Format::Table | Format::Csv => println!("{}", table(&page.records)),
    }
    Ok(())
}

fn table(events: &[StoredRecord]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(["Time", "Key", "Role", "Operation", "Route", "Tenant", "Records", "Status"]);
    for e in events {
        let r = &e.record;
        let text = |v: &Option<aitrail_core::value::ShortText>| {
            v.as_ref().map(|v| v.as_str().to_owned()).unwrap_or_default()
        };
        let attributes = r.attributes.as_ref().map(|a| a.as_map());
        let attribute = |k: &str| {
            attributes.and_then(|a| a.get(k)).map(ToString::to_string).unwrap_or_default()
        };
        t.add_row([
            e.event_time().to_string(),
            text(&r.user_id),
            text(&r.agent_id),
            text(&r.operation_type),
            text(&r.feature_code),
            text(&r.session_id),
            attribute("records"),
            attribute("status"),
        ]);
    }
    t
}
