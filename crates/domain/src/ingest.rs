//! The ingest use case: validate each event, enrich the valid ones, hand them to the buffer.

use crate::buffer::{Buffer, BufferError};
use crate::event::EventId;
use crate::ports::Clock;
use crate::validation::{FieldError, Limits, validate_event};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;

/// An element of a request that failed validation, by its position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub errors: Vec<FieldError>,
}

/// What happened to a request whose valid events were accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReceipt {
    /// Ids of the accepted events, in request order.
    pub accepted: Vec<EventId>,
    pub rejected: Vec<Rejection>,
    pub ingested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("the request holds no event")]
    Empty,
    #[error("no event in the request is valid")]
    Invalid(Vec<Rejection>),
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

#[derive(Debug)]
pub struct IngestService {
    buffer: Arc<Buffer>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl IngestService {
    pub fn new(buffer: Arc<Buffer>, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        Self { buffer, clock, limits }
    }

    /// Accepts the valid events of a request all together, or none when the buffer cannot
    /// take them all. Invalid elements are reported by index and never block the others;
    /// an element the adapter could not even decode arrives as its error.
    pub fn ingest(&self, elements: Vec<Result<Value, FieldError>>) -> Result<IngestReceipt, IngestError> {
        if elements.is_empty() {
            return Err(IngestError::Empty);
        }
        let ingested_at = self.clock.now();
        let mut events = Vec::with_capacity(elements.len());
        let mut rejected = Vec::new();
        for (index, element) in elements.into_iter().enumerate() {
            match element.map_err(|error| vec![error]).and_then(|value| validate_event(value, &self.limits)) {
                Ok(draft) => events.push(draft.enrich(EventId::generate(), ingested_at)),
                Err(errors) => rejected.push(Rejection { index, errors }),
            }
        }
        if events.is_empty() {
            return Err(IngestError::Invalid(rejected));
        }
        let accepted = events.iter().map(|event| event.id).collect();
        self.buffer.push(events)?;
        Ok(IngestReceipt { accepted, rejected, ingested_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[derive(Debug)]
    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn service(capacity: usize) -> (IngestService, Arc<Buffer>, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 1).unwrap();
        let buffer = Arc::new(Buffer::new(capacity, 100));
        (IngestService::new(buffer.clone(), Arc::new(FixedClock(now)), Limits::default()), buffer, now)
    }

    fn event(message: &str) -> Result<Value, FieldError> {
        Ok(json!({"timestamp": "2024-01-15T10:30:00Z", "service": "svc", "message": message}))
    }

    #[test]
    fn accepts_valid_elements_and_reports_invalid_ones_by_index() {
        let (ingest, buffer, now) = service(10);
        let receipt = ingest.ingest(vec![event("a"), Ok(json!({"service": "svc"})), event("c")]).unwrap();
        assert_eq!(receipt.accepted.len(), 2);
        assert_eq!(receipt.ingested_at, now);
        assert_eq!(receipt.rejected.len(), 1);
        assert_eq!(receipt.rejected[0].index, 1);
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn enriches_with_distinct_time_ordered_ids() {
        let (ingest, _, _) = service(10);
        let ids = ingest.ingest(vec![event("a"), event("b"), event("c")]).unwrap().accepted;
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    }

    #[test]
    fn a_request_with_nothing_valid_is_an_error() {
        let (ingest, buffer, _) = service(10);
        let unreadable = FieldError::new("event", "isJson", "line 1 is not JSON");
        let Err(IngestError::Invalid(rejected)) =
            ingest.ingest(vec![Ok(json!(1)), Ok(json!({})), Err(unreadable.clone())])
        else {
            panic!("expected every element to be rejected");
        };
        assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rejected[2].errors, [unreadable]);
        assert!(buffer.is_empty());
        assert_eq!(ingest.ingest(vec![]), Err(IngestError::Empty));
    }

    #[test]
    fn a_full_buffer_refuses_the_whole_request() {
        let (ingest, buffer, _) = service(2);
        let result = ingest.ingest(vec![event("a"), event("b"), event("c")]);
        assert_eq!(result, Err(IngestError::Buffer(BufferError::Full { capacity: 2 })));
        assert!(buffer.is_empty());
    }
}
