//! Reads, each on a connection of the pool (the writes that are not appends: `admin.rs`).

use std::sync::LazyLock;

use aitrail_core::access::KeyId;
use aitrail_core::entry::{ColumnsRef, FieldColumns, RowColumns};
use aitrail_core::query::TextField;
use aitrail_core::tiles::{Tile, TileId};
use aitrail_core::{Cursor, Query, StoredRecord, TenantId, Timestamp};
use aitrail_store::retention::Hold;
use aitrail_store::sealing::{BucketColumns, Opener, SealedColumns};
use aitrail_store::sql::{self, Param, RecordColumns, column_at};
use aitrail_store::verify::Checked;
use aitrail_store::{
    EntryPage, EntryRecord, EntryRow, LogHead, RawRow, RowPage, StoreError, StoredCheckpoint,
    StoredKey,
};
use aitrail_store::{RowCheck, RowRef};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, params, params_from_iter};
use uuid::Uuid;

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The columns every record read selects ([`sql::record_columns`]).
fn columns() -> &'static str {
    static COLUMNS: LazyLock<String> = LazyLock::new(|| sql::record_columns("e.entry"));
    &COLUMNS
}

/// How a record row finds its entry, its sealed content, that content's data key (in the
/// key file, attached as `keyring`) and the data key's bucket key (in the bucket-key file,
/// attached as `buckets`). A row whose entry is gone reads as an empty entry, which verify
/// names, rather than vanishing from the answer.
const JOIN: &str = "LEFT JOIN entries e ON e.pos = r.pos LEFT JOIN contents c ON c.pos = r.pos \
                    LEFT JOIN keyring.data_keys k ON k.id = c.key_id \
                    LEFT JOIN buckets.bucket_keys b ON b.id = k.bucket_key";

/// A BLOB (or TEXT) column's bytes, borrowed from the row.
fn blob<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<Option<&'r [u8]>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b),
        _ => Some(&[]),
    })
}

/// The sealed content columns of a record read.
fn sealed<'r>(row: &'r Row<'_>, at: &RecordColumns) -> rusqlite::Result<SealedColumns<'r>> {
    Ok(SealedColumns {
        sealed: blob(row, at.sealed)?,
        key_id: blob(row, at.key_id)?,
        wrapped: blob(row, at.wrapped)?,
        bucket_key: BucketColumns {
            id: blob(row, at.bucket_key)?,
            bucket: row.get(at.bucket)?,
            wrapped: blob(row, at.bucket_wrapped)?,
        },
        hashes: [blob(row, at.prompt_hash)?, blob(row, at.response_hash)?],
    })
}

/// The record columns of a statement's result, by name.
fn record_columns(stmt: &CachedStatement<'_>) -> Result<RecordColumns, StoreError> {
    RecordColumns::find(&stmt.column_names())
}

fn raw_row(row: &Row<'_>, at: &RecordColumns, opener: &mut Opener<'_>) -> rusqlite::Result<RawRow> {
    let mut text: [Option<String>; TextField::ALL.len()] = Default::default();
    for (t, &i) in text.iter_mut().zip(&at.text) {
        *t = row.get(i)?;
    }
    let columns = RowColumns {
        id: row.get(at.id)?,
        seq: row.get(at.seq)?,
        recorded_at: row.get(at.recorded_at)?,
        event_time: row.get(at.event_time)?,
        fields: FieldColumns {
            tenant_id: row.get(at.tenant_id)?,
            event_time: None,
            text,
            temperature: row.get(at.temperature)?,
            success: row.get(at.success)?,
        },
    };
    let content = opener.open(&columns.fields.tenant_id, &columns.id, sealed(row, at)?);
    let entry: Option<Vec<u8>> = row.get(at.entry)?;
    Ok(RawRow { pos: row.get(at.pos)?, columns, entry: entry.unwrap_or_default(), content })
}

pub(crate) fn get(
    c: &Connection,
    opener: &mut Opener<'_>,
    id: Uuid,
) -> Result<Option<StoredRecord>, StoreError> {
    let raw = raw_by_id(c, opener, id)?;
    raw.as_ref().map(RawRow::to_record).transpose()
}

fn raw_by_id(
    c: &Connection,
    opener: &mut Opener<'_>,
    id: Uuid,
) -> Result<Option<RawRow>, StoreError> {
    let sql = format!("SELECT {} FROM records r {JOIN} WHERE r.id = ?1", columns());
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let at = record_columns(&stmt)?;
    let row = stmt.query_row([id.hyphenated().to_string()], |row| raw_row(row, &at, opener));
    row.optional().map_err(backend)
}

pub(crate) fn entry(
    c: &Connection,
    opener: &mut Opener<'_>,
    id: Uuid,
) -> Result<Option<EntryRecord>, StoreError> {
    let Some(raw) = raw_by_id(c, opener, id)? else { return Ok(None) };
    let tenant_id = TenantId::parse(&raw.columns.fields.tenant_id)
        .map_err(|e| StoreError::Corrupt(format!("record {id}: tenant_id {e}")))?;
    Ok(Some(EntryRecord {
        tenant_id,
        seq: raw.columns.seq as u64,
        content: raw.content.into_kept(&raw.columns.id)?,
        entry: raw.entry,
    }))
}

pub(crate) fn list_rows(
    c: &Connection,
    opener: &mut Opener<'_>,
    q: &Query,
) -> Result<RowPage, StoreError> {
    let (sql, params) = list_sql(q);
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let at = record_columns(&stmt)?;
    let mut rows = stmt
        .query_map(params_from_iter(params), |row| raw_row(row, &at, opener))
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    // One row more than the page tells whether there is a next page.
    let limit = q.limit as usize;
    let next_cursor = (rows.len() > limit).then(|| Cursor(rows[limit - 1].pos));
    rows.truncate(limit);
    Ok(RowPage { rows, next_cursor })
}

/// The same page, entries and content only (exports read millions of them).
pub(crate) fn list_entries(
    c: &Connection,
    opener: &mut Opener<'_>,
    q: &Query,
) -> Result<EntryPage, StoreError> {
    let (sql, params) = list_sql_of(q, &ENTRY_COLUMNS);
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let names = stmt.column_names();
    let at = |name| column_at(&names, name);
    let [pos, id, seq, tenant, entry, key_id, sealed, wrapped] = [
        at("pos")?,
        at("id")?,
        at("seq")?,
        at("tenant_id")?,
        at("entry")?,
        at("key_id")?,
        at("sealed")?,
        at("wrapped")?,
    ];
    let [bucket_key, bucket, bucket_wrapped] =
        [at("bucket_key")?, at("bucket")?, at("bucket_wrapped")?];
    drop(names);
    let mut entry_row = |row: &Row<'_>| -> rusqlite::Result<(EntryRow, _)> {
        let entry_bytes: Option<Vec<u8>> = row.get(entry)?;
        let id: String = row.get(id)?;
        let columns = SealedColumns {
            sealed: blob(row, sealed)?,
            key_id: blob(row, key_id)?,
            wrapped: blob(row, wrapped)?,
            bucket_key: BucketColumns {
                id: blob(row, bucket_key)?,
                bucket: row.get(bucket)?,
                wrapped: blob(row, bucket_wrapped)?,
            },
            hashes: [None, None],
        };
        let content = opener.open(row.get_ref(tenant)?.as_str()?, &id, columns);
        let row = EntryRow {
            pos: row.get(pos)?,
            id,
            seq: row.get(seq)?,
            entry: entry_bytes.unwrap_or_default(),
            content: None,
        };
        Ok((row, content))
    };
    let mut rows = stmt
        .query_map(params_from_iter(params), |row| entry_row(row))
        .map_err(backend)?
        .map(|row| {
            let (mut row, content) = row.map_err(backend)?;
            row.content = content.into_kept(&row.id)?;
            Ok(row)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let limit = q.limit as usize;
    let next_cursor = (rows.len() > limit).then(|| Cursor(rows[limit - 1].pos));
    rows.truncate(limit);
    Ok(EntryPage { rows, next_cursor })
}

/// What [`list_entries`] selects.
static ENTRY_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!("r.pos, r.id, r.seq, r.tenant_id, e.entry, c.key_id, c.sealed, {}", sql::KEY_COLUMNS)
});

/// The SELECT for a listing, with its parameters as SQLite values.
fn list_sql(q: &Query) -> (String, Vec<Value>) {
    list_sql_of(q, columns())
}

/// [`list_sql`] selecting `columns`.
fn list_sql_of(q: &Query, columns: &str) -> (String, Vec<Value>) {
    let (sql, params) = sql::list(q, columns, JOIN, "pos", |_| "?".to_owned());
    let params = params
        .into_iter()
        .map(|p| match p {
            Param::Text(s) => Value::Text(s),
            Param::Int(i) => Value::Integer(i),
            Param::Real(f) => Value::Real(f),
            Param::Bool(b) => Value::Integer(i64::from(b)),
            Param::Time(t) => Value::Integer(t.unix_nanos()),
            Param::Uuid(u) => Value::Text(u.hyphenated().to_string()),
            Param::Bytes(b) => Value::Blob(b),
        })
        .collect();
    (sql, params)
}

pub(crate) fn tiles(
    c: &Connection,
    tenant: &TenantId,
    ids: &[TileId],
) -> Result<Vec<Tile>, StoreError> {
    // Consecutive ids of one level (verify's leaf scan) are one range query.
    if let (Some(first), Some(last)) = (ids.first(), ids.last())
        && ids.len() > 8
        && ids.iter().all(|i| i.level == first.level)
        && last.index - first.index + 1 == ids.len() as u64
    {
        return tile_range(c, tenant, first.level, first.index, last.index);
    }
    let mut stmt = c
        .prepare_cached("SELECT hashes FROM tiles WHERE tenant_id = ?1 AND level = ?2 AND idx = ?3")
        .map_err(backend)?;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let bytes: Option<Vec<u8>> = stmt
            .query_row(params![tenant.as_str(), id.level, id.index as i64], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if let Some(bytes) = bytes {
            let tile = Tile::from_bytes(id, &bytes).ok_or_else(|| {
                StoreError::Corrupt(format!("tenant {tenant}: tile {id:?} is malformed"))
            })?;
            out.push(tile);
        }
    }
    Ok(out)
}

fn tile_range(
    c: &Connection,
    tenant: &TenantId,
    level: u8,
    from: u64,
    to: u64,
) -> Result<Vec<Tile>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT idx, hashes FROM tiles WHERE tenant_id = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![tenant.as_str(), level, from as i64, to as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (idx, bytes) = row.map_err(backend)?;
        let id = TileId { level, index: idx as u64 };
        Tile::from_bytes(id, &bytes).ok_or_else(|| {
            StoreError::Corrupt(format!("tenant {tenant}: tile {id:?} is malformed"))
        })
    })
    .collect()
}

pub(crate) fn logs(c: &Connection) -> Result<Vec<LogHead>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT l.tenant_id, l.size, (SELECT max(size) FROM checkpoints k WHERE k.tenant_id = l.tenant_id)
             FROM logs l ORDER BY l.tenant_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (tenant, size, checkpointed) = row.map_err(backend)?;
        Ok(LogHead {
            tenant_id: tenant_id(&tenant)?,
            size: size as u64,
            checkpointed: checkpointed.unwrap_or(0) as u64,
        })
    })
    .collect()
}

fn tenant_id(s: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(s).map_err(|e| StoreError::Corrupt(format!("tenant id {s:?}: {e}")))
}

pub(crate) fn tenants(c: &Connection) -> Result<Vec<TenantId>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT tenant_id FROM logs UNION SELECT DISTINCT tenant_id FROM records ORDER BY 1",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(backend)?;
    rows.map(|t| tenant_id(&t.map_err(backend)?)).collect()
}

const CHECKPOINT_COLUMNS: &str = "tenant_id, size, root, note, signed_at";

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, Vec<u8>, String, String)> {
    Ok((r.get("tenant_id")?, r.get("size")?, r.get("root")?, r.get("note")?, r.get("signed_at")?))
}

fn to_checkpoint(
    row: (String, i64, Vec<u8>, String, String),
) -> Result<StoredCheckpoint, StoreError> {
    let (tenant, size, root, note, signed_at) = row;
    let bad = |what: &str| StoreError::Corrupt(format!("checkpoint {size} of {tenant}: {what}"));
    Ok(StoredCheckpoint {
        tenant_id: tenant_id(&tenant)?,
        size: size as u64,
        root: root.try_into().map_err(|_| bad("root is not 32 bytes"))?,
        note,
        signed_at: Timestamp::parse_rfc3339(&signed_at).map_err(|_| bad("bad signed_at"))?,
    })
}

pub(crate) fn checkpoint(
    c: &Connection,
    tenant: &TenantId,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row = match size {
        Some(size) => c
            .prepare_cached(&format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ?1 AND size = ?2"
            ))
            .and_then(|mut s| s.query_row(params![tenant.as_str(), size as i64], checkpoint_row).optional()),
        None => c
            .prepare_cached(&format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ?1 ORDER BY size DESC LIMIT 1"
            ))
            .and_then(|mut s| s.query_row(params![tenant.as_str()], checkpoint_row).optional()),
    };
    row.map_err(backend)?.map(to_checkpoint).transpose()
}

pub(crate) fn checkpoints(
    c: &Connection,
    tenant: &TenantId,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = ?1 ORDER BY size"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([tenant.as_str()], checkpoint_row).map_err(backend)?;
    rows.map(|r| to_checkpoint(r.map_err(backend)?)).collect()
}

pub(crate) fn pos_span(c: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    let span = c.query_row("SELECT min(pos), max(pos) FROM records", [], |r| {
        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
    });
    Ok(match span.map_err(backend)? {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

/// `check` of every row with `from <= pos < to`, on the row as SQLite holds it: nothing is
/// copied. A text column that is not UTF-8 reads as U+FFFD, which matches nothing logged.
pub(crate) fn check_rows(
    c: &Connection,
    opener: &mut Opener<'_>,
    from: i64,
    to: i64,
    check: RowCheck,
) -> Result<Vec<Checked>, StoreError> {
    fn text<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
        Ok(match row.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Text(t) => Some(std::str::from_utf8(t).unwrap_or("\u{FFFD}")),
            _ => Some("\u{FFFD}"),
        })
    }
    let mut one = |row: &Row<'_>, at: &RecordColumns| -> rusqlite::Result<Checked> {
        let mut texts: [Option<&str>; TextField::ALL.len()] = [None; TextField::ALL.len()];
        for (t, &i) in texts.iter_mut().zip(&at.text) {
            *t = text(row, i)?;
        }
        let columns = ColumnsRef {
            id: text(row, at.id)?.unwrap_or_default(),
            tenant_id: text(row, at.tenant_id)?.unwrap_or_default(),
            seq: row.get(at.seq)?,
            recorded_at: text(row, at.recorded_at)?.unwrap_or_default(),
            event_time: row.get(at.event_time)?,
            text: texts,
            temperature: row.get(at.temperature)?,
            success: row.get(at.success)?,
        };
        let content = opener.open_plain(columns.tenant_id, columns.id, sealed(row, at)?);
        let content = content.borrow();
        let entry = blob(row, at.entry)?.unwrap_or_default();
        Ok(check(&RowRef { pos: row.get(at.pos)?, columns, entry, content }))
    };
    let sql = format!(
        "SELECT {} FROM records r {JOIN} WHERE r.pos >= ?1 AND r.pos < ?2 ORDER BY r.pos",
        columns()
    );
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let at = record_columns(&stmt)?;
    let mut rows = stmt.query(params![from, to]).map_err(backend)?;
    let mut out = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0).min(1 << 16));
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(one(row, &at).map_err(backend)?);
    }
    Ok(out)
}

pub(crate) fn scan(
    c: &Connection,
    opener: &mut Opener<'_>,
    from: i64,
    to: i64,
) -> Result<Vec<RawRow>, StoreError> {
    let sql = format!(
        "SELECT {} FROM records r {JOIN} WHERE r.pos >= ?1 AND r.pos < ?2 ORDER BY r.pos",
        columns()
    );
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let at = record_columns(&stmt)?;
    stmt.query_map(params![from, to], |row| raw_row(row, &at, opener))
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
}

/// One key (`Some(id)`) or all of them, oldest first.
pub(crate) fn keys(c: &Connection, id: Option<&KeyId>) -> Result<Vec<StoredKey>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, role, tenant_id, digest, label, created_at, expires_at, revoked_at
             FROM api_keys WHERE ?1 IS NULL OR id = ?1 ORDER BY created_at, id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([id.map(KeyId::as_str)], |r| {
            let time = |name: &str| -> rusqlite::Result<Option<String>> { r.get(name) };
            Ok((
                r.get::<_, String>("id")?,
                r.get::<_, String>("role")?,
                r.get::<_, Option<String>>("tenant_id")?,
                r.get::<_, Vec<u8>>("digest")?,
                r.get::<_, Option<String>>("label")?,
                [time("created_at")?, time("expires_at")?, time("revoked_at")?],
            ))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (id, role, tenant, digest, label, times) = row.map_err(backend)?;
        let times = times.map(|t| t.and_then(|t| Timestamp::parse_rfc3339(&t).ok()));
        StoredKey::from_columns(&id, &role, tenant.as_deref(), &digest, label, times)
    })
    .collect()
}

pub(crate) fn policy(c: &Connection, tenant: &TenantId) -> Result<Option<String>, StoreError> {
    c.query_row("SELECT policy FROM policies WHERE tenant_id = ?1", [tenant.as_str()], |r| r.get(0))
        .optional()
        .map_err(backend)
}

pub(crate) const HELD: &str = "(r.session_id IS NOT NULL AND EXISTS (SELECT 1 FROM holds h \
     WHERE h.tenant_id = r.tenant_id AND h.session_id = r.session_id))";

pub(crate) fn holds(c: &Connection) -> Result<Vec<Hold>, StoreError> {
    let mut stmt = c
        .prepare("SELECT tenant_id, session_id, placed_at, reason FROM holds ORDER BY tenant_id, session_id")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (tenant, session, placed_at, reason) = row.map_err(backend)?;
        Ok(Hold {
            tenant_id: TenantId::parse(&tenant).map_err(StoreError::Corrupt)?,
            session_id: (!session.is_empty()).then_some(session),
            placed_at: Timestamp::parse_rfc3339(&placed_at).map_err(StoreError::Corrupt)?,
            reason,
        })
    })
    .collect()
}

pub(crate) fn records_before(
    c: &Connection,
    tenant: &TenantId,
    cutoff: Timestamp,
) -> Result<(Vec<u64>, u64), StoreError> {
    let mut stmt = c
        .prepare(&format!(
            "SELECT r.seq, {HELD} FROM records r \
             WHERE r.tenant_id = ?1 AND julianday(r.recorded_at) < julianday(?2) ORDER BY r.seq"
        ))
        .map_err(backend)?;
    seqs_and_held(&mut stmt, params![tenant.as_str(), cutoff.to_string()])
}

/// A statement's rows of `(seq, held)` as the seqs not held, in order, and how many were
/// held.
pub(crate) fn seqs_and_held(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<(Vec<u64>, u64), StoreError> {
    let rows = stmt
        .query_map(params, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)))
        .map_err(backend)?;
    let (mut seqs, mut held) = (Vec::new(), 0);
    for row in rows {
        match row.map_err(backend)? {
            (_, true) => held += 1,
            (seq, false) => seqs.push(seq as u64),
        }
    }
    Ok((seqs, held))
}
