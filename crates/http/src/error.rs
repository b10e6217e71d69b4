//! The one place where outcomes become HTTP status codes. 4xx bodies name the field or
//! limit at fault; 5xx bodies hide internals, which are logged with their cause instead.

use crate::guard::insert_allowance_headers;
use crate::rate_limit::Allowance;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use aurore_domain::{BufferError, FieldError, IngestError, JournalError, QueryError, Rejection, StoreError};
use serde_json::json;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("no valid event in the request")]
    InvalidBatch(Vec<Rejection>),
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
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
            QueryError::Store(error @ StoreError::Rejected(_)) => Self::QueryRejected(error),
            QueryError::Store(error @ StoreError::Unavailable(_)) => Self::StoreUnavailable(error),
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

/// The original service's validation envelope, which its clients parse.
fn validation_body(errors: &[FieldError]) -> serde_json::Value {
    json!({"status": "error", "statusCode": 400, "message": "Invalid event schema", "errorCode": "INVALID_EVENT", "errors": errors})
}

/// Seconds for `Retry-After`, never 0 (clients treat 0 as "hammer me").
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs().max(1)
}

const SERVICE_UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// The contract's 503 body, with what ran short.
fn under_pressure(code: &str) -> (serde_json::Value, Option<u64>) {
    (
        json!({"status": "service_unavailable", "statusCode": 503, "message": "System under pressure. Please retry later.", "errorCode": code}),
        Some(whole_seconds(SERVICE_UNAVAILABLE_RETRY)),
    )
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            // The client sent something the contract forbids; repeating it will not help.
            Self::Invalid(_) | Self::InvalidBatch(_) | Self::Malformed(_) | Self::QueryRejected(_) => {
                StatusCode::BAD_REQUEST
            }
            // Limits on size protect the service; the body names the limit.
            Self::BodyTooLarge { .. } | Self::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
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
        let (body, retry_after) = match self {
            Self::Invalid(errors) => (validation_body(errors), None),
            Self::InvalidBatch(rejections) => {
                let flattened: Vec<FieldError> = rejections
                    .iter()
                    .flat_map(|rejection| {
                        rejection.errors.iter().map(|error| FieldError {
                            field: format!("[{}].{}", rejection.index, error.field),
                            constraints: error.constraints.clone(),
                        })
                    })
                    .collect();
                let mut body = validation_body(&flattened);
                body["rejected"] = rejections_json(rejections);
                (body, None)
            }
            Self::Malformed(reason) => (
                json!({"status": "error", "statusCode": 400, "message": format!("Malformed body: {reason}"), "errorCode": "MALFORMED_BODY"}),
                None,
            ),
            Self::BodyTooLarge { limit } => (
                json!({"status": "error", "statusCode": 413, "message": format!("request body must not exceed {limit} bytes"), "errorCode": "PAYLOAD_TOO_LARGE", "limit": limit}),
                None,
            ),
            Self::TooManyEvents { limit } => (
                json!({"status": "error", "statusCode": 413, "message": format!("a request must not hold more than {limit} events"), "errorCode": "TOO_MANY_EVENTS", "limit": limit}),
                None,
            ),
            Self::UnsupportedMediaType(content_type) => (
                json!({"status": "error", "statusCode": 415, "message": format!("Content-Type {content_type} is not supported; send application/json or application/x-ndjson"), "errorCode": "UNSUPPORTED_MEDIA_TYPE"}),
                None,
            ),
            Self::UnsupportedEncoding(encoding) => (
                json!({"status": "error", "statusCode": 415, "message": format!("Content-Encoding {encoding} is not supported; send gzip, deflate, br, zstd or none"), "errorCode": "UNSUPPORTED_ENCODING"}),
                None,
            ),
            Self::BodyTimeout { seconds } => (
                json!({"status": "error", "statusCode": 408, "message": format!("the request body must arrive within {seconds} s"), "errorCode": "BODY_TIMEOUT", "limit": seconds}),
                None,
            ),
            Self::BodiesInFlight => under_pressure("BODIES_IN_FLIGHT"),
            Self::TailFull { limit } => {
                let (mut body, retry_after) = under_pressure("TAIL_FULL");
                body["limit"] = json!(limit);
                (body, retry_after)
            }
            Self::BufferFull { retry_after } => {
                let seconds = whole_seconds(*retry_after);
                (
                    json!({"status": "rate_limited", "message": "Buffer is full. Please retry in a few seconds.", "retry_after": seconds, "errorCode": "BUFFER_SATURATED"}),
                    Some(seconds),
                )
            }
            Self::ShuttingDown => (
                json!({"statusCode": 503, "status": "service_unavailable", "message": "SERVER_IS_SHUTTING_DOWN", "errorCode": "SHUTTING_DOWN"}),
                Some(whole_seconds(SERVICE_UNAVAILABLE_RETRY)),
            ),
            Self::NotReady(reason) => (
                json!({"statusCode": 503, "status": "service_unavailable", "message": "SERVER_IS_NOT_READY", "reason": reason}),
                Some(whole_seconds(SERVICE_UNAVAILABLE_RETRY)),
            ),
            Self::QueryRejected(cause) => {
                tracing::info!(error = %cause, "the store refused a query's values");
                (
                    json!({"status": "error", "statusCode": 400, "message": "The store cannot compare a value of this query; change the parameters", "errorCode": "QUERY_REJECTED"}),
                    None,
                )
            }
            Self::StoreUnavailable(cause) => {
                tracing::error!(error = %cause, "storage unavailable while serving a request");
                under_pressure("SERVICE_UNAVAILABLE")
            }
            Self::JournalFull => under_pressure("JOURNAL_FULL"),
            Self::JournalFailed(cause) => {
                tracing::error!(error = %cause, "the journal refused an append");
                under_pressure("SERVICE_UNAVAILABLE")
            }
            Self::NotStored => (
                json!({"status": "error", "statusCode": 422, "message": "The store refused an event's data; it was kept in the dead-letter queue (GET /dlq).", "errorCode": "DEAD_LETTERED"}),
                None,
            ),
            Self::DeadLetterNotFound(id) => (
                json!({"statusCode": 404, "error": "Not Found", "message": format!("dead letter {id} not found")}),
                None,
            ),
            Self::AlreadyReprocessed(id) => (
                json!({"statusCode": 409, "error": "Conflict", "message": format!("dead letter {id} was already reprocessed")}),
                None,
            ),
            Self::QueryStringTooLong { limit } => (
                json!({"status": "error", "statusCode": 414, "message": format!("the query string must not exceed {limit} bytes"), "errorCode": "QUERY_TOO_LONG", "limit": limit}),
                None,
            ),
            Self::HeadersTooLarge { limit } => (
                json!({"status": "error", "statusCode": 431, "message": format!("request headers must not exceed {limit} bytes in total"), "errorCode": "HEADERS_TOO_LARGE", "limit": limit}),
                None,
            ),
            Self::RateLimited { group, limit, retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                (
                    json!({"status": "rate_limited", "statusCode": 429, "message": "Too Many Requests", "errorCode": "RATE_LIMITED", "group": group, "limit": limit, "retry_after": seconds}),
                    Some(seconds),
                )
            }
            Self::Unauthenticated => (
                json!({"status": "error", "statusCode": 401, "message": "an API key is required: send Authorization: Bearer <key> or X-API-Key", "errorCode": "UNAUTHENTICATED"}),
                None,
            ),
            Self::Forbidden => (
                json!({"status": "error", "statusCode": 403, "message": "this API key may not use this route; it needs an admin key", "errorCode": "FORBIDDEN"}),
                None,
            ),
            Self::NotFound { method, path } => {
                (json!({"statusCode": 404, "error": "Not Found", "message": format!("Cannot {method} {path}")}), None)
            }
        };
        if status.is_client_error() {
            tracing::debug!(%status, error = %self, "request refused");
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

pub(crate) fn rejections_json(rejections: &[Rejection]) -> serde_json::Value {
    rejections.iter().map(|rejection| json!({"index": rejection.index, "errors": rejection.errors})).collect()
}
