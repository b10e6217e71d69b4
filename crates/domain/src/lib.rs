//! Aurore's core. An event arrives as JSON, is validated against the contract's limits,
//! enriched with a time-ordered id and an ingest time, and pushed into the bounded
//! [`Buffer`]. [`BatchWorker`]s drain the buffer in batches (by size or after a linger)
//! and hand them to an [`EventSink`], retrying transient failures with backoff and jitter.
//! Queries are parsed into an [`EventQuery`] and answered by an [`EventReader`].
//!
//! This crate performs no I/O: no database driver, HTTP framework, exporter or filesystem.
//! Adapters implement the traits in [`ports`]; a tidy test keeps it that way.

pub mod ingest;
pub mod model;
pub mod observe;
pub mod ops;
pub mod pipeline;
pub mod ports;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

// The modules adapters name: validation (its `Incoming` is the HTTP layer's input) and the
// query checks the HTTP layer runs on the parameters it reads.
pub use model::{filter, privacy, query, validation};
// Inside the crate, each module by its own name.
pub(crate) use model::{event, histogram, markup};
pub(crate) use ops::{business, erasure, lifecycle, retention};
pub(crate) use pipeline::{breaker, buffer, completion, local_queue, reports, retry, tail};

pub use breaker::{BreakerSettings, BreakerSnapshot, BreakerState, CircuitBreaker};
pub use buffer::{Batch, Buffer, BufferError, BufferSnapshot, BufferStats, Queued, Reservation, Spilled};
pub use business::{BusinessMetrics, HourCount, HourlyCount, ServiceCount, ServiceSummary};
pub use completion::Completion;
pub use erasure::{Erasure, ErasureRecord, ErasureStore};
pub use event::{Event, EventDraft, EventId};
pub use filter::{Filter, FilterError};
pub use histogram::{BucketSpan, Histogram, HistogramBucket, HistogramQuery, Interval};
pub use ingest::{Durability, IngestError, IngestReceipt, IngestService, IngestSettings, Rejection, replay_journal};
pub use lifecycle::Lifecycle;
pub use local_queue::{LocalQueue, LocalReceipt};
pub use markup::Markup;
pub use observe::{DatabaseFailure, Observer, Received, TraceLink, Unobserved};
pub use pipeline::worker::{BatchWorker, Sinks, WriterSettings};
pub use ports::{
    Appended, BatchSource, Cause, Clock, ConnectionStats, DeadLetter, DeadLetterAdmin, DeadLetterFilter,
    DeadLetterSink, DeadLetterStats, EventReader, EventSink, Journal, JournalError, JournalSeq, JournalUsage,
    QueryError, RecordRef, ReplicaState, StoreError, StoreHealth, SystemClock, error_chain,
};
pub use privacy::{Privacy, PrivacyError, PrivacySpec};
pub use query::{
    Cursor, CursorKey, EventPage, EventQuery, MetadataFilter, QueryLimits, SortField, SortOrder, StoredEvent,
};
pub use reports::StoreReports;
pub use retention::{Retention, RetentionCutoffs, RetentionPolicy, RetentionReport, RetentionStore};
pub use retry::{Failure, RetryPolicy, Retrying, retry_transient};
pub use tail::{Subscription, Tail, TailFilter, Tailed};
pub use validation::{FieldError, Limits};
