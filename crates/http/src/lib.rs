//! The HTTP adapter: actix-web routes that parse requests into domain calls and domain
//! outcomes into the contract's responses. Status codes are decided in [`error`] only.
//! This crate holds no business rule and no SQL.

mod admin;
mod dlq;
mod error;
mod export;
mod health;
mod ingest;
mod metrics;
mod observe;
mod query;
mod tail;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, web};
use aurore_domain::{
    Buffer, BusinessMetrics, CircuitBreaker, DeadLetterStore, Durability, EventStore, IngestService, Journal,
    Lifecycle, QueryLimits, Retention, Tail,
};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use actix_web::dev::Server;
pub use error::ApiError;

/// Limits on a request as a whole (each event's own limits live in the domain).
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest accepted body, after any `Content-Encoding` is undone.
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub ingest: IngestService,
    pub retention: Retention,
    pub tail: Arc<Tail>,
    /// Read for health reports and metrics; ingest goes through [`IngestService`].
    pub buffer: Arc<Buffer>,
    pub journal: Option<Arc<dyn Journal>>,
    pub store: Arc<dyn EventStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub breaker: Arc<CircuitBreaker>,
    pub lifecycle: Arc<Lifecycle>,
    /// What `202` means unless a request asks otherwise.
    pub durability: Durability,
    pub request_limits: RequestLimits,
    pub query_limits: QueryLimits,
    /// What a full buffer tells clients to wait before retrying.
    pub retry_after: Duration,
    pub metrics: aurore_telemetry::Metrics,
    pub started: Instant,
    /// `/health/business`, recomputed at most once a minute.
    pub business: moka::future::Cache<(), Arc<BusinessMetrics>>,
}

/// How long `/health/business` figures are reused, as in the original service.
pub const BUSINESS_METRICS_TTL: Duration = Duration::from_secs(60);

/// The cache `AppState::business` expects.
pub fn business_cache() -> moka::future::Cache<(), Arc<BusinessMetrics>> {
    moka::future::Cache::builder().max_capacity(1).time_to_live(BUSINESS_METRICS_TTL).build()
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// actix worker threads; 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may run once shutdown begins.
    pub shutdown_timeout: Duration,
}

/// Every route of the service.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/events").route(web::post().to(ingest::post_events)).route(web::get().to(query::get_events)),
        )
        .service(
            web::resource("/events/export")
                .wrap(actix_web::middleware::Compress::default())
                .route(web::get().to(export::export)),
        )
        .route("/events/tail", web::get().to(tail::tail))
        .route("/health", web::get().to(health::ready))
        .route("/health/ready", web::get().to(health::ready))
        .route("/ready", web::get().to(health::ready))
        .route("/health/live", web::get().to(health::live))
        .route("/live", web::get().to(health::live))
        .route("/health/database", web::get().to(health::database))
        .route("/health/buffer", web::get().to(health::buffer))
        .route("/health/detailed", web::get().to(health::detailed))
        .route("/health/business", web::get().to(health::business))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/metrics/prometheus", web::get().to(metrics::prometheus))
        .route("/dlq", web::get().to(dlq::list))
        .route("/dlq/statistics", web::get().to(dlq::statistics))
        .service(web::resource("/dlq/{id}").route(web::get().to(dlq::get)).route(web::delete().to(dlq::delete)))
        .route("/dlq/{id}/reprocess", web::patch().to(dlq::reprocess))
        .route("/admin/retention/run", web::post().to(admin::run_retention));
}

async fn not_found(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound { method: request.method().to_string(), path: request.path().to_owned() })
}

/// Starts serving on `listener`. Signals are left to the caller, which owns shutdown.
pub fn serve(listener: TcpListener, state: AppState, options: &ServerOptions) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(not_found))
            .wrap(from_fn(observe::observe))
    })
    .disable_signals()
    .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    Ok(server.listen(listener)?.run())
}
