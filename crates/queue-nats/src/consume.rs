//! The writer side: batches from the shared durable consumer, acknowledged once stored.

use crate::{NatsQueue, wire};
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{AckKind, Message};
use async_trait::async_trait;
use aurore_domain::ports::Taken;
use aurore_domain::{BatchSource, DeadLetterSink, Event, TraceLink};
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Messages asked for at a time; each carries a batch already.
const MESSAGES_PER_PULL: usize = 4;
/// How long to wait before asking again after NATS failed us.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// A [`BatchSource`] over the stream's durable pull consumer, shared by the writer tasks
/// of every writer replica: each message goes to one of them, and back to the stream for
/// another if it is not acknowledged within `ack_wait`.
pub struct NatsSource {
    queue: NatsQueue,
    /// Up to this many events are written together; a message is never split.
    batch_size: usize,
    messages: Mutex<Option<pull::Stream>>,
    dead_letters: Arc<dyn DeadLetterSink>,
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for NatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSource").field("batch_size", &self.batch_size).finish_non_exhaustive()
    }
}

/// What settling a batch needs: its messages, to acknowledge them and report them, and
/// the task keeping them ours while the write runs.
#[derive(Debug)]
pub struct NatsReceipt {
    messages: Vec<(Message, usize)>,
    keep_alive: AbortHandle,
}

/// One message read: its events and where it came from.
struct Delivery {
    message: Message,
    events: Vec<Event>,
    origin: Option<TraceLink>,
}

impl NatsSource {
    pub fn new(queue: NatsQueue, batch_size: usize, dead_letters: Arc<dyn DeadLetterSink>) -> Self {
        Self {
            queue,
            batch_size: batch_size.max(1),
            messages: Mutex::new(None),
            dead_letters,
            closed: watch::channel(false).0,
        }
    }

    /// Stops handing out batches; messages not taken yet go to other writers.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The next message holding events, or `None` once closed; waits at most until
    /// `deadline` when given. Reconnects for as long as it takes.
    async fn next_delivery(&self, messages: &mut Option<pull::Stream>, deadline: Option<Instant>) -> Option<Delivery> {
        let mut closed = self.closed.subscribe();
        loop {
            if *closed.borrow() {
                return None;
            }
            let stream = match messages {
                Some(stream) => stream,
                None => match self.open().await {
                    Ok(stream) => messages.insert(stream),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read from the JetStream consumer yet");
                        let wait = tokio::time::sleep(RECONNECT_DELAY);
                        tokio::select! {
                            () = wait => continue,
                            _ = closed.changed() => return None,
                        }
                    }
                },
            };
            let deadline = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                next = stream.next() => next,
                () = deadline => return None,
                _ = closed.changed() => return None,
            };
            match next {
                Some(Ok(message)) => {
                    if let Some(delivery) = self.read(message).await {
                        return Some(delivery);
                    }
                }
                Some(Err(error)) => {
                    // Missed heartbeats mean the pull waits on a server that is gone: pull
                    // afresh, from whichever server the client is on now.
                    tracing::info!(%error, "JetStream pull interrupted; pulling again");
                    *messages = None;
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
                None => *messages = None,
            }
        }
    }

    async fn open(&self) -> Result<pull::Stream, crate::QueueError> {
        let consumer = self.queue.consumer().await?;
        consumer
            .stream()
            .max_messages_per_batch(MESSAGES_PER_PULL)
            // Short pulls: a pull waiting on a NATS node that died is replaced this soon.
            .heartbeat(Duration::from_secs(1))
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|error| crate::QueueError::Setup { what: "consumer stream", reason: error.to_string() })
    }

    /// Decodes a message; a message delivered too often goes to the dead letters instead.
    async fn read(&self, message: Message) -> Option<Delivery> {
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        if delivered > 1 {
            aurore_telemetry::metrics::record_redelivered();
        }
        let events = match wire::decode(&message.payload) {
            Ok(events) => events,
            Err(error) => {
                // Only this service publishes here; a message it cannot read never will be.
                tracing::error!(%error, bytes = message.payload.len(), "a JetStream message does not decode; terminated");
                let _ = message.ack_with(AckKind::Term).await;
                return None;
            }
        };
        let max_deliver = self.queue.settings.max_deliver;
        if max_deliver > 0 && delivered >= max_deliver {
            let reason = format!("delivered {delivered} times without being stored (queue.max_deliver)");
            for event in &events {
                if let Err(error) =
                    self.dead_letters.put(event, &reason, u32::try_from(delivered).unwrap_or(u32::MAX)).await
                {
                    // Not acknowledged: it stays in the stream for a later look.
                    tracing::error!(%error, event_id = %event.id, "cannot dead-letter an event delivered too often");
                    return None;
                }
            }
            tracing::warn!(events = events.len(), delivered, "a batch delivered too often went to the dead letters");
            let _ = message.ack().await;
            return None;
        }
        let origin = wire::trace(message.headers.as_ref());
        Some(Delivery { message, events, origin })
    }
}

#[async_trait]
impl BatchSource for NatsSource {
    type Receipt = NatsReceipt;

    async fn next_batch(&self, linger: Duration) -> Option<Taken<NatsReceipt>> {
        let mut messages = self.messages.lock().await;
        let first = self.next_delivery(&mut messages, None).await?;
        let deadline = Instant::now() + linger;
        let mut deliveries = vec![first];
        let mut events = deliveries[0].events.len();
        while events < self.batch_size
            && let Some(delivery) = self.next_delivery(&mut messages, Some(deadline)).await
        {
            events += delivery.events.len();
            deliveries.push(delivery);
        }
        drop(messages);

        let held: Vec<Message> = deliveries.iter().map(|delivery| delivery.message.clone()).collect();
        let keep_alive = tokio::spawn(keep_in_progress(held, self.queue.settings.ack_wait)).abort_handle();
        let mut taken = Taken {
            events: Vec::with_capacity(events),
            origins: Vec::new(),
            receipt: NatsReceipt { messages: Vec::with_capacity(deliveries.len()), keep_alive },
        };
        for delivery in deliveries {
            taken.origins.extend(delivery.origin);
            taken.receipt.messages.push((delivery.message, delivery.events.len()));
            taken.events.extend(delivery.events);
        }
        Some(taken)
    }

    /// Acknowledges each message, then reports it, with the positions of the events that
    /// were dead-lettered, to every replica.
    fn settle(&self, receipt: NatsReceipt, stored: &[bool]) {
        receipt.keep_alive.abort();
        let client = self.queue.client.clone();
        let subject = self.queue.settings.reports_subject();
        let mut stored = stored.iter();
        let reports: Vec<(Message, Vec<usize>)> = receipt
            .messages
            .into_iter()
            .map(|(message, events)| {
                let refused = stored
                    .by_ref()
                    .take(events)
                    .enumerate()
                    .filter(|(_, stored)| !**stored)
                    .map(|(index, _)| index)
                    .collect();
                (message, refused)
            })
            .collect();
        tokio::spawn(async move {
            for (message, refused) in reports {
                if let Err(error) = message.ack().await {
                    tracing::warn!(%error, "cannot acknowledge a stored batch; it will be redelivered and absorbed");
                }
                let mut headers = async_nats::HeaderMap::new();
                if !refused.is_empty() {
                    let positions: Vec<String> = refused.iter().map(ToString::to_string).collect();
                    headers.insert(wire::REFUSED, positions.join(",").as_str());
                }
                let payload: Bytes = message.message.payload.clone();
                if let Err(error) = client.publish_with_headers(subject.clone(), headers, payload).await {
                    tracing::debug!(%error, "cannot report a stored batch; live tails miss it");
                }
            }
        });
    }

    /// Naks each message with the delay, so any writer can take it once the circuit
    /// allows a write again; JetStream's own backoff applies only to ack timeouts.
    fn release(&self, batch: Taken<NatsReceipt>, after: Duration) -> Result<(), Taken<NatsReceipt>> {
        if !self.can_release(&batch.receipt) {
            return Err(batch);
        }
        batch.receipt.keep_alive.abort();
        let messages = batch.receipt.messages;
        aurore_telemetry::metrics::record_released(messages.len());
        tokio::spawn(async move {
            for (message, _) in messages {
                // Unanswered, the message comes back after ack_wait all the same.
                if let Err(error) = message.ack_with(AckKind::Nak(Some(after))).await {
                    tracing::debug!(%error, "cannot hand a batch back to the stream");
                }
            }
        });
        Ok(())
    }
}

impl NatsSource {
    /// Whether a nak leaves every message of the receipt short of `queue.max_deliver`: a
    /// nak counts as a delivery, and an outage must not walk healthy batches into the
    /// dead letters. A batch without that headroom stays with its writer, in progress.
    fn can_release(&self, receipt: &NatsReceipt) -> bool {
        let max_deliver = self.queue.settings.max_deliver;
        max_deliver <= 0
            || receipt
                .messages
                .iter()
                .all(|(message, _)| message.info().is_ok_and(|info| info.delivered + 1 < max_deliver))
    }
}

/// Tells the stream every third of `ack_wait` that the messages are still being written,
/// so a long write is not redelivered to another writer meanwhile.
async fn keep_in_progress(messages: Vec<Message>, ack_wait: Duration) {
    let mut every = tokio::time::interval(ack_wait / 3);
    every.tick().await;
    loop {
        every.tick().await;
        for message in &messages {
            let _ = message.ack_with(AckKind::Progress).await;
        }
    }
}
