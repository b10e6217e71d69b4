//! `GET /metrics` (Prometheus text, or the original's JSON buffer summary when the client
//! accepts only JSON) and `GET /metrics/prometheus`.

use crate::AppState;
use crate::health::buffer_report;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_telemetry::Gauges;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text; the original's JSON buffer summary for `Accept: application/json`", content_type = "text/plain")))]
pub(crate) async fn metrics(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if wants_json(&request) {
        let report = buffer_report(&state);
        let mut body = serde_json::json!({
            "status": report.status,
            "buffer_size": report.size,
            "buffer_capacity": report.capacity,
            "buffer_utilization_percent": report.utilization_percent,
            "metrics": report.metrics,
            "uptime_seconds": state.started.elapsed().as_secs_f64(),
        });
        body["time_since_last_enqueue_seconds"] = serde_json::json!(report.since_last_enqueue);
        body["time_since_last_drain_seconds"] = serde_json::json!(report.since_last_drain);
        return HttpResponse::Ok().json(body);
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
