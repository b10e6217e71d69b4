//! The event model: what a client sends, once validated ([`EventDraft`]), and what is
//! stored once enriched ([`Event`]).

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use std::fmt;
use uuid::Uuid;

/// The public identity of an event (`eventId`): a UUIDv7, so ids sort by ingest time and
/// index well, with 74 random bits where the original service had 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(Uuid);

impl EventId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
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
}

impl EventDraft {
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

/// An accepted event, as it travels through the buffer to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub timestamp: DateTime<Utc>,
    pub service: String,
    pub message: String,
    pub metadata: Option<Value>,
    pub ingested_at: DateTime<Utc>,
}
