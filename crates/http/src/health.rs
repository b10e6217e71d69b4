//! Liveness and readiness, with the original service's bodies.

use crate::AppState;
use crate::error::ApiError;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

/// A readiness probe must answer fast even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Ready when not shutting down, the schema is migrated and the database answers.
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.shutting_down() {
        return Err(ApiError::ShuttingDown);
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
