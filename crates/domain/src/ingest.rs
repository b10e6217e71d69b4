//! The ingest use case: validate each event, enrich the valid ones, make them as durable
//! as asked, and hand them to the buffer.

use crate::buffer::{Buffer, BufferError, Queued, Spilled};
use crate::completion::Completion;
use crate::event::{Event, EventId};
use crate::markup::Markup;
use crate::observe::{Observer, Received, TraceLink};
use crate::ports::{Clock, Journal, JournalError, JournalSeq};
use crate::privacy::{Privacy, PrivacyTally};
use crate::validation::{FieldError, Incoming, Limits, validate_event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// What `202` promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In memory: lost if the process dies before the batch is written.
    None,
    /// On disk in the journal (fsync'd): survives a crash, replayed at start-up.
    #[default]
    Journal,
    /// Committed in the event store.
    Stored,
}

/// An element of a request that failed validation, by its position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

/// What happened to a request whose valid events were accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReceipt {
    /// Ids of the accepted events, in request order, repeats included.
    pub accepted: Vec<EventId>,
    /// How many of them repeated an idempotency key seen recently and were not queued again.
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
    pub ingested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("the request holds no event")]
    Empty,
    #[error("no event in the request is valid")]
    Invalid(Vec<Rejection>),
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `durability = stored` was asked and the store refused an event's data; it is in
    /// the dead-letter queue.
    #[error("an event was refused by the store and dead-lettered")]
    NotStored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    pub limits: Limits,
    pub markup: Markup,
    /// How long a client idempotency key is remembered in memory.
    pub recent_keys_ttl: Duration,
    pub recent_keys_capacity: u64,
    /// How far ahead of the clock a timestamp may be.
    pub max_future: Duration,
    /// How far behind, if bounded.
    pub max_past: Option<Duration>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            markup: Markup::default(),
            recent_keys_ttl: Duration::from_secs(600),
            recent_keys_capacity: 100_000,
            max_future: Duration::from_secs(600),
            max_past: None,
        }
    }
}

#[derive(Debug)]
pub struct IngestService {
    buffer: Arc<Buffer>,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    limits: Limits,
    markup: Markup,
    privacy: Arc<Privacy>,
    max_future: chrono::Duration,
    max_past: Option<chrono::Duration>,
    /// Recent (id, timestamp) pairs of keyed events: repeats are answered without
    /// journaling again. The store's key on (timestamp, id) catches older repeats.
    recent_keys: moka::sync::Cache<(EventId, DateTime<Utc>), ()>,
}

impl IngestService {
    pub fn new(
        buffer: Arc<Buffer>,
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn Observer>,
        settings: IngestSettings,
    ) -> Self {
        let recent_keys = moka::sync::Cache::builder()
            .max_capacity(settings.recent_keys_capacity)
            .time_to_live(settings.recent_keys_ttl)
            .build();
        // Beyond chrono's range is no bound at all.
        let span = |duration: Duration| chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Self {
            buffer,
            journal,
            clock,
            observer,
            limits: settings.limits,
            markup: settings.markup,
            privacy: Arc::new(Privacy::default()),
            max_future: span(settings.max_future),
            max_past: settings.max_past.map(span),
            recent_keys,
        }
    }

    /// Applies `privacy`'s rules to every event after validation, before the journal.
    pub fn with_privacy(mut self, privacy: Arc<Privacy>) -> Self {
        self.privacy = privacy;
        self
    }

    /// The privacy rules: queries give the values they compare with stored data their stored form.
    pub fn privacy(&self) -> &Arc<Privacy> {
        &self.privacy
    }

    /// What ingest does to markup; queries apply it to the text they compare with stored text.
    pub fn markup(&self) -> Markup {
        self.markup
    }

    /// Accepts the valid events of a request all together, or none when there is no room.
    /// Invalid elements are reported by index and never block the others; an element the
    /// adapter could not even decode arrives as its error. Returns once the events are as
    /// durable as `durability` asks. `origin` is the request's trace span, if sampled.
    pub async fn ingest(
        &self,
        elements: Vec<Result<Incoming, FieldError>>,
        durability: Durability,
        origin: Option<TraceLink>,
    ) -> Result<IngestReceipt, IngestError> {
        if elements.is_empty() {
            return Err(IngestError::Empty);
        }
        let ingested_at = self.clock.now();
        let mut fresh = Vec::with_capacity(elements.len());
        let mut accepted = Vec::with_capacity(elements.len());
        let mut rejected = Vec::new();
        let mut keys_seen = HashSet::new();
        let mut out_of_window = 0;
        let mut transformed = PrivacyTally::default();
        for (index, element) in elements.into_iter().enumerate() {
            let draft = element
                .map_err(|error| vec![error])
                .and_then(|incoming| validate_event(incoming, &self.limits))
                .and_then(|draft| {
                    self.within_window(&draft, ingested_at).inspect_err(|_| out_of_window += 1).map(|()| draft)
                })
                .and_then(|draft| self.markup.apply(draft))
                .map(|mut draft| {
                    // Limits were checked on what was sent; from here on the raw value is gone.
                    self.privacy.apply(&mut draft, &mut transformed);
                    draft
                });
            match draft {
                Ok(draft) => {
                    let keyed = draft.idempotency_key.is_some();
                    let event = draft.enrich_with_own_id(ingested_at);
                    accepted.push(event.id);
                    let key = (event.id, event.timestamp);
                    // A repeat that asks to wait for the store goes through the pipeline
                    // again (stored once, by its id) so it reports the event's real fate.
                    let recent = durability != Durability::Stored && self.recent_keys.contains_key(&key);
                    if !keyed || (keys_seen.insert(key) && !recent) {
                        fresh.push(event);
                    }
                }
                Err(errors) => rejected.push(Rejection { index, errors }),
            }
        }
        for (rule, count) in self.privacy.record(transformed) {
            self.observer.privacy_transformed(&rule, count);
        }
        if rejected.len() > out_of_window {
            self.observer.events_received(Received::Rejected, rejected.len() - out_of_window);
        }
        if out_of_window > 0 {
            self.observer.events_received(Received::OutOfWindow, out_of_window);
        }
        if accepted.is_empty() {
            return Err(IngestError::Invalid(rejected));
        }
        let duplicates = accepted.len() - fresh.len();
        if duplicates > 0 {
            self.observer.events_received(Received::Duplicate, duplicates);
        }
        if !fresh.is_empty() {
            let completion = self.enqueue(fresh, durability, origin).await?;
            // Only keyed events can repeat; remembering the others would cost for nothing.
            for key in keys_seen {
                self.recent_keys.insert(key, ());
            }
            if let Some(completion) = completion
                && !completion.wait().await
            {
                return Err(IngestError::NotStored);
            }
        }
        Ok(IngestReceipt { accepted, duplicates, rejected, ingested_at })
    }

    /// Refuses a timestamp too far from the server's clock, naming the bound.
    fn within_window(&self, draft: &crate::event::EventDraft, now: DateTime<Utc>) -> Result<(), Vec<FieldError>> {
        let ahead = draft.timestamp.signed_duration_since(now);
        if ahead > self.max_future {
            let seconds = self.max_future.num_seconds();
            return Err(vec![FieldError::new(
                "timestamp",
                "maxFuture",
                format!(
                    "timestamp must not be more than {seconds} s ahead of the server's clock (ingest.max_future_secs)"
                ),
            )]);
        }
        match self.max_past {
            Some(max_past) if -ahead > max_past => Err(vec![FieldError::new(
                "timestamp",
                "maxPast",
                format!(
                    "timestamp must not be more than {} s behind the server's clock (ingest.max_past_secs)",
                    max_past.num_seconds()
                ),
            )]),
            _ => Ok(()),
        }
    }

    /// Re-enqueues an event that already has its identity (a dead letter being reprocessed).
    pub async fn requeue(&self, event: Event) -> Result<(), IngestError> {
        self.enqueue(vec![event], Durability::Journal, None).await.map(|_| ())
    }

    /// Journals the events (unless `durability` is `none`) and queues them: in memory when
    /// there is room, otherwise as a reference to the journal, so ingest goes on accepting
    /// while writers are paused, until the journal itself is full.
    async fn enqueue(
        &self,
        events: Vec<Event>,
        durability: Durability,
        origin: Option<TraceLink>,
    ) -> Result<Option<Arc<Completion>>, IngestError> {
        let count = events.len();
        let result = self.enqueue_or_refuse(events, durability, origin).await;
        match &result {
            Ok(_) => self.observer.events_received(Received::Accepted, count),
            Err(IngestError::Buffer(BufferError::Full { .. }) | IngestError::Journal(JournalError::Full { .. })) => {
                self.buffer.stats().refused.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                self.observer.events_received(Received::RateLimited, count);
            }
            Err(_) => {}
        }
        result
    }

    async fn enqueue_or_refuse(
        &self,
        events: Vec<Event>,
        durability: Durability,
        origin: Option<TraceLink>,
    ) -> Result<Option<Arc<Completion>>, IngestError> {
        if durability == Durability::None {
            self.buffer.reserve(events.len())?.fill(queued(events, None, None, origin));
            return Ok(None);
        }
        // A full buffer does not refuse a journaled request: it waits in the journal.
        let reservation = match self.buffer.reserve(events.len()) {
            Ok(reservation) => Some(reservation),
            Err(BufferError::Full { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let appended = self.journal.append(&events).await?;
        let completion = (durability == Durability::Stored).then(|| Arc::new(Completion::new(events.len())));
        match reservation {
            Some(reservation) => reservation.fill(queued(events, Some(appended.first), completion.clone(), origin)),
            None => {
                let spilled =
                    Spilled { record: appended.record, events: events.len(), completion: completion.clone(), origin };
                self.buffer.push_spilled(spilled)?;
            }
        }
        Ok(completion)
    }
}

/// Events as the buffer holds them; journaled ones at consecutive positions from `first`.
fn queued(
    events: Vec<Event>,
    first: Option<JournalSeq>,
    completion: Option<Arc<Completion>>,
    origin: Option<TraceLink>,
) -> Vec<Queued> {
    events
        .into_iter()
        .enumerate()
        .map(|(offset, event)| Queued {
            event,
            seq: first.map(|first| JournalSeq(first.0 + offset as u64)),
            completion: completion.clone(),
            origin,
        })
        .collect()
}

impl crate::event::EventDraft {
    fn enrich_with_own_id(self, ingested_at: DateTime<Utc>) -> Event {
        let id = self.id();
        self.enrich(id, ingested_at)
    }
}

/// Feeds every event the journal still holds back into the buffer, waiting for room as
/// writers drain it. Returns how many were replayed.
pub async fn replay_journal(journal: &dyn Journal, buffer: &Buffer) -> Result<u64, IngestError> {
    let mut replayed = 0;
    while let Some(entries) = journal.next_unacknowledged()? {
        replayed += entries.len() as u64;
        let queued = entries
            .into_iter()
            .map(|(seq, event)| Queued { event, seq: Some(seq), completion: None, origin: None })
            .collect();
        buffer.push_when_room(queued).await?;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FixedClock, MemoryJournal, Tally};
    use chrono::TimeZone;
    use serde_json::json;

    struct Setup {
        ingest: IngestService,
        buffer: Arc<Buffer>,
        journal: Arc<MemoryJournal>,
        outcomes: Arc<Tally>,
        now: DateTime<Utc>,
    }

    fn setup_with(capacity: usize, journal: MemoryJournal) -> Setup {
        let now = Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 1).unwrap();
        let buffer = Arc::new(Buffer::new(capacity, 100));
        let journal = Arc::new(journal);
        let outcomes = Arc::new(Tally::default());
        let ingest = IngestService::new(
            buffer.clone(),
            journal.clone(),
            Arc::new(FixedClock(now)),
            outcomes.clone(),
            IngestSettings::default(),
        );
        Setup { ingest, buffer, journal, outcomes, now }
    }

    fn setup(capacity: usize) -> Setup {
        setup_with(capacity, MemoryJournal::default())
    }

    fn event(message: &str) -> Result<Incoming, FieldError> {
        Ok(json!({"timestamp": "2024-01-15T10:30:00Z", "service": "svc", "message": message}).into())
    }

    fn keyed(key: &str) -> Result<Incoming, FieldError> {
        Ok(json!({"timestamp": "2024-01-15T10:30:00Z", "service": "svc", "message": "m", "idempotencyKey": key}).into())
    }

    async fn drain(buffer: &Buffer) -> crate::buffer::Batch {
        buffer.close();
        buffer.next_batch(Duration::ZERO).await
    }

    #[tokio::test]
    async fn accepts_valid_elements_and_reports_invalid_ones_by_index() {
        let setup = setup(10);
        let receipt = setup
            .ingest
            .ingest(vec![event("a"), Ok(json!({"service": "svc"}).into()), event("c")], Durability::Journal, None)
            .await;
        let receipt = receipt.unwrap();
        assert_eq!(receipt.accepted.len(), 2);
        assert_eq!(receipt.ingested_at, setup.now);
        assert_eq!(receipt.rejected.len(), 1);
        assert_eq!(receipt.rejected[0].index, 1);
        assert_eq!(setup.buffer.len(), 2);
    }

    #[tokio::test]
    async fn journaled_events_carry_consecutive_positions_and_unjournaled_ones_none() {
        let setup = setup(10);
        setup.ingest.ingest(vec![event("a"), event("b")], Durability::Journal, None).await.unwrap();
        setup.ingest.ingest(vec![event("c")], Durability::None, None).await.unwrap();
        assert_eq!(setup.journal.appended.lock().unwrap().len(), 2, "durability none skips the journal");
        let seqs: Vec<_> = drain(&setup.buffer).await.queued.iter().map(|queued| queued.seq).collect();
        assert_eq!(seqs, [Some(JournalSeq(0)), Some(JournalSeq(1)), None]);
    }

    #[tokio::test]
    async fn enriches_with_distinct_time_ordered_ids() {
        let setup = setup(10);
        let ids = setup
            .ingest
            .ingest(vec![event("a"), event("b"), event("c")], Durability::None, None)
            .await
            .unwrap()
            .accepted;
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_gets_the_same_id_and_is_queued_once() {
        let setup = setup(10);
        let first =
            setup.ingest.ingest(vec![keyed("order-1"), keyed("order-1")], Durability::Journal, None).await.unwrap();
        assert_eq!(first.accepted[0], first.accepted[1]);
        assert_eq!(first.duplicates, 1);
        let again =
            setup.ingest.ingest(vec![keyed("order-1"), keyed("order-2")], Durability::Journal, None).await.unwrap();
        assert_eq!(again.accepted[0], first.accepted[0]);
        assert_eq!(again.duplicates, 1);
        assert_eq!(setup.buffer.len(), 2, "order-1 once, order-2 once");
        assert_eq!(setup.journal.appended.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_repeat_that_waits_for_the_store_is_queued_again_to_learn_the_outcome() {
        let setup = setup(10);
        setup.ingest.ingest(vec![keyed("order-1")], Durability::Journal, None).await.unwrap();
        let ingest = setup.ingest.ingest(vec![keyed("order-1")], Durability::Stored, None);
        let (receipt, batch) = tokio::join!(ingest, async {
            let batch = drain(&setup.buffer).await;
            for queued in &batch.queued {
                if let Some(completion) = &queued.completion {
                    completion.settle(false);
                }
            }
            batch
        });
        assert_eq!(batch.queued.len(), 2, "the original and the repeat");
        assert_eq!(batch.queued[0].event.id, batch.queued[1].event.id);
        assert_eq!(receipt.unwrap_err(), IngestError::NotStored, "the repeat reports the event's fate");
    }

    #[tokio::test]
    async fn timestamps_beyond_the_window_are_refused_per_element_and_counted() {
        let setup = setup(10);
        let at = |timestamp: &str| Ok(json!({"timestamp": timestamp, "service": "svc", "message": "m"}).into());
        // The clock reads 10:30:01; ten minutes ahead is the last accepted instant.
        let receipt = setup
            .ingest
            .ingest(
                vec![at("2024-01-15T10:40:01Z"), at("2024-01-15T10:40:01.000001Z"), at("2099-06-01T00:00:00Z")],
                Durability::None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(receipt.accepted.len(), 1);
        let refused: Vec<(usize, &str)> = receipt
            .rejected
            .iter()
            .map(|rejection| (rejection.index, rejection.errors[0].constraints.keys().next().copied().unwrap_or("")))
            .collect();
        assert_eq!(refused, [(1, "maxFuture"), (2, "maxFuture")]);
        assert_eq!(setup.outcomes.received(Received::OutOfWindow), 2);
        assert_eq!(setup.outcomes.received(Received::Rejected), 0);

        let bounded = IngestService::new(
            setup.buffer.clone(),
            setup.journal.clone(),
            Arc::new(FixedClock(setup.now)),
            setup.outcomes.clone(),
            IngestSettings { max_past: Some(Duration::from_secs(3600)), ..IngestSettings::default() },
        );
        let old = bounded.ingest(vec![at("2024-01-15T09:30:00Z")], Durability::None, None).await.unwrap_err();
        assert!(
            matches!(old, IngestError::Invalid(rejections) if rejections[0].errors[0].constraints.contains_key("maxPast"))
        );
    }

    #[tokio::test]
    async fn a_request_with_nothing_valid_is_an_error() {
        let setup = setup(10);
        let unreadable = FieldError::new("event", "isJson", "line 1 is not JSON");
        let result = setup.ingest.ingest(
            vec![Ok(json!(1).into()), Ok(json!({}).into()), Err(unreadable.clone())],
            Durability::Journal,
            None,
        );
        let Err(IngestError::Invalid(rejected)) = result.await else {
            panic!("expected every element to be rejected");
        };
        assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rejected[2].errors, [unreadable]);
        assert!(setup.buffer.is_empty());
        assert_eq!(setup.ingest.ingest(vec![], Durability::Journal, None).await, Err(IngestError::Empty));
    }

    #[tokio::test]
    async fn without_the_journal_a_full_buffer_refuses_the_whole_request() {
        let setup = setup(2);
        let result = setup.ingest.ingest(vec![event("a"), event("b"), event("c")], Durability::None, None).await;
        assert_eq!(result, Err(IngestError::Buffer(BufferError::Full { capacity: 2 })));
        assert!(setup.buffer.is_empty());
        assert!(setup.journal.appended.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn journaled_events_spill_to_the_journal_when_memory_is_full() {
        let setup = setup(1);
        setup.ingest.ingest(vec![event("in memory")], Durability::Journal, None).await.unwrap();
        setup.ingest.ingest(vec![event("on disk")], Durability::Journal, None).await.unwrap();
        assert_eq!(setup.buffer.len(), 2);
        let batch = drain(&setup.buffer).await;
        assert_eq!(batch.queued.len(), 1);
        assert_eq!(batch.spilled.len(), 1);
        let read_back = setup.journal.read(batch.spilled[0].record).await.unwrap();
        assert_eq!(read_back[0].1.message, "on disk");
    }

    #[tokio::test]
    async fn a_full_journal_refuses_and_releases_the_reserved_room() {
        let setup = setup_with(2, MemoryJournal { full: true, ..MemoryJournal::default() });
        let result = setup.ingest.ingest(vec![event("a"), event("b")], Durability::Journal, None).await;
        assert_eq!(result, Err(IngestError::Journal(JournalError::Full { limit_bytes: 10 })));
        assert!(setup.buffer.reserve(2).is_ok(), "the room held for the refused request is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn replay_feeds_the_journal_back_waiting_for_room() {
        let setup = setup(2);
        let batch = |first: u64| -> Vec<(JournalSeq, Event)> {
            crate::buffer::tests::events(2)
                .into_iter()
                .enumerate()
                .map(|(i, e)| (JournalSeq(first + i as u64), e))
                .collect()
        };
        setup.journal.replay.lock().unwrap().extend([batch(2), batch(0)]);
        let buffer = setup.buffer.clone();
        let replay = tokio::spawn({
            let journal = setup.journal.clone();
            async move { replay_journal(journal.as_ref(), &buffer).await }
        });
        let first = setup.buffer.next_batch(Duration::from_millis(1)).await;
        let second = setup.buffer.next_batch(Duration::from_millis(1)).await;
        assert_eq!(replay.await.unwrap(), Ok(4));
        let seqs: Vec<_> = first.queued.iter().chain(&second.queued).map(|queued| queued.seq.unwrap().0).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn every_event_is_reported_under_one_outcome() {
        let setup = setup(3);
        let origin = TraceLink { trace_id: [7; 16], span_id: [9; 8] };
        let elements = vec![event("a"), Ok(json!({"service": "svc"}).into()), keyed("k"), keyed("k")];
        setup.ingest.ingest(elements, Durability::Journal, Some(origin)).await.unwrap();
        assert_eq!(setup.outcomes.received(Received::Accepted), 2);
        assert_eq!(setup.outcomes.received(Received::Rejected), 1);
        assert_eq!(setup.outcomes.received(Received::Duplicate), 1);

        let refused = setup.ingest.ingest(vec![event("b"), event("c")], Durability::None, None).await;
        assert!(refused.is_err());
        assert_eq!(setup.outcomes.received(Received::RateLimited), 2);
        assert_eq!(setup.outcomes.received(Received::Accepted), 2);
        let buffer = setup.buffer.snapshot();
        assert_eq!((buffer.enqueued, buffer.refused), (2, 2));
        let queued = drain(&setup.buffer).await.queued;
        assert!(
            queued.iter().all(|queued| queued.origin == Some(origin)),
            "the request's span travels with its events"
        );
    }
}
