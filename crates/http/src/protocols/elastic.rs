//! Elasticsearch's bulk API under `/es`, and the few endpoints its clients probe first, so
//! Fluent Bit, Vector, Logstash, Filebeat and the official clients can ship to Aurore.

use super::EventBuilder;
use crate::AppState;
use crate::body::{
    ElasticBulk, ElasticBulkItem, ElasticClusterHealth, ElasticInfo, ElasticItemError, ElasticLicense,
    ElasticLicenseState, ElasticShards, ElasticVersion,
};
use crate::error::ApiError;
use crate::ingest::{self, Format};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::validation::parse_timestamp;
use aurore_domain::{EventId, FieldError};
use chrono::Utc;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// Where the bulk API and its probes live.
pub(crate) const PREFIX: &str = "/es";

/// Which document field names the service, when configured; the index name otherwise.
#[derive(Debug, Clone)]
pub struct ElasticSettings {
    /// A key of the document, or a dotted path into it (`service.name` matches either).
    pub service_field: String,
}

impl Default for ElasticSettings {
    fn default() -> Self {
        Self { service_field: "service.name".to_owned() }
    }
}

const PRODUCT: HeaderName = HeaderName::from_static("x-elastic-product");

/// Every response under [`PREFIX`] says it is Elasticsearch: the official clients refuse
/// a server whose successful responses do not.
pub(crate) async fn product_header(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = request.path();
    let ours = path == PREFIX || path.strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with('/'));
    let mut response = next.call(request).await?;
    if ours {
        response.headers_mut().insert(PRODUCT, HeaderValue::from_static("Elasticsearch"));
    }
    Ok(response)
}

/// The version clients read to pick their dialect: 8.x, whose bulk API Aurore follows.
const VERSION: &str = "8.17.0";

#[utoipa::path(get, path = "/es", tag = "elasticsearch",
    responses((status = 200, description = "What Elasticsearch answers at its root, with a version 8.x", body = ElasticInfo)))]
pub(crate) async fn info() -> HttpResponse {
    HttpResponse::Ok().json(ElasticInfo {
        name: "aurore",
        cluster_name: "aurore",
        cluster_uuid: "aurore",
        version: ElasticVersion {
            number: VERSION,
            build_flavor: "default",
            build_type: "aurore",
            lucene_version: "9.12.0",
            minimum_wire_compatibility_version: "7.17.0",
            minimum_index_compatibility_version: "7.0.0",
        },
        tagline: "You Know, for Search",
    })
}

#[utoipa::path(get, path = "/es/_cluster/health", tag = "elasticsearch",
    responses((status = 200, description = "A green single-node cluster", body = ElasticClusterHealth)))]
pub(crate) async fn cluster_health() -> HttpResponse {
    HttpResponse::Ok().json(ElasticClusterHealth {
        cluster_name: "aurore",
        status: "green",
        timed_out: false,
        number_of_nodes: 1,
        number_of_data_nodes: 1,
    })
}

#[utoipa::path(get, path = "/es/_license", tag = "elasticsearch",
    responses((status = 200, description = "A basic, active licence, as shippers check", body = ElasticLicense)))]
pub(crate) async fn license() -> HttpResponse {
    HttpResponse::Ok()
        .json(ElasticLicense { license: ElasticLicenseState { status: "active", kind: "basic", uid: "aurore" } })
}

#[utoipa::path(post, path = "/es/_bulk", tag = "elasticsearch",
    request_body(description = "NDJSON action and document lines; `index` and `create` store the document, `update` and `delete` are refused per item", content((String = "application/x-ndjson"))),
    responses(
        (status = 200, description = "Bulk response: `took`, `errors`, and per item `{index|create: {status, _id, error}}`", body = ElasticBulk),
        (status = 400, description = "Not a bulk body", body = crate::body::ErrorBody),
        (status = 413, description = "Body or document count over the limits", body = crate::body::ErrorBody),
        (status = 429, description = "Buffer full or rate limited; `Retry-After` set", body = crate::body::ErrorBody),
        (status = 503, description = "Journal full or unavailable; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn bulk(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    bulk_into(request, payload, state, None).await
}

#[utoipa::path(post, path = "/es/{index}/_bulk", tag = "elasticsearch",
    params(("index" = String, Path, description = "The default index of the body's actions")),
    request_body(description = "As `/es/_bulk`", content((String = "application/x-ndjson"))),
    responses(
        (status = 200, description = "As `/es/_bulk`", body = ElasticBulk),
        (status = 400, description = "Not a bulk body", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn bulk_index(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    index: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    bulk_into(request, payload, state, Some(index.into_inner())).await
}

/// One action of a bulk body and where its outcome goes.
#[derive(Debug)]
enum Item {
    /// `index` or `create`: a document became the event at this position of the batch.
    Stored { action: &'static str, index: String, event: usize },
    /// Refused before validation: `update`, `delete`, an unreadable line.
    Refused { action: String, index: String, reason: String },
}

async fn bulk_into(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    default_index: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let durability = ingest::admitted(&request, &state)?;
    let limits = &state.request_limits;
    // The decoded documents keep their share of the budget until the request is answered.
    let (items, events, _decoded) = {
        let (bytes, _budget) =
            ingest::read_body(&request, payload, Format::Protocol, limits, &state.body_budget).await?;
        let decoded = super::reserve_decoding(&state, &bytes, super::Encoding::Json)?;
        let (items, events) = parse(&bytes, default_index.as_deref(), &state.elastic, limits.max_events_per_request)?;
        (items, events, decoded)
    };
    let outcomes = if events.is_empty() {
        Vec::new()
    } else {
        let count = events.len();
        let outcome = ingest::ingest_many(&request, &state, events, durability).await;
        ingest::per_item("elasticsearch", count, outcome)?
    };
    let items: Vec<BTreeMap<String, ElasticBulkItem>> =
        items.into_iter().map(|item| item_response(item, &outcomes)).collect();
    let errors = items.iter().flat_map(BTreeMap::values).any(|item| item.error.is_some());
    let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(HttpResponse::Ok().json(ElasticBulk { took, errors, items }))
}

fn item_response(item: Item, outcomes: &[Result<EventId, Vec<FieldError>>]) -> BTreeMap<String, ElasticBulkItem> {
    let (action, body) = match item {
        Item::Stored { action, index, event } => {
            let body = match outcomes.get(event) {
                Some(Ok(id)) => ElasticBulkItem {
                    _index: index,
                    _id: Some(id.to_string()),
                    _version: Some(1),
                    result: Some("created"),
                    status: 201,
                    _shards: Some(ElasticShards { total: 1, successful: 1, failed: 0 }),
                    _seq_no: Some(0),
                    _primary_term: Some(1),
                    error: None,
                },
                Some(Err(errors)) => refusal(index, "document_parsing_exception", super::describe(event, errors)),
                None => refusal(index, "document_parsing_exception", "no outcome for this item".to_owned()),
            };
            (action.to_owned(), body)
        }
        Item::Refused { action, index, reason } => {
            (action, refusal(index, "action_request_validation_exception", reason))
        }
    };
    BTreeMap::from([(action, body)])
}

fn refusal(index: String, kind: &'static str, reason: String) -> ElasticBulkItem {
    ElasticBulkItem {
        _index: index,
        _id: None,
        _version: None,
        result: None,
        status: 400,
        _shards: None,
        _seq_no: None,
        _primary_term: None,
        error: Some(ElasticItemError { kind, reason }),
    }
}

/// Reads the NDJSON body: an action line, then (except for `delete`) its document line.
/// Documents become events; everything else an item refused on its own.
fn parse(
    bytes: &[u8],
    default_index: Option<&str>,
    settings: &ElasticSettings,
    max_events: usize,
) -> Result<(Vec<Item>, ingest::Decoded), ApiError> {
    let mut lines = bytes.split(|byte| *byte == b'\n').filter(|line| !line.trim_ascii().is_empty());
    let mut items = Vec::new();
    let mut events = Vec::new();
    let received = Utc::now();
    while let Some(line) = lines.next() {
        if items.len() == max_events {
            return Err(ApiError::TooManyEvents { limit: max_events });
        }
        let action: Value = serde_json::from_slice(line).map_err(|error| {
            ApiError::Malformed(format!("the action of bulk item {} is not JSON: {error}", items.len() + 1))
        })?;
        let Some((name, meta)) =
            action.as_object().filter(|action| action.len() == 1).and_then(|action| action.iter().next())
        else {
            return Err(ApiError::Malformed(format!(
                "the action of bulk item {} must be an object of one action",
                items.len() + 1
            )));
        };
        let index = meta.get("_index").and_then(Value::as_str).or(default_index).unwrap_or_default().to_owned();
        let action = match name.as_str() {
            "index" => "index",
            "create" => "create",
            "delete" => {
                items.push(Item::Refused {
                    action: name.clone(),
                    index,
                    reason: "Aurore keeps events as sent: delete is not supported".to_owned(),
                });
                continue;
            }
            "update" => {
                lines.next();
                items.push(Item::Refused {
                    action: name.clone(),
                    index,
                    reason: "Aurore keeps events as sent: update is not supported".to_owned(),
                });
                continue;
            }
            other => return Err(ApiError::Malformed(format!("unknown bulk action {other:?}"))),
        };
        let Some(source) = lines.next() else {
            return Err(ApiError::Malformed(format!(
                "the {action} action of bulk item {} has no document",
                items.len() + 1
            )));
        };
        let event = match serde_json::from_slice::<Value>(source) {
            Ok(Value::Object(document)) => document_event(document, &index, meta, settings, received),
            Ok(_) => Err(FieldError::new("document", "isObject", "a bulk document must be a JSON object")),
            Err(error) => {
                Err(FieldError::new("document", "isJson", format!("the document is not valid JSON: {error}")))
            }
        };
        items.push(Item::Stored { action, index, event: events.len() });
        events.push(event);
    }
    Ok((items, events))
}

/// A document as an event: service from the configured field, else the index; message
/// from `message`, else `log`; timestamp from `@timestamp`, else `timestamp`, else the time
/// it arrived. What remains is the metadata, with `_index` and `_id` when the action had
/// them. The action's `_id` is the event's idempotency key, so a bulk sent twice is
/// stored once.
fn document_event(
    mut document: Map<String, Value>,
    index: &str,
    meta: &Value,
    settings: &ElasticSettings,
    received: chrono::DateTime<Utc>,
) -> Result<aurore_domain::validation::Incoming, FieldError> {
    let service = take_path(&mut document, &settings.service_field)
        .or_else(|| (!index.is_empty()).then(|| Value::String(index.to_owned())))
        .ok_or_else(|| {
            FieldError::new(
                settings.service_field.clone(),
                "isNotEmpty",
                format!("the document has no {} and the action no _index", settings.service_field),
            )
        })?;
    let message = document
        .remove("message")
        .or_else(|| document.remove("log"))
        .ok_or_else(|| FieldError::new("message", "isNotEmpty", "the document has no message (or log) field"))?;
    let timestamp = match document.remove("@timestamp").or_else(|| document.remove("timestamp")) {
        Some(Value::String(text)) => parse_timestamp(&text).ok_or_else(|| {
            FieldError::new("@timestamp", "isTimestamp", format!("@timestamp {text:?} is not a date"))
        })?,
        Some(Value::Number(millis)) => {
            millis.as_i64().and_then(chrono::DateTime::from_timestamp_millis).ok_or_else(|| {
                FieldError::new("@timestamp", "isTimestamp", "@timestamp as a number must be epoch milliseconds")
            })?
        }
        Some(_) => return Err(FieldError::new("@timestamp", "isTimestamp", "@timestamp must be a date")),
        None => received,
    };
    let (Value::String(service), Value::String(message)) = (service, message) else {
        return Err(FieldError::new("document", "isString", "service and message must be strings"));
    };
    let mut builder = EventBuilder { metadata: document };
    builder.put("_index", (!index.is_empty()).then(|| Value::String(index.to_owned())));
    let id = meta.get("_id").cloned();
    builder.put("_id", id.clone());
    let mut event = builder.build(timestamp, service, message);
    if let (aurore_domain::validation::Incoming::Object(fields), Some(id)) = (&mut event, id) {
        fields.idempotency_key = Some(id);
    }
    Ok(event)
}

/// Removes and returns the value at `path`: the key itself first (`"service.name": …`),
/// else the dotted path through nested objects (`"service": {"name": …}`).
fn take_path(document: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(value) = document.remove(path) {
        return Some(value);
    }
    let (head, rest) = path.split_once('.')?;
    match document.get_mut(head)? {
        Value::Object(inner) => take_path(inner, rest),
        _ => None,
    }
}
