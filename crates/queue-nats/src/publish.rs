//! The ingest side: forwards batches to the stream and returns once it holds them.

use crate::{NatsQueue, wire};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use aurore_domain::{Event, EventSink, StoreError};
use std::time::Instant;
use tokio::sync::OnceCell;

/// Room left in a message for its headers, within the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

/// An [`EventSink`] that "stores" a batch by getting a PubAck for it: the writers of an
/// ingest replica run with it, and their retry loop and circuit breaker wait out NATS
/// outages while the journal keeps what was accepted.
#[derive(Debug)]
pub struct NatsPublisher {
    queue: NatsQueue,
    /// Set once the stream is known to exist; until then every batch checks first.
    stream_ready: OnceCell<()>,
}

impl NatsPublisher {
    pub fn new(queue: NatsQueue) -> Self {
        Self { queue, stream_ready: OnceCell::new() }
    }

    async fn send(&self, events: &[&Event], pending: &mut Vec<PublishAckFuture>) -> Result<(), StoreError> {
        let payload = wire::encode(events);
        // Zero until the first connection says otherwise: then the publish itself fails.
        let max_payload = match self.queue.client.server_info().max_payload {
            0 => usize::MAX,
            known => known,
        };
        if payload.len() + HEADER_ROOM > max_payload && events.len() > 1 {
            // Each half gets its own id: the same batch is always cut the same way.
            let (first, second) = events.split_at(events.len() / 2);
            Box::pin(self.send(first, pending)).await?;
            return Box::pin(self.send(second, pending)).await;
        }
        let mut headers = async_nats::HeaderMap::new();
        wire::put_trace(&mut headers, aurore_telemetry::current_trace_link());
        let publish =
            PublishMessage::build().payload(payload.into()).headers(headers).message_id(wire::message_id(events));
        let ack =
            self.queue.jetstream.send_publish(self.queue.settings.batches_subject(), publish).await.map_err(refusal)?;
        pending.push(ack);
        Ok(())
    }
}

#[async_trait]
impl EventSink for NatsPublisher {
    async fn write_batch(&self, events: &[&Event]) -> Result<(), StoreError> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.queue.stream().await.map(|_| ()).map_err(|error| StoreError::unavailable(error.to_string(), None))
            })
            .await?;
        let started = Instant::now();
        let mut pending = Vec::with_capacity(1);
        self.send(events, &mut pending).await?;
        // Every PubAck is awaited: an error not awaited is an error lost.
        for ack in pending {
            let ack = ack.await.map_err(refusal)?;
            aurore_telemetry::metrics::record_published(ack.duplicate, started.elapsed());
        }
        Ok(())
    }
}

/// Only a single event too large for any message is the data's fault; the rest is NATS
/// being away or slow, waited out like a database outage.
fn refusal(error: async_nats::jetstream::context::PublishError) -> StoreError {
    let reason = format!("cannot publish to JetStream: {error}");
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => {
            StoreError::rejected(reason, Some(Box::new(error) as aurore_domain::Cause))
        }
        _ => StoreError::unavailable(reason, Some(Box::new(error) as aurore_domain::Cause)),
    }
}
