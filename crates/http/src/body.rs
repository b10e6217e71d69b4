//! Every JSON body the API sends, as the handlers build it and as the OpenAPI spec
//! describes it: one type for both, so they cannot drift apart. The wire casing (the
//! original service's mix of camelCase and snake_case) is decided here, not in the domain.

use actix_web::http::StatusCode;
use aurore_domain::privacy::{PrivacyReport, RuleReport};
use aurore_domain::{
    BreakerSnapshot, BreakerState, BusinessMetrics, ConnectionStats, DeadLetter, DeadLetterStats, ErasureRecord,
    FieldError, HourCount, Rejection, RetentionReport, ServiceCount, StoredEvent,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Instants as the contract writes them: UTC, milliseconds, `Z`.
pub(crate) fn iso(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One invalid field: `constraints` maps each rule it broke to a message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FieldErrorBody {
    #[schema(example = "message")]
    pub field: String,
    /// Rule name to message, e.g. `{"maxLength": "message must be at most 2000 characters"}`.
    pub constraints: BTreeMap<&'static str, String>,
}

impl From<&FieldError> for FieldErrorBody {
    fn from(error: &FieldError) -> Self {
        Self { field: error.field.clone(), constraints: error.constraints.clone() }
    }
}

pub(crate) fn field_errors(errors: &[FieldError]) -> Vec<FieldErrorBody> {
    errors.iter().map(FieldErrorBody::from).collect()
}

/// An element of an array or NDJSON body that was refused, by its index in the body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RejectionBody {
    pub index: usize,
    pub errors: Vec<FieldErrorBody>,
}

pub(crate) fn rejections(rejections: &[Rejection]) -> Vec<RejectionBody> {
    rejections
        .iter()
        .map(|rejection| RejectionBody { index: rejection.index, errors: field_errors(&rejection.errors) })
        .collect()
}

/// Every error. `statusCode` and `status` (or, for 404 and 409, `error`) follow from the
/// HTTP status; `errors` names each invalid field and rule; `limit` the limit passed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    /// `error`, `rate_limited` or `service_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The status' reason phrase, where the original service sent one (404, 409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody>>,
    /// For an array body where no element was valid: each element's errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RejectionBody>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The rate-limit group that refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'static str>,
    /// Why the service is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Seconds, for `429` (also the `Retry-After` header).
    #[serde(rename = "retry_after", skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For a query that does not parse: the byte offset where it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// And what was expected there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl ErrorBody {
    /// The envelope every error shares, derived from its status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let (word, error) = match status {
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => (None, status.canonical_reason()),
            StatusCode::TOO_MANY_REQUESTS => (Some("rate_limited"), None),
            StatusCode::SERVICE_UNAVAILABLE => (Some("service_unavailable"), None),
            _ => (Some("error"), None),
        };
        Self {
            status: word,
            status_code: Some(status.as_u16()),
            error,
            message: message.into(),
            error_code: None,
            errors: None,
            rejected: None,
            limit: None,
            group: None,
            reason: None,
            retry_after: None,
            position: None,
            expected: None,
        }
    }
}

/// `GET /events/query/explain`: how `q` parses, as the store and the tail will run it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueryExplanation {
    /// The query as sent.
    pub q: String,
    /// Its canonical spelling (every AND and OR spelled out, values quoted), which parses to
    /// the same tree; `null` for a blank query.
    pub canonical: Option<String>,
    /// The parsed tree: `{"op": "and"|"or", "of": [...]}`, `{"op": "not", "of": …}`,
    /// `{"op": "text", "of": "word"}`, `{"op": "field", "of": {"field": …, "test": …}}`.
    #[schema(value_type = Object)]
    pub filter: Option<serde_json::Value>,
}

/// `202` for a single event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    #[serde(rename = "statusCode")]
    #[schema(example = 202)]
    pub status_code: u16,
    #[schema(example = "Event accepted")]
    pub message: &'static str,
    #[schema(example = "accepted")]
    pub status: &'static str,
    pub event_id: String,
    pub queued_at: String,
}

/// `202` for an array or NDJSON: the valid events are accepted, the others reported by index.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAccepted {
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    pub message: &'static str,
    pub status: &'static str,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub event_ids: Vec<String>,
    pub errors: Vec<RejectionBody>,
    pub queued_at: String,
}

/// `202` from `POST /events`: one event's receipt, or a batch's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Receipt {
    Single(Accepted),
    Batch(BatchAccepted),
}

/// One stored event, as `GET /events`, the export and the live tail send it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView<'a> {
    pub id: String,
    pub event_id: String,
    pub timestamp: String,
    pub service: &'a str,
    pub message: &'a str,
    #[schema(value_type = Option<Object>)]
    pub metadata: &'a Option<Value>,
    pub ingested_at: String,
    pub created_at: String,
}

impl<'a> From<&'a StoredEvent> for EventView<'a> {
    fn from(stored: &'a StoredEvent) -> Self {
        let event = &stored.event;
        let id = event.id.to_string();
        Self {
            event_id: id.clone(),
            id,
            timestamp: iso(&event.timestamp),
            service: &event.service,
            message: &event.message,
            metadata: &event.metadata,
            ingested_at: iso(&event.ingested_at),
            created_at: iso(&stored.created_at),
        }
    }
}

/// `GET /events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventPage<'a> {
    pub events: Vec<EventView<'a>>,
    pub pagination: Pagination,
    pub page: u32,
    pub page_size: u32,
    pub sort_field: &'static str,
    pub sort_order: &'static str,
    /// Events matching the filter; null on cursor pages, which are not counted.
    pub total: Option<u64>,
    /// Pass as `cursor=` for the next page; absent on the last page.
    #[serde(rename = "next_cursor", skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pagination {
    /// Null on cursor pages.
    pub total: Option<u64>,
    pub limit: u32,
    /// Null when paging by cursor.
    pub offset: Option<u64>,
    pub has_more: bool,
}

/// `GET /services`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceList {
    /// By name.
    pub services: Vec<ServiceEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceEntry {
    pub service: String,
    /// Its stored events.
    pub events: u64,
    /// The start of the latest UTC hour holding its events.
    pub latest_hour: String,
}

/// `GET /events/histogram`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Histogram {
    pub service: String,
    pub from: String,
    pub to: String,
    /// The bucket width, in the largest unit that divides it: `15m`, `1h`, `1d`.
    #[schema(example = "5m")]
    pub interval: String,
    /// Every bucket from the one holding `from` to the one holding `to`, oldest first.
    pub buckets: Vec<HistogramBucket>,
    /// The sum of the buckets: what `GET /events` reports as `total` for the range.
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistogramBucket {
    /// Aligned on the interval from the Unix epoch (hours on the hour, days at UTC midnight);
    /// the first and last buckets count only the part inside `from`..`to`.
    #[schema(example = "2024-01-15T10:00:00.000Z")]
    pub start: String,
    pub count: u64,
}

/// A dead letter as `GET /dlq` lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterSummary<'a> {
    pub id: uuid::Uuid,
    pub event_id: String,
    pub service: &'a str,
    pub failure_reason: &'a str,
    pub retry_count: u32,
    pub last_attempt_at: String,
    pub reprocessed: bool,
    pub reprocessed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a DeadLetter> for DeadLetterSummary<'a> {
    fn from(entry: &'a DeadLetter) -> Self {
        Self {
            id: entry.id,
            event_id: entry.event.id.to_string(),
            service: &entry.event.service,
            failure_reason: &entry.reason,
            retry_count: entry.attempts,
            last_attempt_at: iso(&entry.last_attempt_at),
            reprocessed: entry.reprocessed,
            reprocessed_at: entry.reprocessed_at.as_ref().map(iso),
            created_at: iso(&entry.created_at),
            updated_at: iso(&entry.updated_at),
        }
    }
}

/// `GET /dlq`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterList<'a> {
    pub events: Vec<DeadLetterSummary<'a>>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `GET /dlq/{id}`: the entry and the event as it was sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterDetail<'a> {
    #[serde(flatten)]
    pub entry: DeadLetterSummary<'a>,
    pub original_timestamp: String,
    pub original_event: OriginalEvent<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OriginalEvent<'a> {
    pub event_id: String,
    pub timestamp: String,
    pub service: &'a str,
    pub message: &'a str,
    #[schema(value_type = Option<Object>)]
    pub metadata: &'a Option<Value>,
    pub ingested_at: String,
}

impl<'a> From<&'a DeadLetter> for DeadLetterDetail<'a> {
    fn from(entry: &'a DeadLetter) -> Self {
        let event = &entry.event;
        Self {
            entry: DeadLetterSummary::from(entry),
            original_timestamp: iso(&event.timestamp),
            original_event: OriginalEvent {
                event_id: event.id.to_string(),
                timestamp: iso(&event.timestamp),
                service: &event.service,
                message: &event.message,
                metadata: &event.metadata,
                ingested_at: iso(&event.ingested_at),
            },
        }
    }
}

/// `PATCH /dlq/{id}/reprocess`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reprocessed {
    pub id: uuid::Uuid,
    pub event_id: String,
    #[schema(example = "reprocessed")]
    pub status: &'static str,
    #[schema(example = "Event re-enqueued")]
    pub message: &'static str,
}

/// `GET /dlq/statistics`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterStatsBody {
    pub total: u64,
    pub by_service: BTreeMap<String, u64>,
    pub reprocessed: u64,
    pub pending: u64,
    pub oldest_event: Option<DateTime<Utc>>,
}

impl From<DeadLetterStats> for DeadLetterStatsBody {
    fn from(stats: DeadLetterStats) -> Self {
        Self {
            total: stats.total,
            by_service: stats.by_service,
            reprocessed: stats.reprocessed,
            pending: stats.pending,
            oldest_event: stats.oldest_event,
        }
    }
}

/// `POST /admin/retention/run` (and `aurore retention run`): a [`RetentionReport`].
/// `ran` is false when another replica held the lock and this run did nothing;
/// `eventsDeleted` counts rows deleted one by one (the day straddling the cut-off, old rows
/// in the default partition); `skipped` names what waited too long for a lock.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    pub ran: bool,
    pub partitions_dropped: Vec<String>,
    pub events_deleted: u64,
    pub skipped: Vec<String>,
    pub dead_letters_deleted: u64,
    pub took_ms: u64,
}

impl From<RetentionReport> for RetentionRun {
    fn from(report: RetentionReport) -> Self {
        Self {
            ran: report.ran,
            partitions_dropped: report.partitions_dropped,
            events_deleted: report.events_deleted,
            skipped: report.skipped,
            dead_letters_deleted: report.dead_letters_deleted,
            took_ms: u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// How a part of the service is, worst last: a report is as bad as its worst part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Health {
    Healthy,
    Warning,
    /// Only the database is ever unhealthy: unreachable, which the journal rides out.
    Unhealthy,
    Critical,
}

impl Health {
    /// The overall report knows no `unhealthy`: an unreachable database only warns, as in
    /// the original service, since the journal keeps taking events meanwhile.
    pub fn overall(parts: impl IntoIterator<Item = Self>) -> Self {
        match parts.into_iter().max().unwrap_or(Self::Healthy) {
            Self::Unhealthy => Self::Warning,
            worst => worst,
        }
    }
}

/// `{"message": …}` of the probes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProbeBody {
    #[schema(example = "SERVER_IS_READY")]
    pub message: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl From<BreakerState> for CircuitState {
    fn from(state: BreakerState) -> Self {
        match state {
            BreakerState::Closed => Self::Closed,
            BreakerState::Open => Self::Open,
            BreakerState::HalfOpen => Self::HalfOpen,
        }
    }
}

/// The writers' circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CircuitBody {
    pub state: CircuitState,
    pub failure_count: u32,
    pub success_count: u32,
    /// Epoch milliseconds, as the original service reported it.
    pub last_failure_time: Option<i64>,
    pub last_error: Option<String>,
    /// Times the circuit opened since start.
    pub opened: u64,
}

impl From<BreakerSnapshot> for CircuitBody {
    fn from(snapshot: BreakerSnapshot) -> Self {
        Self {
            state: snapshot.state.into(),
            failure_count: snapshot.failure_count,
            success_count: snapshot.success_count,
            last_failure_time: snapshot.last_failure_time,
            last_error: snapshot.last_error,
            opened: snapshot.opened,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionsBody {
    pub active: usize,
    pub idle: usize,
    pub waiting: usize,
}

impl From<ConnectionStats> for ConnectionsBody {
    fn from(stats: ConnectionStats) -> Self {
        Self { active: stats.active, idle: stats.idle, waiting: stats.waiting }
    }
}

/// `GET /health/database`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DatabaseReport {
    pub status: Health,
    /// `connected` or `disconnected`.
    pub database: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub query_latency_ms: u64,
    pub connection_pool: ConnectionsBody,
    pub circuit_breaker: CircuitBody,
    /// The streaming replica reads come from, when `database.read_url` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaReport>,
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplicaReport {
    pub status: Health,
    /// Seconds since the last transaction it replayed; `0` once it replayed all it
    /// received. Absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The buffer as the original service reported it: percentages as strings with two
/// decimals.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BufferFigures {
    pub status: Health,
    pub size: usize,
    pub capacity: usize,
    pub utilization_percent: String,
    /// Events waiting in the journal only, not in memory.
    pub spilled: usize,
    pub bytes: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BufferTotals {
    pub total_enqueued: u64,
    pub total_dropped: u64,
    pub drop_rate_percent: String,
    pub throughput_events_per_second: String,
}

/// `GET /health/buffer`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BufferHealth {
    pub status: Health,
    pub buffer: BufferFigures,
    pub metrics: BufferTotals,
}

/// `GET /metrics` with `Accept: application/json`: the original's buffer summary. Times
/// in float seconds, `null` when it never happened.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MetricsSummary {
    pub status: Health,
    pub buffer_size: usize,
    pub buffer_capacity: usize,
    pub buffer_utilization_percent: String,
    pub metrics: BufferTotals,
    pub uptime_seconds: f64,
    pub time_since_last_enqueue_seconds: Option<f64>,
    pub time_since_last_drain_seconds: Option<f64>,
}

/// `GET /health/business`: stored events by service and hour of their timestamp.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BusinessBody {
    pub total_events: u64,
    pub events_by_service: BTreeMap<String, u64>,
    pub events_last24_hours: u64,
    pub events_last_hour: u64,
    pub average_events_per_minute: f64,
    /// At most ten, most events first.
    pub top_services: Vec<ServiceCountBody>,
    /// Hours of the last 24 that hold events, oldest first.
    pub events_by_hour: Vec<HourCountBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceCountBody {
    pub service: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HourCountBody {
    /// `YYYY-MM-DD HH:00`, UTC.
    pub hour: String,
    pub count: u64,
}

impl From<&BusinessMetrics> for BusinessBody {
    fn from(metrics: &BusinessMetrics) -> Self {
        let service = |count: &ServiceCount| ServiceCountBody { service: count.service.clone(), count: count.count };
        let hour = |count: &HourCount| HourCountBody { hour: count.hour.clone(), count: count.count };
        Self {
            total_events: metrics.total_events,
            events_by_service: metrics.events_by_service.clone(),
            events_last24_hours: metrics.events_last24_hours,
            events_last_hour: metrics.events_last_hour,
            average_events_per_minute: metrics.average_events_per_minute,
            top_services: metrics.top_services.iter().map(service).collect(),
            events_by_hour: metrics.events_by_hour.iter().map(hour).collect(),
        }
    }
}

/// `GET /health/detailed`: every part at once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DetailedReport {
    pub timestamp: String,
    pub status: Health,
    pub response_time_ms: u64,
    /// Seconds since start.
    pub uptime: f64,
    pub server: ServerState,
    pub database: DatabaseReport,
    pub buffer: BufferHealth,
    pub journal: JournalReport,
    pub circuit_breaker: CircuitBody,
    pub business: BusinessPart,
    pub memory: MemoryReport,
    pub environment: Environment,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerState {
    /// What `GET /health` would answer.
    pub status: u16,
    pub message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalReport {
    pub status: Health,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub segments: usize,
    pub utilization_percent: String,
}

/// The business figures, or why they are missing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BusinessPart {
    Figures(BusinessBody),
    Unavailable {
        #[schema(example = "error")]
        status: &'static str,
        error: &'static str,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemoryReport {
    pub status: Health,
    /// Resident memory in MiB, where the platform tells it.
    pub rss: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Environment {
    pub version: &'static str,
    pub platform: &'static str,
    pub arch: &'static str,
    pub pid: u32,
}

/// `GET /es`: what Elasticsearch answers at its root, which clients read the version from.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticInfo {
    pub name: &'static str,
    pub cluster_name: &'static str,
    pub cluster_uuid: &'static str,
    pub version: ElasticVersion,
    pub tagline: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticVersion {
    #[schema(example = "8.17.0")]
    pub number: &'static str,
    pub build_flavor: &'static str,
    pub build_type: &'static str,
    pub lucene_version: &'static str,
    pub minimum_wire_compatibility_version: &'static str,
    pub minimum_index_compatibility_version: &'static str,
}

/// `GET /es/_cluster/health`: one green node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticClusterHealth {
    pub cluster_name: &'static str,
    pub status: &'static str,
    pub timed_out: bool,
    pub number_of_nodes: u32,
    pub number_of_data_nodes: u32,
}

/// `GET /es/_license`: an active basic licence.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticLicense {
    pub license: ElasticLicenseState,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticLicenseState {
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub uid: &'static str,
}

/// `POST /es/_bulk`: each item keyed by its action (`index`, `create`, `update`, `delete`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticBulk {
    /// Milliseconds the request took.
    pub took: u64,
    /// Whether any item was refused.
    pub errors: bool,
    pub items: Vec<BTreeMap<String, ElasticBulkItem>>,
}

/// One item's outcome: `status` 201 with `_id` (the event id), or 400 with `error`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticBulkItem {
    pub _index: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub _id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub _version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub _shards: Option<ElasticShards>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub _seq_no: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub _primary_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ElasticItemError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticShards {
    pub total: u32,
    pub successful: u32,
    pub failed: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElasticItemError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub reason: String,
}

/// `POST /v1/logs` in JSON: OTLP's `ExportLogsServiceResponse` (64-bit integers as strings).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OtlpLogsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<OtlpPartialSuccess>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OtlpPartialSuccess {
    #[schema(example = "2")]
    pub rejected_log_records: String,
    pub error_message: String,
}

/// A refused OTLP request in JSON: `google.rpc.Status` (its `details` left out).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OtlpStatusBody {
    /// The gRPC status code: 3 invalid argument, 8 resource exhausted, 14 unavailable, …
    pub code: i32,
    pub message: String,
}

/// An erasure as its audit record keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureBody {
    pub id: i64,
    /// When it was recorded: events it selects that were ingested until then are never stored.
    #[serde(rename = "requestedAt")]
    pub requested_at: DateTime<Utc>,
    pub service: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The filter's canonical spelling, values in stored form (pseudonyms where rules hash).
    pub filter: String,
    /// The first 16 hex digits of the SHA-256 of the key that asked.
    #[serde(rename = "keyDigest")]
    pub key_digest: String,
    /// Stored events removed; null until the deletion completed.
    pub events: Option<u64>,
    #[serde(rename = "deadLetters")]
    pub dead_letters: Option<u64>,
    #[serde(rename = "completedAt")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(rename = "tookMs")]
    pub took_ms: Option<u64>,
}

impl From<ErasureRecord> for ErasureBody {
    fn from(record: ErasureRecord) -> Self {
        Self {
            id: record.id,
            requested_at: record.requested_at,
            service: record.service,
            from: record.from,
            to: record.to,
            filter: record.filter,
            key_digest: record.key_digest,
            events: record.events,
            dead_letters: record.dead_letters,
            completed_at: record.completed_at,
            took_ms: record.took_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureList {
    /// Newest first.
    pub erasures: Vec<ErasureBody>,
}

/// One privacy rule or detector, without secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrivacyRuleBody {
    /// `metadata.user_id:hash`, `scan:email`: the `rule` label of `aurore_privacy_transformed_total`.
    pub rule: String,
    pub field: String,
    /// `hash`, `redact`, `generalise` or `encrypt`.
    pub action: String,
    /// Empty: every service.
    pub services: Vec<String>,
    /// Values transformed since start-up.
    pub transformed: u64,
}

impl From<RuleReport> for PrivacyRuleBody {
    fn from(report: RuleReport) -> Self {
        Self {
            rule: report.rule,
            field: report.field,
            action: report.action.name().to_owned(),
            services: report.services,
            transformed: report.transformed,
        }
    }
}

/// `GET /privacy`: what privacy does at ingest and on export.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrivacyBody {
    pub rules: Vec<PrivacyRuleBody>,
    pub detectors: Vec<PrivacyRuleBody>,
    #[serde(rename = "exportProfiles")]
    pub export_profiles: Vec<String>,
    #[serde(rename = "exportRequiresProfile")]
    pub export_requires_profile: bool,
    /// Whether a pseudonym key is configured (never the key).
    pub keyed: bool,
    /// The key id `encrypt` seals new values with, and every id it can open (never a key).
    #[serde(rename = "encryptionKeyId")]
    pub encryption_key_id: Option<String>,
    #[serde(rename = "encryptionKeyIds")]
    pub encryption_key_ids: Vec<String>,
}

impl From<PrivacyReport> for PrivacyBody {
    fn from(report: PrivacyReport) -> Self {
        Self {
            rules: report.rules.into_iter().map(PrivacyRuleBody::from).collect(),
            detectors: report.detectors.into_iter().map(PrivacyRuleBody::from).collect(),
            export_profiles: report.export_profiles,
            export_requires_profile: report.export_requires_profile,
            keyed: report.keyed,
            encryption_key_id: report.encryption_key_id,
            encryption_key_ids: report.encryption_key_ids,
        }
    }
}

/// `POST /admin/decrypt`: the value as it was sent (any JSON value).
#[derive(Debug, Serialize, ToSchema)]
pub struct DecryptedBody {
    pub value: Value,
}
