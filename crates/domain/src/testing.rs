//! In-memory stand-ins for the ports, for unit tests of the domain and of adapters'
//! consumers (feature `testing`). Real adapters are tested against real dependencies.
// A poisoned lock here means a test already failed.
#![allow(clippy::unwrap_used)]

use crate::event::Event;
use crate::observe::{DatabaseFailure, Observer, Received};
use crate::ports::{
    Appended, BatchSource, Clock, DeadLetterSink, EventSink, Journal, JournalError, JournalSeq, JournalUsage,
    RecordRef, StoreError, Taken,
};
use crate::retention::RetentionReport;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A clock that always says the same time.
#[derive(Debug)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// An event sink in memory: scripted transient failures first, then it refuses any batch
/// holding a message that starts with "poison". Idempotent on the event id, as the port
/// requires.
#[derive(Debug, Default)]
pub struct FakeStore {
    pub outages: Mutex<VecDeque<StoreError>>,
    pub stored: Mutex<Vec<Event>>,
    pub attempts: AtomicU64,
}

#[async_trait]
impl EventSink for FakeStore {
    async fn write_batch(&self, events: &[&Event]) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = self.outages.lock().unwrap().pop_front() {
            return Err(error);
        }
        if events.iter().any(|event| event.message.starts_with("poison")) {
            return Err(StoreError::rejected("invalid byte sequence", None));
        }
        let mut stored = self.stored.lock().unwrap();
        let known: HashSet<_> = stored.iter().map(|event| event.id).collect();
        stored.extend(events.iter().filter(|event| !known.contains(&event.id)).map(|event| (*event).clone()));
        Ok(())
    }
}

/// Dead letters in memory: (event, reason, attempts) in the order they were put.
#[derive(Debug, Default)]
pub struct FakeDeadLetters {
    pub entries: Mutex<Vec<(Event, String, u32)>>,
}

#[async_trait]
impl DeadLetterSink for FakeDeadLetters {
    async fn put(&self, event: &Event, reason: &str, attempts: u32) -> Result<(), StoreError> {
        self.entries.lock().unwrap().push((event.clone(), reason.to_owned(), attempts));
        Ok(())
    }
}

/// A journal in memory. Each append is one record per event (its position is the
/// record's offset); `full` refuses every append; `replay` is what start-up finds, handed
/// out last first.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub appended: Mutex<Vec<Event>>,
    pub acknowledged: Mutex<Vec<JournalSeq>>,
    pub full: bool,
    pub replay: Mutex<Vec<Vec<(JournalSeq, Event)>>>,
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(&self, events: &[Event]) -> Result<Appended, JournalError> {
        if self.full {
            return Err(JournalError::Full { limit_bytes: 10 });
        }
        let mut appended = self.appended.lock().unwrap();
        let first = appended.len() as u64;
        appended.extend_from_slice(events);
        Ok(Appended { first: JournalSeq(first), record: RecordRef { segment: 0, offset: first } })
    }

    async fn read(&self, record: RecordRef) -> Result<Vec<(JournalSeq, Event)>, JournalError> {
        let appended = self.appended.lock().unwrap();
        Ok(vec![(JournalSeq(record.offset), appended[usize::try_from(record.offset).unwrap()].clone())])
    }

    fn acknowledge(&self, seqs: &[JournalSeq]) {
        self.acknowledged.lock().unwrap().extend_from_slice(seqs);
    }

    fn next_unacknowledged(&self) -> Result<Option<Vec<(JournalSeq, Event)>>, JournalError> {
        Ok(self.replay.lock().unwrap().pop())
    }

    fn usage(&self) -> JournalUsage {
        let appended = self.appended.lock().unwrap().len() as u64;
        JournalUsage { bytes: appended, capacity_bytes: u64::MAX, segments: 1, write_failing: false }
    }
}

/// A batch source that hands out the batches it was given, in order, and records how
/// each was settled: the seam a shared queue plugs into, without a buffer.
#[derive(Debug, Default)]
pub struct ScriptedSource {
    pub batches: Mutex<VecDeque<Vec<Event>>>,
    /// Per batch settled: its receipt (the batch's number) and which events were stored.
    pub settled: Mutex<Vec<(usize, Vec<bool>)>>,
    /// Whether it takes batches back, as a shared queue does; each one taken back is
    /// handed out again last, as a redelivery.
    pub releases: bool,
    /// Per batch taken back: its receipt and the delay asked for.
    pub released: Mutex<Vec<(usize, Duration)>>,
    taken: AtomicU64,
}

impl ScriptedSource {
    /// A source that takes batches back, as a queue shared by several writers does.
    pub fn shared() -> Self {
        Self { releases: true, ..Self::default() }
    }
}

#[async_trait]
impl BatchSource for ScriptedSource {
    type Receipt = usize;

    async fn next_batch(&self, _linger: Duration) -> Option<Taken<usize>> {
        let events = self.batches.lock().unwrap().pop_front()?;
        let receipt = usize::try_from(self.taken.fetch_add(1, Ordering::Relaxed)).unwrap();
        Some(Taken { events, origins: Vec::new(), receipt })
    }

    fn settle(&self, receipt: usize, stored: &[bool]) {
        self.settled.lock().unwrap().push((receipt, stored.to_vec()));
    }

    fn release(&self, batch: Taken<usize>, after: Duration) -> Result<(), Taken<usize>> {
        if !self.releases {
            return Err(batch);
        }
        self.released.lock().unwrap().push((batch.receipt, after));
        self.batches.lock().unwrap().push_back(batch.events);
        Ok(())
    }
}

/// Tallies what is reported to the observer.
#[derive(Debug, Default)]
pub struct Tally {
    pub outcomes: Mutex<HashMap<Received, usize>>,
    pub batches: AtomicU64,
    pub events_written: AtomicU64,
    pub retries: AtomicU64,
    pub unavailable: AtomicU64,
    pub dead_lettered: AtomicU64,
}

impl Tally {
    /// Events reported received with this outcome.
    pub fn received(&self, outcome: Received) -> usize {
        self.outcomes.lock().unwrap().get(&outcome).copied().unwrap_or(0)
    }
}

impl Observer for Tally {
    fn events_received(&self, outcome: Received, count: usize) {
        *self.outcomes.lock().unwrap().entry(outcome).or_default() += count;
    }
    fn batch_written(&self, events: usize, _: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events_written.fetch_add(events as u64, Ordering::Relaxed);
    }
    fn database_failed(&self, failure: DatabaseFailure) {
        if failure == DatabaseFailure::Unavailable {
            self.unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn write_retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    fn dead_lettered(&self, kept: bool) {
        if kept {
            self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn retention_ran(&self, _: &RetentionReport) {}
    fn privacy_transformed(&self, _: &str, _: u64) {}
}
