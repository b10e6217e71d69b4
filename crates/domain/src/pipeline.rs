//! The batch writer: drains the buffer in batches and stores them. Transient failures are
//! retried with backoff and jitter behind a circuit breaker, for as long as it takes: the
//! journal holds the events meanwhile, and an outage never sends them to dead letters.
//! A batch the store refuses for its data is split until the poison events are isolated;
//! only those go to the dead-letter store.

use crate::breaker::CircuitBreaker;
use crate::buffer::{Batch, Buffer, Queued};
use crate::event::Event;
use crate::observe::{DatabaseFailure, Observer, TraceLink};
use crate::ports::{DeadLetterSink, EventSink, Journal};
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

/// A batch span links to at most this many requests (OpenTelemetry's default limit).
const MAX_SPAN_LINKS: usize = 128;

/// Where a writer sends what it drains. Shared by every writer.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub store: Arc<dyn EventSink>,
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Acknowledged once events are stored or dead-lettered.
    pub journal: Arc<dyn Journal>,
    pub breaker: Arc<CircuitBreaker>,
    /// Told every event once it is stored, for live subscribers.
    pub tail: Arc<Tail>,
}

/// One writer task. Several may share a buffer and sinks.
#[derive(Debug)]
pub struct BatchWorker {
    buffer: Arc<Buffer>,
    sinks: Sinks,
    settings: WriterSettings,
    observer: Arc<dyn Observer>,
}

/// Why a slice of a batch was not stored.
struct Refused {
    reason: String,
    attempts: u32,
}

impl BatchWorker {
    pub fn new(buffer: Arc<Buffer>, sinks: Sinks, settings: WriterSettings, observer: Arc<dyn Observer>) -> Self {
        Self { buffer, sinks, settings, observer }
    }

    /// Runs until the buffer is closed and drained.
    pub async fn run(self) {
        loop {
            let batch = self.buffer.next_batch(self.settings.linger).await;
            if batch.is_empty() {
                return;
            }
            let origins = origins(&batch);
            let unjournaled = batch.queued.iter().filter(|queued| queued.seq.is_none()).count();
            let span = self.observer.batch_span(batch.len(), &origins);
            async {
                let queued = self.read_spilled(batch).await;
                self.store(queued).await;
            }
            .instrument(span)
            .await;
            self.buffer.settle_unjournaled(unjournaled);
        }
    }

    /// Brings spilled events back from the journal. A record that cannot be read stays
    /// unacknowledged in the journal and is replayed at the next start.
    async fn read_spilled(&self, batch: Batch) -> Vec<Queued> {
        let mut queued = batch.queued;
        for spilled in batch.spilled {
            match self.sinks.journal.read(spilled.record).await {
                Ok(events) => queued.extend(events.into_iter().map(|(seq, event)| Queued {
                    event,
                    seq: Some(seq),
                    completion: spilled.completion.clone(),
                    origin: spilled.origin,
                })),
                Err(error) => {
                    tracing::error!(%error, events = spilled.events, "cannot read spilled events back; they wait in the journal for the next start");
                    if let Some(completion) = &spilled.completion {
                        (0..spilled.events).for_each(|_| completion.settle(false));
                    }
                }
            }
        }
        queued
    }

    /// Stores the batch, isolating poison events, then acknowledges every event in the
    /// journal and tells waiting requests how theirs fared.
    async fn store(&self, batch: Vec<Queued>) {
        let events: Vec<&Event> = batch.iter().map(|queued| &queued.event).collect();
        let mut stored = vec![true; batch.len()];
        // Slices still to write; a refused slice is split in two until one event remains.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(2);
        pending.push(0..batch.len());
        while let Some(range) = pending.pop() {
            match self.write(&events[range.clone()]).await {
                Ok(took) => {
                    self.observer.batch_written(range.len(), took);
                    self.sinks.tail.publish(&events[range]);
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
        let seqs: Vec<_> = batch.iter().filter_map(|queued| queued.seq).collect();
        self.sinks.journal.acknowledge(&seqs);
        for (queued, stored) in batch.iter().zip(stored) {
            if let Some(completion) = &queued.completion {
                completion.settle(stored);
            }
        }
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

/// The distinct requests a batch carries events from, up to the link limit.
fn origins(batch: &Batch) -> Vec<TraceLink> {
    let from_memory = batch.queued.iter().filter_map(|queued| queued.origin);
    let from_journal = batch.spilled.iter().filter_map(|spilled| spilled.origin);
    let mut origins: Vec<TraceLink> = Vec::new();
    for origin in from_memory.chain(from_journal) {
        // A request's events sit together in the buffer, so comparing with the last
        // one seen removes nearly every repeat without a set.
        if origins.last() != Some(&origin) {
            origins.push(origin);
            if origins.len() == MAX_SPAN_LINKS {
                break;
            }
        }
    }
    origins
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{BreakerSettings, BreakerState};
    use crate::buffer::tests::queued;
    use crate::completion::Completion;
    use crate::ports::{JournalSeq, StoreError, SystemClock};
    use crate::testing::{FakeDeadLetters, FakeStore, MemoryJournal, Tally};
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
                journal: self.journal.clone(),
                breaker: self.breaker.clone(),
                tail: Arc::new(Tail::new(16, 1)),
            };
            let settings = WriterSettings {
                linger: Duration::from_millis(10),
                retry: RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) },
            };
            BatchWorker::new(buffer, sinks, settings, self.observed.clone()).run().await;
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

    #[test]
    fn a_batch_links_each_request_once_up_to_the_limit() {
        let link = |n: u8| TraceLink { trace_id: [n; 16], span_id: [n; 8] };
        let mut batch = Batch::default();
        for (request, events) in [(1, 3), (2, 1), (1, 1)] {
            for mut item in queued(events) {
                item.origin = Some(link(request));
                batch.queued.push(item);
            }
        }
        batch.queued.extend(queued(2));
        assert_eq!(
            origins(&batch),
            [link(1), link(2), link(1)],
            "consecutive repeats collapse; untraced events add none"
        );

        let mut crowded = Batch::default();
        for (n, mut item) in queued(200).into_iter().enumerate() {
            item.origin = Some(link(u8::try_from(n % 250).unwrap()));
            crowded.queued.push(item);
        }
        assert_eq!(origins(&crowded).len(), MAX_SPAN_LINKS);
    }
}
