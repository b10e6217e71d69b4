//! The batch source of a single process: the buffer, with the journal behind it for the
//! events that did not fit in memory and for the acknowledgements once they are stored.

use crate::buffer::{Batch, Buffer, Queued};
use crate::completion::Completion;
use crate::observe::TraceLink;
use crate::ports::{BatchSource, Journal, JournalSeq, Taken};
use crate::reports::StoreReports;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A batch span links to at most this many requests (OpenTelemetry's default limit).
const MAX_SPAN_LINKS: usize = 128;

#[derive(Debug, Clone)]
pub struct LocalQueue {
    buffer: Arc<Buffer>,
    journal: Arc<dyn Journal>,
    /// Set when the writers forward events to a shared queue rather than store them:
    /// waiting requests then learn their events' fate from the storing process's reports.
    forwarded: Option<Arc<StoreReports>>,
}

/// What a local batch settles: the journaled events' positions, each event's waiting caller, and how
/// many of its events were never journaled (they count against a drain until settled).
#[derive(Debug)]
pub struct LocalReceipt {
    seqs: Vec<JournalSeq>,
    completions: Vec<Option<Arc<Completion>>>,
    unjournaled: usize,
}

impl LocalQueue {
    pub fn new(buffer: Arc<Buffer>, journal: Arc<dyn Journal>) -> Self {
        Self { buffer, journal, forwarded: None }
    }

    /// A queue whose writers forward each batch to a shared queue: settling acknowledges
    /// the journal (the shared queue holds the events now), and requests waiting for
    /// `durability=stored` wait on in `reports` for the storing process's word.
    pub fn forwarding(buffer: Arc<Buffer>, journal: Arc<dyn Journal>, reports: Arc<StoreReports>) -> Self {
        Self { buffer, journal, forwarded: Some(reports) }
    }

    /// Brings spilled events back from the journal. A record that cannot be read stays
    /// unacknowledged in the journal and is replayed at the next start.
    async fn read_spilled(&self, batch: Batch) -> Vec<Queued> {
        let mut queued = batch.queued;
        for spilled in batch.spilled {
            match self.journal.read(spilled.record).await {
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
}

#[async_trait]
impl BatchSource for LocalQueue {
    type Receipt = LocalReceipt;

    async fn next_batch(&self, linger: Duration) -> Option<Taken<LocalReceipt>> {
        let batch = self.buffer.next_batch(linger).await;
        if batch.is_empty() {
            return None;
        }
        let origins = origins(&batch);
        let unjournaled = batch.queued.iter().filter(|queued| queued.seq.is_none()).count();
        let queued = self.read_spilled(batch).await;
        let mut receipt = LocalReceipt {
            seqs: Vec::with_capacity(queued.len()),
            completions: Vec::with_capacity(queued.len()),
            unjournaled,
        };
        let events = queued
            .into_iter()
            .map(|queued| {
                receipt.seqs.extend(queued.seq);
                // Registered before the batch leaves, so the report cannot come first.
                if let (Some(reports), Some(completion)) = (&self.forwarded, &queued.completion) {
                    reports.expect(queued.event.id, completion.clone());
                }
                receipt.completions.push(queued.completion);
                queued.event
            })
            .collect();
        Some(Taken { events, origins, receipt })
    }

    /// Acknowledges every event in the journal, stored (or forwarded) or dead-lettered,
    /// then tells waiting requests how theirs fared; a forwarded event's request hears
    /// from its writer's report instead.
    fn settle(&self, receipt: LocalReceipt, stored: &[bool]) {
        self.journal.acknowledge(&receipt.seqs);
        for (completion, stored) in receipt.completions.iter().zip(stored) {
            match (completion, &self.forwarded) {
                (Some(_), Some(_)) if *stored => {}
                (Some(completion), _) => completion.settle(*stored),
                (None, _) => {}
            }
        }
        self.buffer.settle_unjournaled(receipt.unjournaled);
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
    use crate::buffer::tests::queued;
    use crate::completion::Completion;

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

    #[tokio::test]
    async fn a_forwarded_batch_leaves_the_journal_but_its_requests_wait_for_the_report() {
        let journal = Arc::new(crate::testing::MemoryJournal::default());
        let buffer = Arc::new(Buffer::new(100, 10));
        let reports = Arc::new(StoreReports::default());
        let queue = LocalQueue::forwarding(buffer.clone(), journal.clone(), reports.clone());
        let completion = Arc::new(Completion::new(3));
        let mut items = queued(3);
        for (seq, item) in items.iter_mut().enumerate() {
            item.seq = Some(JournalSeq(seq as u64));
            item.completion = Some(completion.clone());
        }
        buffer.push(items).unwrap();
        let taken = queue.next_batch(Duration::ZERO).await.unwrap();
        assert_eq!(reports.len(), 3, "registered when taken, before the batch is published");
        let events = taken.events.clone();
        queue.settle(taken.receipt, &[true, true, true]);
        assert_eq!(journal.acknowledged.lock().unwrap().len(), 3, "the shared queue holds them now");
        let waiting = tokio::spawn({
            let completion = completion.clone();
            async move { completion.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "published is not stored");
        reports.report_batch(&events, &[]);
        assert!(waiting.await.unwrap());
    }
}
