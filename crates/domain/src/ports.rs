//! The traits adapters implement. Each documents its error contract: the pipeline's retry
//! and dead-letter decisions rest on it.

use crate::business::{BusinessMetrics, ServiceSummary};
use crate::event::Event;
use crate::histogram::{Histogram, HistogramQuery};
use crate::query::{EventPage, EventQuery, SortField};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What an adapter's error came from: a driver's error, kept whole for logs.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed, as far as the caller's next step is concerned. `reason`
/// says it in a line; `source`, when there is one, is the driver's error it came from.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or gave up for reasons unrelated to the data:
    /// connection refused or lost, pool exhausted, timeout, server shutting down.
    /// Retrying the same call later may succeed.
    #[error("store unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    /// The store refused the data itself (a value it cannot hold). Retrying the same
    /// data will fail again.
    #[error("store rejected the data: {reason}")]
    Rejected {
        reason: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    pub fn unavailable(reason: impl Into<String>, source: impl Into<Option<Cause>>) -> Self {
        Self::Unavailable { reason: reason.into(), source: source.into() }
    }

    pub fn rejected(reason: impl Into<String>, source: impl Into<Option<Cause>>) -> Self {
        Self::Rejected { reason: reason.into(), source: source.into() }
    }
}

/// An error and its causes, each once (`a: b: c`), skipping a cause whose words the text
/// already ends with: pool and TLS errors say little alone ("db error", "error performing
/// TLS handshake"), why is in their sources, and some repeat their source's words.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// [`EventQuery::check_sort_cost`] refused the query: the client must narrow the
    /// range or sort by timestamp.
    #[error("sorting by {} reads every event of the range, which holds more than {limit}", sort_field.name())]
    TooManyToSort { sort_field: SortField, limit: u64 },
}

/// Where the batch writers put events: durable storage, written in batches.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug + 'static {
    /// Stores every event of `events` or none of them: a batch never half-lands.
    /// Idempotent on the event id and timestamp: an event already stored is skipped, not
    /// duplicated and not an error (journal replays and client retries rely on it).
    /// MUST return [`StoreError::Unavailable`] for failures worth retrying and
    /// [`StoreError::Rejected`] only when the data itself is refused.
    async fn write_batch(&self, events: &[&Event]) -> Result<(), StoreError>;
}

/// What people read back: pages of events, histograms and business figures.
#[async_trait]
pub trait EventReader: Send + Sync + std::fmt::Debug + 'static {
    /// One page of events for a service and time range, in the query's order, with the
    /// total matching the filter for page-numbered queries. A cursor page MUST read a
    /// bounded number of rows whatever its depth, so it carries no total. The total and
    /// the page MUST be read from one snapshot, so they never disagree. Before sorting by
    /// another field than timestamp, it MUST count the events of the query's service and
    /// range and return [`QueryError::TooManyToSort`] when
    /// [`EventQuery::check_sort_cost`] refuses that count.
    async fn query(&self, query: &EventQuery) -> Result<EventPage, QueryError>;

    /// Events of the query's service per bucket of [`HistogramQuery::buckets`], empty
    /// buckets included, read in one snapshot. MUST count from rollups, reading events
    /// row by row only in the partial minutes at the range's two ends: its cost must not
    /// grow with the traffic in the range. Errors follow [`QueryError::Store`].
    async fn histogram(&self, query: &HistogramQuery) -> Result<Histogram, QueryError>;

    /// Counts of stored events by service and hour of their timestamp, as of `now`. MUST
    /// NOT scan the events themselves: it is served to dashboards.
    async fn business_metrics(&self, now: DateTime<Utc>) -> Result<BusinessMetrics, StoreError>;

    /// Every service with stored events, by name, with its count. MUST read the rollups,
    /// not the events: the console asks on every visit.
    async fn services(&self) -> Result<Vec<ServiceSummary>, StoreError>;
}

/// The store's own state, for health reports and readiness.
#[async_trait]
pub trait StoreHealth: Send + Sync + std::fmt::Debug + 'static {
    /// Answers `Ok` when the store can serve reads and writes right now.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The state of the store's connections.
    fn connections(&self) -> ConnectionStats;

    /// The state of the replica that [`EventReader`] reads from; `None` when reads go to
    /// the primary. MUST ask the replica itself.
    async fn replica(&self) -> Option<Result<ReplicaState, StoreError>>;
}

/// What a streaming replica says of itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaState {
    /// Whether it is receiving its primary's WAL now. When it is not, `lag` only says how
    /// much of what it received is still to replay: its readers may see an old past.
    pub streaming: bool,
    /// The age of the last transaction it replayed; zero once it replayed all it received.
    pub lag: std::time::Duration,
}

/// Connections a store holds, as `/health/database` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub active: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// The source of "now", so time-dependent rules are testable without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// An event's place in the journal. Consecutive within one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalSeq(pub u64);

/// Where the journal put one append, so it can be read back. Only the journal interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub segment: u64,
    pub offset: u64,
}

/// The outcome of an append: the position of its first event and where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: JournalSeq,
    pub record: RecordRef,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// No room left: appending would exceed the journal's size limit. Nothing was written.
    #[error("the journal is full ({limit_bytes} bytes)")]
    Full { limit_bytes: u64 },
    /// The disk failed us. Nothing acknowledged before is lost. Shared, since one failed
    /// group commit fails every append in it.
    #[error("journal I/O failed: {context}")]
    Io {
        context: String,
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },
}

impl JournalError {
    pub fn io(context: impl Into<String>, source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// Equal when they say the same: a cause's identity does not matter to callers.
impl PartialEq for JournalError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Full { limit_bytes: a }, Self::Full { limit_bytes: b }) => a == b,
            (Self::Io { context: a, .. }, Self::Io { context: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// The write-ahead journal: what it holds survives a crash until acknowledged as stored.
#[async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `events` and returns once they are on stable storage, with the position of
    /// the first (the others follow it). MUST return [`JournalError::Full`] without
    /// writing anything when they do not fit.
    async fn append(&self, events: &[Event]) -> Result<Appended, JournalError>;

    /// Reads back one append that is not acknowledged yet.
    async fn read(&self, record: RecordRef) -> Result<Vec<(JournalSeq, Event)>, JournalError>;

    /// Records that these events are stored; the space they hold may be reclaimed.
    fn acknowledge(&self, seqs: &[JournalSeq]);

    /// Events journaled but not acknowledged when the service last stopped, oldest first,
    /// a segment at a time; `None` once all were handed out. Called only at start-up,
    /// before any append.
    fn next_unacknowledged(&self) -> Result<Option<Vec<(JournalSeq, Event)>>, JournalError>;

    /// How full the journal is, for health reports and metrics.
    fn usage(&self) -> JournalUsage;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalUsage {
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub segments: usize,
    /// A write failed recently and none has succeeded since (a full or failing disk).
    pub write_failing: bool,
}

/// A batch a writer took from its [`BatchSource`]: the events to store, the requests
/// they came from, and what the source needs to settle them.
#[derive(Debug)]
pub struct Taken<R> {
    pub events: Vec<Event>,
    pub origins: Vec<crate::observe::TraceLink>,
    pub receipt: R,
}

/// Where the batch writers take events from: the seam between accepting events and
/// storing them. In one process it is the buffer with the journal behind it
/// ([`LocalQueue`](crate::LocalQueue)); a shared queue between machines is another
/// implementation, and the writers do not change.
#[async_trait]
pub trait BatchSource: Send + Sync + std::fmt::Debug + 'static {
    /// What [`settle`](Self::settle) needs back: acknowledgements, waiting callers.
    type Receipt: Send;

    /// The next batch, waiting at most `linger` for it to fill once its first event is
    /// there; `None` once the source is closed and drained.
    async fn next_batch(&self, linger: std::time::Duration) -> Option<Taken<Self::Receipt>>;

    /// What became of each event of a batch, in its order: `true` stored, `false` set
    /// aside as a dead letter. Only then may the source forget the events: until this
    /// call they MUST survive a crash wherever the source promised they would.
    fn settle(&self, receipt: Self::Receipt, stored: &[bool]);

    /// Offers a batch back untouched while the store's circuit is open, to be taken again
    /// no sooner than `after`: a shared queue hands it to whichever writer asks then,
    /// rather than leave it with one that cannot write. `Err` returns the batch, which the
    /// writer then keeps and waits with: what a source tied to its writer does.
    fn release(&self, batch: Taken<Self::Receipt>, _after: std::time::Duration) -> Result<(), Taken<Self::Receipt>> {
        Err(batch)
    }
}

/// An event the store refused for its data, kept for review and replay.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: Uuid,
    pub event: Event,
    pub reason: String,
    pub attempts: u32,
    pub last_attempt_at: DateTime<Utc>,
    pub reprocessed: bool,
    pub reprocessed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub service: Option<String>,
    pub reprocessed: Option<bool>,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterStats {
    pub total: u64,
    pub by_service: std::collections::BTreeMap<String, u64>,
    pub reprocessed: u64,
    pub pending: u64,
    pub oldest_event: Option<DateTime<Utc>>,
}

/// Where the batch writers put poison events.
#[async_trait]
pub trait DeadLetterSink: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps `event` with the reason it could not be stored. MUST accept any event the
    /// event sink refused (e.g. text PostgreSQL cannot hold), and MUST NOT add a second
    /// entry for an event that has a pending one (a journal replay puts it again). Errors
    /// follow [`StoreError`].
    async fn put(&self, event: &Event, reason: &str, attempts: u32) -> Result<(), StoreError>;
}

/// The dead-letter queue as operators see it: review, reprocess, delete.
#[async_trait]
pub trait DeadLetterAdmin: Send + Sync + std::fmt::Debug + 'static {
    /// A page of entries, newest first, and the number matching the filter.
    async fn list(&self, filter: &DeadLetterFilter) -> Result<(Vec<DeadLetter>, u64), StoreError>;
    async fn stats(&self) -> Result<DeadLetterStats, StoreError>;
    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError>;
    /// Marks an entry reprocessed if it is still as it was when read (`seen` is its
    /// `updated_at`); false when it does not exist, already was, or failed again since.
    async fn mark_reprocessed(&self, id: Uuid, seen: DateTime<Utc>) -> Result<bool, StoreError>;
    /// False when the entry does not exist.
    async fn delete(&self, id: Uuid) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_keeps_its_cause_and_the_chain_names_each_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = StoreError::unavailable("cannot connect to 127.0.0.1:5432", Some(Box::new(refused) as Cause));
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        assert_eq!(error_chain(&error), "store unavailable: cannot connect to 127.0.0.1:5432: connection refused");

        // A reason that already ends with its cause's words does not repeat them.
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let error = StoreError::unavailable("pool wait timed out", Some(Box::new(timeout) as Cause));
        assert_eq!(error_chain(&error), "store unavailable: pool wait timed out");
    }
}
