use std::net::SocketAddr;
use std::sync::Arc;

use aitrail_server::{Config, DEFAULT_MAX_BODY_BYTES};
use aitrail_store_sqlite::SqliteStore;
use anyhow::Context;

use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "AITRAIL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "AITRAIL_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AITRAIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = SqliteStore::open(&global.data_dir)?;
    let app =
        aitrail_server::router(Arc::new(store), Config { max_body_bytes: args.max_body_bytes });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts wait for this exact line.
    eprintln!("aitrail listening on http://{addr} (data: {})", global.data_dir.display());
    aitrail_server::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
