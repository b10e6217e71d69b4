//! Running the process: shutdown and telemetry.

use super::units;
use aurore_telemetry::LogFormat;
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, how long the buffer may take to reach PostgreSQL.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "shutdown.drain_deadline_secs"
    )))]
    #[serde(alias = "drain_deadline_secs", with = "units::seconds")]
    pub drain_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_deadline: Duration::from_secs(20) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// A `tracing` filter; `RUST_LOG` overrides it.
    #[garde(length(min = 1))]
    pub log_level: String,
    #[garde(skip)]
    pub log_format: LogFormat,
    /// OTLP/HTTP traces URL, e.g. `http://jaeger:4318/v1/traces`. Unset: the standard
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` apply; with none set, no traces leave.
    #[garde(inner(prefix("http")))]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces kept (0 to 1); requests continuing a sampled trace are kept.
    #[garde(range(min = 0.0, max = 1.0))]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_level: "info".into(), log_format: LogFormat::Human, otlp_endpoint: None, sample_ratio: 0.1 }
    }
}
