//! Liveness, readiness and the health reports, with the original service's bodies.

use crate::AppState;
use crate::error::ApiError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{BreakerState, BusinessMetrics, StoreError};
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a part of the service is, worst last: a report is as bad as its worst part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Health {
    Healthy,
    Warning,
    /// Only the database is ever unhealthy: unreachable, which the journal rides out.
    Unhealthy,
    Critical,
}

impl Health {
    /// The overall report knows no `unhealthy`: an unreachable database only warns, as in
    /// the original service, since the journal keeps taking events meanwhile.
    fn overall(parts: impl IntoIterator<Item = Self>) -> Self {
        match parts.into_iter().max().unwrap_or(Self::Healthy) {
            Self::Unhealthy => Self::Warning,
            worst => worst,
        }
    }
}

/// A readiness probe must answer fast even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready when this replica can take events: not shutting down, the journal replayed, and
/// the journal neither full nor failing to write. The database is not asked: while it is
/// down the journal takes the events, and a probe that said otherwise would take every
/// replica out of service at once. Its health is in `/health/database` and the metrics.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "`{\"message\": \"SERVER_IS_READY\"}`", body = Object), (status = 503, description = "Not ready: replaying, journal full or failing, or shutting down", body = crate::openapi::ErrorBody)))]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    if !state.lifecycle.replayed() {
        return Err(ApiError::NotReady("replaying the journal"));
    }
    let usage = state.journal.usage();
    if usage.write_failing {
        return Err(ApiError::NotReady("the journal cannot write"));
    }
    if percent(usage.bytes as f64, usage.capacity_bytes as f64) >= READY_JOURNAL_PERCENT {
        return Err(ApiError::NotReady("the journal is full"));
    }
    Ok(HttpResponse::Ok().json(json!({"message": "SERVER_IS_READY"})))
}

/// Past this fill the journal refuses most requests: traffic is better sent elsewhere.
const READY_JOURNAL_PERCENT: f64 = 95.0;

/// Alive until shutdown begins.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process serves requests", body = Object), (status = 503, description = "Shutting down", body = crate::openapi::ErrorBody)))]
pub(crate) async fn live(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    Ok(HttpResponse::Ok().json(json!({"message": "SERVER_IS_NOT_SHUTTING_DOWN"})))
}

/// Connectivity, latency, connections and the writers' circuit breaker. Always 200, as in
/// the original service: the body says how the database is.
#[utoipa::path(get, path = "/health/database", tag = "health",
    responses((status = 200, description = "Connectivity, latency, pool and circuit breaker", body = Object), (status = 503, description = "Database unreachable", body = Object)))]
pub(crate) async fn database(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(database_report(&state).await.1)
}

async fn database_report(state: &AppState) -> (Health, Value) {
    let started = Instant::now();
    let ping = tokio::time::timeout(PING_TIMEOUT, state.store_health.ping()).await;
    let latency_ms = started.elapsed().as_millis();
    let mut body = json!({
        "queryLatencyMs": latency_ms,
        "connectionPool": state.store_health.connections(),
        "circuitBreaker": state.breaker.snapshot(),
        "timestamp": now_text(),
    });
    let (status, database, error) = match ping {
        Ok(Ok(())) if latency_ms > SLOW_PING_MS => (Health::Warning, "connected", None),
        Ok(Ok(())) => (Health::Healthy, "connected", None),
        Ok(Err(error)) => (Health::Unhealthy, "disconnected", Some(error.to_string())),
        Err(_) => (Health::Unhealthy, "disconnected", Some(format!("no answer within {PING_TIMEOUT:?}"))),
    };
    body["status"] = json!(status);
    body["database"] = json!(database);
    if let Some(error) = error {
        body["error"] = json!(error);
    }
    (status, body)
}

/// Above this a reachable database is reported as `warning`, as the original did.
const SLOW_PING_MS: u128 = 1000;

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The buffer as the original service reported it: percentages and rates as strings
/// with two decimals, times in float seconds or `null` when it never happened.
#[derive(Debug, Serialize)]
pub(crate) struct BufferReport {
    pub status: Health,
    pub size: usize,
    pub capacity: usize,
    pub utilization_percent: String,
    /// Events waiting in the journal only, not in memory.
    pub spilled: usize,
    pub bytes: usize,
    #[serde(skip)]
    pub metrics: Value,
    #[serde(skip)]
    pub since_last_enqueue: Option<f64>,
    #[serde(skip)]
    pub since_last_drain: Option<f64>,
}

pub(crate) fn buffer_report(state: &AppState) -> BufferReport {
    let buffer = state.buffer.snapshot();
    let utilization = percent(buffer.in_memory as f64, buffer.capacity as f64);
    let offered = buffer.enqueued + buffer.refused;
    let drop_rate = percent(buffer.refused as f64, offered as f64);
    let status = fill_status(utilization, drop_rate);
    let uptime = state.started.elapsed().as_secs_f64();
    let throughput = if uptime > 0.0 { buffer.enqueued as f64 / uptime } else { 0.0 };
    BufferReport {
        status,
        size: buffer.events,
        capacity: buffer.capacity,
        utilization_percent: format!("{utilization:.2}"),
        spilled: buffer.events - buffer.in_memory,
        bytes: buffer.bytes,
        metrics: json!({
            "total_enqueued": buffer.enqueued,
            "total_dropped": buffer.refused,
            "drop_rate_percent": format!("{drop_rate:.2}"),
            "throughput_events_per_second": format!("{throughput:.2}"),
        }),
        since_last_enqueue: buffer.since_last_enqueue.map(|elapsed| elapsed.as_secs_f64()),
        since_last_drain: buffer.since_last_drain.map(|elapsed| elapsed.as_secs_f64()),
    }
}

/// The original service's thresholds for a store of pending events: how full it is, and
/// how much offered to it was refused.
fn fill_status(utilization_percent: f64, refused_percent: f64) -> Health {
    if utilization_percent >= 90.0 || refused_percent > 5.0 {
        Health::Critical
    } else if utilization_percent >= 70.0 || refused_percent > 1.0 {
        Health::Warning
    } else {
        Health::Healthy
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole * 100.0 } else { 0.0 }
}

fn buffer_json(state: &AppState) -> (Health, Value) {
    let report = buffer_report(state);
    let metrics = report.metrics.clone();
    (report.status, json!({"status": report.status, "buffer": report, "metrics": metrics}))
}

#[utoipa::path(get, path = "/health/buffer", tag = "health",
    responses((status = 200, description = "Buffer size, capacity, utilisation and totals", body = Object)))]
pub(crate) async fn buffer(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(buffer_json(&state).1)
}

/// The stored-event figures, from the hourly rollup, reused for a minute. A client may
/// ask for fresh figures with `Cache-Control: no-cache`, honoured once every few seconds.
#[utoipa::path(get, path = "/health/business", tag = "health",
    params(("Cache-Control" = Option<String>, Header, description = "`no-cache` recomputes instead of using the figures of the last minute, at most once every 5 s")),
    responses((status = 200, description = "Event counts by service and hour", body = Object), (status = 503, description = "Storage unavailable", body = crate::openapi::ErrorBody)))]
pub(crate) async fn business(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fresh = request
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("no-cache"));
    if fresh {
        state.business.refresh().await;
    }
    Ok(HttpResponse::Ok().json(business_metrics(&state).await?.as_ref()))
}

async fn business_metrics(state: &AppState) -> Result<Arc<BusinessMetrics>, ApiError> {
    let store = state.reader.clone();
    state
        .business
        .figures
        .try_get_with((), async move { store.business_metrics(chrono::Utc::now()).await.map(Arc::new) })
        .await
        .map_err(|error: Arc<StoreError>| ApiError::StoreUnavailable(StoreError::Unavailable(error.to_string())))
}

/// Everything at once. Always 200: `status` is `critical` when a part is critical or
/// failed or the circuit is open, `warning` when a part warns, else `healthy`.
#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, description = "Overall status with memory, database, buffer, journal, circuit and business figures", body = Object), (status = 503, description = "Critical", body = Object)))]
pub(crate) async fn detailed(state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let (database_health, database) = database_report(&state).await;
    let (buffer_health, buffer) = buffer_json(&state);
    let circuit = state.breaker.snapshot();
    let business = match business_metrics(&state).await {
        Ok(metrics) => json!(metrics.as_ref()),
        Err(_) => json!({"status": "error", "error": "Business metrics unavailable"}),
    };
    let usage = state.journal.usage();
    let utilization = percent(usage.bytes as f64, usage.capacity_bytes as f64);
    let journal_health = fill_status(utilization, 0.0);
    let journal = json!({"status": journal_health, "bytes": usage.bytes, "capacityBytes": usage.capacity_bytes,
           "segments": usage.segments, "utilizationPercent": format!("{utilization:.2}")});
    let circuit_health = if circuit.state == BreakerState::Open { Health::Critical } else { Health::Healthy };
    let status = Health::overall([database_health, buffer_health, circuit_health, journal_health]);
    let (server_status, server_message) = if state.lifecycle.shutting_down() {
        (503, "SERVER_IS_SHUTTING_DOWN")
    } else if state.lifecycle.replayed() && state.lifecycle.schema_ready() {
        (200, "SERVER_IS_READY")
    } else {
        (503, "SERVER_IS_NOT_READY")
    };
    let rss_mb = aurore_telemetry::metrics::resident_memory_bytes().map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    HttpResponse::Ok().json(json!({
        "timestamp": now_text(),
        "status": status,
        "responseTimeMs": started.elapsed().as_millis(),
        "uptime": state.started.elapsed().as_secs_f64(),
        "server": {"status": server_status, "message": server_message},
        "database": database,
        "buffer": buffer,
        "journal": journal,
        "circuitBreaker": circuit,
        "business": business,
        "memory": {"status": "healthy", "rss": rss_mb},
        "environment": {
            "version": env!("CARGO_PKG_VERSION"),
            "platform": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "pid": std::process::id(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn a_report_is_as_bad_as_its_worst_part_and_an_unreachable_database_only_warns() {
        assert_eq!(Health::overall([]), Health::Healthy);
        assert_eq!(Health::overall([Health::Healthy, Health::Warning]), Health::Warning);
        assert_eq!(Health::overall([Health::Unhealthy, Health::Healthy]), Health::Warning);
        assert_eq!(Health::overall([Health::Unhealthy, Health::Critical, Health::Warning]), Health::Critical);
        let wire: Vec<String> = [Health::Healthy, Health::Warning, Health::Unhealthy, Health::Critical]
            .iter()
            .map(|health| serde_json::to_string(health).unwrap())
            .collect();
        assert_eq!(wire, ["\"healthy\"", "\"warning\"", "\"unhealthy\"", "\"critical\""]);
    }
}
