//! The shared queue between ingest and writer replicas, on NATS JetStream.
//!
//! Ingest replicas keep their journal as the first durable copy and forward each batch to
//! the stream through [`NatsPublisher`] (an `EventSink` for the forwarding writers): one
//! message per batch, its `Nats-Msg-Id` derived from the ids of the events it carries, so
//! a re-send of the same batch is dropped by the stream's duplicate window. The journal
//! is acknowledged on the PubAck. Writer replicas share one durable pull consumer through
//! [`NatsSource`] (a `BatchSource`) and acknowledge after the PostgreSQL commit; writes are
//! idempotent on `(timestamp, id)`, so a redelivery or a re-publish is absorbed there.
//! After each commit a writer reports the batch on a plain subject: every replica feeds
//! its live tail from the reports and settles its `durability=stored` requests
//! ([`follow_reports`]).

mod consume;
mod publish;
mod reports;
mod wire;

pub use consume::{NatsReceipt, NatsSource};
pub use publish::NatsPublisher;
pub use reports::follow_reports;

use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Where the stream is and how it keeps messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// One server, or several separated by commas.
    pub url: String,
    /// The stream's name; its subjects are derived from it.
    pub stream: String,
    /// Copies of each message in a cluster: 1, or 3 to survive a node's loss.
    pub replicas: usize,
    /// How long a writer may hold a message without word before it is redelivered; a
    /// long write keeps it with in-progress acknowledgements.
    pub ack_wait: Duration,
    /// Deliveries of one message before it goes to the dead letters.
    pub max_deliver: i64,
    /// How long the stream remembers a message id, to drop a re-send.
    pub duplicate_window: Duration,
}

impl NatsSettings {
    /// The subject batches are published on.
    fn batches_subject(&self) -> String {
        format!("{}.batches", self.stream)
    }

    /// The plain subject writers report committed batches on; outside the stream.
    fn reports_subject(&self) -> String {
        format!("{}.stored", self.stream)
    }

    const CONSUMER: &'static str = "writers";

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.batches_subject()],
            // A message leaves once a writer acknowledged it: the stream is a queue.
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    fn consumer_config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(Self::CONSUMER.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            // Writers hold at most a few batches each; the bound is only against a runaway.
            max_ack_pending: 10_000,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot set up the JetStream {what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

/// A connection to NATS and the stream's settings, shared by every part of a replica.
#[derive(Debug, Clone)]
pub struct NatsQueue {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    settings: NatsSettings,
}

impl NatsQueue {
    /// Connects in the background: a replica starts while NATS is away, and ingest keeps
    /// journaling until it returns.
    pub async fn connect(settings: NatsSettings, name: &str) -> Result<Self, QueueError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            // A cluster is named by its servers, comma-separated; any that answers will do.
            .connect(settings.url.split(',').map(str::trim).collect::<Vec<_>>())
            .await
            .map_err(|source| QueueError::Connect { url: settings.url.clone(), source })?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self { client, jetstream, settings })
    }

    pub fn settings(&self) -> &NatsSettings {
        &self.settings
    }

    /// Whether the client is connected now, for health reports.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates the stream, or checks the existing one holds the settings' subjects.
    async fn stream(&self) -> Result<stream::Stream, QueueError> {
        self.jetstream
            .get_or_create_stream(self.settings.stream_config())
            .await
            .map_err(|error| QueueError::Setup { what: "stream", reason: error.to_string() })
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, QueueError> {
        self.stream()
            .await?
            .get_or_create_consumer(NatsSettings::CONSUMER, self.settings.consumer_config())
            .await
            .map_err(|error| QueueError::Setup { what: "consumer", reason: error.to_string() })
    }

    /// Messages waiting for a writer, and held by writers without an acknowledgement yet.
    pub async fn backlog(&self) -> Result<Backlog, QueueError> {
        let mut consumer = self.consumer().await?;
        let info =
            consumer.info().await.map_err(|error| QueueError::Setup { what: "consumer", reason: error.to_string() })?;
        Ok(Backlog {
            pending: info.num_pending,
            in_flight: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        })
    }
}

/// The writers' backlog as the consumer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    pub in_flight: u64,
    pub redelivered: u64,
}
