//! Erasing a person's events on request: every stored event a filter selects goes, from
//! every partition and from the dead-letter queue, with the counts kept equal to the rows
//! and an audit record of the request. Events acknowledged but not yet stored when the
//! erasure is recorded are dropped by the writers (a journal replay included), which
//! consult the recorded erasures before each batch.

use crate::event::Event;
use crate::filter::Filter;
use crate::ports::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What to erase: the events of `service` (every service when `None`), with a timestamp
/// in `[from, to]` (unbounded ends when `None`), that `filter` selects. The filter's values
/// are in their stored form (pseudonyms where rules hash), so it matches what is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    pub service: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub filter: Filter,
}

impl Erasure {
    /// Whether `event` is one this erasure removes.
    pub fn matches(&self, event: &Event) -> bool {
        self.service.as_ref().is_none_or(|service| *service == event.service)
            && self.from.is_none_or(|from| event.timestamp >= from)
            && self.to.is_none_or(|to| event.timestamp <= to)
            && self.filter.matches(event)
    }
}

/// An erasure as recorded, for the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErasureRecord {
    pub id: i64,
    /// When it was recorded: events ingested until then that it selects never stay stored.
    pub requested_at: DateTime<Utc>,
    pub service: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The filter's canonical spelling, values in their stored form (never a raw value a rule hashes).
    pub filter: String,
    /// Who asked: the first 16 hex digits of the SHA-256 of the key presented.
    pub key_digest: String,
    /// Stored events removed; `None` until the deletion completed.
    pub events: Option<u64>,
    pub dead_letters: Option<u64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub took_ms: Option<u64>,
}

/// The store's half of erasure.
#[async_trait]
pub trait ErasureStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records the erasure (from then on, writers drop the events it selects that were
    /// ingested until `requested_at`), then deletes what it selects from the events, their
    /// counts and the dead letters, and completes the record. MUST record before deleting,
    /// and MUST NOT record while a batch that the record would change is being written.
    async fn erase(
        &self,
        erasure: &Erasure,
        requested_at: DateTime<Utc>,
        key_digest: &str,
    ) -> Result<ErasureRecord, StoreError>;

    /// The most recent erasures first, at most `limit`.
    async fn erasures(&self, limit: u32) -> Result<Vec<ErasureRecord>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;

    #[test]
    fn an_erasure_selects_by_service_range_and_filter() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let event = |service: &str, timestamp: &str, user: &str| Event {
            id: EventId::generate(),
            timestamp: at(timestamp),
            service: service.into(),
            message: "m".into(),
            metadata: Some(serde_json::json!({ "user_id": user })),
            ingested_at: at(timestamp),
        };
        let erasure = Erasure {
            service: Some("billing".into()),
            from: Some(at("2026-01-01T00:00:00Z")),
            to: Some(at("2026-01-31T00:00:00Z")),
            filter: Filter::parse("metadata.user_id:u1").unwrap().unwrap(),
        };
        assert!(erasure.matches(&event("billing", "2026-01-10T00:00:00Z", "u1")));
        assert!(erasure.matches(&event("billing", "2026-01-31T00:00:00Z", "u1")), "inclusive bounds");
        assert!(!erasure.matches(&event("billing", "2026-01-10T00:00:00Z", "u2")));
        assert!(!erasure.matches(&event("shipping", "2026-01-10T00:00:00Z", "u1")));
        assert!(!erasure.matches(&event("billing", "2026-02-10T00:00:00Z", "u1")));
        let everywhere = Erasure { service: None, from: None, to: None, ..erasure };
        assert!(everywhere.matches(&event("shipping", "1999-01-10T00:00:00Z", "u1")));
    }
}
