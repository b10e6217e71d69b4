//! How Aurore reports on itself: logs (human or JSON), Prometheus metrics and OpenTelemetry
//! traces. It configures output and implements the domain's [`aurore_domain::Observer`];
//! it never decides what the service does.

pub mod metrics;
mod traces;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use metrics::{ForwardObserver, Gauges, Metrics, TelemetryObserver};
pub use traces::{TraceSettings, continue_trace, current_trace_link};

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
    #[error("cannot set up trace export: {0}")]
    Traces(String),
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// Keeps trace export running; dropping it flushes the spans still queued.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    pub fn exporting_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber: logs to stderr (so command output stays clean) and,
/// when an endpoint is configured, spans to OTLP. `RUST_LOG`, when set, overrides `level`
/// (e.g. `info,aurore_store_postgres=debug`).
pub fn init(level: &str, format: LogFormat, traces: &TraceSettings) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => level.to_owned(),
    };
    let env_filter = EnvFilter::try_new(&filter)
        .map_err(|error| TelemetryError::InvalidFilter { filter: filter.clone(), reason: error.to_string() })?;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    let logs = match format {
        LogFormat::Human => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
    };
    let provider = traces::provider(traces)?;
    let spans = provider.as_ref().map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("aurore")));
    tracing_subscriber::registry()
        .with(env_filter)
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(TelemetryGuard { provider })
}
