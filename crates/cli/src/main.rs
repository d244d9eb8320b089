//! `aitrail`: a tamper-evident audit trail for AI/LLM calls.
//!
//! Each command is one module under `commands/`; `target` decides whether a command talks
//! to a running server (`--server`) or works directly on the local data dir.

mod commands;
mod config;
mod keyfile;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

// Verification and ingest allocate many small values; mimalloc does that faster than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SQLite allocates through the C library's malloc, not mimalloc. glibc gives each thread
/// that allocates an arena of its own (up to 8 per core), and SQLite connections move
/// between the runtime's blocking threads, so freed pages spread over many arenas that
/// each keep them: the soak saw the server's own memory creep for minutes. Two arenas,
/// unless `MALLOC_ARENA_MAX` says otherwise. (The workspace's one `unsafe`.)
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[derive(Parser)]
#[command(name = "aitrail", version, about = "Tamper-evident audit trail for AI/LLM calls")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where the records live: a server, PostgreSQL, or the embedded store in a data dir.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// A TOML file of option defaults (`database = "postgres://…"`, `listen = "…"`); the
    /// command line and the environment override it.
    #[arg(long, global = true, env = "AITRAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store (used when no --server is given).
    #[arg(long, global = true, env = "AITRAIL_DATA_DIR", default_value = "./aitrail-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user@host:port/database): store everything there instead
    /// of in --data-dir's embedded SQLite database. Several servers may share one.
    #[arg(long, global = true, env = "AITRAIL_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// URL of a running aitrail server, e.g. http://127.0.0.1:8080; without it, commands
    /// work directly on the store (--database, else --data-dir).
    #[arg(long, global = true, env = "AITRAIL_SERVER")]
    pub server: Option<String>,
    /// API key for --server (`ait_…`), sent as `Authorization: Bearer`.
    #[arg(long, global = true, env = "AITRAIL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API server (on PostgreSQL with --database, else the embedded store).
    Serve(commands::serve::Args),
    /// Append records from a JSON or NDJSON file (or stdin).
    Log(commands::log::Args),
    /// List records, newest first, with the API's filters.
    List(Box<commands::list::Args>),
    /// Find records by what was said: `--prompt-text` / `--response-text` (looked up by
    /// keyed hash, whatever the tenant keeps of the content), with the listing's filters.
    Find(Box<commands::list::Args>),
    /// Show one record by id.
    Show(commands::show::Args),
    /// Check the log: the whole store, one record, that it extends a saved checkpoint, or
    /// an export bundle (offline).
    Verify(commands::verify::Args),
    /// Write a compliance export (zip bundle, CSV, JSON Lines or JSON) of a tenant's records.
    Export(Box<commands::export::Args>),
    /// Print the latest signed checkpoint of a tenant's log.
    Checkpoint(commands::checkpoint::Args),
    /// Bring in logs from the conversation-audit-log service: its PostgreSQL table or its
    /// compliance CSV.
    Import(commands::import::Args),
    /// Who read what, when: the access log (auditors and admins).
    AccessLog(commands::access_log::Args),
    /// Make, list and revoke API keys (on the store directly, or through --server).
    #[command(subcommand)]
    Keys(commands::keys::Command),
    /// A tenant's privacy policy: content kept, retention, secrets (docs/PRIVACY.md).
    #[command(subcommand)]
    Config(commands::config::Command),
    /// Apply tenants' retention policies: delete content past content_retention_days.
    #[command(subcommand)]
    Retention(commands::retention::RetentionCommand),
    /// Erase a person's or a session's content (GDPR Art. 17); leaves and proofs stay.
    Erase(commands::retention::EraseArgs),
    /// Legal holds: suspend retention and erasure for a tenant or a session.
    #[command(subcommand)]
    Hold(commands::retention::HoldCommand),
    /// Bring the store's schema up to this version of aitrail (serve does it at start too).
    Migrate,
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
            Command::Log(args) => commands::log::run(&cli.global, args).await,
            Command::List(args) => commands::list::run(&cli.global, *args).await,
            Command::Find(args) => commands::list::run(&cli.global, *args).await,
            Command::Show(args) => commands::show::run(&cli.global, args).await,
            Command::Verify(args) => commands::verify::run(&cli.global, args).await,
            Command::Export(args) => commands::export::run(&cli.global, *args).await,
            Command::Checkpoint(args) => commands::checkpoint::run(&cli.global, args).await,
            Command::AccessLog(args) => commands::access_log::run(&cli.global, args).await,
            Command::Keys(command) => commands::keys::run(&cli.global, command).await,
            Command::Import(args) => commands::import::run(&cli.global, args).await,
            Command::Config(command) => commands::config::run(&cli.global, command).await,
            Command::Retention(command) => {
                commands::retention::retention(&cli.global, command).await
            }
            Command::Erase(args) => commands::retention::erase(&cli.global, args).await,
            Command::Hold(command) => commands::retention::hold(&cli.global, command).await,
            Command::Migrate => commands::migrate::run(&cli.global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The command line, with the config file's settings as defaults.
fn parse() -> anyhow::Result<Cli> {
    let args: Vec<String> = std::env::args().collect();
    let mut command = Cli::command();
    if let Some(file) = config::path(&args) {
        command = config::apply(command, &file)?;
    }
    let matches = command.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches)?)
}

/// One clear line on stderr, non-zero exit.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("aitrail: error: {e:#}");
    ExitCode::FAILURE
}
