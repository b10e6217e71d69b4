//! Liveness and readiness, with the original service's bodies.

use crate::AppState;
use crate::error::ApiError;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

/// A readiness probe must answer fast even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready when not shutting down, the journal is replayed, the schema is migrated and the
/// database answers.
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    if !state.lifecycle.replayed() {
        return Err(ApiError::NotReady("replaying the journal"));
    }
    if !state.lifecycle.schema_ready() {
        return Err(ApiError::NotReady("migrations have not run"));
    }
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"message": "SERVER_IS_READY"}))),
        Ok(Err(_)) | Err(_) => Err(ApiError::NotReady("database unreachable")),
    }
}

/// Alive until shutdown begins.
pub(crate) async fn live(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    Ok(HttpResponse::Ok().json(json!({"message": "SERVER_IS_NOT_SHUTTING_DOWN"})))
}

/// Connectivity, latency, connections and the writers' circuit breaker. Always 200, as in
/// the original service: the body says how the database is.
pub(crate) async fn database(state: web::Data<AppState>) -> HttpResponse {
    let started = std::time::Instant::now();
    let ping = tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await;
    let latency_ms = started.elapsed().as_millis();
    let breaker = state.breaker.snapshot();
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut body = json!({
        "queryLatencyMs": latency_ms,
        "connectionPool": state.store.connections(),
        "circuitBreaker": breaker,
        "timestamp": timestamp,
    });
    let (status, database, error) = match ping {
        Ok(Ok(())) if latency_ms > SLOW_PING_MS => ("warning", "connected", None),
        Ok(Ok(())) => ("healthy", "connected", None),
        Ok(Err(error)) => ("unhealthy", "disconnected", Some(error.to_string())),
        Err(_) => ("unhealthy", "disconnected", Some(format!("no answer within {PING_TIMEOUT:?}"))),
    };
    body["status"] = json!(status);
    body["database"] = json!(database);
    if let Some(error) = error {
        body["error"] = json!(error);
    }
    HttpResponse::Ok().json(body)
}

/// Above this a reachable database is reported as `warning`, as the original did.
const SLOW_PING_MS: u128 = 1000;
