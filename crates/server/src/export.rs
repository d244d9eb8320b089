//! GET /v1/export: a compliance export of one tenant's records, streamed as it is written
//! (aitrail_export). Auditors and admins only; the access log records the request before
//! the first byte goes out, and the finished export with its record count.

use aitrail_core::access::{AccessEvent, Action, Actor};
use aitrail_core::ingest::FieldError;
use aitrail_export::ExportError;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// Chunks in flight between the writer and the connection: the writer waits for a slow
/// client instead of buffering the export.
const CHUNKS_IN_FLIGHT: usize = 8;

pub(crate) async fn export(
    State(app): State<AppState>,
    caller: Caller,
    pairs: Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs.map_err(|e| ApiError::BadQuery(FieldError::new("query", e.body_text())))?.0;
    let mut params = aitrail_export::parse_params(pairs.clone()).map_err(ApiError::BadQuery)?;
    let tenant =
        caller.tenant_for(Action::Audit, params.query.tenant_id.take())?.ok_or_else(|| {
            ApiError::BadQuery(FieldError::new(
                "tenant_id",
                "an export proves one tenant's log against its checkpoint: name the tenant",
            ))
        })?;
    let format = params.format;
    // Everything logged so far goes into a checkpoint, so the export covers it.
    app.log.sign_pending(app.store.as_ref()).await?;
    let exported_by = Some(caller.0.key_id.as_str().to_owned());
    let request = app
        .trail
        .export_request(tenant.clone(), params, exported_by)
        .await?
        .ok_or(ApiError::NotFound)?;

    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let rt = tokio::runtime::Handle::current();
    let writer = ChannelWriter(tx.clone());
    let (store, signer) = (app.store.clone(), app.log.clone());
    let written = tokio::task::spawn_blocking(move || {
        aitrail_export::write(store, &rt, signer.signer(), &request, writer, &|_, _| {})
    });
    let principal = caller.0.clone();
    tokio::spawn(async move {
        let outcome = written.await.map_err(|e| ExportError::Io(std::io::Error::other(e)));
        let (records, status) = match outcome.and_then(|r| r) {
            Ok(n) => (Some(n), 200),
            Err(e) => {
                tracing::error!(error = %e, tenant = %tenant, "export failed part way; the client gets a cut-off body");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                (None, 500)
            }
        };
        let event = AccessEvent {
            actor: Actor::Key(&principal),
            operation: "export.completed",
            route: "GET /v1/export",
            tenant: Some(&tenant),
            query: &pairs,
            records,
            status,
        };
        if let Err(e) = app.trail.record_access(&event).await {
            tracing::error!(error = %e, "the end of an export could not be written to the access log");
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let disposition = format!("attachment; filename=\"{}\"", format.file_name());
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The blocking writer's side of the response body.
struct ChannelWriter(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.blocking_send(Ok(Bytes::copy_from_slice(buf))).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
