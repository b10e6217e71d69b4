//! How Aurore reports on itself. For now: structured logs through `tracing`, human-readable
//! or JSON. It configures output only; it never decides what the service does.

use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {reason}")]
    InvalidFilter { filter: String, reason: String },
    #[error("logging is already initialised")]
    AlreadyInitialised,
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level` (e.g.
/// `info,aurore_store_postgres=debug`). Logs go to stderr so command output stays clean.
pub fn init_logging(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => level.to_owned(),
    };
    let env_filter = EnvFilter::try_new(&filter)
        .map_err(|error| TelemetryError::InvalidFilter { filter: filter.clone(), reason: error.to_string() })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInitialised)
}
