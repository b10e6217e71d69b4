//! `GET /metrics` (Prometheus text, or the original's JSON buffer summary when the client
//! accepts only JSON) and `GET /metrics/prometheus`.

use crate::AppState;
use crate::body::MetricsSummary;
use crate::health::buffer_report;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_telemetry::Gauges;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text; the original's JSON buffer summary for `Accept: application/json`",
        content((String = "text/plain"), (MetricsSummary = "application/json")))))]
pub(crate) async fn metrics(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if wants_json(&request) {
        let report = buffer_report(&state);
        return HttpResponse::Ok().json(MetricsSummary {
            status: report.figures.status,
            buffer_size: report.figures.size,
            buffer_capacity: report.figures.capacity,
            buffer_utilization_percent: report.figures.utilization_percent,
            metrics: report.totals,
            uptime_seconds: state.started.elapsed().as_secs_f64(),
            time_since_last_enqueue_seconds: report.since_last_enqueue,
            time_since_last_drain_seconds: report.since_last_drain,
        });
    }
    prometheus(state).await
}

#[utoipa::path(get, path = "/metrics/prometheus", tag = "health",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub(crate) async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let breaker = state.breaker.snapshot();
    let gauges = Gauges {
        buffer: state.buffer.snapshot(),
        journal: state.journal.usage(),
        circuit: breaker.state,
        circuit_opened: breaker.opened,
        connections: state.store_health.connections(),
    };
    HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(state.metrics.render(&gauges))
}

/// JSON when the client lists it and not Prometheus' text format: scrapers send
/// `text/plain` (often alongside `*/*`), the original service's clients `application/json`.
fn wants_json(request: &HttpRequest) -> bool {
    let accept = request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let accept = accept.to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/plain") && !accept.contains("openmetrics")
}
