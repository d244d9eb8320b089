//! Integrity routes: the verifier key, checkpoints, inclusion and consistency proofs.

use std::time::Duration;

use aitrail_core::ingest::FieldError;
use aitrail_core::merkle::{Hash, leaf_hash};
use aitrail_core::{Receipt, TenantId};
use aitrail_service::proofs::{self, Inclusion, ProofError};
use aitrail_store::EntryRecord;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use aitrail_core::access::Action;

use crate::access::Accessed;
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// How long POST /v1/records?wait=checkpoint waits for the signer.
pub(crate) const WAIT_FOR_CHECKPOINT: Duration = Duration::from_secs(10);

fn b64(h: &[u8]) -> String {
    B64.encode(h)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))
}

fn tenant(s: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(s).map_err(|m| ApiError::BadQuery(FieldError::new("tenant_id", m)))
}

/// The caller, unless the log is public (then nobody need be).
fn unless_public(
    app: &AppState,
    caller: Result<Caller, ApiError>,
) -> Result<Option<Caller>, ApiError> {
    match caller {
        Ok(c) => Ok(Some(c)),
        Err(_) if app.config.public_log => Ok(None),
        Err(e) => Err(e),
    }
}

/// GET /v1/log-key: the verifier key, in signed-note form. Public by nature, so it needs
/// no API key: an auditor fetches it to pin it before trusting anything else.
pub(crate) async fn log_key(State(app): State<AppState>) -> Response {
    let key = format!("{}\n", app.log.verifier());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], key).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantQuery {
    tenant_id: Option<String>,
}

/// The tenant whose log a request is about: the one named (which the caller must be
/// allowed to read), else the caller's own.
fn log_tenant(caller: Option<&Caller>, named: Option<&str>) -> Result<TenantId, ApiError> {
    let named = named.map(tenant).transpose()?;
    let tenant = match caller {
        Some(c) => c.tenant_for(Action::Read, named)?,
        None => named,
    };
    tenant.ok_or_else(|| ApiError::BadQuery(FieldError::new("tenant_id", "say whose log")))
}

/// GET /v1/checkpoint[?tenant_id=T]: the latest signed checkpoint, as a text note.
pub(crate) async fn checkpoint(
    State(app): State<AppState>,
    caller: Result<Caller, ApiError>,
    q: Result<Query<TenantQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = unless_public(&app, caller)?;
    let tenant = log_tenant(caller.as_ref(), query(q)?.tenant_id.as_deref())?;
    let cp = app.store.checkpoint(&tenant, None).await?.ok_or(ApiError::NoCheckpoint)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], cp.note).into_response())
}

/// An inclusion proof, with everything needed to check it offline.
#[derive(Serialize)]
pub(crate) struct InclusionBody {
    id: String,
    tenant_id: String,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
    /// The signed checkpoint the proof leads to.
    checkpoint: String,
    /// The entry (base64): its SHA-256 with a 0x00 prefix is the leaf hash.
    entry: String,
    /// The salt of the content commitments (base64), while content is kept.
    content_salt: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProofQuery {
    tree_size: Option<u64>,
}

/// GET /v1/records/{id}/proof[?tree_size=N]: against the latest checkpoint, or the one of
/// size N.
pub(crate) async fn proof(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ProofQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tree_size = query(q)?.tree_size;
    caller.may(Action::Read, None)?; // the role first: no oracle of which ids exist
    let id = id.parse().map_err(|_| ApiError::NotFound)?;
    let entry = app.store.entry(id).await?.ok_or(ApiError::NotFound)?;
    caller.may(Action::Read, Some(&entry.tenant_id))?;
    let inclusion =
        proofs::inclusion(app.store.as_ref(), &entry, tree_size).await.map_err(|e| match e {
            ProofError::OutsideTree { seq, size } => ApiError::BadQuery(FieldError::new(
                "tree_size",
                format!("record {id} is at seq {seq}, not inside a tree of size {size}"),
            )),
            e => proof_error("tree_size", e),
        })?;
    let body = inclusion_body(&id.to_string(), &entry, inclusion);
    // The salt lets whoever holds it confirm a guessed prompt: only for who sees content.
    let salt = entry.content.filter(|_| caller.sees_content(&entry.tenant_id));
    let body = InclusionBody { content_salt: salt.map(|c| b64(&c.salt)), ..body };
    let accessed = Accessed { tenant: Some(entry.tenant_id), records: 1, details: Vec::new() };
    Ok(accessed.on(Json(body).into_response()))
}

/// A proof's problem as the API answers it; `size_param`: the parameter that named a size.
fn proof_error(size_param: &str, e: ProofError) -> ApiError {
    match e {
        ProofError::NotYetCheckpointed => ApiError::NotYetCheckpointed,
        ProofError::NoCheckpoint => ApiError::NoCheckpoint,
        ProofError::NoCheckpointOfSize(_) => {
            ApiError::BadQuery(FieldError::new(size_param, e.to_string()))
        }
        ProofError::OutsideTree { .. } => {
            ApiError::BadQuery(FieldError::new(size_param, e.to_string()))
        }
        ProofError::FromEmpty | ProofError::FromBeyond { .. } => {
            ApiError::BadQuery(FieldError::new("from", e.to_string()))
        }
        ProofError::Store(e) => e.into(),
    }
}

/// The body of an inclusion proof, without the content salt (the caller decides).
fn inclusion_body(id: &str, entry: &EntryRecord, inclusion: Inclusion) -> InclusionBody {
    InclusionBody {
        id: id.to_owned(),
        tenant_id: entry.tenant_id.to_string(),
        leaf_index: entry.seq,
        tree_size: inclusion.checkpoint.size,
        leaf_hash: b64(&leaf_hash(&entry.entry)),
        audit_path: inclusion.audit_path.iter().map(|h: &Hash| b64(h)).collect(),
        checkpoint: inclusion.checkpoint.note,
        entry: b64(&entry.entry),
        content_salt: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    tenant_id: Option<String>,
    from: u64,
    to: Option<u64>,
}

#[derive(Serialize)]
struct ConsistencyBody {
    tenant_id: String,
    from: u64,
    to: u64,
    proof: Vec<String>,
    /// The signed checkpoint of size `to`.
    checkpoint: String,
}

/// GET /v1/consistency?tenant_id=T&from=M[&to=N]: proof that the log of size N (a signed
/// checkpoint; the latest by default) extends the log of size M.
pub(crate) async fn consistency(
    State(app): State<AppState>,
    caller: Caller,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let tenant = log_tenant(Some(&caller), q.tenant_id.as_deref())?;
    let proof = proofs::consistency(app.store.as_ref(), &tenant, q.from, q.to)
        .await
        .map_err(|e| proof_error("to", e))?;
    Ok(Json(ConsistencyBody {
        tenant_id: tenant.to_string(),
        from: proof.from,
        to: proof.checkpoint.size,
        proof: proof.proof.iter().map(|h| b64(h)).collect(),
        checkpoint: proof.checkpoint.note,
    })
    .into_response())
}

/// A receipt with its inclusion proof, for POST /v1/records?wait=checkpoint.
#[derive(Serialize)]
pub(crate) struct ProvenReceipt {
    #[serde(flatten)]
    receipt: Receipt,
    inclusion: InclusionBody,
}

/// Wait until every receipt's record is in a signed checkpoint; prove each against it.
pub(crate) async fn prove_receipts(
    app: &AppState,
    receipts: Vec<Receipt>,
) -> Result<Vec<ProvenReceipt>, ApiError> {
    let mut out = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        let entry = app.store.entry(receipt.id).await?.ok_or(ApiError::NotFound)?;
        let cp = app
            .log
            .wait_for(app.store.as_ref(), &entry.tenant_id, receipt.seq + 1, WAIT_FOR_CHECKPOINT)
            .await?
            .ok_or(ApiError::NotYetCheckpointed)?;
        let audit_path = aitrail_store::proofs::inclusion(
            app.store.as_ref(),
            &entry.tenant_id,
            entry.seq,
            cp.size,
        )
        .await?;
        let proven = Inclusion { checkpoint: cp, audit_path };
        let mut inclusion = inclusion_body(&receipt.id.to_string(), &entry, proven);
        inclusion.content_salt = entry.content.map(|c| b64(&c.salt));
        out.push(ProvenReceipt { receipt, inclusion });
    }
    Ok(out)
}
