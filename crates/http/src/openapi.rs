//! The OpenAPI 3.1 description, generated from the handlers' annotations (utoipa). What is
//! the same for many routes is added from the route table instead of being repeated: API
//! key security and `401`/`403` where keys apply, `429` where a rate limit applies, and
//! the size limits every request is held to. Aliases get their canonical path's operation.

use crate::body::ErrorBody;
use crate::routes::{Access, ENDPOINTS};
use actix_web::HttpResponse;
use actix_web::http::Method;
use serde::Serialize;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Spec, RefOr, Response};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Aurore", description = "Ingest application events over HTTP, store them in PostgreSQL, query them."),
    paths(
        crate::ingest::post_events,
        crate::protocols::otlp::export_logs,
        crate::protocols::loki::push,
        crate::protocols::elastic::bulk,
        crate::protocols::elastic::bulk_index,
        crate::protocols::elastic::info,
        crate::protocols::elastic::cluster_health,
        crate::protocols::elastic::license,
        crate::query::get_events,
        crate::export::export,
        crate::tail::tail,
        crate::query::get_histogram,
        crate::query::explain_query,
        crate::query::get_services,
        crate::dlq::list,
        crate::dlq::statistics,
        crate::dlq::get,
        crate::dlq::delete,
        crate::dlq::reprocess,
        crate::admin::run_retention,
        crate::privacy::rules,
        crate::privacy::erase,
        crate::privacy::erasures,
        crate::privacy::decrypt,
        crate::health::ready,
        crate::health::live,
        crate::health::database,
        crate::health::buffer,
        crate::health::detailed,
        crate::health::business,
        crate::metrics::metrics,
        crate::metrics::prometheus,
        spec,
    ),
    components(schemas(EventInput, ErrorBody)),
    modifiers(&FromRouteTable),
    tags(
        (name = "ingest", description = "Sending events"),
        (name = "elasticsearch", description = "Elasticsearch's bulk API and the probes its clients send first, under `/es`"),
        (name = "loki", description = "Loki's push API"),
        (name = "query", description = "Reading events"),
        (name = "dead letters", description = "Events the store refused, kept for review and replay"),
        (name = "admin", description = "Operator actions"),
        (name = "privacy", description = "Privacy rules, and erasing a person's events"),
        (name = "health", description = "Probes, metrics and this description"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json` (and `/api-json`, where the original served it).
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "This description, OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn spec() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Paths served by the same handler as another.
const ALIASES: [(&str, &str); 5] = [
    ("/health/ready", "/health"),
    ("/ready", "/health"),
    ("/live", "/health/live"),
    ("/api-json", "/openapi.json"),
    ("/es/", "/es"),
];

/// Methods served by the same handler as another on a path: `(path, method, as)`.
const METHOD_ALIASES: [(&str, Method, Method); 3] = [
    ("/es", Method::HEAD, Method::GET),
    ("/es/_bulk", Method::PUT, Method::POST),
    ("/es/{index}/_bulk", Method::PUT, Method::POST),
];

struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, openapi: &mut Spec) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("apiKey", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        for (path, alias, canonical) in &METHOD_ALIASES {
            let Some(item) = openapi.paths.paths.get_mut(*path) else { continue };
            let Some(mut copy) = operation(item, canonical).cloned() else { continue };
            copy.operation_id = copy.operation_id.take().map(|id| format!("{id}_{}", alias.as_str().to_lowercase()));
            if let Some(slot) = slot(item, alias) {
                *slot = Some(copy);
            }
        }
        for (alias, canonical) in ALIASES {
            if let Some(mut item) = openapi.paths.paths.get(canonical).cloned() {
                for operation in operations(&mut item) {
                    operation.operation_id =
                        operation.operation_id.take().map(|id| format!("{id}{}", alias.replace('/', "_")));
                }
                openapi.paths.paths.insert(alias.to_owned(), item);
            }
        }
        for endpoint in &ENDPOINTS {
            let Some(operation) =
                openapi.paths.paths.get_mut(endpoint.path).and_then(|item| operation(item, &endpoint.method))
            else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            let mut add = |status: u16, description: &str| {
                responses.entry(status.to_string()).or_insert_with(|| error_response(description));
            };
            add(414, "The query string is longer than `server.max_query_string_bytes`");
            add(431, "The headers are larger than `server.max_header_bytes`");
            add(429, "Over this client's rate limit for the route's group; `Retry-After` says when to retry");
            if endpoint.group.access() != Access::Public {
                add(401, "API keys are configured and the request carries none, or an unknown one");
                add(403, "The key is valid but may not use this route (it needs an admin key)");
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("apiKey", Vec::<String>::new()),
                ]);
            }
        }
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete, &mut item.head, &mut item.options]
        .into_iter()
        .filter_map(Option::as_mut)
}

fn operation<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    slot(item, method)?.as_mut()
}

fn slot<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Option<Operation>> {
    Some(match *method {
        Method::GET => &mut item.get,
        Method::POST => &mut item.post,
        Method::PUT => &mut item.put,
        Method::PATCH => &mut item.patch,
        Method::DELETE => &mut item.delete,
        Method::HEAD => &mut item.head,
        _ => return None,
    })
}

/// One event as clients send it. `POST /events` also takes an array of these, or NDJSON.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventInput {
    /// RFC 3339 / ISO 8601 (any offset; stored in UTC), a date, or Unix epoch milliseconds
    /// (number or digits); years 1970 to 2099.
    #[schema(example = "2024-01-15T10:30:00.000Z")]
    timestamp: String,
    /// 1 to 100 characters (`limits.max_service_chars`).
    #[schema(example = "auth-service", min_length = 1, max_length = 100)]
    service: String,
    /// 1 to 2,000 characters (`limits.max_message_chars`); markup is stripped by default.
    #[schema(example = "User login successful", min_length = 1, max_length = 2000)]
    message: String,
    /// At most 16 KiB serialised, 5 levels deep, 100 keys in total.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// The same key and timestamp are stored once (also `Idempotency-Key`), ≤ 256 characters.
    idempotency_key: Option<String>,
}

/// The service and time range `GET /events`, the export and the histogram read. These
/// parameter types are read only by the derive: the handlers parse query strings
/// themselves, to report every bad or unknown parameter by name.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RangeParams {
    /// Exact service name, ≤ 100 characters.
    service: String,
    /// Start of the range (inclusive), as `timestamp` accepts.
    from: String,
    /// End of the range (inclusive); at most `query.max_range_days` (30) after `from`.
    to: String,
}

/// The rest of `GET /events` (and, but for paging, of the export).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub(crate) struct EventsParams {
    /// 1 to 10,000; ignored with `cursor`.
    page: Option<u32>,
    /// 1 to 1,000 (default 100).
    pageSize: Option<u32>,
    /// timestamp, service, message, ingestedAt or createdAt.
    sortField: Option<String>,
    /// ASC or DESC, any case (default DESC).
    sortOrder: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The filters of `GET /events`, the export and the live tail.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct FilterParams {
    /// Case-insensitive substring of the message.
    q: Option<String>,
    /// `metadata.<path>=<value>`: the metadata must hold the value at the dotted path.
    #[param(rename = "metadata.<path>")]
    metadata: Option<String>,
}

/// `GET /events/export`'s own parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ExportParams {
    /// An export profile (`privacy.export_profiles`) applied on top of what is stored;
    /// required when `privacy.export_requires_profile` is set.
    profile: Option<String>,
}

/// What `POST /admin/erase` removes: the events every given parameter selects. At least
/// one `metadata.<path>` or `q`; raw values of hashed fields are hashed first.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ErasureParams {
    /// Only this service's events; every service when absent.
    service: Option<String>,
    /// Events at or after this instant; no lower bound when absent.
    from: Option<String>,
    /// Events at or before this instant; no upper bound when absent.
    to: Option<String>,
    /// The filter language, as for `GET /events`.
    q: Option<String>,
    /// `metadata.<path>=<value>` (or `!=`), as for `GET /events`.
    #[param(rename = "metadata.<path>")]
    metadata: Option<String>,
}

/// The same parameters as members of a JSON object (strings, numbers or booleans).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErasureRequest {
    service: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    #[schema(rename = "metadata.<path>")]
    metadata: Option<String>,
}

/// `POST /admin/decrypt`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct DecryptRequest {
    /// A stored value an `encrypt` rule made: `enc:<key id>:<base64url>`.
    value: String,
}

/// `GET /admin/erasures`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ErasuresParams {
    /// How many, newest first: 1 to 1,000 (default 100).
    limit: Option<u32>,
}

/// The rest of `GET /events/histogram`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct HistogramParams {
    /// Bucket width in whole minutes: `1m`, `5m`, `15m`, `1h`, `1d` (any `<n>m`, `<n>h`,
    /// `<n>d`), or seconds divisible by 60; at most 1,000 buckets.
    interval: String,
}

/// The parameters of `GET /events/tail`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct TailParams {
    /// Exact service name.
    service: String,
}

/// The parameters of `GET /dlq`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct DeadLetterParams {
    service: Option<String>,
    reprocessed: Option<bool>,
    /// 1 to 1,000 (default 100).
    limit: Option<u32>,
    offset: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented() -> BTreeSet<(String, String)> {
        let spec = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(spec["openapi"], "3.1.0");
        let paths = spec["paths"].as_object().unwrap();
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().unwrap().keys().map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let registered: BTreeSet<(String, String)> =
            ENDPOINTS.iter().map(|endpoint| (endpoint.method.to_string(), endpoint.path.to_owned())).collect();
        let documented = documented();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unregistered: Vec<_> = documented.difference(&registered).collect();
        assert!(undocumented.is_empty(), "routes missing from the spec: {undocumented:?}");
        assert!(unregistered.is_empty(), "spec operations with no route: {unregistered:?}");
    }

    #[test]
    fn guarded_routes_declare_their_keys_and_limits() {
        let spec = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let ingest = &spec["paths"]["/events"]["post"];
        assert!(ingest["security"].is_array(), "{ingest}");
        for status in ["202", "400", "401", "403", "413", "429"] {
            assert!(ingest["responses"][status].is_object(), "POST /events lacks {status}");
        }
        let health = &spec["paths"]["/health"]["get"];
        assert!(health["security"].is_null());
        assert!(health["responses"]["401"].is_null());
        assert!(health["responses"]["429"].is_object());
        let ids: Vec<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    }
}
