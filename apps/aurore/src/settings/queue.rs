//! Between ingest and writers: in this process, or a NATS JetStream stream shared by
//! replicas.

use super::units;
use aurore_queue_nats::NatsSettings;
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// The buffer of this process: ingest and writers run together.
    #[default]
    Local,
    /// A JetStream stream: ingest and writer replicas run apart (`aurore serve --role`).
    Nats,
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    #[garde(skip)]
    pub kind: QueueKind,
    #[garde(length(min = 1, max = 2048))]
    pub nats_url: String,
    /// The stream's name; its subjects are `<stream>.batches` and `<stream>.stored`.
    #[garde(custom(stream_name))]
    pub stream: String,
    /// Copies of each message across a NATS cluster.
    #[garde(custom(one_or_three))]
    pub replicas: usize,
    /// How long a writer may hold a message without word before another gets it.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "queue.ack_wait_secs"
    )))]
    #[serde(alias = "ack_wait_secs", with = "units::seconds")]
    pub ack_wait: Duration,
    /// Deliveries of one message before its events go to the dead letters.
    #[garde(range(min = 2, max = 1000))]
    pub max_deliver: i64,
    /// How long the stream remembers a message id to drop a re-send.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        "queue.duplicate_window_secs"
    )))]
    #[serde(alias = "duplicate_window_secs", with = "units::seconds")]
    pub duplicate_window: Duration,
}

/// NATS names a stream in subjects: no dots, spaces or wildcards.
fn stream_name(name: &str, _: &()) -> garde::Result {
    let plain = name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if name.is_empty() || name.len() > 64 || !plain {
        return Err(garde::Error::new("queue.stream must be 1 to 64 letters, digits, '_' or '-'"));
    }
    Ok(())
}

fn one_or_three(replicas: &usize, _: &()) -> garde::Result {
    match replicas {
        1 | 3 => Ok(()),
        _ => Err(garde::Error::new("queue.replicas must be 1 or 3")),
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            kind: QueueKind::Local,
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            stream: "AURORE_EVENTS".to_owned(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl From<&QueueConfig> for NatsSettings {
    fn from(config: &QueueConfig) -> Self {
        Self {
            url: config.nats_url.clone(),
            stream: config.stream.clone(),
            replicas: config.replicas,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            duplicate_window: config.duplicate_window,
        }
    }
}
