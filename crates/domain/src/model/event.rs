//! The event model: what a client sends, once validated ([`EventDraft`]), and what is
//! stored once enriched ([`Event`]).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// Namespace of the ids derived from client idempotency keys (UUIDv5).
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6175_726f_7265_4000_8000_6964_656d_706f);

/// The public identity of an event (`eventId`): a UUIDv7, so ids sort by ingest time and
/// index well, with 74 random bits where the original service had 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The id a client's idempotency key maps to for one service and instant, so repeats
    /// of a request collide while the same key sent by two services, or for two
    /// timestamps, names two events. `timestamp` is the stored one (microseconds).
    pub fn from_key(service: &str, timestamp: DateTime<Utc>, key: &str) -> Self {
        let micros = timestamp.timestamp_micros().to_be_bytes();
        // Lengths first, so no two (service, key) pairs frame to the same bytes.
        let mut name = Vec::with_capacity(24 + service.len() + key.len());
        name.extend_from_slice(&(service.len() as u64).to_be_bytes());
        name.extend_from_slice(service.as_bytes());
        name.extend_from_slice(&micros);
        name.extend_from_slice(key.as_bytes());
        Self(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event that passed validation and is not yet enriched.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub timestamp: DateTime<Utc>,
    pub service: String,
    pub message: String,
    /// Always a JSON object when present.
    pub metadata: Option<Value>,
    /// The client's key for this event: the same key and timestamp are stored once.
    pub idempotency_key: Option<String>,
}

impl EventDraft {
    /// The id this draft gets: derived from its service, timestamp and idempotency key, or
    /// new and time-ordered.
    pub fn id(&self) -> EventId {
        let stored_timestamp = self.timestamp.trunc_subsecs(6);
        self.idempotency_key
            .as_deref()
            .map_or_else(EventId::generate, |key| EventId::from_key(&self.service, stored_timestamp, key))
    }

    /// Gives the draft its identity and ingest time. Instants keep microseconds, the
    /// precision PostgreSQL stores, so an event reads back exactly as it was accepted.
    pub fn enrich(self, id: EventId, ingested_at: DateTime<Utc>) -> Event {
        Event {
            id,
            timestamp: self.timestamp.trunc_subsecs(6),
            service: self.service,
            message: self.message,
            metadata: self.metadata,
            ingested_at: ingested_at.trunc_subsecs(6),
        }
    }
}

/// An accepted event, as it travels through the buffer to the store. Its serde form is
/// the one the journal and the dead-letter store keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(with = "instant")]
    pub timestamp: DateTime<Utc>,
    pub service: String,
    pub message: String,
    pub metadata: Option<Value>,
    #[serde(with = "instant")]
    pub ingested_at: DateTime<Utc>,
}

/// The serde form of an event's instants: RFC 3339 exactly as chrono's own serde form
/// writes it, but formatted into one string first (serde_json escapes every piece that
/// `collect_str` hands it, which made instants most of a journal record's encoding cost),
/// and read with the strict RFC 3339 parser before chrono's relaxed one.
mod instant {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(instant: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        deserializer.deserialize_str(InstantVisitor)
    }

    struct InstantVisitor;

    impl Visitor<'_> for InstantVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an RFC 3339 date and time")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<DateTime<Utc>, E> {
            DateTime::parse_from_rfc3339(text)
                .map(|instant| instant.with_timezone(&Utc))
                .or_else(|_| text.parse())
                .map_err(E::custom)
        }
    }
}

impl Event {
    /// Roughly the memory this event holds, for buffer metrics: cheap, not exact.
    pub fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.service.len()
            + self.message.len()
            + self.metadata.as_ref().map_or(0, approximate_value_bytes)
    }
}

fn approximate_value_bytes(value: &Value) -> usize {
    let node = std::mem::size_of::<Value>();
    match value {
        Value::String(text) => node + text.len(),
        Value::Array(items) => node + items.iter().map(approximate_value_bytes).sum::<usize>(),
        Value::Object(map) => {
            node + map.iter().map(|(key, value)| key.len() + approximate_value_bytes(value)).sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(service: &str, timestamp: &str, key: &str) -> EventDraft {
        EventDraft {
            timestamp: DateTime::parse_from_rfc3339(timestamp).map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
            service: service.into(),
            message: "m".into(),
            metadata: None,
            idempotency_key: Some(key.into()),
        }
    }

    #[test]
    fn instants_keep_chronos_serde_form_and_read_it_back() {
        let event = Event {
            id: EventId::generate(),
            timestamp: DateTime::parse_from_rfc3339("1970-01-01T00:00:00.000001Z").unwrap().with_timezone(&Utc),
            service: "s".into(),
            message: "m".into(),
            metadata: None,
            ingested_at: DateTime::parse_from_rfc3339("2099-12-31T23:59:59Z").unwrap().with_timezone(&Utc),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["timestamp"], serde_json::to_value(event.timestamp).unwrap());
        assert_eq!(json["ingested_at"], serde_json::to_value(event.ingested_at).unwrap());
        assert_eq!(serde_json::from_value::<Event>(json.clone()).unwrap(), event);
        // What chrono's relaxed parser reads (a space for `T`, an offset) still reads back.
        let mut relaxed = json;
        relaxed["timestamp"] = "1970-01-01 02:00:00.000001+02:00".into();
        assert_eq!(serde_json::from_value::<Event>(relaxed).unwrap(), event);
    }

    #[test]
    fn a_key_names_one_event_per_service_and_timestamp() {
        let id = draft("billing", "2026-01-01T00:00:00.000001Z", "k").id();
        assert_eq!(id, draft("billing", "2026-01-01T00:00:00.000001Z", "k").id(), "repeats collide");
        assert_eq!(id, draft("billing", "2026-01-01T00:00:00.0000012Z", "k").id(), "below the stored precision");
        assert_ne!(id, draft("shipping", "2026-01-01T00:00:00.000001Z", "k").id(), "another service");
        assert_ne!(id, draft("billing", "2026-01-01T00:00:00.000002Z", "k").id(), "another timestamp");
        assert_ne!(id, draft("billing", "2026-01-01T00:00:00.000001Z", "k2").id(), "another key");
        // The service's length frames it: ("ab", "c…") and ("a", "bc…") differ.
        assert_ne!(draft("ab", "2026-01-01T00:00:00Z", "c").id(), draft("a", "2026-01-01T00:00:00Z", "bc").id());
    }
}
