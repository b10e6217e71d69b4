//! `aurore-loadgen`: load generator and verifier for Aurore.
//!
//! `run` drives a service with single events, JSON arrays or NDJSON at a target rate or flat
//! out, shows live progress, and reports accepted events/s, refusals by status and latency
//! percentiles (HDR histogram). With `--verify` every event carries the run's id in its
//! service name; afterwards the query API is walked to check that each acknowledged event
//! is stored exactly once. `copy-baseline` measures raw binary COPY of the same events into
//! an identical table: the limit Aurore's durable rate is compared with. `bare-http` serves
//! a handler that only parses JSON: the HTTP limit of the machine.

mod bare;
mod baseline;
mod drive;
mod events;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "aurore-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send events to a running Aurore.
    Run(RunArgs),
    /// COPY the same events straight into PostgreSQL, for comparison.
    CopyBaseline(baseline::BaselineArgs),
    /// Serve a bare JSON-parsing handler at `POST /events`, for comparison.
    BareHttp(bare::BareArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One event per request.
    Single,
    /// A JSON array of `--batch` events per request.
    Array,
    /// `--batch` events per request as NDJSON.
    Ndjson,
    /// `--batch` events per request as an OTLP/HTTP logs export in protobuf, at `/v1/logs`
    /// (no `--verify`: OTLP's response names no event ids).
    Otlp,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Aurore's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    mode: Mode,
    /// Events per request in array and NDJSON modes.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Target events per second; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send.
    #[arg(long, value_parser = humantime_seconds, default_value = "10")]
    duration: Duration,
    /// Stop after this many events instead (whichever comes first).
    #[arg(long)]
    events: Option<u64>,
    /// Distinct services the events are spread over.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Approximate size of each event's metadata, in bytes.
    #[arg(long, default_value_t = 64)]
    metadata_bytes: usize,
    /// Events carry an email and a document number in metadata and an email and an IP
    /// address in the message, for measuring privacy rules.
    #[arg(long)]
    personal_data: bool,
    /// Check afterwards, through the query API, that each acknowledged event is stored once.
    #[arg(long)]
    verify: bool,
    /// How long verification waits for the backlog to drain.
    #[arg(long, value_parser = humantime_seconds, default_value = "60")]
    verify_timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
}

/// Seconds, optionally with an `s` suffix.
fn humantime_seconds(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s').parse::<f64>().map(Duration::from_secs_f64).map_err(|error| error.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(args).await,
        Command::CopyBaseline(args) => baseline::run(args).await.map(|()| true),
        Command::BareHttp(args) => bare::run(args).await.map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("aurore-loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load, prints the report, and verifies when asked. False when events were lost
/// or duplicated.
async fn run(args: RunArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(!(args.verify && args.mode == Mode::Otlp), "--verify needs event ids, which OTLP does not return");
    let run_id = format!("{:08x}", fastrand::u32(..));
    let outcome = drive::drive(&args, &run_id).await?;
    let verification = if args.verify { Some(verify::verify(&args, &run_id, &outcome).await?) } else { None };
    let report = drive::Report::new(&args, &run_id, &outcome, verification);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(report.verification.as_ref().is_none_or(|verification| verification.lost == 0 && verification.duplicated == 0))
}
