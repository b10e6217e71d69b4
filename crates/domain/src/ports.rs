//! The traits adapters implement. Each documents its error contract: the pipeline's retry
//! and dead-letter decisions rest on it.

use crate::event::Event;
use crate::query::{EventPage, EventQuery};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Why a store operation failed, as far as the caller's next step is concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or gave up for reasons unrelated to the data:
    /// connection refused or lost, pool exhausted, timeout, server shutting down.
    /// Retrying the same call later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the data itself (a value it cannot hold). Retrying the same
    /// data will fail again.
    #[error("store rejected the data: {0}")]
    Rejected(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Durable storage of events.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores every event of `events` or none of them: a batch never half-lands.
    /// MUST return [`StoreError::Unavailable`] for failures worth retrying and
    /// [`StoreError::Rejected`] only when the data itself is refused.
    async fn write_batch(&self, events: &[Event]) -> Result<(), StoreError>;

    /// One page of events for a service and time range, in the query's order, with the
    /// total matching the filter. A cursor page MUST read a bounded number of rows
    /// whatever its depth.
    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// Answers `Ok` when the store can serve reads and writes right now.
    async fn ping(&self) -> Result<(), StoreError>;
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
