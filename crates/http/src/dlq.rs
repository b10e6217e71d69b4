//! The dead-letter queue: inspect, count, replay and delete events the store refused.

use crate::AppState;
use crate::body::{DeadLetterDetail, DeadLetterList, DeadLetterStatsBody, DeadLetterSummary, Reprocessed};
use crate::error::ApiError;
use crate::params;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::DeadLetter;
use uuid::Uuid;

#[utoipa::path(get, path = "/dlq", tag = "dead letters", params(crate::openapi::DeadLetterParams),
    responses((status = 200, description = "A page of entries, newest first, and how many match", body = DeadLetterList), (status = 400, description = "An invalid parameter, named", body = crate::body::ErrorBody)))]
pub(crate) async fn list(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter = params::dead_letter_filter(&request)?;
    let (entries, total) = state.dead_letters.list(&filter).await?;
    Ok(HttpResponse::Ok().json(DeadLetterList {
        events: entries.iter().map(DeadLetterSummary::from).collect(),
        total,
        limit: filter.limit,
        offset: filter.offset,
    }))
}

#[utoipa::path(get, path = "/dlq/statistics", tag = "dead letters",
    responses((status = 200, description = "Counts by service and state, and the oldest event", body = DeadLetterStatsBody)))]
pub(crate) async fn statistics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.dead_letters.stats().await?;
    Ok(HttpResponse::Ok().json(DeadLetterStatsBody::from(stats)))
}

/// An unknown or malformed id is simply not found.
fn entry_id(path: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(path).map_err(|_| ApiError::DeadLetterNotFound(path.to_owned()))
}

async fn find(state: &AppState, path: &str) -> Result<DeadLetter, ApiError> {
    let id = entry_id(path)?;
    state.dead_letters.get(id).await?.ok_or_else(|| ApiError::DeadLetterNotFound(path.to_owned()))
}

#[utoipa::path(get, path = "/dlq/{id}", tag = "dead letters", params(("id" = String, Path, description = "Dead-letter id")),
    responses((status = 200, description = "The entry with its original event", body = DeadLetterDetail), (status = 404, description = "No such entry", body = crate::body::ErrorBody)))]
pub(crate) async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let entry = find(&state, &path).await?;
    Ok(HttpResponse::Ok().json(DeadLetterDetail::from(&entry)))
}

/// Sends the event through the pipeline again under its own id (so a replay that already
/// landed is not duplicated), then marks the entry reprocessed.
#[utoipa::path(patch, path = "/dlq/{id}/reprocess", tag = "dead letters", params(("id" = String, Path, description = "Dead-letter id")),
    responses(
        (status = 200, description = "Re-enqueued through the normal pipeline and marked reprocessed", body = Reprocessed),
        (status = 404, description = "No such entry", body = crate::body::ErrorBody),
        (status = 409, description = "Already reprocessed", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn reprocess(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let entry = find(&state, &path).await?;
    if entry.reprocessed {
        return Err(ApiError::AlreadyReprocessed(path.into_inner()));
    }
    // Enqueued first: if that fails the entry stays pending and can be tried again. A
    // second requeue by a concurrent call is harmless, the event keeps its id. When the
    // mark finds the entry changed, the event already failed again and stays pending.
    let event_id = entry.event.id.to_string();
    state.ingest.requeue(entry.event).await.map_err(|error| ApiError::from_ingest(error, state.retry_after))?;
    state.dead_letters.mark_reprocessed(entry.id, entry.updated_at).await?;
    Ok(HttpResponse::Ok().json(Reprocessed {
        id: entry.id,
        event_id,
        status: "reprocessed",
        message: "Event re-enqueued",
    }))
}

#[utoipa::path(delete, path = "/dlq/{id}", tag = "dead letters", params(("id" = String, Path, description = "Dead-letter id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such entry", body = crate::body::ErrorBody)))]
pub(crate) async fn delete(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = entry_id(&path)?;
    if state.dead_letters.delete(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::DeadLetterNotFound(path.into_inner()))
    }
}
