//! `aurore`: serve (the default), migrate, drain a journal, run retention, or print the
//! effective configuration.

use anyhow::Context as _;
use aurore::wiring::Role;
use aurore::{Application, Settings};
use aurore_domain::{SystemClock, Unobserved};
use aurore_store_postgres::PostgresStore;
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The ingest path allocates many small strings and JSON nodes; mimalloc measured faster
/// than the system allocator on it (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "aurore", version, about = "Ingests application events over HTTP and stores them in PostgreSQL.")]
struct Cli {
    /// TOML configuration file; environment variables override it.
    #[arg(long, env = "AURORE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Which half `serve` runs: both (`all`), or one of them apart over `queue.kind = nats`.
    /// Global, so that `aurore` alone (which serves) reads it too.
    #[arg(long, value_enum, env = "AURORE_ROLE", default_value_t = Role::All, global = true)]
    role: Role,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Store every event a journal still holds in PostgreSQL, then exit: for the journal of
    /// a replica that is gone. The service must not be running on that journal.
    Drain {
        /// The journal directory; `journal.dir` by default.
        #[arg(long)]
        journal_dir: Option<PathBuf>,
        /// Give up (exit 1, the rest left in the journal) after this many seconds.
        #[arg(long, default_value_t = 600)]
        deadline_secs: u64,
    },
    /// Retention jobs.
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Remove events and dead letters older than the retention window now, and print what went.
    Run,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut settings = match Settings::load(cli.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("aurore: invalid configuration:\n{error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            print!("{}", settings.to_toml());
            Ok(())
        }
        Command::Migrate => migrate(&settings).await,
        Command::Serve => serve(&settings, cli.role).await,
        Command::Drain { journal_dir, deadline_secs } => {
            if let Some(dir) = journal_dir {
                settings.journal.dir = dir;
            }
            drain(&settings, Duration::from_secs(deadline_secs)).await
        }
        Command::Retention(RetentionCommand::Run) => run_retention(&settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("aurore: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs, and traces when an OTLP endpoint is configured; keep the guard until exit so
/// queued spans are flushed.
fn init_telemetry(settings: &Settings) -> anyhow::Result<aurore_telemetry::TelemetryGuard> {
    let telemetry = &settings.telemetry;
    let traces = aurore_telemetry::TraceSettings {
        otlp_endpoint: telemetry.otlp_endpoint.clone(),
        sample_ratio: telemetry.sample_ratio,
    };
    let guard = aurore_telemetry::init(&telemetry.log_level, telemetry.log_format, &traces)?;
    if guard.exporting_traces() {
        tracing::info!(sample_ratio = telemetry.sample_ratio, "exporting traces over OTLP/HTTP");
    }
    Ok(guard)
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(settings)?;
    let store = PostgresStore::connect(&settings.postgres())?;
    let applied = store.migrate().await.context("migration failed")?;
    tracing::info!(applied, "migrations applied");
    Ok(())
}

async fn drain(settings: &Settings, deadline: Duration) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(settings)?;
    let drained = aurore::jobs::drain(settings, deadline).await.context("drain failed")?;
    println!(
        "drained {} events from {} segments; {} holds no journal segment",
        drained.events,
        drained.segments,
        settings.journal.dir.display()
    );
    Ok(())
}

async fn run_retention(settings: &Settings) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(settings)?;
    let store = Arc::new(PostgresStore::connect(&settings.postgres())?);
    let retention = aurore::wiring::retention(settings, store, Arc::new(SystemClock), Arc::new(Unobserved));
    let report = retention.run().await.context("retention failed")?;
    // The same shape as `POST /admin/retention/run` answers.
    println!("{}", serde_json::to_string_pretty(&aurore_http::RetentionRun::from(report))?);
    Ok(())
}

async fn serve(settings: &Settings, role: Role) -> anyhow::Result<()> {
    let _telemetry = init_telemetry(settings)?;
    let application = Application::build(settings, role).await?;
    application.run_until(shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
