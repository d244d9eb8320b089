//! Reads, on a pooled connection (or the writer's transaction), with cached statements.

use std::sync::LazyLock;

use aitrail_core::access::KeyId;
use aitrail_core::entry::{FieldColumns, RowColumns};
use aitrail_core::query::TextField;
use aitrail_core::tiles::{Tile, TileId};
use aitrail_core::{Cursor, Query, TenantId, Timestamp};
use aitrail_store::retention::Hold;
use aitrail_store::sealing::{BucketColumns, Opener, SealedColumns};
use aitrail_store::sql::{self, Param, RecordColumns};
use aitrail_store::{
    EntryRecord, LogHead, RawRow, RowPage, StoreError, StoredCheckpoint, StoredKey,
};
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

pub(crate) fn backend(e: tokio_postgres::Error) -> StoreError {
    // A server's error says what went wrong in its message; the error's own text is only
    // "db error".
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("PostgreSQL: {}", db.message())),
        None => StoreError::Backend(format!("PostgreSQL: {e}")),
    }
}

/// The columns every record read selects ([`sql::record_columns`]).
fn columns() -> &'static str {
    static COLUMNS: LazyLock<String> = LazyLock::new(|| sql::record_columns("r.entry"));
    &COLUMNS
}

/// How a record row finds its sealed content, that content's data key, and the data
/// key's bucket key.
const JOIN: &str = "LEFT JOIN contents c ON c.id = r.id LEFT JOIN data_keys k ON k.id = c.key_id \
                    LEFT JOIN bucket_keys b ON b.id = k.bucket_key";

/// A timestamp column as the text the entry holds, however it was edited.
fn rfc3339(t: OffsetDateTime) -> String {
    Timestamp::from_datetime(t).map_or_else(|_| t.to_string(), |t| t.to_string())
}

/// The record columns of a statement's result, by name.
fn record_columns(stmt: &Statement) -> Result<RecordColumns, StoreError> {
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    RecordColumns::find(&names)
}

fn raw_row(
    row: &Row,
    at: &RecordColumns,
    opener: &mut Opener<'_>,
) -> Result<RawRow, tokio_postgres::Error> {
    let mut text: [Option<String>; TextField::ALL.len()] = Default::default();
    for (t, &i) in text.iter_mut().zip(&at.text) {
        *t = row.try_get(i)?;
    }
    let event_time: OffsetDateTime = row.try_get(at.event_time)?;
    let columns = RowColumns {
        id: row.try_get::<_, Uuid>(at.id)?.hyphenated().to_string(),
        seq: row.try_get(at.seq)?,
        recorded_at: rfc3339(row.try_get(at.recorded_at)?),
        event_time: i64::try_from(event_time.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        fields: FieldColumns {
            tenant_id: row.try_get(at.tenant_id)?,
            event_time: None,
            text,
            temperature: row.try_get(at.temperature)?,
            success: row.try_get(at.success)?,
        },
    };
    let key_id: Option<Uuid> = row.try_get(at.key_id)?;
    let bucket_key: Option<Uuid> = row.try_get(at.bucket_key)?;
    let sealed = SealedColumns {
        sealed: row.try_get(at.sealed)?,
        key_id: key_id.as_ref().map(|k| k.as_bytes().as_slice()),
        wrapped: row.try_get(at.wrapped)?,
        bucket_key: BucketColumns {
            id: bucket_key.as_ref().map(|k| k.as_bytes().as_slice()),
            bucket: row.try_get::<_, Option<i32>>(at.bucket)?.map(i64::from),
            wrapped: row.try_get(at.bucket_wrapped)?,
        },
        hashes: [row.try_get(at.prompt_hash)?, row.try_get(at.response_hash)?],
    };
    let content = opener.open(&columns.fields.tenant_id, &columns.id, sealed);
    Ok(RawRow { pos: row.try_get(at.pos)?, columns, entry: row.try_get(at.entry)?, content })
}

/// Every row of a record read, mapped.
fn raw_rows(
    stmt: &Statement,
    rows: &[Row],
    opener: &mut Opener<'_>,
) -> Result<Vec<RawRow>, StoreError> {
    let at = record_columns(stmt)?;
    rows.iter().map(|row| raw_row(row, &at, opener)).collect::<Result<_, _>>().map_err(backend)
}

pub(crate) async fn raw_by_id(
    c: &impl GenericClient,
    opener: &mut Opener<'_>,
    id: Uuid,
) -> Result<Option<RawRow>, StoreError> {
    let stmt = c
        .prepare_cached(&format!("SELECT {} FROM records r {JOIN} WHERE r.id = $1", columns()))
        .await
        .map_err(backend)?;
    let row = c.query_opt(&stmt, &[&id]).await.map_err(backend)?;
    Ok(raw_rows(&stmt, row.as_slice(), opener)?.pop())
}

pub(crate) async fn entry(
    c: &impl GenericClient,
    opener: &mut Opener<'_>,
    id: Uuid,
) -> Result<Option<EntryRecord>, StoreError> {
    let Some(raw) = raw_by_id(c, opener, id).await? else { return Ok(None) };
    let tenant_id = TenantId::parse(&raw.columns.fields.tenant_id)
        .map_err(|e| StoreError::Corrupt(format!("record {id}: tenant_id {e}")))?;
    Ok(Some(EntryRecord {
        tenant_id,
        seq: raw.columns.seq as u64,
        content: raw.content.into_kept(&raw.columns.id)?,
        entry: raw.entry,
    }))
}

/// A listing parameter as a PostgreSQL value.
fn value(p: Param) -> Box<dyn ToSql + Sync + Send> {
    match p {
        Param::Text(s) => Box::new(s),
        Param::Int(i) => Box::new(i),
        Param::Real(f) => Box::new(f),
        Param::Bool(b) => Box::new(b),
        Param::Time(t) => Box::new(t.datetime()),
        Param::Uuid(u) => Box::new(u),
        Param::Bytes(b) => Box::new(b),
    }
}

/// A listing's SQL (prefixed) and its parameters as PostgreSQL values.
fn list_sql(q: &Query, prefix: &str) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let (sql, params) = sql::list(q, columns(), JOIN, "id", |i| format!("${i}"));
    (format!("{prefix}{sql}"), params.into_iter().map(value).collect())
}

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

pub(crate) async fn explain(c: &impl GenericClient, q: &Query) -> Result<String, StoreError> {
    let (sql, params) = list_sql(q, "EXPLAIN ");
    let rows = c.query(&sql, &refs(&params)).await.map_err(backend)?;
    let lines: Result<Vec<String>, _> = rows.iter().map(|r| r.try_get(0)).collect();
    Ok(lines.map_err(backend)?.join("\n"))
}

pub(crate) async fn list_rows(
    c: &impl GenericClient,
    opener: &mut Opener<'_>,
    q: &Query,
) -> Result<RowPage, StoreError> {
    let (sql, params) = list_sql(q, "");
    let stmt = c.prepare_cached(&sql).await.map_err(backend)?;
    let rows = c.query(&stmt, &refs(&params)).await.map_err(backend)?;
    let mut rows = raw_rows(&stmt, &rows, opener)?;
    // One row more than the page tells whether there is a next page.
    let limit = q.limit as usize;
    let next_cursor = (rows.len() > limit).then(|| Cursor(rows[limit - 1].pos));
    rows.truncate(limit);
    Ok(RowPage { rows, next_cursor })
}

/// The stored tiles among `ids`, in one round trip.
pub(crate) async fn tiles(
    c: &impl GenericClient,
    tenant: &str,
    ids: &[TileId],
) -> Result<Result<Vec<Tile>, StoreError>, tokio_postgres::Error> {
    let levels: Vec<i16> = ids.iter().map(|i| i16::from(i.level)).collect();
    let indexes: Vec<i64> = ids.iter().map(|i| i.index as i64).collect();
    let stmt = c
        .prepare_cached(
            "SELECT t.level, t.idx, t.hashes FROM tiles t
             JOIN unnest($2::smallint[], $3::bigint[]) AS want (level, idx)
               ON t.level = want.level AND t.idx = want.idx
             WHERE t.tenant_id = $1",
        )
        .await?;
    let rows = c.query(&stmt, &[&tenant, &levels, &indexes]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let level: i16 = row.try_get(0)?;
        let index: i64 = row.try_get(1)?;
        let bytes: Vec<u8> = row.try_get(2)?;
        let id = TileId { level: level as u8, index: index as u64 };
        match Tile::from_bytes(id, &bytes) {
            Some(tile) => out.push(tile),
            None => {
                let why = format!("tenant {tenant}: tile {id:?} is malformed");
                return Ok(Err(StoreError::Corrupt(why)));
            }
        }
    }
    Ok(Ok(out))
}

fn tenant_id(s: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(s).map_err(|e| StoreError::Corrupt(format!("tenant id {s:?}: {e}")))
}

pub(crate) async fn logs(c: &impl GenericClient) -> Result<Vec<LogHead>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT l.tenant_id, l.size, (SELECT max(size) FROM checkpoints k WHERE k.tenant_id = l.tenant_id)
             FROM logs l ORDER BY l.tenant_id",
        )
        .await
        .map_err(backend)?;
    let rows = c.query(&stmt, &[]).await.map_err(backend)?;
    rows.iter()
        .map(|r| {
            let checkpointed: Option<i64> = r.try_get(2).map_err(backend)?;
            Ok(LogHead {
                tenant_id: tenant_id(r.try_get(0).map_err(backend)?)?,
                size: r.try_get::<_, i64>(1).map_err(backend)? as u64,
                checkpointed: checkpointed.unwrap_or(0) as u64,
            })
        })
        .collect()
}

pub(crate) async fn tenants(c: &impl GenericClient) -> Result<Vec<TenantId>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT tenant_id FROM logs UNION SELECT DISTINCT tenant_id FROM records ORDER BY 1",
        )
        .await
        .map_err(backend)?;
    let rows = c.query(&stmt, &[]).await.map_err(backend)?;
    rows.iter().map(|r| tenant_id(r.try_get(0).map_err(backend)?)).collect()
}

const CHECKPOINT_COLUMNS: &str = "tenant_id, size, root, note, signed_at";

fn to_checkpoint(r: &Row) -> Result<StoredCheckpoint, StoreError> {
    let tenant: String = r.try_get("tenant_id").map_err(backend)?;
    let size: i64 = r.try_get("size").map_err(backend)?;
    let root: Vec<u8> = r.try_get("root").map_err(backend)?;
    let signed_at: OffsetDateTime = r.try_get("signed_at").map_err(backend)?;
    let bad = |what: &str| StoreError::Corrupt(format!("checkpoint {size} of {tenant}: {what}"));
    Ok(StoredCheckpoint {
        tenant_id: tenant_id(&tenant)?,
        size: size as u64,
        root: root.try_into().map_err(|_| bad("root is not 32 bytes"))?,
        note: r.try_get("note").map_err(backend)?,
        signed_at: Timestamp::from_datetime(signed_at).map_err(|_| bad("bad signed_at"))?,
    })
}

pub(crate) async fn checkpoint(
    c: &impl GenericClient,
    tenant: &TenantId,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row = match size {
        Some(size) => {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 AND size = $2"
                ))
                .await
                .map_err(backend)?;
            c.query_opt(&stmt, &[&tenant.as_str(), &(size as i64)]).await
        }
        None => {
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1"
                ))
                .await
                .map_err(backend)?;
            c.query_opt(&stmt, &[&tenant.as_str()]).await
        }
    };
    row.map_err(backend)?.as_ref().map(to_checkpoint).transpose()
}

pub(crate) async fn checkpoints(
    c: &impl GenericClient,
    tenant: &TenantId,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tenant_id = $1 ORDER BY size"
        ))
        .await
        .map_err(backend)?;
    let rows = c.query(&stmt, &[&tenant.as_str()]).await.map_err(backend)?;
    rows.iter().map(to_checkpoint).collect()
}

pub(crate) async fn pos_span(c: &impl GenericClient) -> Result<Option<(i64, i64)>, StoreError> {
    let row = c.query_one("SELECT min(pos), max(pos) FROM records", &[]).await.map_err(backend)?;
    let first: Option<i64> = row.try_get(0).map_err(backend)?;
    let last: Option<i64> = row.try_get(1).map_err(backend)?;
    Ok(first.zip(last))
}

pub(crate) async fn scan(
    c: &impl GenericClient,
    opener: &mut Opener<'_>,
    from: i64,
    to: i64,
) -> Result<Vec<RawRow>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {} FROM records r {JOIN} WHERE r.pos >= $1 AND r.pos < $2 ORDER BY r.pos",
            columns()
        ))
        .await
        .map_err(backend)?;
    let rows = c.query(&stmt, &[&from, &to]).await.map_err(backend)?;
    raw_rows(&stmt, &rows, opener)
}

/// One key (`Some(id)`) or all of them, oldest first.
pub(crate) async fn keys(
    c: &impl GenericClient,
    id: Option<&KeyId>,
) -> Result<Vec<StoredKey>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT id, role, tenant_id, digest, label, created_at, expires_at, revoked_at
             FROM api_keys WHERE $1::text IS NULL OR id = $1 ORDER BY created_at, id",
        )
        .await
        .map_err(backend)?;
    let rows = c.query(&stmt, &[&id.map(KeyId::as_str)]).await.map_err(backend)?;
    rows.iter()
        .map(|r| {
            let time = |name: &str| -> Result<Option<Timestamp>, StoreError> {
                let t: Option<OffsetDateTime> = r.try_get(name).map_err(backend)?;
                Ok(t.and_then(|t| Timestamp::from_datetime(t).ok()))
            };
            let text = |name: &str| -> Result<Option<String>, StoreError> {
                r.try_get(name).map_err(backend)
            };
            let id: String = r.try_get("id").map_err(backend)?;
            let role: String = r.try_get("role").map_err(backend)?;
            let digest: Vec<u8> = r.try_get("digest").map_err(backend)?;
            let times = [time("created_at")?, time("expires_at")?, time("revoked_at")?];
            let (tenant, label) = (text("tenant_id")?, text("label")?);
            StoredKey::from_columns(&id, &role, tenant.as_deref(), &digest, label, times)
        })
        .collect()
}

pub(crate) async fn policy(
    c: &impl GenericClient,
    tenant: &TenantId,
) -> Result<Option<String>, StoreError> {
    let stmt = c
        .prepare_cached("SELECT policy FROM policies WHERE tenant_id = $1")
        .await
        .map_err(backend)?;
    let row = c.query_opt(&stmt, &[&tenant.as_str()]).await.map_err(backend)?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) const HELD: &str = "(r.session_id IS NOT NULL AND EXISTS (SELECT 1 FROM holds h \
     WHERE h.tenant_id = r.tenant_id AND h.session_id = r.session_id))";

pub(crate) async fn holds(c: &impl GenericClient) -> Result<Vec<Hold>, StoreError> {
    let rows = c
        .query(
            "SELECT tenant_id, session_id, placed_at, reason FROM holds ORDER BY tenant_id, session_id",
            &[],
        )
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| {
            let session: String = r.get(1);
            Ok(Hold {
                tenant_id: TenantId::parse(r.get(0)).map_err(StoreError::Corrupt)?,
                session_id: (!session.is_empty()).then_some(session),
                placed_at: Timestamp::from_datetime(r.get(2)).map_err(StoreError::Corrupt)?,
                reason: r.get(3),
            })
        })
        .collect()
}

pub(crate) async fn records_before(
    c: &impl GenericClient,
    tenant: &TenantId,
    cutoff: Timestamp,
) -> Result<(Vec<u64>, u64), StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT r.seq, {HELD} FROM records r \
                 WHERE r.tenant_id = $1 AND r.recorded_at < $2 ORDER BY r.seq"
            ),
            &[&tenant.as_str(), &cutoff.datetime()],
        )
        .await
        .map_err(backend)?;
    Ok(seqs_and_held(rows))
}

/// Rows of `(seq, held)` as the seqs not held, in order, and how many were held.
pub(crate) fn seqs_and_held(rows: Vec<tokio_postgres::Row>) -> (Vec<u64>, u64) {
    let (mut seqs, mut held) = (Vec::new(), 0);
    for row in rows {
        match (row.get::<_, i64>(0), row.get::<_, bool>(1)) {
            (_, true) => held += 1,
            (seq, false) => seqs.push(seq as u64),
        }
    }
    (seqs, held)
}
