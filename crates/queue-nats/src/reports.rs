//! Every replica hears what the writers stored: its live tail shows it, and its requests
//! waiting for `durability=stored` are settled by it.

use crate::{NatsQueue, wire};
use aurore_domain::{Event, StoreReports, Tail};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Follows the writers' reports until the task is aborted. Reports are plain NATS
/// messages: one sent while this replica is disconnected is missed (a tail gap; a
/// waiting request keeps waiting), never a stored event.
pub fn follow_reports(queue: NatsQueue, tail: Arc<Tail>, reports: Arc<StoreReports>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let subject = queue.settings.reports_subject();
        loop {
            let mut subscription = match queue.client.subscribe(subject.clone()).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::warn!(%error, "cannot follow the writers' reports yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(message) = subscription.next().await {
                let events = match wire::decode(&message.payload) {
                    Ok(events) => events,
                    Err(error) => {
                        tracing::warn!(%error, "a writer's report does not decode; skipped");
                        continue;
                    }
                };
                let refused = wire::refused(message.headers.as_ref());
                let stored: Vec<&Event> = events
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| !refused.contains(index))
                    .map(|(_, event)| event)
                    .collect();
                tail.publish(&stored);
                reports.report_batch(&events, &refused);
            }
        }
    })
}
