//! `POST /events`: one JSON event, a JSON array of events, or NDJSON.

use crate::body::{self, Accepted, BatchAccepted, Receipt};
use crate::error::ApiError;
use crate::params;
use crate::{AppState, RequestLimits, guard};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use aurore_domain::validation::Incoming;
use aurore_domain::{Durability, EventId, FieldError, IngestError, IngestReceipt};
use aurore_telemetry::current_trace_link;
use futures_util::StreamExt;
use serde::Deserialize as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::StreamReader;

/// The shapes a body can take, which decide the response's shape.
enum Body {
    Single(Incoming),
    /// Elements, some already known bad (an NDJSON line that is not JSON).
    Many(Vec<Result<Incoming, FieldError>>),
}

#[utoipa::path(post, path = "/events", tag = "ingest",
    request_body(description = "One event, a JSON array of events, or NDJSON (`application/x-ndjson`); `Content-Encoding: gzip|zstd|br|deflate` accepted", content(
        (crate::openapi::EventInput = "application/json"),
        (Vec<crate::openapi::EventInput> = "application/json"),
        (String = "application/x-ndjson"),
    )),
    params(
        ("durability" = Option<String>, Query, description = "none, journal or stored: what 202 promises (also `Prefer: durability=…`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "For a single event: the same key and timestamp are stored once"),
    ),
    responses(
        (status = 202, description = "Accepted, as durable as asked: a single event's receipt, or for an array or NDJSON the valid events' with the others reported by index", body = crate::body::Receipt),
        (status = 400, description = "Malformed body or invalid event(s): every field and rule named", body = crate::body::ErrorBody),
        (status = 413, description = "Body over `server.max_body_bytes` (after decompression) or more events than `server.max_events_per_request` or the ingest burst", body = crate::body::ErrorBody),
        (status = 415, description = "Neither JSON nor NDJSON", body = crate::body::ErrorBody),
        (status = 422, description = "`durability=stored` and the store refused the event: dead-lettered", body = crate::body::ErrorBody),
        (status = 503, description = "Journal full or unavailable, shutting down or replaying; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn post_events(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let durability = admitted(&request, &state)?;
    let limits = &state.request_limits;
    let format = format(&request)?;
    // The body's bytes and their budget are released once parsed: only one
    // representation of a body is ever held.
    let body = {
        let (bytes, _budget) = read_body(&request, payload, format, limits, &state.body_budget).await?;
        parse(format, &bytes, limits.max_events_per_request)?
    };
    let retry_after = state.retry_after;
    match body {
        Body::Single(mut incoming) => {
            if let Some(key) = request.headers().get(IDEMPOTENCY_KEY)
                && let Incoming::Object(event) = &mut incoming
            {
                let key = key.to_str().map_err(|_| {
                    ApiError::Invalid(vec![FieldError::new(
                        "Idempotency-Key",
                        "isString",
                        "Idempotency-Key must be visible ASCII",
                    )])
                })?;
                event.idempotency_key.get_or_insert_with(|| Value::String(key.to_owned()));
            }
            let receipt =
                state.ingest.ingest(vec![Ok(incoming)], durability, current_trace_link()).await.map_err(|error| {
                    match error {
                        // A lone event's errors are reported by field, without an index.
                        IngestError::Invalid(mut rejections) => {
                            ApiError::Invalid(rejections.pop().map(|rejection| rejection.errors).unwrap_or_default())
                        }
                        other => ApiError::from_ingest(other, retry_after),
                    }
                })?;
            Ok(HttpResponse::Accepted().json(Receipt::Single(Accepted {
                status_code: 202,
                message: "Event accepted",
                status: "accepted",
                event_id: receipt.accepted[0].to_string(),
                queued_at: body::iso(&receipt.ingested_at),
            })))
        }
        Body::Many(elements) => {
            let receipt = ingest_many(&request, &state, elements, durability).await?;
            Ok(HttpResponse::Accepted().json(Receipt::Batch(BatchAccepted {
                status_code: 202,
                message: "Events accepted",
                status: "accepted",
                accepted: receipt.accepted.len(),
                duplicates: receipt.duplicates,
                rejected: receipt.rejected.len(),
                event_ids: receipt.accepted.iter().map(ToString::to_string).collect(),
                errors: body::rejections(&receipt.rejected),
                queued_at: body::iso(&receipt.ingested_at),
            })))
        }
    }
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What every ingest route checks before reading a body: the journal has been replayed
/// (so no acknowledged event can be overtaken), and the durability the request asks for.
pub(crate) fn admitted(request: &HttpRequest, state: &AppState) -> Result<Durability, ApiError> {
    if !state.lifecycle.replayed() {
        return Err(ApiError::NotReady("replaying the journal"));
    }
    params::durability(request, state.durability)
}

/// Decoded events, each the event or why its element could not be read as one.
pub(crate) type Decoded = Vec<Result<Incoming, FieldError>>;

/// The one way into the domain for decoded events, whatever protocol brought them: the
/// request paid for one event on arrival, and a batch pays for the rest before it is
/// validated, journaled and queued.
pub(crate) async fn ingest_many(
    request: &HttpRequest,
    state: &AppState,
    elements: Decoded,
    durability: Durability,
) -> Result<IngestReceipt, ApiError> {
    let more = u32::try_from(elements.len().saturating_sub(1)).unwrap_or(u32::MAX);
    guard::charge(request, &state.edge.rate_limiter, more)?;
    state
        .ingest
        .ingest(elements, durability, current_trace_link())
        .await
        .map_err(|error| ApiError::from_ingest(error, state.retry_after))
}

/// Each element's outcome, in request order, for the shippers' protocols, which answer
/// item by item: its event id, or the errors that refused it. A request with no valid
/// element is such an answer too, not an error. Counted by `protocol`.
pub(crate) fn per_item(
    protocol: &'static str,
    elements: usize,
    outcome: Result<IngestReceipt, ApiError>,
) -> Result<Vec<Result<EventId, Vec<FieldError>>>, ApiError> {
    let (accepted, rejected) = match outcome {
        Ok(receipt) => (receipt.accepted, receipt.rejected),
        Err(ApiError::InvalidBatch(rejected)) => (Vec::new(), rejected),
        Err(error) => return Err(error),
    };
    aurore_telemetry::metrics::record_shipper_events(protocol, accepted.len(), rejected.len());
    let mut accepted = accepted.into_iter();
    let mut rejected = rejected.into_iter().peekable();
    Ok((0..elements)
        .map(|index| match rejected.next_if(|rejection| rejection.index == index) {
            Some(rejection) => Err(rejection.errors),
            None => accepted.next().ok_or_else(Vec::new),
        })
        .collect())
}

/// Reads the body, decompressing it as `Content-Encoding` says (`web::Payload` does not).
/// It stops as soon as the body passes the limit, so a compressed bomb never grows past
/// it; memory grows with what arrives, never with what the client declares; every byte
/// held is drawn from the budget shared by all requests; events are counted as they
/// arrive, so a bomb of tiny events is refused after its first few kilobytes; and a body
/// that trickles in is cut off at the timeout.
pub(crate) async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    format: Format,
    limits: &RequestLimits,
    budget: &Arc<Semaphore>,
) -> Result<(web::BytesMut, Option<OwnedSemaphorePermit>), ApiError> {
    let limit = limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let compressed = request.headers().contains_key(header::CONTENT_ENCODING);
    if let Some(length) = declared.filter(|length| !compressed && *length > limit) {
        tracing::debug!(length, limit, "declared body too large");
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = decoded(request, payload)?;
    let mut received = web::BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut counter = EventCounter::new(format);
    // Decoded a buffer at a time, however well the body compresses.
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let read = async {
        loop {
            let read = body
                .read(&mut buffer)
                .await
                .map_err(|error| ApiError::Malformed(format!("cannot read the body: {error}")))?;
            let Some(chunk) = buffer.get(..read).filter(|chunk| !chunk.is_empty()) else { break };
            if received.len() + chunk.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            let bytes = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let permit = budget.clone().try_acquire_many_owned(bytes).map_err(|_| ApiError::BodiesInFlight)?;
            match &mut held {
                Some(held) => held.merge(permit),
                None => held = Some(permit),
            }
            if counter.feed(chunk) > limits.max_events_per_request {
                return Err(ApiError::TooManyEvents { limit: limits.max_events_per_request });
            }
            received.extend_from_slice(chunk);
        }
        Ok(())
    };
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { seconds: limits.body_timeout.as_secs() })??;
    Ok((received, held))
}

const READ_BUFFER_BYTES: usize = 16 * 1024;

/// The body as a reader that undoes its `Content-Encoding`.
fn decoded(request: &HttpRequest, payload: web::Payload) -> Result<Pin<Box<dyn AsyncRead>>, ApiError> {
    let raw = StreamReader::new(payload.map(|chunk| chunk.map_err(|error| std::io::Error::other(error.to_string()))));
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("invalid").trim().to_ascii_lowercase());
    Ok(match encoding.as_deref() {
        None | Some("" | "identity") => Box::pin(raw),
        Some("gzip" | "x-gzip") => Box::pin(GzipDecoder::new(raw)),
        Some("deflate") => Box::pin(ZlibDecoder::new(raw)),
        Some("br") => Box::pin(BrotliDecoder::new(raw)),
        Some("zstd") => Box::pin(ZstdDecoder::new(raw)),
        Some(other) => return Err(ApiError::UnsupportedEncoding(other.to_owned())),
    })
}

/// How a body is framed, decided by its `Content-Type` before a byte of it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Ndjson,
    /// Another protocol's framing (OTLP, Elasticsearch bulk, Loki push), whose events are
    /// counted by its decoder.
    Protocol,
}

/// Only JSON and NDJSON: a page's no-CORS `fetch` can send `text/plain` or a form, which
/// must never be taken for events.
fn format(request: &HttpRequest) -> Result<Format, ApiError> {
    let Some(mime) = media_type(request) else {
        return Err(ApiError::UnsupportedMediaType("(none)".to_owned()));
    };
    if ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"]
        .contains(&mime.as_str())
    {
        Ok(Format::Ndjson)
    } else if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(Format::Json)
    } else {
        Err(ApiError::UnsupportedMediaType(mime))
    }
}

/// The request's `Content-Type` without parameters, lower case; `invalid` when it is not
/// text, `None` when there is none.
pub(crate) fn media_type(request: &HttpRequest) -> Option<String> {
    let content_type = request.headers().get(header::CONTENT_TYPE)?.to_str().unwrap_or("invalid");
    Some(content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Counts the events of a body from its bytes as they arrive, without decoding them: the
/// non-blank lines of NDJSON, the elements of a top-level JSON array (strings and nesting
/// followed, so commas inside them do not count). Exact for well-formed bodies; the parse
/// decides for the others.
#[derive(Debug)]
struct EventCounter {
    format: Format,
    events: usize,
    /// NDJSON: the current line holds something.
    line_has_content: bool,
    /// JSON: nesting depth, whether the top level is an array, the state of a string, and
    /// whether an element of the array has started since the last comma.
    depth: u32,
    top_is_array: bool,
    in_string: bool,
    escaped: bool,
    element_open: bool,
}

impl EventCounter {
    fn new(format: Format) -> Self {
        Self {
            format,
            events: 0,
            line_has_content: false,
            depth: 0,
            top_is_array: false,
            in_string: false,
            escaped: false,
            element_open: false,
        }
    }

    /// Takes the next bytes and returns the events seen so far.
    fn feed(&mut self, bytes: &[u8]) -> usize {
        match self.format {
            Format::Ndjson => self.feed_lines(bytes),
            Format::Json => self.feed_json(bytes),
            Format::Protocol => {}
        }
        self.events
    }

    fn feed_lines(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.line_has_content = false;
            } else if !byte.is_ascii_whitespace() && !self.line_has_content {
                self.line_has_content = true;
                self.events += 1;
            }
        }
    }

    fn feed_json(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            bytes = rest;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                } else {
                    // Most of a body is inside strings: jump to the next byte that matters.
                    let plain = memchr::memchr2(b'"', b'\\', bytes).unwrap_or(bytes.len());
                    bytes = &bytes[plain..];
                }
                continue;
            }
            if byte.is_ascii_whitespace() {
                continue;
            }
            if self.depth == 1 && self.top_is_array {
                match byte {
                    b',' => self.element_open = false,
                    b']' => {}
                    _ if !self.element_open => {
                        self.element_open = true;
                        self.events += 1;
                    }
                    _ => {}
                }
            }
            match byte {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    if self.depth == 0 {
                        self.top_is_array = byte == b'[';
                    }
                    self.depth += 1;
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
    }
}

/// Parses the body, counting events as it goes: more than `max_events` is refused before
/// the rest is decoded, so a bomb of tiny events costs no more than its bytes.
fn parse(format: Format, bytes: &[u8], max_events: usize) -> Result<Body, ApiError> {
    let too_many = ApiError::TooManyEvents { limit: max_events };
    if format == Format::Ndjson {
        let mut elements = Vec::new();
        let lines = bytes.split(|byte| *byte == b'\n').enumerate().filter(|(_, line)| !line.trim_ascii().is_empty());
        for (number, line) in lines {
            if elements.len() == max_events {
                return Err(too_many);
            }
            elements.push(serde_json::from_slice(line).map_err(|error| {
                FieldError::new("event", "isJson", format!("line {} is not valid JSON: {error}", number + 1))
            }));
        }
        return Ok(Body::Many(elements));
    }
    let exceeded = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = TopLevel { max_events, exceeded: &exceeded }
        .deserialize(&mut deserializer)
        .and_then(|body| deserializer.end().map(|()| body));
    match parsed {
        Ok(body) => Ok(body),
        Err(_) if exceeded.get() => Err(too_many),
        Err(error) if error.is_data() => Err(ApiError::Malformed(format!("{error}"))),
        Err(error) => Err(ApiError::Malformed(format!("invalid JSON: {error}"))),
    }
}

/// The body's top level: one event object, or an array of at most `max_events` elements.
struct TopLevel<'a> {
    max_events: usize,
    exceeded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Body;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Body, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Body;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("the body must be a JSON object or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body, A::Error> {
        Incoming::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Body::Single)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element::<Incoming>()? {
            if elements.len() == self.max_events {
                self.exceeded.set(true);
                return Err(serde::de::Error::custom("too many events"));
            }
            elements.push(Ok(element));
        }
        Ok(Body::Many(elements))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    proptest! {
        /// Any body under any of the content types clients send is parsed, or refused with
        /// a 4xx that says why; none is a server error.
        #[test]
        fn any_body_parses_or_is_refused_with_a_4xx(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            content_type in prop_oneof![Just("application/json"), Just("application/x-ndjson"), Just("text/plain"), Just("application/vnd.x+json")],
        ) {
            let request = TestRequest::default().insert_header((header::CONTENT_TYPE, content_type)).to_http_request();
            if let Err(error) = format(&request).and_then(|format| parse(format, &body, 10)) {
                prop_assert!(error.status_code().is_client_error(), "{error}");
            }
        }

        /// An array or NDJSON of n elements is accepted exactly up to the limit.
        #[test]
        fn the_event_limit_holds_at_its_last_element(n in 0usize..30, limit in 1usize..20, ndjson: bool) {
            let (format, body) = if ndjson {
                (Format::Ndjson, "{}\n\n".repeat(n))
            } else {
                (Format::Json, format!("[{}]", vec!["{}"; n].join(",")))
            };
            match parse(format, body.as_bytes(), limit) {
                Ok(Body::Many(elements)) => prop_assert!(elements.len() == n && n <= limit),
                Err(ApiError::TooManyEvents { limit: named }) => prop_assert!(n > limit && named == limit),
                Ok(Body::Single(_)) | Err(_) => prop_assert!(false, "{n} elements, limit {limit}"),
            }
        }
    }

    proptest! {
        /// On any well-formed array or NDJSON of JSON values, fed in chunks of any size,
        /// the counter counts exactly the elements the parser finds.
        #[test]
        fn the_counter_agrees_with_the_parser(
            values in proptest::collection::vec(any_json(), 0..20),
            ndjson: bool,
            chunk in 1usize..17,
        ) {
            let (format, body) = if ndjson {
                let lines: Vec<String> = values.iter().map(Value::to_string).collect();
                (Format::Ndjson, format!("{}\n", lines.join("\n \n")))
            } else {
                (Format::Json, Value::Array(values.clone()).to_string())
            };
            let mut counter = EventCounter::new(format);
            let mut counted = 0;
            for piece in body.as_bytes().chunks(chunk) {
                counted = counter.feed(piece);
            }
            prop_assert_eq!(counted, values.len(), "{}", body);
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[\\[\\]{},:\"\\\\a ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\\]\\[,\"]{0,4}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn only_json_and_ndjson_are_events() {
        let with = |content_type: &str| {
            let request = TestRequest::default().insert_header((header::CONTENT_TYPE, content_type)).to_http_request();
            format(&request).ok()
        };
        assert_eq!(with("application/json; charset=utf-8"), Some(Format::Json));
        assert_eq!(with("Application/JSON"), Some(Format::Json));
        assert_eq!(with("application/vnd.api+json"), Some(Format::Json));
        assert_eq!(with("application/x-ndjson;charset=UTF-8"), Some(Format::Ndjson));
        for refused in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "text/json"] {
            assert_eq!(with(refused), None, "{refused}");
        }
        assert!(format(&TestRequest::default().to_http_request()).is_err(), "no Content-Type");
    }
}
