//! Live tail: stored events fanned out to subscribers. Each subscriber has a bounded queue;
//! one that falls behind loses its oldest events and learns how many, and never slows the
//! writers (publishing never waits).

use crate::event::Event;
use crate::filter::Filter;
use crate::query::{MetadataFilter, spells, value_at};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{broadcast, watch};

#[derive(Debug)]
pub struct Tail {
    sender: broadcast::Sender<Arc<Event>>,
    /// Set at shutdown: every subscription ends, so open streams do not hold it up.
    closed: watch::Sender<bool>,
    max_subscribers: usize,
    subscribers: Arc<AtomicUsize>,
}

/// Every subscriber's place is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{limit} live-tail subscribers already")]
pub struct TailFull {
    pub limit: usize,
}

/// A subscriber's place, given back when its subscription ends.
#[derive(Debug)]
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a subscriber receives next.
#[derive(Debug, Clone, PartialEq)]
pub enum Tailed {
    Event(Arc<Event>),
    /// The subscriber fell behind and this many events were dropped for it.
    Missed(u64),
}

/// One subscriber's queue and what it wants.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
    closed: watch::Receiver<bool>,
    filter: TailFilter,
    _place: Place,
}

/// Which events a subscriber wants: one service, optionally narrowed like a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TailFilter {
    pub service: Option<String>,
    pub metadata: Vec<MetadataFilter>,
    /// `q=`, as for a query.
    pub filter: Option<Filter>,
}

impl TailFilter {
    pub fn matches(&self, event: &Event) -> bool {
        self.service.as_ref().is_none_or(|service| *service == event.service)
            && self.metadata.iter().all(|filter| filter.matches(event.metadata.as_ref()))
            && self.filter.as_ref().is_none_or(|filter| filter.matches(event))
    }
}

impl MetadataFilter {
    /// The same test as the store's containment (or its negation), on one event.
    pub fn matches(&self, metadata: Option<&Value>) -> bool {
        let contained = value_at(metadata, &self.path).is_some_and(|found| spells(found, &self.value));
        contained != self.excluded
    }
}

impl Tail {
    /// `capacity` bounds each subscriber's queue; at most `max_subscribers` at once.
    pub fn new(capacity: usize, max_subscribers: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
            closed: watch::channel(false).0,
            max_subscribers,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn subscribe(&self, filter: TailFilter) -> Result<Subscription, TailFull> {
        let place = Place(self.subscribers.clone());
        if self.subscribers.fetch_add(1, Ordering::AcqRel) >= self.max_subscribers {
            return Err(TailFull { limit: self.max_subscribers });
        }
        Ok(Subscription { receiver: self.sender.subscribe(), closed: self.closed.subscribe(), filter, _place: place })
    }

    /// Ends every subscription, now and to come.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Offers stored events to every subscriber; free when nobody listens.
    pub fn publish(&self, events: &[&Event]) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for event in events {
            // An error only means the last subscriber just left.
            let _ = self.sender.send(Arc::new((*event).clone()));
        }
    }
}

impl Subscription {
    /// The next wanted event, or how many were missed; `None` once the tail is gone.
    pub async fn next(&mut self) -> Option<Tailed> {
        loop {
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                _ = self.closed.wait_for(|closed| *closed) => return None,
            };
            match received {
                Ok(event) if self.filter.matches(&event) => return Some(Tailed::Event(event)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => return Some(Tailed::Missed(missed)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::tests::events;
    use serde_json::json;

    #[tokio::test]
    async fn a_slow_subscriber_loses_its_oldest_events_and_is_told_how_many() {
        let tail = Tail::new(4, 8);
        let mut subscription = tail.subscribe(TailFilter::default()).unwrap();
        let sent = events(10);
        tail.publish(&sent.iter().collect::<Vec<_>>());
        assert_eq!(subscription.next().await, Some(Tailed::Missed(6)));
        for expected in &sent[6..] {
            assert_eq!(subscription.next().await, Some(Tailed::Event(Arc::new(expected.clone()))));
        }
    }

    #[tokio::test]
    async fn closing_the_tail_ends_every_subscription() {
        let tail = Tail::new(4, 8);
        let mut subscription = tail.subscribe(TailFilter::default()).unwrap();
        tail.close();
        assert_eq!(subscription.next().await, None);
        assert_eq!(tail.subscribe(TailFilter::default()).unwrap().next().await, None, "even one made after closing");
    }

    #[test]
    fn subscribers_are_capped_and_a_place_comes_back_when_one_leaves() {
        let tail = Tail::new(4, 2);
        let first = tail.subscribe(TailFilter::default()).unwrap();
        let _second = tail.subscribe(TailFilter::default()).unwrap();
        assert_eq!(tail.subscribe(TailFilter::default()).unwrap_err(), TailFull { limit: 2 });
        assert_eq!(
            tail.subscribe(TailFilter::default()).unwrap_err(),
            TailFull { limit: 2 },
            "a refusal takes no place"
        );
        drop(first);
        assert!(tail.subscribe(TailFilter::default()).is_ok());
    }

    #[test]
    fn filters_match_like_the_store() {
        let mut event = events(1).remove(0);
        event.message = "Upstream TIMEOUT".into();
        event.metadata = Some(json!({"status": 504, "user": {"id": "7"}}));
        let filter = |path: &[&str], value: &str| MetadataFilter {
            path: path.iter().map(|key| (*key).to_owned()).collect(),
            value: value.to_owned(),
            excluded: false,
        };
        let wanted = TailFilter {
            service: Some("svc".into()),
            metadata: vec![filter(&["status"], "504"), filter(&["user", "id"], "7")],
            filter: crate::Filter::parse("timeout OR refused").unwrap(),
        };
        assert!(wanted.matches(&event));
        assert!(!TailFilter { metadata: vec![filter(&["status"], "500")], ..wanted.clone() }.matches(&event));
        assert!(!TailFilter { service: Some("other".into()), ..wanted.clone() }.matches(&event));
        assert!(!TailFilter { filter: crate::Filter::parse("refused").unwrap(), ..wanted.clone() }.matches(&event));
    }

    #[test]
    fn an_excluded_value_leaves_out_its_events_and_keeps_those_without_the_key() {
        let mut event = events(1).remove(0);
        let not_504 = TailFilter {
            metadata: vec![MetadataFilter { path: vec!["status".into()], value: "504".into(), excluded: true }],
            ..TailFilter::default()
        };
        event.metadata = Some(json!({"status": 504}));
        assert!(!not_504.matches(&event));
        event.metadata = Some(json!({"status": "500"}));
        assert!(not_504.matches(&event));
        event.metadata = None;
        assert!(not_504.matches(&event));
    }
}
