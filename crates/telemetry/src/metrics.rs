//! Prometheus metrics. Every name is declared in [`names`] and described in [`describe`];
//! names follow `aurore_<noun>_<unit>[_total]`.

use aurore_domain::{BreakerState, BufferSnapshot, ConnectionStats, DatabaseFailure, JournalUsage, Observer, Received};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// The metric names, in one place.
pub mod names {
    pub const EVENTS_RECEIVED: &str = "aurore_events_received_total";
    pub const EVENTS_STORED: &str = "aurore_events_stored_total";
    pub const BATCHES_WRITTEN: &str = "aurore_batches_written_total";
    pub const BATCH_SIZE: &str = "aurore_batch_size_events";
    pub const BATCH_WRITE_DURATION: &str = "aurore_batch_write_duration_seconds";
    pub const WRITE_RETRIES: &str = "aurore_write_retries_total";
    pub const DATABASE_ERRORS: &str = "aurore_database_errors_total";
    pub const DEAD_LETTERS: &str = "aurore_dead_letters_total";
    pub const DEAD_LETTER_FAILURES: &str = "aurore_dead_letter_failures_total";
    pub const BUFFER_EVENTS: &str = "aurore_buffer_events";
    pub const BUFFER_BYTES: &str = "aurore_buffer_bytes";
    pub const BUFFER_CAPACITY: &str = "aurore_buffer_capacity_events";
    pub const JOURNAL_BYTES: &str = "aurore_journal_bytes";
    pub const JOURNAL_CAPACITY: &str = "aurore_journal_capacity_bytes";
    pub const JOURNAL_SEGMENTS: &str = "aurore_journal_segments";
    pub const CIRCUIT_STATE: &str = "aurore_circuit_state";
    pub const CIRCUIT_OPENED: &str = "aurore_circuit_opened_total";
    pub const DATABASE_CONNECTIONS: &str = "aurore_database_connections";
    pub const HTTP_REQUESTS: &str = "aurore_http_requests_total";
    pub const HTTP_REQUEST_DURATION: &str = "aurore_http_request_duration_seconds";
    pub const BUILD_INFO: &str = "aurore_build_info";
    /// Prefix of the process metrics (`aurore_process_resident_memory_bytes`, …).
    pub const PROCESS_PREFIX: &str = "aurore_";
}

const SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn describe() {
    use names::*;
    describe_counter!(EVENTS_RECEIVED, Unit::Count, "Events received, by outcome: accepted, duplicate, rejected, rate_limited.");
    describe_counter!(EVENTS_STORED, Unit::Count, "Events written to PostgreSQL.");
    describe_counter!(BATCHES_WRITTEN, Unit::Count, "Batches written to PostgreSQL.");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Events per batch written.");
    describe_histogram!(BATCH_WRITE_DURATION, Unit::Seconds, "Time to write one batch (the successful attempt).");
    describe_counter!(WRITE_RETRIES, Unit::Count, "Batch writes retried after a transient failure.");
    describe_counter!(DATABASE_ERRORS, Unit::Count, "Failed store calls, by kind: unavailable (retried) or rejected (data refused).");
    describe_counter!(DEAD_LETTERS, Unit::Count, "Events moved to the dead-letter queue.");
    describe_counter!(DEAD_LETTER_FAILURES, Unit::Count, "Poison events the dead-letter store refused too (logged in full).");
    describe_gauge!(BUFFER_EVENTS, Unit::Count, "Events waiting for a writer, spilled ones included.");
    describe_gauge!(BUFFER_BYTES, Unit::Bytes, "Approximate memory held by buffered events.");
    describe_gauge!(BUFFER_CAPACITY, Unit::Count, "Events the buffer holds in memory at most.");
    describe_gauge!(JOURNAL_BYTES, Unit::Bytes, "Bytes of journal segments on disk.");
    describe_gauge!(JOURNAL_CAPACITY, Unit::Bytes, "Journal size past which ingest answers 503.");
    describe_gauge!(JOURNAL_SEGMENTS, Unit::Count, "Journal segment files on disk.");
    describe_gauge!(CIRCUIT_STATE, "Writers' circuit breaker: 0 closed, 1 open, 2 half-open.");
    describe_counter!(CIRCUIT_OPENED, Unit::Count, "Times the writers' circuit breaker opened.");
    describe_gauge!(DATABASE_CONNECTIONS, Unit::Count, "Query pool connections, by state: active, idle, waiting.");
    describe_counter!(HTTP_REQUESTS, Unit::Count, "HTTP requests, by route, method and status.");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "HTTP request latency, by route and method.");
    describe_gauge!(BUILD_INFO, "Always 1; the version label says what runs.");
}

/// The process-wide recorder and its Prometheus view.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// What only the scrape can read: state sampled when Prometheus asks.
#[derive(Debug, Clone)]
pub struct Gauges {
    pub buffer: BufferSnapshot,
    pub journal: Option<JournalUsage>,
    pub circuit: BreakerState,
    pub circuit_opened: u64,
    pub connections: ConnectionStats,
}

impl Metrics {
    /// Installs the global recorder once per process; later calls share it (several
    /// services in one test process report to the same registry).
    pub fn install() -> Result<Self, BuildError> {
        if let Some(metrics) = INSTALLED.get() {
            return Ok(metrics.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.into()), SIZE_BUCKETS)?
            .set_buckets_for_metric(Matcher::Full(names::BATCH_WRITE_DURATION.into()), SECONDS_BUCKETS)?
            .set_buckets_for_metric(Matcher::Full(names::HTTP_REQUEST_DURATION.into()), SECONDS_BUCKETS)?
            .install_recorder()?;
        let process = metrics_process::Collector::new(names::PROCESS_PREFIX);
        describe();
        process.describe();
        gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let metrics = Self { handle, process };
        Ok(INSTALLED.get_or_init(|| metrics).clone())
    }

    /// Prometheus text exposition, with `gauges` and the process figures sampled now.
    pub fn render(&self, gauges: &Gauges) -> String {
        use names::*;
        gauge!(BUFFER_EVENTS).set(gauges.buffer.events as f64);
        gauge!(BUFFER_BYTES).set(gauges.buffer.bytes as f64);
        gauge!(BUFFER_CAPACITY).set(gauges.buffer.capacity as f64);
        if let Some(journal) = gauges.journal {
            gauge!(JOURNAL_BYTES).set(journal.bytes as f64);
            gauge!(JOURNAL_CAPACITY).set(journal.capacity_bytes as f64);
            gauge!(JOURNAL_SEGMENTS).set(journal.segments as f64);
        }
        gauge!(CIRCUIT_STATE).set(match gauges.circuit {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        });
        counter!(CIRCUIT_OPENED).absolute(gauges.circuit_opened);
        for (state, count) in [
            ("active", gauges.connections.active),
            ("idle", gauges.connections.idle),
            ("waiting", gauges.connections.waiting),
        ] {
            gauge!(DATABASE_CONNECTIONS, "state" => state).set(count as f64);
        }
        self.process.collect();
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// The process' resident memory, for health reports.
pub fn resident_memory_bytes() -> Option<u64> {
    metrics_process::collector::collect().resident_memory_bytes
}

/// Records one HTTP request. `route` is the matched pattern, never the raw path, so label
/// values stay few.
pub fn record_http_request(route: &str, method: &str, status: u16, took: Duration) {
    let route = route.to_owned();
    let method = method.to_owned();
    counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(names::HTTP_REQUEST_DURATION, "route" => route, "method" => method).record(took.as_secs_f64());
}

/// The domain's reports, as metrics, and its batch spans, linked to their requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetryObserver;

impl Observer for TelemetryObserver {
    fn events_received(&self, outcome: Received, count: usize) {
        counter!(names::EVENTS_RECEIVED, "outcome" => outcome.as_str()).increment(count as u64);
    }

    fn batch_written(&self, events: usize, took: Duration) {
        counter!(names::BATCHES_WRITTEN).increment(1);
        counter!(names::EVENTS_STORED).increment(events as u64);
        histogram!(names::BATCH_SIZE).record(events as f64);
        histogram!(names::BATCH_WRITE_DURATION).record(took.as_secs_f64());
    }

    fn database_failed(&self, failure: DatabaseFailure) {
        counter!(names::DATABASE_ERRORS, "kind" => failure.as_str()).increment(1);
    }

    fn write_retried(&self) {
        counter!(names::WRITE_RETRIES).increment(1);
    }

    fn dead_lettered(&self, kept: bool) {
        let name = if kept { names::DEAD_LETTERS } else { names::DEAD_LETTER_FAILURES };
        counter!(name).increment(1);
    }

    fn batch_span(&self, events: usize, origins: &[aurore_domain::TraceLink]) -> tracing::Span {
        crate::traces::batch_span(events, origins)
    }
}
