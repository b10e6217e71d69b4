//! The batch source of a single process: the buffer, with the journal behind it for the
//! events that did not fit in memory and for the acknowledgements once they are stored.

use crate::buffer::{Batch, Buffer, Queued};
use crate::completion::Completion;
use crate::observe::TraceLink;
use crate::ports::{BatchSource, Journal, JournalSeq, Taken};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A batch span links to at most this many requests (OpenTelemetry's default limit).
const MAX_SPAN_LINKS: usize = 128;

#[derive(Debug, Clone)]
pub struct LocalQueue {
    buffer: Arc<Buffer>,
    journal: Arc<dyn Journal>,
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
        Self { buffer, journal }
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
                receipt.completions.push(queued.completion);
                queued.event
            })
            .collect();
        Some(Taken { events, origins, receipt })
    }

    /// Acknowledges every event in the journal, stored or dead-lettered, then tells
    /// waiting requests how theirs fared.
    fn settle(&self, receipt: LocalReceipt, stored: &[bool]) {
        self.journal.acknowledge(&receipt.seqs);
        for (completion, stored) in receipt.completions.iter().zip(stored) {
            if let Some(completion) = completion {
                completion.settle(*stored);
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
