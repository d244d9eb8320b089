//! PostgreSQL figures: batch ingest through `aitrail serve --database` against binary COPY
//! of the same rows into plain tables, and the throughput of one node against two.

use std::time::Instant;

use aitrail_core::Timestamp;
use aitrail_core::entry::{self, RowColumns};
use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_store_postgres::testing::TestDatabase;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::{Server, drive, ms, percentile, record, start_node, wrk, wrk_script};

pub fn run(server_url: &str, batches: usize, singles_seconds: u32) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("| measure (PostgreSQL) | nodes | concurrency | records/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    // (e) batches of 1,000 through one node, as (b) on SQLite.
    let mut batch_rate = 0.0;
    for concurrency in [1usize, 4] {
        let db = rt.block_on(TestDatabase::on(server_url));
        let node = start_node(&db.url)?;
        let (elapsed, mut lat) =
            rt.block_on(drive(&[node.target()], concurrency, batches, 1000))?;
        lat.sort_unstable();
        let rate = (batches * 1000) as f64 / elapsed.as_secs_f64();
        if concurrency == 1 {
            batch_rate = rate;
        }
        println!(
            "| (e) batch of 1,000 POST | 1 | {concurrency} | {rate:.0} | {} | {} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }
    // (f) the same rows by binary COPY, 1,000 records a transaction: into tables of the
    // store's schema and indexes (the database's own cost of what the store keeps), and
    // into bare tables (the floor).
    let mut copy_rates = Vec::new();
    for (indexed, what) in [(true, "the store's schema and indexes"), (false, "bare tables")] {
        let db = rt.block_on(TestDatabase::on(server_url));
        let rate = rt.block_on(copy(&db.url, batches, indexed))?;
        println!("| (f) COPY into {what}, 1,000 a transaction | | 1 | {rate:.0} | | |");
        copy_rates.push(rate);
    }
    // (g) one database, one node or two, the same client load spread over them.
    let mut by_nodes = Vec::new();
    for nodes in [1usize, 2] {
        let db = rt.block_on(TestDatabase::on(server_url));
        let servers: Vec<Server> =
            (0..nodes).map(|_| start_node(&db.url)).collect::<anyhow::Result<_>>()?;
        let targets: Vec<(String, String)> = servers.iter().map(Server::target).collect();
        let (elapsed, mut lat) = rt.block_on(drive(&targets, 4, batches, 1000))?;
        lat.sort_unstable();
        let rate = (batches * 1000) as f64 / elapsed.as_secs_f64();
        println!(
            "| (g) batch of 1,000 POST | {nodes} | 4 | {rate:.0} | {} | {} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        // Single records at 64 connections in all, wrk per node.
        let body = record(1).to_string();
        let runs: Vec<_> = targets
            .iter()
            .map(|(base, key)| {
                let script = wrk_script(key, Some(&body));
                let base = base.clone();
                std::thread::spawn(move || {
                    let script = script?;
                    wrk(&base, "/v1/records", 64 / nodes, singles_seconds, script.path())
                })
            })
            .collect();
        let mut singles = 0.0;
        let mut p99 = String::new();
        for r in runs {
            let w = r.join().map_err(|_| anyhow::anyhow!("wrk thread"))??;
            singles += w.rate;
            p99 = w.p99;
        }
        println!(
            "| (g) single POST (wrk, {singles_seconds} s) | {nodes} | 64 | {singles:.0} | | {p99} |"
        );
        by_nodes.push((rate, singles));
        drop(servers);
    }
    println!(
        "\n(e)/(f) at concurrency 1 = {:.2} (same schema), {:.2} (bare tables)",
        batch_rate / copy_rates[0],
        batch_rate / copy_rates[1]
    );
    println!(
        "two nodes / one node: batches {:.2}, single records {:.2}",
        by_nodes[1].0 / by_nodes[0].0,
        by_nodes[1].1 / by_nodes[0].1
    );
    Ok(())
}

/// What the store writes for each record (its row with the entry, and its content row),
/// precomputed and COPYed in binary: into tables like the store's (`indexed`: same columns,
/// indexes and constraints, without the log's work), or into bare tables of the same
/// columns with no index and no constraint (the floor of what PostgreSQL takes here).
async fn copy(url: &str, batches: usize, indexed: bool) -> anyhow::Result<f64> {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    if indexed {
        aitrail_store_postgres::PostgresStore::migrate(
            url,
            &aitrail_core::seal::ContentKey::new([7; 32]),
        )
        .await?;
        client
            .batch_execute(
                "CREATE TABLE plain_records (LIKE records INCLUDING ALL);
                 CREATE TABLE plain_contents (LIKE contents INCLUDING ALL);",
            )
            .await?;
    } else {
        client
            .batch_execute(
                "CREATE TABLE plain_records (id uuid, tenant_id text, seq bigint, recorded_at timestamptz,
                     event_time timestamptz, model_provider text, model_name text, model_version text,
                     deployment_id text, safety_mode text, operation_type text, user_id text,
                     agent_id text, session_id text, feature_code text, external_id text,
                     temperature double precision, success boolean, entry bytea);
                 CREATE TABLE plain_contents (id uuid, key_id uuid, sealed bytea);",
            )
            .await?;
    }
    let at = Timestamp::now();
    struct Row {
        id: uuid::Uuid,
        columns: RowColumns,
        entry: Vec<u8>,
        /// The content as the store sends it: sealed (the sealing is the store's work).
        sealed: Vec<u8>,
    }
    let (key_id, data_key) = (uuid::Uuid::now_v7(), aitrail_core::seal::DataKey::new([3; 32]));
    let rows: Vec<Row> = (0..batches * 1000)
        .map(|i| {
            let body = record(i).to_string();
            let r = parse_body(body.as_bytes(), BodyFormat::Json).unwrap().into_records().remove(0);
            let p = entry::prepare(&r, [7; 32]);
            let id = uuid::Uuid::now_v7();
            let columns = RowColumns::new(&id, (i / 4) as u64, at, p.columns.clone());
            let content = p.content.expect("bench records have content");
            Row {
                id,
                entry: entry::encode(&id, at, columns.seq as u64, &p.record_json),
                columns,
                sealed: data_key.seal(&id, &content, [5; aitrail_core::seal::NONCE_LEN]),
            }
        })
        .collect();
    let mut record_types =
        vec![Type::UUID, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ];
    record_types.extend([Type::TEXT; 11]);
    record_types.extend([Type::FLOAT8, Type::BOOL, Type::BYTEA]);
    let content_types = [Type::UUID, Type::UUID, Type::BYTEA];
    let event_time = at.datetime();
    let start = Instant::now();
    for chunk in rows.chunks(1000) {
        let tx = client.transaction().await?;
        let sink = tx
            .copy_in(
                "COPY plain_records (id, tenant_id, seq, recorded_at, event_time, model_provider, \
                 model_name, model_version, deployment_id, safety_mode, operation_type, user_id, \
                 agent_id, session_id, feature_code, external_id, temperature, success, entry) \
                 FROM STDIN BINARY",
            )
            .await?;
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &record_types));
        for r in chunk {
            let (c, f) = (&r.columns, &r.columns.fields);
            let mut values: Vec<&(dyn ToSql + Sync)> =
                vec![&r.id, &f.tenant_id, &c.seq, &event_time, &event_time];
            values.extend(f.text.iter().map(|t| t as &(dyn ToSql + Sync)));
            values.extend([&f.temperature as &(dyn ToSql + Sync), &f.success, &r.entry]);
            w.as_mut().write(&values).await?;
        }
        w.finish().await?;
        let sink = tx.copy_in("COPY plain_contents (id, key_id, sealed) FROM STDIN BINARY").await?;
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &content_types));
        for r in chunk {
            w.as_mut().write(&[&r.id, &key_id, &r.sealed]).await?;
        }
        w.finish().await?;
        tx.commit().await?;
    }
    Ok(rows.len() as f64 / start.elapsed().as_secs_f64())
}
