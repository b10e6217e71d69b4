//! How the domain reports what it does. Metrics and traces are adapters behind
//! [`Observer`]; the domain never names an exporter.

use crate::retention::RetentionReport;
use std::time::Duration;

/// What became of events a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Received {
    /// Queued for storage.
    Accepted,
    /// Repeated an idempotency key seen recently: answered, not queued again.
    Duplicate,
    /// Failed validation.
    Rejected,
    /// Valid, but timestamped further ahead of (or behind) the server's clock than allowed.
    OutOfWindow,
    /// Refused for lack of room (buffer or journal full); the client should retry.
    RateLimited,
}

impl Received {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::OutOfWindow => "out_of_window",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Why a store call failed, as the pipeline classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseFailure {
    /// Worth retrying: the store was unreachable or gave up.
    Unavailable,
    /// The store refused the data.
    Rejected,
}

impl DatabaseFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        }
    }
}

/// The trace span of the request that brought events in, so the batch that stores them
/// can link back to it. Only sampled requests carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceLink {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// Receives the domain's reports. Calls come from hot paths: implementations must be
/// cheap and never block.
pub trait Observer: Send + Sync + std::fmt::Debug + 'static {
    fn events_received(&self, outcome: Received, count: usize);
    /// A batch (or a slice of one being split) is stored.
    fn batch_written(&self, events: usize, took: Duration);
    fn database_failed(&self, failure: DatabaseFailure);
    /// A write that failed for a reason worth retrying will be tried again.
    fn write_retried(&self);
    /// A poison event reached the dead-letter store (`kept`), or that store refused it too.
    fn dead_lettered(&self, kept: bool);
    fn retention_ran(&self, report: &RetentionReport);
    /// A privacy rule (`metadata.user_id:hash`, `scan:email`) transformed `count` values.
    fn privacy_transformed(&self, rule: &str, count: u64);
    /// The span one batch write runs in, linked to the requests whose events it carries.
    fn batch_span(&self, events: usize, origins: &[TraceLink]) -> tracing::Span {
        let _ = origins;
        tracing::info_span!("batch.write", events)
    }
}

/// Reports to nowhere, for tools and tests that do not watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {
    fn events_received(&self, _: Received, _: usize) {}
    fn batch_written(&self, _: usize, _: Duration) {}
    fn database_failed(&self, _: DatabaseFailure) {}
    fn write_retried(&self) {}
    fn dead_lettered(&self, _: bool) {}
    fn retention_ran(&self, _: &RetentionReport) {}
    fn privacy_transformed(&self, _: &str, _: u64) {}
}
