//! Prometheus metrics. Every name is declared in [`names`] and described in [`DESCRIBED`];
//! names follow `aurore_<noun>_<unit>[_total]`.

use aurore_domain::{
    BreakerState, BufferSnapshot, ConnectionStats, DatabaseFailure, JournalUsage, Observer, Received, RetentionReport,
};
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
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
    pub const PRIVACY_TRANSFORMED: &str = "aurore_privacy_transformed_total";
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
    pub const RATE_LIMITED: &str = "aurore_rate_limited_requests_total";
    pub const SHIPPER_EVENTS: &str = "aurore_shipper_events_total";
    pub const RATE_LIMIT_CLIENTS: &str = "aurore_rate_limit_clients";
    pub const HTTP_REQUEST_DURATION: &str = "aurore_http_request_duration_seconds";
    pub const BUILD_INFO: &str = "aurore_build_info";
    pub const RETENTION_RUNS: &str = "aurore_retention_runs_total";
    pub const RETENTION_PARTITIONS_DROPPED: &str = "aurore_retention_partitions_dropped_total";
    pub const RETENTION_EVENTS_DELETED: &str = "aurore_retention_events_deleted_total";
    pub const RETENTION_DURATION: &str = "aurore_retention_duration_seconds";
    pub const QUEUE_PUBLISHED: &str = "aurore_queue_published_events_total";
    pub const QUEUE_PUBLISH_DURATION: &str = "aurore_queue_publish_duration_seconds";
    pub const QUEUE_PUBLISH_ERRORS: &str = "aurore_queue_publish_errors_total";
    pub const QUEUE_DEDUPLICATED: &str = "aurore_queue_deduplicated_messages_total";
    pub const QUEUE_REDELIVERED: &str = "aurore_queue_redelivered_messages_total";
    pub const QUEUE_RELEASED: &str = "aurore_queue_released_messages_total";
    pub const QUEUE_PENDING: &str = "aurore_queue_pending_messages";
    pub const QUEUE_IN_FLIGHT: &str = "aurore_queue_in_flight_messages";
    /// Prefix of the process metrics (`aurore_process_resident_memory_bytes`, …).
    pub const PROCESS_PREFIX: &str = "aurore_";
}

const SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric Aurore exports, with its Prometheus help text.
#[derive(Debug, Clone, Copy)]
pub struct Described {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

/// Every metric of [`names`] but the process ones, which `metrics-process` describes.
pub const DESCRIBED: &[Described] = &[
    Described {
        name: names::EVENTS_RECEIVED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events received, by outcome: accepted, duplicate, rejected, out_of_window (timestamp beyond ingest.max_future_secs or max_past_secs), rate_limited.",
    },
    Described {
        name: names::EVENTS_STORED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events written to PostgreSQL.",
    },
    Described {
        name: names::BATCHES_WRITTEN,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Batches written to PostgreSQL.",
    },
    Described {
        name: names::BATCH_SIZE,
        kind: Kind::Histogram,
        unit: Some(Unit::Count),
        help: "Events per batch written.",
    },
    Described {
        name: names::BATCH_WRITE_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time to write one batch (the successful attempt).",
    },
    Described {
        name: names::WRITE_RETRIES,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Batch writes retried after a transient failure.",
    },
    Described {
        name: names::DATABASE_ERRORS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Failed store calls, by kind: unavailable (retried) or rejected (data refused).",
    },
    Described {
        name: names::DEAD_LETTERS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events moved to the dead-letter queue.",
    },
    Described {
        name: names::PRIVACY_TRANSFORMED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Values a privacy rule or detector transformed at ingest, by rule (field:action, scan:kind).",
    },
    Described {
        name: names::DEAD_LETTER_FAILURES,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Poison events the dead-letter store refused too (logged in full).",
    },
    Described {
        name: names::BUFFER_EVENTS,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Events waiting for a writer, spilled ones included.",
    },
    Described {
        name: names::BUFFER_BYTES,
        kind: Kind::Gauge,
        unit: Some(Unit::Bytes),
        help: "Approximate memory held by buffered events.",
    },
    Described {
        name: names::BUFFER_CAPACITY,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Events the buffer holds in memory at most.",
    },
    Described {
        name: names::JOURNAL_BYTES,
        kind: Kind::Gauge,
        unit: Some(Unit::Bytes),
        help: "Bytes of journal segments on disk.",
    },
    Described {
        name: names::JOURNAL_CAPACITY,
        kind: Kind::Gauge,
        unit: Some(Unit::Bytes),
        help: "Journal size past which ingest answers 503.",
    },
    Described {
        name: names::JOURNAL_SEGMENTS,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Journal segment files on disk.",
    },
    Described {
        name: names::CIRCUIT_STATE,
        kind: Kind::Gauge,
        unit: None,
        help: "Writers' circuit breaker: 0 closed, 1 open, 2 half-open.",
    },
    Described {
        name: names::CIRCUIT_OPENED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Times the writers' circuit breaker opened.",
    },
    Described {
        name: names::DATABASE_CONNECTIONS,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Query pool connections, by state: active, idle, waiting.",
    },
    Described {
        name: names::HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "HTTP requests, by route, method and status.",
    },
    Described {
        name: names::HTTP_REQUEST_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "HTTP request latency, by route and method.",
    },
    Described {
        name: names::RATE_LIMITED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Requests refused for a client's rate limit, by route group: ingest, query, health, admin.",
    },
    Described {
        name: names::SHIPPER_EVENTS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events that came over a shipper's protocol (otlp, elasticsearch, loki), accepted or rejected.",
    },
    Described {
        name: names::RATE_LIMIT_CLIENTS,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Clients holding a rate-limit bucket, summed over route groups (idle ones are dropped).",
    },
    Described {
        name: names::BUILD_INFO,
        kind: Kind::Gauge,
        unit: None,
        help: "Always 1; the version label says what runs.",
    },
    Described {
        name: names::RETENTION_RUNS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Retention runs, by outcome: ran, or skipped while another replica ran it.",
    },
    Described {
        name: names::RETENTION_PARTITIONS_DROPPED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Daily event partitions dropped by retention.",
    },
    Described {
        name: names::RETENTION_EVENTS_DELETED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events deleted row by row by retention (the day straddling the cut-off).",
    },
    Described {
        name: names::RETENTION_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time one retention run took.",
    },
    Described {
        name: names::QUEUE_PUBLISHED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Events an ingest replica published to the JetStream stream (PubAck received).",
    },
    Described {
        name: names::QUEUE_PUBLISH_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time from publishing a batch to its PubAck.",
    },
    Described {
        name: names::QUEUE_PUBLISH_ERRORS,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Batch publishes that failed and will be retried (NATS away or slow).",
    },
    Described {
        name: names::QUEUE_DEDUPLICATED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Published messages the stream dropped as re-sends of one it holds (Nats-Msg-Id).",
    },
    Described {
        name: names::QUEUE_REDELIVERED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Messages a writer received again: a writer died, took longer than queue.ack_wait, or handed them back.",
    },
    Described {
        name: names::QUEUE_RELEASED,
        kind: Kind::Counter,
        unit: Some(Unit::Count),
        help: "Messages a writer handed back to the stream (nak with delay) because its PostgreSQL circuit was open.",
    },
    Described {
        name: names::QUEUE_PENDING,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Messages in the stream no writer has taken yet: the writers' lag.",
    },
    Described {
        name: names::QUEUE_IN_FLIGHT,
        kind: Kind::Gauge,
        unit: Some(Unit::Count),
        help: "Messages writers hold, not yet acknowledged.",
    },
];

fn describe() {
    for metric in DESCRIBED {
        match (metric.kind, metric.unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(metric.name, unit, metric.help),
            (Kind::Counter, None) => describe_counter!(metric.name, metric.help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(metric.name, unit, metric.help),
            (Kind::Gauge, None) => describe_gauge!(metric.name, metric.help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(metric.name, unit, metric.help),
            (Kind::Histogram, None) => describe_histogram!(metric.name, metric.help),
        }
    }
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
    pub journal: JournalUsage,
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
            .set_buckets_for_metric(Matcher::Full(names::RETENTION_DURATION.into()), SECONDS_BUCKETS)?
            .set_buckets_for_metric(Matcher::Full(names::QUEUE_PUBLISH_DURATION.into()), SECONDS_BUCKETS)?
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
        gauge!(JOURNAL_BYTES).set(gauges.journal.bytes as f64);
        gauge!(JOURNAL_CAPACITY).set(gauges.journal.capacity_bytes as f64);
        gauge!(JOURNAL_SEGMENTS).set(gauges.journal.segments as f64);
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

/// The series of one route, method and status, registered once: registering hashes and
/// allocates the labels, recording on a handle is an atomic add.
#[derive(Clone)]
struct HttpSeries {
    requests: Counter,
    duration: Histogram,
}

type HttpSeriesKey = (String, &'static str, u16);

static HTTP_SERIES: LazyLock<RwLock<HashMap<HttpSeriesKey, HttpSeries>>> = LazyLock::new(RwLock::default);

/// Methods outside the standard set share one label value, so clients cannot mint series.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("OTHER")
}

/// Records one HTTP request. `route` is the matched pattern, never the raw path, so label
/// values stay few.
pub fn record_http_request(route: String, method: &str, status: u16, took: Duration) {
    let key = (route, method_label(method), status);
    let known = HTTP_SERIES.read().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
    let series = known.unwrap_or_else(|| {
        let (route, method, status) = key.clone();
        let series = HttpSeries {
            requests: counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()),
            duration: histogram!(names::HTTP_REQUEST_DURATION, "route" => route, "method" => method),
        };
        HTTP_SERIES.write().unwrap_or_else(PoisonError::into_inner).insert(key, series.clone());
        series
    });
    series.requests.increment(1);
    series.duration.record(took.as_secs_f64());
}

/// One request refused by the rate limit of `group`.
pub fn record_rate_limited(group: &'static str) {
    counter!(names::RATE_LIMITED, "group" => group).increment(1);
}

/// What one request of a shipper's protocol brought: events accepted and rejected.
pub fn record_shipper_events(protocol: &'static str, accepted: usize, rejected: usize) {
    for (outcome, events) in [("accepted", accepted), ("rejected", rejected)] {
        counter!(names::SHIPPER_EVENTS, "protocol" => protocol, "outcome" => outcome).increment(events as u64);
    }
}

pub fn record_rate_limit_clients(clients: usize) {
    gauge!(names::RATE_LIMIT_CLIENTS).set(clients as f64);
}

/// One batch published, `duplicate` when the stream already held it.
pub fn record_published(duplicate: bool, took: Duration) {
    if duplicate {
        counter!(names::QUEUE_DEDUPLICATED).increment(1);
    }
    histogram!(names::QUEUE_PUBLISH_DURATION).record(took.as_secs_f64());
}

pub fn record_redelivered() {
    counter!(names::QUEUE_REDELIVERED).increment(1);
}

pub fn record_released(messages: usize) {
    counter!(names::QUEUE_RELEASED).increment(messages as u64);
}

/// The consumer's backlog, sampled by a writer replica.
pub fn record_queue_backlog(pending: u64, in_flight: u64) {
    gauge!(names::QUEUE_PENDING).set(pending as f64);
    gauge!(names::QUEUE_IN_FLIGHT).set(in_flight as f64);
}

/// The forwarding writers' reports: a batch "written" is a batch the stream holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardObserver;

impl Observer for ForwardObserver {
    fn events_received(&self, outcome: Received, count: usize) {
        TelemetryObserver.events_received(outcome, count);
    }

    fn batch_written(&self, events: usize, _took: Duration) {
        counter!(names::QUEUE_PUBLISHED).increment(events as u64);
    }

    fn database_failed(&self, failure: DatabaseFailure) {
        if failure == DatabaseFailure::Unavailable {
            counter!(names::QUEUE_PUBLISH_ERRORS).increment(1);
        }
    }

    fn write_retried(&self) {}

    fn dead_lettered(&self, kept: bool) {
        TelemetryObserver.dead_lettered(kept);
    }

    fn retention_ran(&self, report: &RetentionReport) {
        TelemetryObserver.retention_ran(report);
    }

    fn privacy_transformed(&self, rule: &str, count: u64) {
        TelemetryObserver.privacy_transformed(rule, count);
    }

    fn batch_span(&self, events: usize, origins: &[aurore_domain::TraceLink]) -> tracing::Span {
        crate::traces::batch_span(events, origins)
    }
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

    fn privacy_transformed(&self, rule: &str, count: u64) {
        counter!(names::PRIVACY_TRANSFORMED, "rule" => rule.to_owned()).increment(count);
    }

    fn dead_lettered(&self, kept: bool) {
        let name = if kept { names::DEAD_LETTERS } else { names::DEAD_LETTER_FAILURES };
        counter!(name).increment(1);
    }

    fn retention_ran(&self, report: &RetentionReport) {
        let outcome = if report.ran { "ran" } else { "skipped" };
        counter!(names::RETENTION_RUNS, "outcome" => outcome).increment(1);
        if report.ran {
            counter!(names::RETENTION_PARTITIONS_DROPPED).increment(report.partitions_dropped.len() as u64);
            counter!(names::RETENTION_EVENTS_DELETED).increment(report.events_deleted);
            histogram!(names::RETENTION_DURATION).record(report.took.as_secs_f64());
        }
    }

    fn batch_span(&self, events: usize, origins: &[aurore_domain::TraceLink]) -> tracing::Span {
        crate::traces::batch_span(events, origins)
    }
}
