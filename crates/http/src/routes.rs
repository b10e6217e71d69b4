//! Every endpoint, once: its method, path, rate-limit group and handler. Routing, rate
//! limits, API-key scopes and the OpenAPI check all read this table, so a route cannot
//! exist without a group and a scope.

use crate::protocols::{elastic, loki, otlp};
use crate::{admin, console, dlq, export, health, ingest, metrics, openapi, privacy, query, tail};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{Route, web};

/// The rate-limit bucket an endpoint draws from; each has its own limit per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// `POST /events` and the shippers' protocols, counted in events.
    Ingest = 0,
    /// Reads of events and dead letters.
    Query = 1,
    /// Health, metrics and the API description: what probes and scrapers call.
    Health = 2,
    /// Operator actions that change or remove data.
    Admin = 3,
}

impl RouteGroup {
    pub const ALL: [Self; 4] = [Self::Ingest, Self::Query, Self::Health, Self::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Query => "query",
            Self::Health => "health",
            Self::Admin => "admin",
        }
    }

    /// Which keys open the group once API keys are configured.
    pub fn access(self) -> Access {
        match self {
            Self::Ingest | Self::Query => Access::Client,
            Self::Health => Access::Public,
            Self::Admin => Access::Admin,
        }
    }
}

/// Who may call an endpoint when API keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes and scrapers: never behind a key.
    Public,
    /// Any API key (or admin key).
    Client,
    /// An admin key.
    Admin,
}

#[derive(Debug)]
pub struct Endpoint {
    pub method: Method,
    /// The actix pattern, which is also the OpenAPI path template.
    pub path: &'static str,
    pub group: RouteGroup,
    pub(crate) handler: fn() -> Route,
}

const fn endpoint(method: Method, path: &'static str, group: RouteGroup, handler: fn() -> Route) -> Endpoint {
    Endpoint { method, path, group, handler }
}

use RouteGroup::{Admin, Health, Ingest, Query};

/// The whole HTTP surface.
pub static ENDPOINTS: [Endpoint; 42] = [
    endpoint(Method::POST, "/events", Ingest, || web::to(ingest::post_events)),
    endpoint(Method::POST, otlp::PATH, Ingest, || web::to(otlp::export_logs)),
    endpoint(Method::POST, "/loki/api/v1/push", Ingest, || web::to(loki::push)),
    endpoint(Method::POST, "/es/_bulk", Ingest, || web::to(elastic::bulk)),
    endpoint(Method::PUT, "/es/_bulk", Ingest, || web::to(elastic::bulk)),
    endpoint(Method::POST, "/es/{index}/_bulk", Ingest, || web::to(elastic::bulk_index)),
    endpoint(Method::PUT, "/es/{index}/_bulk", Ingest, || web::to(elastic::bulk_index)),
    // What Elasticsearch clients probe before they ship: public, like health.
    endpoint(Method::GET, "/es", Health, || web::to(elastic::info)),
    endpoint(Method::HEAD, "/es", Health, || web::to(elastic::info)),
    endpoint(Method::GET, "/es/", Health, || web::to(elastic::info)),
    endpoint(Method::HEAD, "/es/", Health, || web::to(elastic::info)),
    endpoint(Method::GET, "/es/_cluster/health", Health, || web::to(elastic::cluster_health)),
    endpoint(Method::GET, "/es/_license", Health, || web::to(elastic::license)),
    endpoint(Method::GET, "/events", Query, || web::to(query::get_events)),
    endpoint(Method::GET, "/events/export", Query, || {
        web::to(export::export).wrap(actix_web::middleware::Compress::default())
    }),
    endpoint(Method::GET, "/events/tail", Query, || web::to(tail::tail)),
    endpoint(Method::GET, "/events/histogram", Query, || web::to(query::get_histogram)),
    endpoint(Method::GET, "/events/query/explain", Query, || web::to(query::explain_query)),
    endpoint(Method::GET, "/services", Query, || web::to(query::get_services)),
    endpoint(Method::GET, "/dlq", Query, || web::to(dlq::list)),
    endpoint(Method::GET, "/dlq/statistics", Query, || web::to(dlq::statistics)),
    endpoint(Method::GET, "/dlq/{id}", Query, || web::to(dlq::get)),
    endpoint(Method::DELETE, "/dlq/{id}", Admin, || web::to(dlq::delete)),
    endpoint(Method::PATCH, "/dlq/{id}/reprocess", Admin, || web::to(dlq::reprocess)),
    endpoint(Method::POST, "/admin/retention/run", Admin, || web::to(admin::run_retention)),
    endpoint(Method::GET, "/privacy", Query, || web::to(privacy::rules)),
    endpoint(Method::POST, "/admin/erase", Admin, || web::to(privacy::erase)),
    endpoint(Method::GET, "/admin/erasures", Admin, || web::to(privacy::erasures)),
    endpoint(Method::POST, "/admin/decrypt", Admin, || web::to(privacy::decrypt)),
    endpoint(Method::GET, "/health", Health, || web::to(health::ready)),
    endpoint(Method::GET, "/health/ready", Health, || web::to(health::ready)),
    endpoint(Method::GET, "/ready", Health, || web::to(health::ready)),
    endpoint(Method::GET, "/health/live", Health, || web::to(health::live)),
    endpoint(Method::GET, "/live", Health, || web::to(health::live)),
    endpoint(Method::GET, "/health/database", Health, || web::to(health::database)),
    endpoint(Method::GET, "/health/buffer", Health, || web::to(health::buffer)),
    endpoint(Method::GET, "/health/detailed", Health, || web::to(health::detailed)),
    endpoint(Method::GET, "/health/business", Health, || web::to(health::business)),
    endpoint(Method::GET, "/metrics", Health, || web::to(metrics::metrics)),
    endpoint(Method::GET, "/metrics/prometheus", Health, || web::to(metrics::prometheus)),
    endpoint(Method::GET, "/openapi.json", Health, || web::to(openapi::spec)),
    // Where the original served its description; kept for its clients' tooling.
    endpoint(Method::GET, "/api-json", Health, || web::to(openapi::spec)),
];

/// The console's routes: public, in the health group's rate limit, and outside the API's
/// description (they serve files, not JSON).
pub static CONSOLE_ROUTES: [Endpoint; 3] = [
    endpoint(Method::GET, "/", Health, || web::to(console::redirect_home)),
    endpoint(Method::GET, "/ui", Health, || web::to(console::serve)),
    endpoint(Method::GET, "/ui/{path:.*}", Health, || web::to(console::serve)),
];

/// Registers the table: one resource per path, one route per method, so a wrong method
/// gets `405` rather than falling through. Each route is wrapped in the access guard for
/// its own row, which the router picked: no spelling of a path reaches a handler unguarded.
pub fn configure(config: &mut web::ServiceConfig, surface: crate::Surface) {
    let served = |endpoint: &&Endpoint| surface == crate::Surface::Full || endpoint.group == Health;
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in ENDPOINTS.iter().filter(served) {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let resource = ENDPOINTS.iter().filter(served).filter(|endpoint| endpoint.path == path).fold(
            web::resource(path),
            |resource, endpoint| {
                let guarded = (endpoint.handler)()
                    .wrap(from_fn(move |request, next| crate::guard::access(endpoint, request, next)));
                resource.route(guarded.method(endpoint.method.clone()))
            },
        );
        config.service(resource);
    }
}
