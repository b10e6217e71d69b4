//! The one place where outcomes become HTTP status codes. 4xx bodies name the field or
//! limit at fault; 5xx bodies hide internals, which are logged with their cause instead.

use crate::body::{self, ErrorBody, FieldErrorBody};
use crate::guard::insert_allowance_headers;
use crate::rate_limit::Allowance;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use aurore_domain::{BufferError, FieldError, IngestError, JournalError, QueryError, Rejection, StoreError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("no valid event in the request")]
    InvalidBatch(Vec<Rejection>),
    #[error("q does not parse")]
    BadQuery(#[source] aurore_domain::FilterError),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body would take more than {limit} bytes once decoded")]
    DecodedTooLarge { limit: usize },
    #[error("more than {limit} events in one request")]
    TooManyEvents { limit: usize },
    #[error("the body took longer than {seconds} s to arrive")]
    BodyTimeout { seconds: u64 },
    #[error("too many request bodies in memory")]
    BodiesInFlight,
    #[error("{limit} live-tail streams are open already")]
    TailFull { limit: usize },
    #[error("unsupported content type {0}")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding {0}")]
    UnsupportedEncoding(String),
    #[error("buffer full")]
    BufferFull { retry_after: Duration },
    #[error("journal full")]
    JournalFull,
    #[error("journal unavailable")]
    JournalFailed(#[source] JournalError),
    #[error("an event was dead-lettered while the request waited for it to be stored")]
    NotStored,
    #[error("dead letter {0} not found")]
    DeadLetterNotFound(String),
    #[error("dead letter {0} was already reprocessed")]
    AlreadyReprocessed(String),
    #[error("shutting down")]
    ShuttingDown,
    #[error("not ready: {0}")]
    NotReady(&'static str),
    #[error("storage unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// The store refused a query for the values it holds: the client's to change.
    #[error("the store refused the query")]
    QueryRejected(#[source] StoreError),
    #[error("query string longer than {limit} bytes")]
    QueryStringTooLong { limit: usize },
    #[error("headers larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("over the {group} rate limit of {limit}")]
    RateLimited { group: &'static str, limit: u32, retry_after: Duration },
    #[error("no API key, or an unknown one")]
    Unauthenticated,
    #[error("the API key lacks the scope of this route")]
    Forbidden,
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
}

/// Outside a query, whatever the store answers is the service's fault, never the client's.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::StoreUnavailable(error)
    }
}

/// A query's failure: refused for its values or its cost (400), or the store is
/// unavailable (503).
impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Store(error @ StoreError::Rejected { .. }) => Self::QueryRejected(error),
            QueryError::Store(error @ StoreError::Unavailable { .. }) => Self::StoreUnavailable(error),
            QueryError::TooManyToSort { sort_field, limit } => Self::Invalid(vec![FieldError::new(
                "sortField",
                "maxSortedRows",
                format!(
                    "sorting by {} reads every event of the range, and this range holds more than {limit}; \
                     narrow from/to or sort by timestamp",
                    sort_field.name()
                ),
            )]),
        }
    }
}

impl ApiError {
    pub fn from_ingest(error: IngestError, retry_after: Duration) -> Self {
        match error {
            IngestError::Empty => Self::Invalid(vec![FieldError::new(
                "events",
                "arrayNotEmpty",
                "the request must hold at least one event",
            )]),
            IngestError::Invalid(rejections) => Self::InvalidBatch(rejections),
            IngestError::Buffer(BufferError::Full { .. }) => Self::BufferFull { retry_after },
            IngestError::Buffer(BufferError::Closed) => Self::ShuttingDown,
            IngestError::Journal(JournalError::Full { .. }) => Self::JournalFull,
            IngestError::Journal(error) => Self::JournalFailed(error),
            IngestError::NotStored => Self::NotStored,
        }
    }
}

/// Seconds for `Retry-After`, never 0 (clients treat 0 as "hammer me").
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs().max(1)
}

const SERVICE_UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

impl ApiError {
    /// The body for this error and the `Retry-After` seconds, if any.
    fn body(&self, status: StatusCode) -> (ErrorBody, Option<u64>) {
        let envelope = |message: String| ErrorBody::new(status, message);
        // The original service's validation envelope, which its clients parse.
        let invalid = |errors: Vec<FieldErrorBody>| ErrorBody {
            error_code: Some("INVALID_EVENT"),
            errors: Some(errors),
            ..envelope("Invalid event schema".into())
        };
        // The contract's 503 body, with what ran short.
        let under_pressure = |code: &'static str| ErrorBody {
            error_code: Some(code),
            ..envelope("System under pressure. Please retry later.".into())
        };
        let coded = |code: &'static str, message: String| ErrorBody { error_code: Some(code), ..envelope(message) };
        let limited = |code: &'static str, message: String, limit: u64| ErrorBody {
            error_code: Some(code),
            limit: Some(limit),
            ..envelope(message)
        };
        let retry_later = Some(whole_seconds(SERVICE_UNAVAILABLE_RETRY));
        match self {
            Self::Invalid(errors) => (invalid(body::field_errors(errors)), None),
            Self::InvalidBatch(rejections) => {
                let flattened = rejections
                    .iter()
                    .flat_map(|rejection| {
                        rejection.errors.iter().map(|error| FieldErrorBody {
                            field: format!("[{}].{}", rejection.index, error.field),
                            constraints: error.constraints.clone(),
                        })
                    })
                    .collect();
                (ErrorBody { rejected: Some(body::rejections(rejections)), ..invalid(flattened) }, None)
            }
            Self::BadQuery(error) => {
                let body = ErrorBody {
                    position: Some(error.position),
                    expected: Some(error.expected.clone()),
                    ..coded("INVALID_QUERY", format!("q does not parse {error}"))
                };
                (body, None)
            }
            Self::Malformed(reason) => (coded("MALFORMED_BODY", format!("Malformed body: {reason}")), None),
            Self::BodyTooLarge { limit } => (
                limited("PAYLOAD_TOO_LARGE", format!("request body must not exceed {limit} bytes"), *limit as u64),
                None,
            ),
            Self::DecodedTooLarge { limit } => (
                limited(
                    "DECODED_TOO_LARGE",
                    format!("the request body must not take more than {limit} bytes once decoded"),
                    *limit as u64,
                ),
                None,
            ),
            Self::TooManyEvents { limit } => (
                limited("TOO_MANY_EVENTS", format!("a request must not hold more than {limit} events"), *limit as u64),
                None,
            ),
            Self::UnsupportedMediaType(content_type) => (
                coded(
                    "UNSUPPORTED_MEDIA_TYPE",
                    format!(
                        "Content-Type {content_type} is not supported; send application/json or application/x-ndjson"
                    ),
                ),
                None,
            ),
            Self::UnsupportedEncoding(encoding) => (
                coded(
                    "UNSUPPORTED_ENCODING",
                    format!("Content-Encoding {encoding} is not supported; send gzip, deflate, br, zstd or none"),
                ),
                None,
            ),
            Self::BodyTimeout { seconds } => {
                (limited("BODY_TIMEOUT", format!("the request body must arrive within {seconds} s"), *seconds), None)
            }
            Self::BodiesInFlight => (under_pressure("BODIES_IN_FLIGHT"), retry_later),
            Self::TailFull { limit } => {
                (ErrorBody { limit: Some(*limit as u64), ..under_pressure("TAIL_FULL") }, retry_later)
            }
            Self::BufferFull { retry_after } => {
                let seconds = whole_seconds(*retry_after);
                // The contract's body for a full buffer, which has no `statusCode`.
                let body = ErrorBody {
                    status_code: None,
                    retry_after: Some(seconds),
                    ..coded("BUFFER_SATURATED", "Buffer is full. Please retry in a few seconds.".into())
                };
                (body, Some(seconds))
            }
            Self::ShuttingDown => (coded("SHUTTING_DOWN", "SERVER_IS_SHUTTING_DOWN".into()), retry_later),
            Self::NotReady(reason) => {
                (ErrorBody { reason: Some(reason), ..envelope("SERVER_IS_NOT_READY".into()) }, retry_later)
            }
            Self::QueryRejected(_) => (
                coded("QUERY_REJECTED", "The store cannot compare a value of this query; change the parameters".into()),
                None,
            ),
            Self::StoreUnavailable(_) | Self::JournalFailed(_) => (under_pressure("SERVICE_UNAVAILABLE"), retry_later),
            Self::JournalFull => (under_pressure("JOURNAL_FULL"), retry_later),
            Self::NotStored => (
                coded(
                    "DEAD_LETTERED",
                    "The store refused an event's data; it was kept in the dead-letter queue (GET /dlq).".into(),
                ),
                None,
            ),
            Self::DeadLetterNotFound(id) => (envelope(format!("dead letter {id} not found")), None),
            Self::AlreadyReprocessed(id) => (envelope(format!("dead letter {id} was already reprocessed")), None),
            Self::QueryStringTooLong { limit } => (
                limited("QUERY_TOO_LONG", format!("the query string must not exceed {limit} bytes"), *limit as u64),
                None,
            ),
            Self::HeadersTooLarge { limit } => (
                limited(
                    "HEADERS_TOO_LARGE",
                    format!("request headers must not exceed {limit} bytes in total"),
                    *limit as u64,
                ),
                None,
            ),
            Self::RateLimited { group, limit, retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let body = ErrorBody {
                    group: Some(group),
                    retry_after: Some(seconds),
                    ..limited("RATE_LIMITED", "Too Many Requests".into(), u64::from(*limit))
                };
                (body, Some(seconds))
            }
            Self::Unauthenticated => (
                coded(
                    "UNAUTHENTICATED",
                    "an API key is required: send Authorization: Bearer <key> or X-API-Key".into(),
                ),
                None,
            ),
            Self::Forbidden => {
                (coded("FORBIDDEN", "this API key may not use this route; it needs an admin key".into()), None)
            }
            Self::NotFound { method, path } => (envelope(format!("Cannot {method} {path}")), None),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            // The client sent something the contract forbids; repeating it will not help.
            Self::Invalid(_)
            | Self::InvalidBatch(_)
            | Self::BadQuery(_)
            | Self::Malformed(_)
            | Self::QueryRejected(_) => StatusCode::BAD_REQUEST,
            // Limits on size protect the service; the body names the limit.
            Self::BodyTooLarge { .. } | Self::DecodedTooLarge { .. } | Self::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // The client was too slow; it may send again, faster.
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::QueryStringTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            // This client is over its share; others are served. Retry after the wait.
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            // No credentials, or wrong ones: the client may retry with a valid key.
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            // A known key without the scope: another key is needed, not a retry.
            Self::Forbidden => StatusCode::FORBIDDEN,
            // Backpressure: the buffer is full, the client should slow down and retry.
            Self::BufferFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            // The service cannot take work right now but will again: retry elsewhere or later.
            Self::ShuttingDown
            | Self::BodiesInFlight
            | Self::TailFull { .. }
            | Self::NotReady(_)
            | Self::StoreUnavailable(_)
            | Self::JournalFull
            | Self::JournalFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Valid by the contract but refused by the store for its data; kept as a dead letter.
            Self::NotStored => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound { .. } | Self::DeadLetterNotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyReprocessed(_) => StatusCode::CONFLICT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (body, retry_after) = self.body(status);
        // Logged here once, with every cause: a failing dependency as an error; a service
        // that is busy, starting or stopping as news; the client's mistakes for debugging.
        if std::error::Error::source(self).is_some() && status.is_server_error() {
            tracing::error!(%status, error = %aurore_domain::error_chain(self), "request failed");
        } else if status.is_server_error() {
            tracing::info!(%status, error = %aurore_domain::error_chain(self), "request turned away");
        } else {
            tracing::debug!(%status, error = %aurore_domain::error_chain(self), "request refused");
        }
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        match self {
            Self::RateLimited { limit, retry_after, .. } => {
                let mut headers = header::HeaderMap::new();
                let empty = Allowance { limit: *limit, remaining: 0, reset: *retry_after };
                insert_allowance_headers(&mut headers, &empty);
                for (name, value) in headers {
                    response.insert_header((name, value));
                }
            }
            Self::Unauthenticated => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_hides_its_cause_from_the_client_and_keeps_it_for_the_log() {
        let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        let error = ApiError::StoreUnavailable(StoreError::unavailable("query failed", Some(Box::new(lost) as _)));
        assert_eq!(
            aurore_domain::error_chain(&error),
            "storage unavailable: store unavailable: query failed: connection reset by peer"
        );
        let (body, retry_after) = error.body(error.status_code());
        let body = serde_json::to_string(&body).unwrap_or_default();
        assert!(!body.contains("reset") && !body.contains("query failed"), "{body}");
        assert_eq!(retry_after, Some(5));
    }
}
