//! Liveness, readiness and the health reports, with the original service's bodies.

use crate::AppState;
use crate::body::{
    BufferFigures, BufferHealth, BufferTotals, BusinessBody, BusinessPart, DatabaseReport, DetailedReport, Environment,
    Health, JournalReport, MemoryReport, ProbeBody, ReplicaReport, ServerState,
};
use crate::error::ApiError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{BreakerState, BusinessMetrics, StoreError};
use chrono::SecondsFormat;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A readiness probe must answer fast even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready when this replica can take events: not shutting down, the journal replayed, and
/// the journal neither full nor failing to write. The database is not asked: while it is
/// down the journal takes the events, and a probe that said otherwise would take every
/// replica out of service at once. Its health is in `/health/database` and the metrics.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "`{\"message\": \"SERVER_IS_READY\"}`", body = ProbeBody), (status = 503, description = "Not ready: replaying, journal full or failing, or shutting down", body = crate::body::ErrorBody)))]
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
    Ok(HttpResponse::Ok().json(ProbeBody { message: "SERVER_IS_READY" }))
}

/// Past this fill the journal refuses most requests: traffic is better sent elsewhere.
const READY_JOURNAL_PERCENT: f64 = 95.0;

/// Alive until shutdown begins.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process serves requests", body = ProbeBody), (status = 503, description = "Shutting down", body = crate::body::ErrorBody)))]
pub(crate) async fn live(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    Ok(HttpResponse::Ok().json(ProbeBody { message: "SERVER_IS_NOT_SHUTTING_DOWN" }))
}

/// Connectivity, latency, connections and the writers' circuit breaker. Always 200, as in
/// the original service: the body says how the database is.
#[utoipa::path(get, path = "/health/database", tag = "health",
    responses((status = 200, description = "Connectivity, latency, pool and circuit breaker; `status` says whether the database is reachable", body = DatabaseReport)))]
pub(crate) async fn database(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(database_report(&state).await)
}

async fn database_report(state: &AppState) -> DatabaseReport {
    let started = Instant::now();
    let ping = tokio::time::timeout(PING_TIMEOUT, state.store_health.ping()).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, database, error) = match ping {
        Ok(Ok(())) if latency_ms > SLOW_PING_MS => (Health::Warning, "connected", None),
        Ok(Ok(())) => (Health::Healthy, "connected", None),
        Ok(Err(error)) => (Health::Unhealthy, "disconnected", Some(error.to_string())),
        Err(_) => (Health::Unhealthy, "disconnected", Some(format!("no answer within {PING_TIMEOUT:?}"))),
    };
    DatabaseReport {
        status,
        database,
        error,
        query_latency_ms: latency_ms,
        connection_pool: state.store_health.connections().into(),
        circuit_breaker: state.breaker.snapshot().into(),
        replica: replica_report(state).await,
        timestamp: now_text(),
    }
}

/// Above this lag the replica's readers see a noticeably old past.
const LAGGING_REPLICA: Duration = Duration::from_secs(10);

async fn replica_report(state: &AppState) -> Option<ReplicaReport> {
    let replica = match tokio::time::timeout(PING_TIMEOUT, state.store_health.replica()).await {
        Ok(replica) => replica?,
        Err(_) => Err(StoreError::unavailable(format!("no answer within {PING_TIMEOUT:?}"), None)),
    };
    Some(match replica {
        Ok(replica) => ReplicaReport {
            status: if !replica.streaming || replica.lag > LAGGING_REPLICA { Health::Warning } else { Health::Healthy },
            replay_lag_seconds: Some(replica.lag.as_secs_f64()),
            error: (!replica.streaming)
                .then(|| "not streaming from its primary: reads may miss what was stored since".to_owned()),
        },
        Err(error) => {
            ReplicaReport { status: Health::Unhealthy, replay_lag_seconds: None, error: Some(error.to_string()) }
        }
    })
}

/// Above this a reachable database is reported as `warning`, as the original did.
const SLOW_PING_MS: u64 = 1000;

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The buffer's figures, and the times since the last enqueue and drain in float seconds
/// (`None` when it never happened).
pub(crate) struct BufferReport {
    pub figures: BufferFigures,
    pub totals: BufferTotals,
    pub since_last_enqueue: Option<f64>,
    pub since_last_drain: Option<f64>,
}

pub(crate) fn buffer_report(state: &AppState) -> BufferReport {
    let buffer = state.buffer.snapshot();
    let utilization = percent(buffer.in_memory as f64, buffer.capacity as f64);
    let offered = buffer.enqueued + buffer.refused;
    let drop_rate = percent(buffer.refused as f64, offered as f64);
    let uptime = state.started.elapsed().as_secs_f64();
    let throughput = if uptime > 0.0 { buffer.enqueued as f64 / uptime } else { 0.0 };
    BufferReport {
        figures: BufferFigures {
            status: fill_status(utilization, drop_rate),
            size: buffer.events,
            capacity: buffer.capacity,
            utilization_percent: format!("{utilization:.2}"),
            spilled: buffer.events - buffer.in_memory,
            bytes: buffer.bytes,
        },
        totals: BufferTotals {
            total_enqueued: buffer.enqueued,
            total_dropped: buffer.refused,
            drop_rate_percent: format!("{drop_rate:.2}"),
            throughput_events_per_second: format!("{throughput:.2}"),
        },
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

fn buffer_health(state: &AppState) -> BufferHealth {
    let report = buffer_report(state);
    BufferHealth { status: report.figures.status, buffer: report.figures, metrics: report.totals }
}

#[utoipa::path(get, path = "/health/buffer", tag = "health",
    responses((status = 200, description = "Buffer size, capacity, utilisation and totals", body = BufferHealth)))]
pub(crate) async fn buffer(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(buffer_health(&state))
}

/// The stored-event figures, from the hourly rollup, reused for a minute. A client may
/// ask for fresh figures with `Cache-Control: no-cache`, honoured once every few seconds.
#[utoipa::path(get, path = "/health/business", tag = "health",
    params(("Cache-Control" = Option<String>, Header, description = "`no-cache` recomputes instead of using the figures of the last minute, at most once every 5 s")),
    responses((status = 200, description = "Event counts by service and hour", body = BusinessBody), (status = 503, description = "Storage unavailable", body = crate::body::ErrorBody)))]
pub(crate) async fn business(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let fresh = request
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("no-cache"));
    if fresh {
        state.business.refresh().await;
    }
    Ok(HttpResponse::Ok().json(BusinessBody::from(business_metrics(&state).await?.as_ref())))
}

async fn business_metrics(state: &AppState) -> Result<Arc<BusinessMetrics>, ApiError> {
    let store = state.reader.clone();
    state
        .business
        .figures
        .try_get_with((), async move { store.business_metrics(chrono::Utc::now()).await.map(Arc::new) })
        .await
        .map_err(|error: Arc<StoreError>| {
            ApiError::StoreUnavailable(StoreError::unavailable(
                "cannot read the business figures",
                Some(Box::new(error) as _),
            ))
        })
}

/// Everything at once. Always 200: `status` is `critical` when a part is critical or
/// failed or the circuit is open, `warning` when a part warns, else `healthy`.
#[utoipa::path(get, path = "/health/detailed", tag = "health",
    responses((status = 200, description = "Overall status with memory, database, buffer, journal, circuit and business figures", body = DetailedReport)))]
pub(crate) async fn detailed(state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let database = database_report(&state).await;
    let buffer = buffer_health(&state);
    let circuit = state.breaker.snapshot();
    let business = match business_metrics(&state).await {
        Ok(metrics) => BusinessPart::Figures(metrics.as_ref().into()),
        Err(_) => BusinessPart::Unavailable { status: "error", error: "Business metrics unavailable" },
    };
    let usage = state.journal.usage();
    let utilization = percent(usage.bytes as f64, usage.capacity_bytes as f64);
    let journal = JournalReport {
        status: fill_status(utilization, 0.0),
        bytes: usage.bytes,
        capacity_bytes: usage.capacity_bytes,
        segments: usage.segments,
        utilization_percent: format!("{utilization:.2}"),
    };
    let circuit_health = if circuit.state == BreakerState::Open { Health::Critical } else { Health::Healthy };
    let status = Health::overall([database.status, buffer.status, circuit_health, journal.status]);
    let server = if state.lifecycle.shutting_down() {
        ServerState { status: 503, message: "SERVER_IS_SHUTTING_DOWN" }
    } else if state.lifecycle.replayed() && state.lifecycle.schema_ready() {
        ServerState { status: 200, message: "SERVER_IS_READY" }
    } else {
        ServerState { status: 503, message: "SERVER_IS_NOT_READY" }
    };
    HttpResponse::Ok().json(DetailedReport {
        timestamp: now_text(),
        status,
        response_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        uptime: state.started.elapsed().as_secs_f64(),
        server,
        database,
        buffer,
        journal,
        circuit_breaker: circuit.into(),
        business,
        memory: MemoryReport {
            status: Health::Healthy,
            rss: aurore_telemetry::metrics::resident_memory_bytes().map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
        },
        environment: Environment {
            version: env!("CARGO_PKG_VERSION"),
            platform: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            pid: std::process::id(),
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::body::Health;

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
