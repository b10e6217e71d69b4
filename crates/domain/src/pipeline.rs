//! The batch writer: drains the buffer in batches and stores them, retrying transient
//! failures with exponential backoff and jitter.

use crate::buffer::Buffer;
use crate::event::Event;
use crate::ports::{EventStore, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often and how patiently a failed batch write is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The pause after `failures` consecutive failures: doubling from `base_delay`, capped
    /// at `max_delay`, then spread over its upper half by `jitter` (0..=1) so writers that
    /// failed together do not retry together.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let ceiling = self.base_delay.saturating_mul(1 << doublings).min(self.max_delay);
        ceiling / 2 + ceiling.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterSettings {
    /// The longest an event waits in the buffer for its batch to fill.
    pub linger: Duration,
    pub retry: RetryPolicy,
}

/// Lifetime counters of the writers, read by health and metrics.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub batches_written: AtomicU64,
    pub events_stored: AtomicU64,
    pub write_retries: AtomicU64,
    /// Events given up on after their retries or refused by the store.
    pub events_failed: AtomicU64,
}

/// One writer task. Several may share a buffer and a store.
#[derive(Debug)]
pub struct BatchWorker<S: ?Sized> {
    buffer: Arc<Buffer>,
    store: Arc<S>,
    settings: WriterSettings,
    stats: Arc<PipelineStats>,
}

impl<S: EventStore + ?Sized> BatchWorker<S> {
    pub fn new(buffer: Arc<Buffer>, store: Arc<S>, settings: WriterSettings, stats: Arc<PipelineStats>) -> Self {
        Self { buffer, store, settings, stats }
    }

    /// Runs until the buffer is closed and drained.
    pub async fn run(self) {
        loop {
            let batch = self.buffer.next_batch(self.settings.linger).await;
            if batch.is_empty() {
                return;
            }
            self.write(&batch).await;
        }
    }

    async fn write(&self, batch: &[Event]) {
        let mut failures = 0;
        let error = loop {
            match self.store.write_batch(batch).await {
                Ok(()) => {
                    self.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                    self.stats.events_stored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(error) if error.is_transient() && failures + 1 < self.settings.retry.max_attempts => {
                    failures += 1;
                    let delay = self.settings.retry.delay(failures, fastrand::f64());
                    tracing::warn!(%error, attempt = failures, retry_in = ?delay, events = batch.len(), "batch write failed; retrying");
                    self.stats.write_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                }
                Err(error) => break error,
            }
        };
        self.give_up(batch, &error, failures + 1);
    }

    fn give_up(&self, batch: &[Event], error: &StoreError, attempts: u32) {
        for event in batch {
            tracing::error!(event_id = %event.id, service = %event.service, %error, attempts, "event could not be stored");
        }
        self.stats.events_failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::tests::events;
    use crate::query::{EventPage, EventQuery};
    use async_trait::async_trait;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// An in-memory store whose next write results are scripted.
    #[derive(Debug, Default)]
    struct ScriptedStore {
        script: Mutex<VecDeque<Result<(), StoreError>>>,
        stored: Mutex<Vec<Event>>,
        attempts: AtomicU64,
    }

    impl ScriptedStore {
        fn failing_with(results: Vec<StoreError>) -> Arc<Self> {
            let store = Self::default();
            store.script.lock().unwrap().extend(results.into_iter().map(Err));
            Arc::new(store)
        }
    }

    #[async_trait]
    impl EventStore for ScriptedStore {
        async fn write_batch(&self, events: &[Event]) -> Result<(), StoreError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let next = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
            if next.is_ok() {
                self.stored.lock().unwrap().extend_from_slice(events);
            }
            next
        }
        async fn query(&self, _: &EventQuery) -> Result<EventPage, StoreError> {
            unreachable!("the writer never queries")
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn settings(max_attempts: u32) -> WriterSettings {
        WriterSettings {
            linger: Duration::from_millis(10),
            retry: RetryPolicy {
                max_attempts,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
            },
        }
    }

    async fn run_to_completion(store: Arc<ScriptedStore>, sent: Vec<Event>, max_attempts: u32) -> Arc<PipelineStats> {
        let buffer = Arc::new(Buffer::new(1000, 4));
        buffer.push(sent).unwrap();
        buffer.close();
        let stats = Arc::new(PipelineStats::default());
        BatchWorker::new(buffer, store, settings(max_attempts), stats.clone()).run().await;
        stats
    }

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let policy =
            RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        assert_eq!(policy.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(30, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(30, 0.0), Duration::from_millis(500));
        assert_eq!(policy.delay(u32::MAX, 0.5), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_every_event_in_batches_of_the_configured_size() {
        let store = Arc::new(ScriptedStore::default());
        let sent = events(10);
        let stats = run_to_completion(store.clone(), sent.clone(), 3).await;
        assert_eq!(*store.stored.lock().unwrap(), sent);
        assert_eq!(stats.batches_written.load(Ordering::Relaxed), 3);
        assert_eq!(stats.events_stored.load(Ordering::Relaxed), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff() {
        let unavailable = || StoreError::Unavailable("connection refused".into());
        let store = ScriptedStore::failing_with(vec![unavailable(), unavailable()]);
        let start = Instant::now();
        let stats = run_to_completion(store.clone(), events(3), 3).await;
        assert_eq!(store.stored.lock().unwrap().len(), 3);
        assert_eq!(stats.write_retries.load(Ordering::Relaxed), 2);
        assert_eq!(stats.events_failed.load(Ordering::Relaxed), 0);
        // At least half of each backoff step (100 ms, then 200 ms) was waited.
        assert!(start.elapsed() >= Duration::from_millis(150), "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_attempt_and_counts_the_events() {
        let failures = (0..3).map(|_| StoreError::Unavailable("timeout".into())).collect();
        let store = ScriptedStore::failing_with(failures);
        let stats = run_to_completion(store.clone(), events(3), 3).await;
        assert_eq!(store.attempts.load(Ordering::Relaxed), 3);
        assert!(store.stored.lock().unwrap().is_empty());
        assert_eq!(stats.events_failed.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_data_is_not_retried() {
        let store = ScriptedStore::failing_with(vec![StoreError::Rejected("invalid byte sequence".into())]);
        let stats = run_to_completion(store.clone(), events(2), 5).await;
        assert_eq!(store.attempts.load(Ordering::Relaxed), 1);
        assert_eq!(stats.write_retries.load(Ordering::Relaxed), 0);
        assert_eq!(stats.events_failed.load(Ordering::Relaxed), 2);
    }
}
