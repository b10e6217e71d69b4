//! The batch writer: takes batches from its source and stores them. Transient failures are
//! retried with backoff and jitter behind a circuit breaker, for as long as it takes: the
//! journal holds the events meanwhile, and an outage never sends them to dead letters.
//! A batch the store refuses for its data is split until the poison events are isolated;
//! only those go to the dead-letter store.

use crate::breaker::CircuitBreaker;
use crate::event::Event;
use crate::local_queue::LocalQueue;
use crate::observe::{DatabaseFailure, Observer};
use crate::ports::{BatchSource, DeadLetterSink, EventSink};
use crate::retry::{Failure, RetryPolicy, retry_transient};
use crate::tail::Tail;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterSettings {
    /// The longest an event waits in the buffer for its batch to fill.
    pub linger: Duration,
    pub retry: RetryPolicy,
}

/// Where a writer sends what it takes. Shared by every writer.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub store: Arc<dyn EventSink>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    pub breaker: Arc<CircuitBreaker>,
    /// Told every event once it is stored, for live subscribers; `None` where this
    /// process does not store (the ingest role forwards to a shared queue).
    pub tail: Option<Arc<Tail>>,
}

/// One writer task. Several may share a source and sinks.
#[derive(Debug)]
pub struct BatchWorker<S: BatchSource = LocalQueue> {
    source: Arc<S>,
    sinks: Sinks,
    settings: WriterSettings,
    observer: Arc<dyn Observer>,
}

/// Why a slice of a batch was not stored.
struct Refused {
    reason: String,
    attempts: u32,
}

impl<S: BatchSource> BatchWorker<S> {
    pub fn new(source: Arc<S>, sinks: Sinks, settings: WriterSettings, observer: Arc<dyn Observer>) -> Self {
        Self { source, sinks, settings, observer }
    }

    /// Runs until the source is closed and drained.
    pub async fn run(self) {
        while let Some(mut batch) = self.source.next_batch(self.settings.linger).await {
            if let Err(wait) = self.sinks.breaker.permit() {
                match self.source.release(batch, wait) {
                    Ok(()) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(kept) => batch = kept,
                }
            }
            let span = self.observer.batch_span(batch.events.len(), &batch.origins);
            let stored = self.store(&batch.events).instrument(span).await;
            self.source.settle(batch.receipt, &stored);
        }
    }

    /// Stores the batch, isolating poison events; returns which events were stored.
    async fn store(&self, batch: &[Event]) -> Vec<bool> {
        let events: Vec<&Event> = batch.iter().collect();
        let mut stored = vec![true; batch.len()];
        // Slices still to write; a refused slice is split in two until one event remains.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(2);
        pending.push(0..batch.len());
        while let Some(range) = pending.pop() {
            match self.write(&events[range.clone()]).await {
                Ok(took) => {
                    self.observer.batch_written(range.len(), took);
                    if let Some(tail) = &self.sinks.tail {
                        tail.publish(&events[range]);
                    }
                }
                Err(refused) if range.len() == 1 => {
                    stored[range.start] = false;
                    self.dead_letter(events[range.start], &refused).await;
                }
                Err(_) => {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
            }
        }
        stored
    }

    /// Writes until the store takes the events or refuses their data. Returns how long
    /// the successful attempt took.
    async fn write(&self, events: &[&Event]) -> Result<Duration, Refused> {
        let store = &self.sinks.store;
        let mut attempts = 0;
        let written = retry_transient(
            Some(&self.sinks.breaker),
            &self.settings.retry,
            || {
                attempts += 1;
                async move {
                    let started = Instant::now();
                    store.write_batch(events).await.map(|()| started.elapsed()).map_err(Failure::from)
                }
            },
            |retrying| {
                self.observer.database_failed(DatabaseFailure::Unavailable);
                self.observer.write_retried();
                tracing::warn!(error = %retrying.cause, attempt = retrying.attempt, retry_in = ?retrying.delay, events = events.len(), "batch write failed; retrying");
            },
        )
        .await;
        // Either way the database answered.
        self.sinks.breaker.record_success();
        written.map_err(|reason| {
            // Only the data is at fault.
            self.observer.database_failed(DatabaseFailure::Rejected);
            Refused { reason, attempts }
        })
    }

    async fn dead_letter(&self, event: &Event, refused: &Refused) {
        let dead_letters = &self.sinks.dead_letters;
        let put = retry_transient(
            Some(&self.sinks.breaker),
            &self.settings.retry,
            || async move { dead_letters.put(event, &refused.reason, refused.attempts).await.map_err(Failure::from) },
            |_| self.observer.database_failed(DatabaseFailure::Unavailable),
        )
        .await;
        match put {
            Ok(()) => {
                tracing::warn!(event_id = %event.id, service = %event.service, reason = %refused.reason, "event dead-lettered");
                self.observer.dead_lettered(true);
            }
            Err(error) => {
                tracing::error!(event = ?event, reason = %refused.reason, %error, "the dead-letter store refused a poison event; it is lost");
                self.observer.database_failed(DatabaseFailure::Rejected);
                self.observer.dead_lettered(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{BreakerSettings, BreakerState};
    use crate::buffer::tests::queued;
    use crate::buffer::{Buffer, Queued};
    use crate::completion::Completion;
    use crate::ports::{JournalSeq, StoreError, SystemClock};
    use crate::testing::{FakeDeadLetters, FakeStore, MemoryJournal, ScriptedSource, Tally};
    use std::sync::atomic::Ordering;
    use tokio::time::Instant;

    struct Harness {
        store: Arc<FakeStore>,
        dead_letters: Arc<FakeDeadLetters>,
        journal: Arc<MemoryJournal>,
        breaker: Arc<CircuitBreaker>,
        observed: Arc<Tally>,
    }

    impl Harness {
        fn new() -> Self {
            let settings =
                BreakerSettings { failure_threshold: 3, success_threshold: 1, open_timeout: Duration::from_secs(10) };
            Self {
                store: Arc::default(),
                dead_letters: Arc::default(),
                journal: Arc::default(),
                breaker: Arc::new(CircuitBreaker::new(settings, Arc::new(SystemClock))),
                observed: Arc::default(),
            }
        }

        /// Writes `items` through one writer until the buffer is drained.
        async fn run(&self, items: Vec<Queued>) {
            let buffer = Arc::new(Buffer::new(10_000, 4));
            buffer.push(items).unwrap();
            buffer.close();
            let sinks = Sinks {
                store: self.store.clone(),
                dead_letters: self.dead_letters.clone(),
                breaker: self.breaker.clone(),
                tail: Some(Arc::new(Tail::new(16, 1))),
            };
            let source = Arc::new(LocalQueue::new(buffer, self.journal.clone()));
            let settings = WriterSettings {
                linger: Duration::from_millis(10),
                retry: RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) },
            };
            BatchWorker::new(source, sinks, settings, self.observed.clone()).run().await;
        }
    }

    fn journaled(items: Vec<Queued>) -> Vec<Queued> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, mut queued)| {
                queued.seq = Some(JournalSeq(i as u64));
                queued
            })
            .collect()
    }

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let policy = RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        assert_eq!(policy.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(30, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(30, 0.0), Duration::from_millis(500));
        assert_eq!(policy.delay(u32::MAX, 0.5), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_every_event_in_batches_and_acknowledges_the_journal() {
        let harness = Harness::new();
        let items = journaled(queued(10));
        let sent: Vec<Event> = items.iter().map(|queued| queued.event.clone()).collect();
        harness.run(items).await;
        assert_eq!(*harness.store.stored.lock().unwrap(), sent);
        assert_eq!(harness.observed.batches.load(Ordering::Relaxed), 3);
        assert_eq!(harness.observed.events_written.load(Ordering::Relaxed), 10);
        let mut acknowledged = harness.journal.acknowledged.lock().unwrap().clone();
        acknowledged.sort();
        assert_eq!(acknowledged, (0..10).map(JournalSeq).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_waited_out_behind_the_circuit_and_nothing_is_dead_lettered() {
        let harness = Harness::new();
        harness.store.outages.lock().unwrap().extend((0..4).map(|_| StoreError::unavailable("refused", None)));
        let start = Instant::now();
        harness.run(journaled(queued(3))).await;
        assert_eq!(harness.store.stored.lock().unwrap().len(), 3);
        assert!(harness.dead_letters.entries.lock().unwrap().is_empty());
        assert_eq!(harness.observed.retries.load(Ordering::Relaxed), 4);
        assert_eq!(harness.observed.unavailable.load(Ordering::Relaxed), 4);
        let breaker = harness.breaker.snapshot();
        assert_eq!(breaker.state, BreakerState::Closed);
        assert_eq!(breaker.opened, 2, "three failures open it, a failed probe reopens it");
        assert!(start.elapsed() >= Duration::from_secs(20), "two open periods were waited out: {:?}", start.elapsed());
        assert_eq!(harness.journal.acknowledged.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poison_event_is_isolated_and_its_batch_mates_land() {
        let harness = Harness::new();
        let mut items = journaled(queued(4));
        items[2].event.message = "poison \u{0}".into();
        let poison_id = items[2].event.id;
        let completion = Arc::new(Completion::new(4));
        for queued in &mut items {
            queued.completion = Some(completion.clone());
        }
        harness.run(items).await;

        let stored: Vec<_> = harness.store.stored.lock().unwrap().iter().map(|event| event.id).collect();
        assert_eq!(stored.len(), 3);
        assert!(!stored.contains(&poison_id));
        let entries = harness.dead_letters.entries.lock().unwrap().clone();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.id, poison_id);
        assert_eq!(entries[0].1, "invalid byte sequence");
        assert_eq!(harness.observed.dead_lettered.load(Ordering::Relaxed), 1);
        assert_eq!(harness.journal.acknowledged.lock().unwrap().len(), 4, "dead-lettered events leave the journal too");
        assert!(!completion.wait().await, "a waiting request learns one event was not stored");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_taken_while_the_circuit_is_open_goes_back_to_a_shared_source_until_it_closes() {
        let harness = Harness::new();
        for _ in 0..3 {
            harness.breaker.record_failure("refused");
        }
        let source = Arc::new(ScriptedSource::shared());
        let batch: Vec<Event> = queued(2).into_iter().map(|queued| queued.event).collect();
        source.batches.lock().unwrap().push_back(batch.clone());
        let sinks = Sinks {
            store: harness.store.clone(),
            dead_letters: harness.dead_letters.clone(),
            breaker: harness.breaker.clone(),
            tail: None,
        };
        let start = Instant::now();
        let settings = WriterSettings { linger: Duration::ZERO, retry: RetryPolicy::default() };
        BatchWorker::new(source.clone(), sinks, settings, harness.observed.clone()).run().await;

        let released = source.released.lock().unwrap().clone();
        assert_eq!(released.len(), 1, "released once, while open: {released:?}");
        assert_eq!(released[0].0, 0);
        assert!(released[0].1 > Duration::from_secs(9), "for the rest of the open period: {:?}", released[0].1);
        assert_eq!(*source.settled.lock().unwrap(), [(1, vec![true, true])], "taken again and stored once it closed");
        let stored: Vec<_> = harness.store.stored.lock().unwrap().iter().map(|event| event.id).collect();
        assert_eq!(stored, batch.iter().map(|event| event.id).collect::<Vec<_>>());
        assert!(start.elapsed() >= Duration::from_secs(9), "the writer waited out the open period");
        assert_eq!(harness.breaker.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn any_source_gets_each_batch_back_with_what_was_stored() {
        let harness = Harness::new();
        let events = |messages: &[&str]| -> Vec<Event> {
            let mut events: Vec<Event> = queued(messages.len()).into_iter().map(|queued| queued.event).collect();
            for (event, message) in events.iter_mut().zip(messages) {
                event.message = (*message).to_owned();
            }
            events
        };
        let source = Arc::new(ScriptedSource::default());
        source.batches.lock().unwrap().extend([events(&["a", "poison", "c"]), events(&["d"])]);
        let sinks = Sinks {
            store: harness.store.clone(),
            dead_letters: harness.dead_letters.clone(),
            breaker: harness.breaker.clone(),
            tail: Some(Arc::new(Tail::new(16, 1))),
        };
        let settings = WriterSettings { linger: Duration::ZERO, retry: RetryPolicy::default() };
        BatchWorker::new(source.clone(), sinks, settings, harness.observed.clone()).run().await;
        assert_eq!(*source.settled.lock().unwrap(), [(0, vec![true, false, true]), (1, vec![true])]);
        assert_eq!(harness.store.stored.lock().unwrap().len(), 3);
        assert_eq!(harness.dead_letters.entries.lock().unwrap().len(), 1);
    }
}
