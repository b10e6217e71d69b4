//! The HTTP adapter: actix-web routes that parse requests into domain calls and domain
//! outcomes into the contract's responses. Status codes are decided in [`error`] only.
//! Every endpoint is a row of [`routes`]; every request passes [`guard`] (size limits, its
//! client's rate limit, its API key) before a handler reads a byte of its body.
//! This crate holds no business rule and no SQL.

mod admin;
mod auth;
mod body;
mod console;
mod dlq;
mod error;
mod export;
mod guard;
mod health;
mod ingest;
mod metrics;
mod observe;
mod openapi;
mod params;
mod privacy;
mod protocols;
mod query;
mod rate_limit;
mod routes;
mod tail;

use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, HttpRequest, HttpServer, web};
use aurore_domain::{
    Buffer, BusinessMetrics, CircuitBreaker, DeadLetterAdmin, Durability, ErasureStore, EventReader, IngestService,
    Journal, Lifecycle, QueryLimits, Retention, StoreHealth, Tail,
};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use actix_web::dev::Server;
pub use auth::{ApiKeys, KeyDigests};
pub use body::RetentionRun;
pub use error::ApiError;
pub use ipnet::IpNet;
pub use protocols::elastic::ElasticSettings;
pub use protocols::loki::wire as loki_push;
pub use protocols::otlp::Status as OtlpStatus;
pub use rate_limit::{RateLimiter, RateLimits};

/// Limits on a request as a whole (each event's own limits live in the domain).
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest accepted body, after any `Content-Encoding` is undone.
    pub max_body_bytes: usize,
    pub max_events_per_request: usize,
    /// Longest query string; longer gets `414`.
    pub max_query_string_bytes: usize,
    /// Most bytes of header names and values together; more gets `431`.
    pub max_header_bytes: usize,
    /// Longest a client may take to send its body.
    pub body_timeout: Duration,
}

/// Who may reach the handlers, and how often.
#[derive(Debug)]
pub struct Edge {
    pub rate_limiter: RateLimiter,
    pub api_keys: ApiKeys,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Origins browsers may call from; `*` for any, none for no CORS headers at all.
    pub cors_origins: Vec<String>,
}

/// How often buckets of idle clients are dropped.
const RATE_LIMIT_UPKEEP: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub ingest: IngestService,
    pub retention: Retention,
    pub tail: Arc<Tail>,
    /// Read for health reports and metrics; ingest goes through [`IngestService`].
    pub buffer: Arc<Buffer>,
    pub journal: Arc<dyn Journal>,
    pub reader: Arc<dyn EventReader>,
    pub store_health: Arc<dyn StoreHealth>,
    pub dead_letters: Arc<dyn DeadLetterAdmin>,
    pub erasures: Arc<dyn ErasureStore>,
    pub breaker: Arc<CircuitBreaker>,
    pub lifecycle: Arc<Lifecycle>,
    /// What `202` means unless a request asks otherwise.
    pub durability: Durability,
    pub request_limits: RequestLimits,
    /// Bytes of request bodies in memory across all requests, one permit a byte.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub edge: Edge,
    pub query_limits: QueryLimits,
    /// What a full buffer tells clients to wait before retrying.
    pub retry_after: Duration,
    pub metrics: aurore_telemetry::Metrics,
    pub started: Instant,
    /// `/health/business`, recomputed at most once a minute unless a client asks.
    pub business: BusinessCache,
    /// How Elasticsearch bulk documents name their service.
    pub elastic: ElasticSettings,
}

/// How long `/health/business` figures are reused, as in the original service.
pub const BUSINESS_METRICS_TTL: Duration = Duration::from_secs(60);

/// How often `Cache-Control: no-cache` may recompute the business figures: anyone may send
/// it, so more often than this it is answered from the cache.
pub const BUSINESS_METRICS_FRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The business figures of the last minute, and when a client last had them recomputed.
#[derive(Debug)]
pub struct BusinessCache {
    figures: moka::future::Cache<(), Arc<BusinessMetrics>>,
    forced: std::sync::Mutex<Option<Instant>>,
}

impl Default for BusinessCache {
    fn default() -> Self {
        Self {
            figures: moka::future::Cache::builder().max_capacity(1).time_to_live(BUSINESS_METRICS_TTL).build(),
            forced: std::sync::Mutex::new(None),
        }
    }
}

impl BusinessCache {
    /// Drops the cached figures for a client's `no-cache`, unless one did so less than
    /// [`BUSINESS_METRICS_FRESH_INTERVAL`] ago: then the figures are at most that old.
    async fn refresh(&self) {
        let now = Instant::now();
        let allowed = {
            // A poisoned lock still holds a valid instant.
            let mut forced = self.forced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let allowed = forced.is_none_or(|at| now.duration_since(at) >= BUSINESS_METRICS_FRESH_INTERVAL);
            if allowed {
                *forced = Some(now);
            }
            allowed
        };
        if allowed {
            self.figures.invalidate(&()).await;
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// actix worker threads; 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may run once shutdown begins.
    pub shutdown_timeout: Duration,
    /// Open connections per worker thread.
    pub max_connections_per_worker: usize,
    pub surface: Surface,
}

/// Which routes a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The whole API and the console.
    Full,
    /// Health, metrics and the API description only: a writer replica, which ingests and
    /// answers no queries.
    Probes,
}

async fn not_found(request: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound { method: request.method().to_string(), path: request.path().to_owned() })
}

/// Starts serving on `listener`. Signals are left to the caller, which owns shutdown.
pub fn serve(listener: TcpListener, state: AppState, options: &ServerOptions) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    forget_idle_clients(Arc::downgrade(&state.clone().into_inner()));
    let surface = options.surface;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|config| routes::configure(config, surface))
            .configure(|config| {
                if surface == Surface::Full {
                    console::configure(config);
                }
            })
            .default_service(web::to(not_found))
            .wrap(from_fn(guard::limits))
            .wrap(from_fn(protocols::elastic::product_header))
            .wrap(Condition::new(!state.edge.cors_origins.is_empty(), cors(&state.edge.cors_origins)))
            .wrap(security_headers())
            .wrap(from_fn(observe::observe))
    })
    .disable_signals()
    .max_connections(options.max_connections_per_worker)
    .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    Ok(server.listen(listener)?.run())
}

/// Until the server's state is gone, drops the rate-limit buckets of idle clients.
fn forget_idle_clients(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RATE_LIMIT_UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            state.edge.rate_limiter.forget_idle_clients();
            aurore_telemetry::metrics::record_rate_limit_clients(state.edge.rate_limiter.tracked_clients());
        }
    });
}

/// Responses are data, never documents: browsers must not sniff, frame or run them.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
}

/// Headers a browser client may read from a cross-origin response.
const EXPOSED_HEADERS: [&str; 8] = [
    "x-correlation-id",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = if origins.iter().any(|origin| origin == "*") {
        actix_cors::Cors::default().allow_any_origin().send_wildcard()
    } else {
        origins.iter().fold(actix_cors::Cors::default(), |cors, origin| cors.allowed_origin(origin))
    };
    cors.allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allow_any_header()
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(3600)
}
