//! The browser console at `/ui`: its files from [`aurore_console`], with ETag, `304` and
//! `HEAD` from the embed responder. Hashed assets are cached for a year, `index.html`
//! revalidated each time; paths without a file of their own get `index.html`, so the
//! console's own links can be opened directly. `/` sends people there.

use crate::routes::CONSOLE_ROUTES;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Compress, from_fn};
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_rust_embed_responder::IntoResponse;

/// The console may load its own scripts, styles and data, from this origin only.
const CONSOLE_CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where Vite writes content-hashed files: they never change under one name.
const ASSETS: &str = "assets/";

pub(crate) async fn redirect_home() -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, "/ui/")).finish()
}

pub(crate) async fn serve(request: HttpRequest) -> HttpResponse {
    let path = request.match_info().get("path").unwrap_or_default();
    let (file, cache) = match aurore_console::file(path) {
        Some(file) if path.starts_with(ASSETS) => (file, "public, max-age=31536000, immutable"),
        Some(file) => (file, "no-cache"),
        // A missing script must fail as a script, not load the page in its place.
        None if path.starts_with(ASSETS) => return HttpResponse::NotFound().finish(),
        None => match aurore_console::file(aurore_console::INDEX) {
            Some(index) => (index, "no-cache"),
            None => {
                return HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header((header::CONTENT_SECURITY_POLICY, CONSOLE_CSP))
                    .body(aurore_console::PLACEHOLDER);
            }
        },
    };
    let content_type = HeaderValue::from_str(file.metadata.mimetype()).ok();
    let mut response = file.into_response().respond_to(&request).map_into_boxed_body();
    let headers = response.headers_mut();
    // The responder leaves the type to sniffing, which `nosniff` forbids.
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    response
}

/// Registers `/`, `/ui` and `/ui/...` for `GET` and `HEAD`, each behind the same access
/// guard as the API's routes (its rate limit; the console is public, its data is not).
pub(crate) fn configure(config: &mut web::ServiceConfig) {
    for endpoint in &CONSOLE_ROUTES {
        let route = |method| {
            (endpoint.handler)()
                .wrap(Compress::default())
                .wrap(from_fn(move |request, next| crate::guard::access(endpoint, request, next)))
                .method(method)
        };
        config.service(
            web::resource(endpoint.path)
                .route(route(actix_web::http::Method::GET))
                .route(route(actix_web::http::Method::HEAD)),
        );
    }
}
