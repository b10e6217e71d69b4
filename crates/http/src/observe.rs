//! Per-request observation: a trace span continuing any incoming `traceparent`, the
//! `X-Correlation-ID` (accepted or generated, echoed, attached to logs and spans), and the
//! HTTP metrics. Hand-rolled rather than tracing-actix-web, whose middleware computed a
//! dozen span fields eagerly and cost 16 % of single-event ingest even with the span off.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use std::time::Instant;
use tracing::Instrument as _;
use tracing::field::Empty;

pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// A client's id is kept when it is this short and printable; otherwise a new one is made.
const MAX_CORRELATION_ID_CHARS: usize = 128;

fn correlation_id(request: &ServiceRequest) -> HeaderValue {
    request
        .headers()
        .get(X_CORRELATION_ID)
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty() && bytes.len() <= MAX_CORRELATION_ID_CHARS && bytes.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("a UUID is a valid header value")
        })
}

/// Wraps every request: its span (named `METHOD /route`, with the correlation id), its
/// metrics by route pattern, and the correlation id on the response.
pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let correlation = correlation_id(&request);
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = request.path(),
        http.response.status_code = Empty,
        correlation_id = correlation.to_str().unwrap_or_default(),
    );
    if !span.is_disabled() {
        let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
        aurore_telemetry::continue_trace(&span, header("traceparent"), header("tracestate"));
    }
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    aurore_telemetry::metrics::record_http_request(route, method.as_str(), status.as_u16(), started.elapsed());
    response.headers_mut().insert(X_CORRELATION_ID, correlation);
    Ok(response)
}
