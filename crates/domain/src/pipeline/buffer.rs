//! The bounded in-memory buffer between ingest and the batch writers.

use crate::completion::Completion;
use crate::event::Event;
use crate::observe::TraceLink;
use crate::ports::{JournalSeq, RecordRef};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    /// Accepting these events would exceed the capacity; none of them was taken.
    #[error("buffer is full ({capacity} events)")]
    Full { capacity: usize },
    /// The service is shutting down and takes no more events.
    #[error("buffer is closed")]
    Closed,
}

/// Lifetime counters, read by health and metrics.
#[derive(Debug, Default)]
pub struct BufferStats {
    pub enqueued: AtomicU64,
    /// Events refused to clients for lack of room (here or in the journal).
    pub refused: AtomicU64,
    /// Events not in the journal that writers have taken and not yet settled: lost if the
    /// process stops before they are.
    pub unjournaled_in_flight: AtomicU64,
}

/// The buffer at one moment, for health reports and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferSnapshot {
    /// Events queued, spilled ones included.
    pub events: usize,
    /// Events held in memory, what `capacity` bounds.
    pub in_memory: usize,
    /// Approximate memory the queued events hold.
    pub bytes: usize,
    pub capacity: usize,
    pub enqueued: u64,
    pub refused: u64,
    pub since_last_enqueue: Option<Duration>,
    pub since_last_drain: Option<Duration>,
}

/// An accepted event on its way to the store, with what must follow once it is stored.
#[derive(Debug)]
pub struct Queued {
    pub event: Event,
    /// Its place in the journal, acknowledged once stored; `None` when not journaled.
    pub seq: Option<JournalSeq>,
    /// Told the outcome, for a caller that waits until the event is stored.
    pub completion: Option<Arc<Completion>>,
    /// The request that brought it, for the batch span's links.
    pub origin: Option<TraceLink>,
}

impl Queued {
    pub fn new(event: Event) -> Self {
        Self { event, seq: None, completion: None, origin: None }
    }
}

/// Journaled events the buffer had no room for: only where to read them is kept in memory.
#[derive(Debug)]
pub struct Spilled {
    pub record: RecordRef,
    pub events: usize,
    pub completion: Option<Arc<Completion>>,
    pub origin: Option<TraceLink>,
}

#[derive(Debug)]
enum Entry {
    /// With its approximate size, measured once.
    Memory(Queued, usize),
    Spilled(Spilled),
}

/// What a writer takes from the buffer: events in memory and records to read back.
#[derive(Debug, Default)]
pub struct Batch {
    pub queued: Vec<Queued>,
    pub spilled: Vec<Spilled>,
}

impl Batch {
    fn add(&mut self, entry: Entry) {
        match entry {
            Entry::Memory(queued, _) => self.queued.push(queued),
            Entry::Spilled(spilled) => self.spilled.push(spilled),
        }
    }

    /// Events in the batch, spilled ones included.
    pub fn len(&self) -> usize {
        self.queued.len() + self.spilled.iter().map(|spilled| spilled.events).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.spilled.is_empty()
    }
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Events held in memory: what the capacity bounds.
    in_memory: usize,
    /// Events queued in all, spilled ones included.
    events: usize,
    /// Places promised to requests that are still being journaled.
    reserved: usize,
    /// Approximate memory held by the events in memory.
    bytes: usize,
    last_push: Option<Instant>,
    last_pop: Option<Instant>,
    closed: bool,
}

impl Queue {
    fn push(&mut self, entry: Entry) {
        match &entry {
            Entry::Memory(_, bytes) => {
                self.in_memory += 1;
                self.events += 1;
                self.bytes += bytes;
            }
            Entry::Spilled(spilled) => self.events += spilled.events,
        }
        self.entries.push_back(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        match &entry {
            Entry::Memory(_, bytes) => {
                self.in_memory -= 1;
                self.events -= 1;
                self.bytes -= bytes;
            }
            Entry::Spilled(spilled) => self.events -= spilled.events,
        }
        Some(entry)
    }
}

/// A FIFO of accepted events, bounded in events held in memory. Room is reserved before an
/// event is journaled, so a request's events are accepted together or refused together and
/// an event that reached the journal always finds its place here. When there is no room,
/// journaled events can still be queued as [`Spilled`] references, read back by the writer. Writers wait for a full
/// batch or for the linger to pass, whichever comes first.
#[derive(Debug)]
pub struct Buffer {
    queue: Mutex<Queue>,
    capacity: usize,
    batch_size: usize,
    /// Woken when the queue stops being empty, reaches a full batch, or closes: the only
    /// moments a waiting writer can act on, so single-event pushes rarely wake anyone.
    changed: Notify,
    /// Woken when writers take events out, for pushes that wait for room.
    room: Notify,
    stats: BufferStats,
}

/// Room for a number of events, held while they are journaled.
#[derive(Debug)]
pub struct Reservation<'a> {
    buffer: &'a Buffer,
    count: usize,
}

impl Reservation<'_> {
    /// Queues the events the room was reserved for.
    pub fn fill(mut self, items: Vec<Queued>) {
        debug_assert!(items.len() <= self.count, "more events than reserved");
        let count = items.len() as u64;
        // Measured before taking the lock, which writers contend for.
        let sized: Vec<Entry> = items
            .into_iter()
            .map(|item| {
                let bytes = item.event.approximate_bytes();
                Entry::Memory(item, bytes)
            })
            .collect();
        let mut queue = self.buffer.lock();
        queue.reserved -= self.count;
        self.count = 0;
        let before = queue.events;
        for entry in sized {
            queue.push(entry);
        }
        queue.last_push = Some(Instant::now());
        let after = queue.events;
        drop(queue);
        self.buffer.stats.enqueued.fetch_add(count, Ordering::Relaxed);
        self.buffer.wake_writers(before, after);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.count > 0 {
            self.buffer.lock().reserved -= self.count;
            self.buffer.room.notify_waiters();
        }
    }
}

impl Buffer {
    pub fn new(capacity: usize, batch_size: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            capacity,
            batch_size: batch_size.max(1),
            changed: Notify::new(),
            room: Notify::new(),
            stats: BufferStats::default(),
        }
    }

    /// Events queued, spilled ones included.
    pub fn len(&self) -> usize {
        self.lock().events
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> &BufferStats {
        &self.stats
    }

    pub fn snapshot(&self) -> BufferSnapshot {
        let queue = self.lock();
        let now = Instant::now();
        BufferSnapshot {
            events: queue.events,
            in_memory: queue.in_memory,
            bytes: queue.bytes,
            capacity: self.capacity,
            enqueued: self.stats.enqueued.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
            since_last_enqueue: queue.last_push.map(|at| now - at),
            since_last_drain: queue.last_pop.map(|at| now - at),
        }
    }

    /// Holds room for `count` events, or refuses when it is not there.
    pub fn reserve(&self, count: usize) -> Result<Reservation<'_>, BufferError> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(BufferError::Closed);
        }
        if queue.in_memory + queue.reserved + count > self.capacity {
            return Err(BufferError::Full { capacity: self.capacity });
        }
        queue.reserved += count;
        Ok(Reservation { buffer: self, count })
    }

    /// Queues journaled events without holding them in memory; there is always room.
    pub fn push_spilled(&self, spilled: Spilled) -> Result<(), BufferError> {
        let count = spilled.events as u64;
        let mut queue = self.lock();
        if queue.closed {
            return Err(BufferError::Closed);
        }
        let before = queue.events;
        queue.push(Entry::Spilled(spilled));
        queue.last_push = Some(Instant::now());
        let after = queue.events;
        drop(queue);
        self.stats.enqueued.fetch_add(count, Ordering::Relaxed);
        self.wake_writers(before, after);
        Ok(())
    }

    /// Wakes writers when the queue stops being empty or reaches a full batch.
    fn wake_writers(&self, before: usize, after: usize) {
        if before == 0 || (before < self.batch_size && after >= self.batch_size) {
            self.changed.notify_waiters();
        }
    }

    /// Appends every event or, when they do not all fit, none.
    pub fn push(&self, items: Vec<Queued>) -> Result<(), BufferError> {
        self.reserve(items.len())?.fill(items);
        Ok(())
    }

    /// Appends the events once there is room for them, waiting for writers to make it.
    /// Used to replay the journal, whose backlog may exceed the capacity.
    pub async fn push_when_room(&self, items: Vec<Queued>) -> Result<(), BufferError> {
        let count = items.len().min(self.capacity);
        let mut items = items;
        while !items.is_empty() {
            let chunk: Vec<Queued> = items.drain(..count.min(items.len())).collect();
            loop {
                let room = self.room.notified();
                match self.reserve(chunk.len()) {
                    Ok(reservation) => {
                        reservation.fill(chunk);
                        break;
                    }
                    Err(BufferError::Full { .. }) => room.await,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// A writer is done with `events` events of a batch that were not journaled.
    pub fn settle_unjournaled(&self, events: usize) {
        self.stats.unjournaled_in_flight.fetch_sub(events as u64, Ordering::Relaxed);
    }

    /// Empties the buffer, for a shutdown that can wait no longer.
    pub fn take_all(&self) -> Batch {
        let mut queue = self.lock();
        let mut batch = Batch::default();
        while let Some(entry) = queue.pop() {
            batch.add(entry);
        }
        batch
    }

    /// Refuses further pushes; writers drain what is left without lingering.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Waits for events, then for a full batch or `linger`, and takes up to one batch.
    /// Returns an empty batch only once the buffer is closed and drained: a writer that
    /// lost the race for a small batch to another writer goes back to waiting.
    pub async fn next_batch(&self, linger: Duration) -> Batch {
        loop {
            self.wait_until(|queue| queue.events > 0 || queue.closed).await;
            let deadline = Instant::now() + linger;
            let _ =
                timeout_at(deadline, self.wait_until(|queue| queue.events >= self.batch_size || queue.closed)).await;
            let mut queue = self.lock();
            let mut batch = Batch::default();
            while batch.len() < self.batch_size
                && let Some(entry) = queue.pop()
            {
                batch.add(entry);
            }
            if !batch.is_empty() || queue.closed {
                queue.last_pop = Some(Instant::now());
                // Counted while the lock is held, so no moment exists where such an event
                // is neither in the queue nor counted.
                let unjournaled = batch.queued.iter().filter(|queued| queued.seq.is_none()).count();
                self.stats.unjournaled_in_flight.fetch_add(unjournaled as u64, Ordering::Relaxed);
                drop(queue);
                self.room.notify_waiters();
                return batch;
            }
        }
    }

    async fn wait_until(&self, ready: impl Fn(&Queue) -> bool) {
        loop {
            // Registered before the check, so a change between the check and the await
            // still wakes this waiter.
            let changed = self.changed.notified();
            if ready(&self.lock()) {
                return;
            }
            changed.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue itself consistent (every
        // mutation is a single VecDeque call), so a poisoned lock is safe to reuse.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::EventId;
    use chrono::Utc;

    pub(crate) fn events(count: usize) -> Vec<Event> {
        (0..count)
            .map(|i| Event {
                id: EventId::generate(),
                timestamp: Utc::now(),
                service: "svc".into(),
                message: format!("message {i}"),
                metadata: None,
                ingested_at: Utc::now(),
            })
            .collect()
    }

    pub(crate) fn queued(count: usize) -> Vec<Queued> {
        events(count).into_iter().map(Queued::new).collect()
    }

    fn ids(batch: &[Queued]) -> Vec<crate::EventId> {
        batch.iter().map(|queued| queued.event.id).collect()
    }

    #[test]
    fn a_push_that_does_not_fit_is_refused_whole() {
        let buffer = Buffer::new(10, 5);
        buffer.push(queued(8)).unwrap();
        assert_eq!(buffer.push(queued(3)), Err(BufferError::Full { capacity: 10 }));
        assert_eq!(buffer.len(), 8);
        buffer.push(queued(2)).unwrap();
        assert_eq!(buffer.len(), 10);
        assert_eq!(buffer.stats().enqueued.load(Ordering::Relaxed), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_taken_without_waiting_for_the_linger() {
        let buffer = Buffer::new(100, 5);
        let sent = queued(7);
        let sent_ids = ids(&sent);
        buffer.push(sent).unwrap();
        let start = Instant::now();
        let batch = buffer.next_batch(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(ids(&batch.queued), sent_ids[..5]);
        assert_eq!(buffer.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_is_taken_when_the_linger_passes() {
        let buffer = Buffer::new(100, 5);
        buffer.push(queued(3)).unwrap();
        let start = Instant::now();
        let batch = buffer.next_batch(Duration::from_millis(250)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(batch.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_writer_wakes_when_the_batch_fills() {
        let buffer = std::sync::Arc::new(Buffer::new(100, 5));
        buffer.push(queued(2)).unwrap();
        let writer = tokio::spawn({
            let buffer = buffer.clone();
            async move { buffer.next_batch(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        buffer.push(queued(3)).unwrap();
        let batch = writer.await.unwrap();
        assert_eq!(batch.len(), 5);
        assert!(start.elapsed() < Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_that_loses_the_race_for_a_batch_keeps_waiting() {
        let buffer = std::sync::Arc::new(Buffer::new(100, 5));
        let linger = Duration::from_millis(10);
        let spawn_writer = || {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.next_batch(linger).await })
        };
        let (first, second) = (spawn_writer(), spawn_writer());
        tokio::task::yield_now().await;
        buffer.push(queued(3)).unwrap();
        tokio::time::sleep(linger * 2).await;
        let (winner, loser) = if first.is_finished() { (first, second) } else { (second, first) };
        assert_eq!(winner.await.unwrap().len(), 3);
        assert!(!loser.is_finished(), "the other writer must not see an empty batch as the end");
        buffer.push(queued(1)).unwrap();
        assert_eq!(loser.await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn spilled_events_queue_beyond_the_capacity_and_count_toward_batches() {
        let buffer = Buffer::new(2, 5);
        buffer.push(queued(2)).unwrap();
        assert!(buffer.reserve(1).is_err(), "memory is full");
        let record = RecordRef { segment: 0, offset: 0 };
        buffer.push_spilled(Spilled { record, events: 4, completion: None, origin: None }).unwrap();
        assert_eq!(buffer.len(), 6);
        let batch = buffer.next_batch(Duration::from_secs(60)).await;
        assert_eq!((batch.queued.len(), batch.spilled.len(), batch.len()), (2, 1, 6));
        assert!(buffer.reserve(2).is_ok(), "taking the batch freed the memory");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_drains_without_lingering_then_ends() {
        let buffer = Buffer::new(100, 5);
        buffer.push(queued(2)).unwrap();
        buffer.close();
        assert_eq!(buffer.push(queued(1)), Err(BufferError::Closed));
        let start = Instant::now();
        assert_eq!(buffer.next_batch(Duration::from_secs(60)).await.len(), 2);
        assert!(buffer.next_batch(Duration::from_secs(60)).await.is_empty());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_counts_memory_and_times_since_the_last_push_and_drain() {
        let buffer = Buffer::new(10, 2);
        let empty = buffer.snapshot();
        assert_eq!((empty.bytes, empty.since_last_enqueue, empty.since_last_drain), (0, None, None));
        let items = queued(2);
        let expected_bytes: usize = items.iter().map(|queued| queued.event.approximate_bytes()).sum();
        buffer.push(items).unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        let full = buffer.snapshot();
        assert_eq!((full.events, full.in_memory, full.bytes), (2, 2, expected_bytes));
        assert_eq!(full.since_last_enqueue, Some(Duration::from_secs(3)));
        assert!(full.since_last_drain.is_none());

        buffer.next_batch(Duration::ZERO).await;
        let drained = buffer.snapshot();
        assert_eq!((drained.events, drained.bytes), (0, 0));
        assert_eq!(drained.since_last_drain, Some(Duration::ZERO));
    }
}
