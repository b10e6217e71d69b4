//! Requests waiting for `durability=stored` when another process stores their events:
//! writers report what became of each event, and the reports settle the requests here.

use crate::completion::Completion;
use crate::event::{Event, EventId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Waiting requests by the id of each event they wait for.
#[derive(Debug, Default)]
pub struct StoreReports {
    waiting: Mutex<HashMap<EventId, Vec<Arc<Completion>>>>,
}

impl StoreReports {
    fn waiting(&self) -> MutexGuard<'_, HashMap<EventId, Vec<Arc<Completion>>>> {
        // Every update leaves the map whole, so a poisoned lock is usable.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `completion` for the event `id`. Called before the event leaves this
    /// process, so its report cannot arrive first.
    pub fn expect(&self, id: EventId, completion: Arc<Completion>) {
        self.waiting().entry(id).or_default().push(completion);
    }

    /// A writer's report: `stored`, or set aside as a dead letter. Every request waiting
    /// for that event learns it; a report nobody waits for (a redelivery, another
    /// replica's event) is ignored.
    pub fn report(&self, id: EventId, stored: bool) {
        let settled = self.waiting().remove(&id);
        for completion in settled.into_iter().flatten() {
            completion.settle(stored);
        }
    }

    /// Reports every event of a writer's batch: `refused` holds the positions of those
    /// set aside as dead letters.
    pub fn report_batch(&self, events: &[Event], refused: &[usize]) {
        for (index, event) in events.iter().enumerate() {
            self.report(event.id, !refused.contains(&index));
        }
    }

    /// How many events are awaited.
    pub fn len(&self) -> usize {
        self.waiting().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::tests::queued;

    #[tokio::test]
    async fn a_report_settles_every_request_waiting_for_the_event_once() {
        let reports = StoreReports::default();
        let events: Vec<Event> = queued(3).into_iter().map(|queued| queued.event).collect();
        let first = Arc::new(Completion::new(2));
        let second = Arc::new(Completion::new(1));
        reports.expect(events[0].id, first.clone());
        reports.expect(events[1].id, first.clone());
        // The same event again (a repeated idempotency key) from another request.
        reports.expect(events[0].id, second.clone());
        assert_eq!(reports.len(), 2);

        reports.report_batch(&events, &[1]);
        assert!(!first.wait().await, "one of its events was dead-lettered");
        assert!(second.wait().await);
        assert!(reports.is_empty());
        // A redelivered batch reports again: nobody waits any more, nothing breaks.
        reports.report_batch(&events, &[]);
        assert!(reports.is_empty());
    }
}
