//! `POST /events`: one JSON event, a JSON array of events, or NDJSON.

use crate::error::{ApiError, rejections_json};
use crate::{AppState, guard};
use actix_web::dev::Decompress;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{Durability, FieldError, IngestError, IngestReceipt};
use aurore_telemetry::current_trace_link;
use chrono::SecondsFormat;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The shapes a body can take, which decide the response's shape.
enum Body {
    Single(Value),
    /// Elements, some already known bad (an NDJSON line that is not JSON).
    Many(Vec<Result<Value, FieldError>>),
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
        (status = 202, description = "Accepted: as durable as asked (a single event)", body = crate::openapi::Accepted),
        (status = "2XX", description = "Accepted (an array or NDJSON): the valid events; the others are reported by index", body = crate::openapi::BatchAccepted),
        (status = 400, description = "Malformed body or invalid event(s): every field and rule named", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body over `server.max_body_bytes` (after decompression) or more events than `server.max_events_per_request` or the ingest burst", body = crate::openapi::ErrorBody),
        (status = 415, description = "Neither JSON nor NDJSON", body = crate::openapi::ErrorBody),
        (status = 422, description = "`durability=stored` and the store refused the event: dead-lettered", body = crate::openapi::ErrorBody),
        (status = 503, description = "Journal full or unavailable, shutting down or replaying; `Retry-After` set", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn post_events(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.lifecycle.replayed() {
        return Err(ApiError::NotReady("replaying the journal"));
    }
    let durability = durability(&request, state.durability)?;
    let bytes = read_body(&request, payload, state.request_limits.max_body_bytes).await?;
    let retry_after = state.retry_after;
    match parse(&request, &bytes)? {
        Body::Single(mut value) => {
            if let Some(key) = request.headers().get(IDEMPOTENCY_KEY)
                && let Value::Object(event) = &mut value
            {
                let key = key.to_str().map_err(|_| {
                    ApiError::Invalid(vec![FieldError::new(
                        "Idempotency-Key",
                        "isString",
                        "Idempotency-Key must be visible ASCII",
                    )])
                })?;
                event.entry("idempotencyKey").or_insert_with(|| Value::String(key.to_owned()));
            }
            let receipt =
                state.ingest.ingest(vec![Ok(value)], durability, current_trace_link()).await.map_err(|error| {
                    match error {
                        // A lone event's errors are reported by field, without an index.
                        IngestError::Invalid(mut rejections) => {
                            ApiError::Invalid(rejections.pop().map(|rejection| rejection.errors).unwrap_or_default())
                        }
                        other => ApiError::from_ingest(other, retry_after),
                    }
                })?;
            Ok(HttpResponse::Accepted().json(json!({
                "statusCode": 202,
                "message": "Event accepted",
                "status": "accepted",
                "event_id": receipt.accepted[0].to_string(),
                "queued_at": queued_at(&receipt),
            })))
        }
        Body::Many(elements) => {
            let limit = state.request_limits.max_events_per_request;
            if elements.len() > limit {
                return Err(ApiError::TooManyEvents { limit });
            }
            // The request paid for one event on arrival; a batch pays for the rest.
            let more = u32::try_from(elements.len().saturating_sub(1)).unwrap_or(u32::MAX);
            guard::charge(&request, &state.edge.rate_limiter, more)?;
            let receipt = state
                .ingest
                .ingest(elements, durability, current_trace_link())
                .await
                .map_err(|error| ApiError::from_ingest(error, retry_after))?;
            let event_ids: Vec<String> = receipt.accepted.iter().map(ToString::to_string).collect();
            Ok(HttpResponse::Accepted().json(json!({
                "statusCode": 202,
                "message": "Events accepted",
                "status": "accepted",
                "accepted": receipt.accepted.len(),
                "duplicates": receipt.duplicates,
                "rejected": receipt.rejected.len(),
                "event_ids": event_ids,
                "errors": rejections_json(&receipt.rejected),
                "queued_at": queued_at(&receipt),
            })))
        }
    }
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A request may ask for another durability than the server's default, with the query
/// parameter `durability=` or the header `Prefer: durability=` (`none`, `journal`, `stored`).
fn durability(request: &HttpRequest, default: Durability) -> Result<Durability, ApiError> {
    let from_query = serde_urlencoded::from_str::<Vec<(String, String)>>(request.query_string())
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(name, _)| name == "durability").map(|(_, value)| value));
    let from_header = request
        .headers()
        .get_all(header::HeaderName::from_static("prefer"))
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| preference.trim().strip_prefix("durability=").map(str::to_owned));
    match from_query.or(from_header) {
        None => Ok(default),
        Some(text) => serde_json::from_value(Value::String(text.trim().to_ascii_lowercase())).map_err(|_| {
            ApiError::Invalid(vec![FieldError::new(
                "durability",
                "isIn",
                "durability must be one of: none, journal, stored",
            )])
        }),
    }
}

fn queued_at(receipt: &IngestReceipt) -> String {
    receipt.ingested_at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads the body, decompressing it as `Content-Encoding` says (`web::Payload` does not),
/// and stops as soon as it passes the limit, so a compressed bomb never grows past it.
async fn read_body(request: &HttpRequest, payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
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
    let mut payload = Decompress::from_headers(payload.into_inner(), request.headers());
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::Malformed(format!("cannot read the body: {error}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn is_ndjson(request: &HttpRequest) -> bool {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    content_type.and_then(|value| value.split(';').next()).is_some_and(|mime| {
        let mime = mime.trim();
        ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"]
            .iter()
            .any(|known| mime.eq_ignore_ascii_case(known))
    })
}

fn parse(request: &HttpRequest, bytes: &[u8]) -> Result<Body, ApiError> {
    if is_ndjson(request) {
        let elements = bytes
            .split(|byte| *byte == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.trim_ascii().is_empty())
            .map(|(number, line)| {
                serde_json::from_slice(line).map_err(|error| {
                    FieldError::new("event", "isJson", format!("line {} is not valid JSON: {error}", number + 1))
                })
            })
            .collect();
        return Ok(Body::Many(elements));
    }
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        let json_like = mime.eq_ignore_ascii_case("application/json") || mime.to_ascii_lowercase().ends_with("+json");
        if !json_like {
            return Err(ApiError::UnsupportedMediaType(mime.to_owned()));
        }
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Array(items)) => Ok(Body::Many(items.into_iter().map(Ok).collect())),
        Ok(value @ Value::Object(_)) => Ok(Body::Single(value)),
        Ok(_) => Err(ApiError::Malformed("the body must be a JSON object or an array of objects".to_owned())),
        Err(error) => Err(ApiError::Malformed(format!("invalid JSON: {error}"))),
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
            if let Err(error) = parse(&request, &body) {
                prop_assert!(error.status_code().is_client_error(), "{error}");
            }
        }
    }
}
