//! OpenTelemetry traces over OTLP/HTTP (protobuf), and the links between a batch write
//! and the requests whose events it carries.

use crate::TelemetryError;
use aurore_domain::TraceLink;
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample};
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Where spans go and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces URL, e.g. `http://jaeger:4318/v1/traces`. When `None`, the
    /// standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` are
    /// used; with none of them set, nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces kept; a request continuing a sampled trace is always kept.
    pub sample_ratio: f64,
}

const STANDARD_ENDPOINTS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// A tracer provider exporting in the background, or `None` when no endpoint is set.
pub(crate) fn provider(settings: &TraceSettings) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let explicit = settings.otlp_endpoint.as_deref().filter(|endpoint| !endpoint.is_empty());
    let standard = STANDARD_ENDPOINTS.iter().any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()));
    if explicit.is_none() && !standard {
        return Ok(None);
    }
    // reqwest takes rustls's process-wide provider; one installed already is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = explicit {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().map_err(|error| TelemetryError::Traces(error.to_string()))?;
    let service_name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|name| !name.is_empty());
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let resource = Resource::builder()
        .with_service_name(service_name.unwrap_or_else(|| "aurore".to_owned()))
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance),
        ])
        .build();
    let sampler = FollowSampledLinks(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio))));
    global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build(),
    ))
}

/// Keeps every span linked to a sampled span, so the batch that stores a sampled
/// request's events is kept too; other spans follow their parent or the ratio.
#[derive(Debug, Clone)]
struct FollowSampledLinks(Sampler);

impl ShouldSample for FollowSampledLinks {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if links.iter().any(|link| link.span_context.is_sampled()) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// Makes `span` continue the W3C trace of an incoming request, if it names one.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(tracestate) = tracestate {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to continue.
        let _ = span.set_parent(parent);
    }
}

/// The current span as a link target, when it is part of a sampled trace.
pub fn current_trace_link() -> Option<TraceLink> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| TraceLink { trace_id: span_context.trace_id().to_bytes(), span_id: span_context.span_id().to_bytes() })
}

/// The span of one batch write: a root of its own, linked to each request it carries.
pub(crate) fn batch_span(events: usize, origins: &[TraceLink]) -> tracing::Span {
    // As i64: tracing-opentelemetry exports other integer types as text.
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let span = tracing::info_span!(parent: None, "batch.write", events = count(events), links = count(origins.len()));
    for origin in origins {
        span.add_link(SpanContext::new(
            TraceId::from_bytes(origin.trace_id),
            SpanId::from_bytes(origin.span_id),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use std::io::Read as _;

    /// An `https://` collector is spoken to in TLS: the exporter's first bytes are a TLS
    /// handshake record (0x16), not a refusal of the scheme before connecting.
    #[test]
    fn an_https_endpoint_is_exported_to_over_tls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let collector = std::thread::spawn(move || {
            listener.set_nonblocking(false).ok();
            let (mut stream, _) = listener.accept().ok()?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok();
            let mut first = [0_u8; 1];
            stream.read_exact(&mut first).ok().map(|()| first[0])
        });
        let settings =
            TraceSettings { otlp_endpoint: Some(format!("https://127.0.0.1:{port}/v1/traces")), sample_ratio: 1.0 };
        let provider = provider(&settings).expect("exporter builds").expect("an endpoint is set");
        provider.tracer("test").in_span("exported", |_| {});
        // The export fails once the handshake is cut; what matters is how it began.
        let _ = provider.force_flush();
        if !collector.is_finished() {
            // Nothing connected: unblock the collector so the test ends.
            let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        }
        let first = collector.join().expect("collector thread");
        let _ = provider.shutdown();
        assert_eq!(first, Some(0x16), "a TLS ClientHello, got {first:?}");
    }
}
