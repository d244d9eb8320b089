use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use aitrail_core::access::Role;
use aitrail_server::{Config, DEFAULT_MAX_BODY_BYTES, DEFAULT_RATE_LIMIT, Provider, ProxyTarget};
use aitrail_service::LogSigner;
use aitrail_service::keys::{self, KeyRequest};
use aitrail_store::Store;
use anyhow::Context;

use crate::target::Intent;
use crate::{Global, keyfile, target};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "AITRAIL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest request body accepted, in bytes (413 above it).
    #[arg(long, env = "AITRAIL_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// The log's name: checkpoints have origin `<name>/<tenant_id>` and the signing key
    /// carries it. Use your domain, e.g. audit.example.com.
    #[arg(long, env = "AITRAIL_LOG_NAME", default_value = "aitrail")]
    log_name: String,
    /// Serve GET /v1/log-key and GET /v1/checkpoint without an API key, so anyone can
    /// check the log's signatures.
    #[arg(long, env = "AITRAIL_PUBLIC_LOG")]
    public_log: bool,
    /// Requests a second each API key may make on this node (0: no limit).
    #[arg(long, env = "AITRAIL_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Shortest time between two signed checkpoints of a log, in milliseconds.
    #[arg(long, env = "AITRAIL_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// How often to apply every tenant's retention, in seconds (0: never; run
    /// `aitrail retention run` instead).
    #[arg(long, env = "AITRAIL_RETENTION_INTERVAL_S", default_value_t = 3600)]
    retention_interval_s: u64,
    /// Mark the dashboard's session cookie Secure (set this when browsers reach the server
    /// over HTTPS; a proxy's `X-Forwarded-Proto: https` also sets it).
    #[arg(long, env = "AITRAIL_SECURE_COOKIES")]
    secure_cookies: bool,
    /// A logging proxy to a provider, as `openai=URL` or `anthropic=URL` (repeatable):
    /// clients call /proxy/<provider>/v1/… with their provider key as usual and their
    /// aitrail key in X-Aitrail-Key (docs/PROXY.md).
    #[arg(long = "proxy", env = "AITRAIL_PROXY", value_delimiter = ',', value_name = "PROVIDER=URL", value_parser = proxy_target)]
    proxies: Vec<ProxyTarget>,
    /// Where the proxy keeps the records of calls the store could not take yet, a file each,
    /// until it does (default: proxy-spool in the data dir). A node started on it sends
    /// what another left there.
    #[arg(long, env = "AITRAIL_PROXY_SPOOL", value_name = "DIR")]
    proxy_spool: Option<std::path::PathBuf>,
    /// How much of each proxied answer its record keeps, in bytes; the rest is named by
    /// its size and SHA-256, and the record says it was truncated.
    #[arg(long, env = "AITRAIL_PROXY_RECORD_ANSWER_BYTES", default_value_t = aitrail_server::DEFAULT_PROXY_RECORD_ANSWER_BYTES)]
    proxy_record_answer_bytes: usize,
    /// The longest upstream answer the proxy passes on, in bytes; past it the call is cut
    /// and recorded as failed.
    #[arg(long, env = "AITRAIL_PROXY_MAX_ANSWER_BYTES", default_value_t = aitrail_server::DEFAULT_PROXY_MAX_ANSWER_BYTES)]
    proxy_max_answer_bytes: u64,
}

fn proxy_target(text: &str) -> Result<ProxyTarget, String> {
    let (name, url) =
        text.split_once('=').ok_or("expected PROVIDER=URL, e.g. openai=https://api.openai.com")?;
    let provider = Provider::parse(name)
        .ok_or_else(|| format!("unknown provider {name:?}: openai or anthropic"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("the upstream {url:?} is not an http(s) URL"));
    }
    Ok(ProxyTarget { provider, url: url.to_owned() })
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AITRAIL_LOG")
                // PostgreSQL's notices ("already exists, skipping") are not ours to show.
                .unwrap_or_else(|_| "info,tokio_postgres=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The key first: a new one is named --log-name, and the store seals content under it.
    let signer = keyfile::load_or_create(&global.data_dir, &args.log_name)?;
    let store = target::open_store(global, Intent::Change).await?;
    // Every node of one database must sign with one key: refuse before signing anything.
    store.claim_log_key(&signer.verifier().to_string()).await?;
    let interval = Duration::from_millis(args.checkpoint_interval_ms.max(1));
    let log = Arc::new(LogSigner::new(signer, interval));
    first_admin_key(store.as_ref(), &log).await?;
    tracing::info!(key = %log.verifier(), "log verifier key (also at GET /v1/log-key)");
    tokio::spawn(log.clone().run(store.clone()));
    if args.retention_interval_s > 0 {
        let every = Duration::from_secs(args.retention_interval_s);
        tokio::spawn(aitrail_server::retention_job(store.clone(), every));
    }
    let config = Config {
        max_body_bytes: args.max_body_bytes,
        public_log: args.public_log,
        rate_limit: args.rate_limit,
        secure_cookies: args.secure_cookies,
        proxies: args.proxies,
        proxy_spool: Some(args.proxy_spool.unwrap_or_else(|| global.data_dir.join("proxy-spool"))),
        proxy_record_answer_bytes: args.proxy_record_answer_bytes,
        proxy_max_answer_bytes: args.proxy_max_answer_bytes,
        ..Config::default()
    };
    let app = aitrail_server::router(store, log, config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Handlers first: a SIGTERM right after the line below must still stop us cleanly.
    let shutdown = shutdown_signal()?;
    // Tests and scripts wait for this exact line.
    let data = match &global.database {
        Some(_) => "PostgreSQL".to_owned(),
        None => global.data_dir.display().to_string(),
    };
    eprintln!("aitrail listening on http://{addr} (data: {data})");
    aitrail_server::serve(listener, app, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// A store with no API key at all gets one global admin key, shown this once on stderr.
async fn first_admin_key(store: &dyn Store, log: &LogSigner) -> anyhow::Result<()> {
    if !store.keys().await?.is_empty() {
        return Ok(());
    }
    let request = KeyRequest {
        role: Role::Admin,
        tenant: None,
        expires_at: None,
        label: Some("made at first start".into()),
    };
    let (key, _) = keys::issue(store, &log.api_key_secret(), request).await?;
    eprintln!(
        "aitrail: no API keys yet, so here is a global admin key, shown this once:\n\
         aitrail admin key: {}\n\
         aitrail: keep it secret; make the others with it (aitrail keys create --role R --tenant-id T)",
        key.reveal()
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed now, not when first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
