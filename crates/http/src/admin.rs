//! Operator actions.

use crate::AppState;
use crate::body::RetentionRun;
use crate::error::ApiError;
use actix_web::{HttpResponse, web};

/// Runs retention now and reports what it removed (`ran: false` when another replica was
/// running it).
#[utoipa::path(post, path = "/admin/retention/run", tag = "admin",
    responses((status = 200, description = "What the run removed; `ran: false` when another replica held the lock", body = crate::body::RetentionRun), (status = 503, description = "Storage unavailable", body = crate::body::ErrorBody)))]
pub(crate) async fn run_retention(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = state.retention.run().await?;
    Ok(HttpResponse::Ok().json(RetentionRun::from(report)))
}
