//! Per-request observation: a trace span continuing any incoming `traceparent`, the
//! `X-Correlation-ID` (accepted or generated, echoed, attached to logs and spans), and the
//! HTTP metrics.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _};
use std::time::Instant;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

pub(crate) const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// A client's id is kept when it is this short and printable; otherwise a new one is made.
const MAX_CORRELATION_ID_CHARS: usize = 128;

#[derive(Debug, Clone)]
struct CorrelationId(HeaderValue);

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

/// The request's root span, named `METHOD /route`, with the correlation id.
#[derive(Debug)]
pub(crate) struct CorrelatedRootSpan;

impl RootSpanBuilder for CorrelatedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = correlation_id(request);
        let span = tracing_actix_web::root_span!(request, correlation_id = id.to_str().unwrap_or_default());
        request.extensions_mut().insert(CorrelationId(id));
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

pub(crate) fn tracing_logger() -> TracingLogger<CorrelatedRootSpan> {
    TracingLogger::new()
}

/// Counts and times the request by its route pattern, and echoes the correlation id.
pub(crate) async fn record_and_tag(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let correlation = request.extensions().get::<CorrelationId>().cloned();
    let mut response = next.call(request).await?;
    aurore_telemetry::metrics::record_http_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    if let Some(CorrelationId(id)) = correlation {
        response.headers_mut().insert(X_CORRELATION_ID, id);
    }
    Ok(response)
}
