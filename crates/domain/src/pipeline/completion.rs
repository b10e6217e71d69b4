//! How a request that asked to wait (`durability = stored`) learns its events' fate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Counts down as a request's events are stored or set aside.
#[derive(Debug)]
pub struct Completion {
    remaining: AtomicUsize,
    failed: AtomicBool,
    done: Notify,
}

impl Completion {
    pub fn new(events: usize) -> Self {
        Self { remaining: AtomicUsize::new(events), failed: AtomicBool::new(false), done: Notify::new() }
    }

    /// Records one event's fate: stored, or not (dead-lettered).
    pub fn settle(&self, stored: bool) {
        if !stored {
            self.failed.store(true, Ordering::Release);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }

    /// Waits until every event is settled; true when all were stored.
    pub async fn wait(&self) -> bool {
        loop {
            let done = self.done.notified();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return !self.failed.load(Ordering::Acquire);
            }
            done.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn resolves_once_every_event_is_settled() {
        let completion = Arc::new(Completion::new(2));
        let waiter = tokio::spawn({
            let completion = completion.clone();
            async move { completion.wait().await }
        });
        completion.settle(true);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        completion.settle(true);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn reports_a_failure_among_the_events() {
        let completion = Completion::new(2);
        completion.settle(true);
        completion.settle(false);
        assert!(!completion.wait().await);
    }
}
