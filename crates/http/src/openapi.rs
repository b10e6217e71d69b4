//! The OpenAPI 3.1 description of the HTTP surface, generated from the handlers.

use actix_web::HttpResponse;
use utoipa::OpenApi;

#[derive(Debug, OpenApi)]
#[openapi(info(title = "Aurore", description = "Ingest application events over HTTP and query them."))]
pub struct ApiDoc;

pub(crate) async fn spec() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
