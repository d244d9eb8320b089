//! The raw-SQLite baseline of ingest, (c): the rows the store writes, inserted by hand, so a
//! run can say how close the store comes to SQLite itself on the same machine.

use std::time::Instant;

use aitrail_core::ingest::{BodyFormat, parse_body};
use aitrail_store_sqlite::MIGRATIONS;

use crate::{bench_dir, record};

/// The rows the store writes for each record (the record row, its entry and its
/// content row), precomputed, inserted with the same schema, indexes, WAL and
/// `synchronous=FULL`, 1,000 records a transaction. What it leaves out is the store's own
/// work: parsing, the entry and leaf hash, seq claims and the hash tiles.
pub fn insert_rate(batches: usize) -> anyhow::Result<f64> {
    use aitrail_core::Timestamp;
    use aitrail_core::entry::{self, RowColumns};
    use rusqlite::types::Value as V;
    let dir = bench_dir()?;
    let conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    for m in MIGRATIONS {
        conn.execute_batch(m)?;
    }
    // Everything a row needs, computed before the clock starts.
    let at = Timestamp::now();
    let (key_id, data_key) = (uuid::Uuid::now_v7(), aitrail_core::seal::DataKey::new([3; 32]));
    let rows: Vec<(Vec<V>, Vec<V>)> = (0..batches * 1000)
        .map(|i| {
            let body = record(i).to_string();
            let r = parse_body(body.as_bytes(), BodyFormat::Json).unwrap().into_records().remove(0);
            let p = entry::prepare(&r, [7; 32]);
            let id = uuid::Uuid::now_v7();
            let c = RowColumns::new(&id, (i / 4) as u64, at, p.columns.clone());
            let text = |t: &Option<String>| t.clone().map_or(V::Null, V::Text);
            let mut record_row = vec![
                V::Text(c.id.clone()),
                V::Text(c.fields.tenant_id.clone()),
                V::Integer(c.seq),
                V::Text(c.recorded_at.clone()),
                V::Integer(c.event_time),
            ];
            record_row.extend(c.fields.text.iter().map(text));
            record_row.push(c.fields.temperature.map_or(V::Null, V::Real));
            record_row.push(V::Integer(i64::from(c.fields.success)));
            let content = p.content.expect("bench records have content");
            // Sealed as the store seals it: that work is the store's, done here beforehand.
            let content_row = vec![
                V::Blob(entry::encode(&id, at, c.seq as u64, &p.record_json)),
                V::Blob(key_id.as_bytes().to_vec()),
                V::Blob(data_key.seal(&id, &content, [5; aitrail_core::seal::NONCE_LEN])),
            ];
            (record_row, content_row)
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(1000) {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (id, tenant_id, seq, recorded_at, event_time, model_provider, \
                 model_name, model_version, deployment_id, safety_mode, operation_type, user_id, \
                 agent_id, session_id, feature_code, external_id, temperature, success) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?;
            let mut entry =
                tx.prepare_cached("INSERT INTO entries (pos, entry) VALUES (?1, ?2)")?;
            let mut content = tx
                .prepare_cached("INSERT INTO contents (pos, key_id, sealed) VALUES (?1, ?2, ?3)")?;
            for (record_row, entry_and_content) in chunk {
                insert.execute(rusqlite::params_from_iter(record_row))?;
                let pos = V::Integer(tx.last_insert_rowid());
                let (entry_bytes, content_row) = entry_and_content.split_first().expect("entry");
                entry.execute(rusqlite::params![&pos, entry_bytes])?;
                content.execute(rusqlite::params_from_iter(
                    std::iter::once(&pos).chain(content_row),
                ))?;
            }
        }
        tx.commit()?;
    }
    Ok(rows.len() as f64 / start.elapsed().as_secs_f64())
}
