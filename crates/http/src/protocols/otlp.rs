//! `POST /v1/logs`: OTLP/HTTP logs, in protobuf (the collector's default, usually gzipped)
//! or JSON. Each log record becomes an event; the reply is an `ExportLogsServiceResponse`
//! in the request's encoding, with the refused records counted in `partial_success`.

use super::{Encoding, EventBuilder, any_to_json};
use crate::AppState;
use crate::body::{OtlpLogsResponse, OtlpPartialSuccess, OtlpStatusBody};
use crate::error::ApiError;
use crate::ingest::{self, Format};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::FieldError;
use aurore_domain::validation::Incoming;
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde_json::{Map, Value};

#[utoipa::path(post, path = "/v1/logs", tag = "ingest",
    request_body(description = "An OTLP `ExportLogsServiceRequest`: `application/x-protobuf` or `application/json`, optionally gzip-compressed", content(
        (String = "application/x-protobuf"),
        (String = "application/json"),
    )),
    responses(
        (status = 200, description = "An `ExportLogsServiceResponse` in the request's encoding; refused records are counted in `partial_success`", content(
            (OtlpLogsResponse = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 400, description = "Not an OTLP logs request; a `google.rpc.Status` in the request's encoding", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 413, description = "Body or record count over the limits; a `Status`", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 415, description = "Neither protobuf nor JSON; a `Status` in JSON", body = OtlpStatusBody),
        (status = 401, description = "API keys are configured and the request carries none, or an unknown one; a `Status`", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 403, description = "The key may not use this route; a `Status`", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 429, description = "Buffer full or over the client's rate limit; `Retry-After` set; a `Status`", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 503, description = "Journal full or unavailable; `Retry-After` set; a `Status`", content(
            (OtlpStatusBody = "application/json"),
            (String = "application/x-protobuf"),
        )),
    ))]
pub(crate) async fn export_logs(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match export(&request, payload, &state).await {
        Ok(response) => response,
        Err(error) => refused(&error, &request),
    }
}

/// Where OTLP/HTTP clients send logs.
pub(crate) const PATH: &str = "/v1/logs";

/// A refusal of an OTLP request, by the handler or the route guard, as OTLP clients read
/// it: a `Status` in the request's encoding (JSON when that is unknown).
pub(crate) fn refused(error: &ApiError, request: &HttpRequest) -> HttpResponse {
    as_status(error, Encoding::of(request).unwrap_or(Encoding::Json))
}

/// `google.rpc.Status`, which OTLP/HTTP answers every 4xx and 5xx with (its `details` left
/// out); public for clients that read it (the suites do).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The refusal as OTLP clients read it: the same status and headers (`Retry-After`
/// included), the body a `Status` in the request's encoding.
fn as_status(error: &ApiError, encoding: Encoding) -> HttpResponse {
    use actix_web::ResponseError as _;
    use actix_web::body::BoxBody;
    use actix_web::http::StatusCode;
    let code = match error.status_code() {
        StatusCode::TOO_MANY_REQUESTS => 8,      // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,   // UNAVAILABLE
        StatusCode::UNAUTHORIZED => 16,          // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,              // PERMISSION_DENIED
        StatusCode::REQUEST_TIMEOUT => 4,        // DEADLINE_EXCEEDED
        status if status.is_client_error() => 3, // INVALID_ARGUMENT
        _ => 13,                                 // INTERNAL
    };
    let status = Status { code, message: error.to_string() };
    let (body, content_type) = match encoding {
        Encoding::Protobuf => (status.encode_to_vec(), PROTOBUF),
        Encoding::Json => {
            let body = OtlpStatusBody { code: status.code, message: status.message };
            (serde_json::to_vec(&body).unwrap_or_default(), "application/json")
        }
    };
    let mut response = error.error_response().set_body(BoxBody::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

async fn export(request: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<HttpResponse, ApiError> {
    let durability = ingest::admitted(request, state)?;
    let encoding = Encoding::of(request)?;
    let limits = &state.request_limits;
    // The decoded form keeps its share of the budget until the request is answered.
    let (export, _decoded) = {
        let (bytes, _budget) =
            ingest::read_body(request, payload, Format::Protocol, limits, &state.body_budget).await?;
        let decoded = super::reserve_decoding(state, &bytes, encoding)?;
        let export = match encoding {
            Encoding::Protobuf => ExportLogsServiceRequest::decode(&bytes[..])
                .map_err(|error| ApiError::Malformed(format!("not an OTLP ExportLogsServiceRequest: {error}")))?,
            Encoding::Json => from_json(&bytes, limits.max_events_per_request)?,
        };
        (export, decoded)
    };
    let records: usize = export
        .resource_logs
        .iter()
        .flat_map(|resource| &resource.scope_logs)
        .map(|scope| scope.log_records.len())
        .sum();
    // The decoded form is bounded already (`reserve_decoding`); its records are counted here.
    if records > limits.max_events_per_request {
        return Err(ApiError::TooManyEvents { limit: limits.max_events_per_request });
    }
    let received = Utc::now();
    let mut events = Vec::with_capacity(records);
    for resource_logs in export.resource_logs {
        let resource = ResourceView::of(resource_logs.resource.unwrap_or_default());
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().and_then(scope_json);
            for record in scope_logs.log_records {
                events.push(Ok(event(&resource, scope.as_ref(), record, received)));
            }
        }
    }
    let response = if events.is_empty() {
        ExportLogsServiceResponse::default()
    } else {
        let outcome = ingest::ingest_many(request, state, events, durability).await;
        let items = ingest::per_item("otlp", records, outcome)?;
        response(&items)
    };
    Ok(match encoding {
        Encoding::Protobuf => {
            HttpResponse::Ok().insert_header((header::CONTENT_TYPE, PROTOBUF)).body(response.encode_to_vec())
        }
        Encoding::Json => HttpResponse::Ok().json(response_json(&response)),
    })
}

const PROTOBUF: &str = "application/x-protobuf";

/// Refused records, counted, with the first few reasons.
fn response(items: &[Result<aurore_domain::EventId, Vec<FieldError>>]) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: super::refusals(items).map(|(refused, summary)| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(refused).unwrap_or(i64::MAX),
            error_message: summary,
        }),
    }
}

/// The response in OTLP's JSON mapping (64-bit integers as strings).
fn response_json(response: &ExportLogsServiceResponse) -> OtlpLogsResponse {
    OtlpLogsResponse {
        partial_success: response.partial_success.as_ref().map(|partial| OtlpPartialSuccess {
            rejected_log_records: partial.rejected_log_records.to_string(),
            error_message: partial.error_message.clone(),
        }),
    }
}

/// A resource's service name and its other attributes, shared by its records.
struct ResourceView {
    service: String,
    attributes: Option<Value>,
}

/// What an SDK reports when its application names no service.
const UNKNOWN_SERVICE: &str = "unknown_service";

impl ResourceView {
    fn of(resource: Resource) -> Self {
        let mut service = None;
        let mut attributes = Map::new();
        for KeyValue { key, value, .. } in resource.attributes {
            match value.and_then(|value| value.value) {
                Some(any_value::Value::StringValue(name)) if key == "service.name" => service = Some(name),
                value => {
                    attributes.insert(key, any_to_json(value));
                }
            }
        }
        Self {
            service: service.unwrap_or_else(|| UNKNOWN_SERVICE.to_owned()),
            attributes: (!attributes.is_empty()).then_some(Value::Object(attributes)),
        }
    }
}

fn scope_json(scope: &InstrumentationScope) -> Option<Value> {
    let mut fields = Map::new();
    for (name, value) in [("name", &scope.name), ("version", &scope.version)] {
        if !value.is_empty() {
            fields.insert(name.to_owned(), Value::String(value.clone()));
        }
    }
    (!fields.is_empty()).then_some(Value::Object(fields))
}

/// One record as an event. Its metadata (documented in the README):
/// `severity`, `severity_number`, `trace_id`, `span_id` (hex), `event_name`, `attributes`,
/// `resource` (the resource's attributes but `service.name`) and `scope` (`name`,
/// `version`), each only when the record has it.
fn event(resource: &ResourceView, scope: Option<&Value>, record: LogRecord, received: DateTime<Utc>) -> Incoming {
    let nanos = [record.time_unix_nano, record.observed_time_unix_nano].into_iter().find(|nanos| *nanos != 0);
    let timestamp =
        nanos.map_or(received, |nanos| DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX)));
    let mut builder = EventBuilder::default();
    let severity = if record.severity_text.is_empty() {
        severity_name(record.severity_number).map(str::to_owned)
    } else {
        Some(record.severity_text)
    };
    builder.put("severity", severity.map(Value::String));
    builder.put("severity_number", (record.severity_number != 0).then(|| Value::from(record.severity_number)));
    builder.put("trace_id", identifier(&record.trace_id));
    builder.put("span_id", identifier(&record.span_id));
    let attributes: Map<String, Value> = record
        .attributes
        .into_iter()
        .map(|KeyValue { key, value, .. }| (key, any_to_json(value.and_then(|value| value.value))))
        .collect();
    builder.put("attributes", (!attributes.is_empty()).then_some(Value::Object(attributes)));
    builder.put("resource", resource.attributes.clone());
    builder.put("scope", scope.cloned());
    let message = match record.body.and_then(|body| body.value) {
        Some(any_value::Value::StringValue(text)) => text,
        None if !record.event_name.is_empty() => record.event_name.clone(),
        None => String::new(),
        structured => any_to_json(structured).to_string(),
    };
    builder.put("event_name", (!record.event_name.is_empty()).then_some(Value::String(record.event_name)));
    builder.build(timestamp, resource.service.clone(), message)
}

/// A trace or span id as lowercase hex; absent when empty or all zero (the spec's "unset").
fn identifier(bytes: &[u8]) -> Option<Value> {
    bytes.iter().any(|byte| *byte != 0).then(|| Value::String(hex::encode(bytes)))
}

/// The short name of a severity number's range, as the OTLP data model defines them.
fn severity_name(number: i32) -> Option<&'static str> {
    Some(match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    })
}

/// OTLP's JSON mapping read into the protobuf messages, so both encodings share one
/// conversion: lowerCamelCase keys (snake_case accepted too), 64-bit integers as strings or
/// numbers, ids as hex, bytes as base64, enums as numbers.
fn from_json(bytes: &[u8], max_records: usize) -> Result<ExportLogsServiceRequest, ApiError> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|error| ApiError::Malformed(format!("invalid JSON: {error}")))?;
    // Counted before any is converted: the messages are larger than their JSON.
    let records: usize = list(&root, "resourceLogs", "resource_logs")?
        .iter()
        .flat_map(|resource| list(resource, "scopeLogs", "scope_logs").unwrap_or_default())
        .map(|scope| list(scope, "logRecords", "log_records").map_or(0, <[Value]>::len))
        .sum();
    if records > max_records {
        return Err(ApiError::TooManyEvents { limit: max_records });
    }
    let resource_logs = list(&root, "resourceLogs", "resource_logs")?
        .iter()
        .map(|resource_logs| {
            let resource = member(resource_logs, "resource", "resource").map(|resource| {
                Ok::<_, ApiError>(Resource { attributes: key_values(resource)?, ..Resource::default() })
            });
            let scope_logs = list(resource_logs, "scopeLogs", "scope_logs")?
                .iter()
                .map(|scope_logs| {
                    let scope = member(scope_logs, "scope", "scope").map(|scope| InstrumentationScope {
                        name: text(scope, "name", "name").unwrap_or_default(),
                        version: text(scope, "version", "version").unwrap_or_default(),
                        ..InstrumentationScope::default()
                    });
                    let log_records = list(scope_logs, "logRecords", "log_records")?
                        .iter()
                        .map(log_record)
                        .collect::<Result<_, _>>()?;
                    Ok(ScopeLogs { scope, log_records, ..ScopeLogs::default() })
                })
                .collect::<Result<_, ApiError>>()?;
            Ok(ResourceLogs { resource: resource.transpose()?, scope_logs, ..ResourceLogs::default() })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(ExportLogsServiceRequest { resource_logs })
}

fn log_record(record: &Value) -> Result<LogRecord, ApiError> {
    Ok(LogRecord {
        time_unix_nano: integer(record, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: integer(record, "observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: i32::try_from(integer(record, "severityNumber", "severity_number")?)
            .map_err(|_| malformed("severityNumber", "an enum number"))?,
        severity_text: text(record, "severityText", "severity_text").unwrap_or_default(),
        body: member(record, "body", "body").map(any_value).transpose()?,
        attributes: key_values(record)?,
        trace_id: hex_bytes(record, "traceId", "trace_id")?,
        span_id: hex_bytes(record, "spanId", "span_id")?,
        event_name: text(record, "eventName", "event_name").unwrap_or_default(),
        ..LogRecord::default()
    })
}

fn member<'a>(object: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    object.get(camel).or_else(|| object.get(snake)).filter(|value| !value.is_null())
}

fn malformed(field: &str, expected: &str) -> ApiError {
    ApiError::Malformed(format!("OTLP JSON: {field} must be {expected}"))
}

fn list<'a>(object: &'a Value, camel: &str, snake: &str) -> Result<&'a [Value], ApiError> {
    match member(object, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(malformed(camel, "an array")),
    }
}

fn text(object: &Value, camel: &str, snake: &str) -> Option<String> {
    member(object, camel, snake).and_then(Value::as_str).map(str::to_owned)
}

fn integer(object: &Value, camel: &str, snake: &str) -> Result<u64, ApiError> {
    match member(object, camel, snake) {
        None => Ok(0),
        Some(Value::String(digits)) => digits.parse().map_err(|_| malformed(camel, "an unsigned integer")),
        Some(Value::Number(number)) => number.as_u64().ok_or_else(|| malformed(camel, "an unsigned integer")),
        Some(_) => Err(malformed(camel, "an unsigned integer")),
    }
}

fn hex_bytes(object: &Value, camel: &str, snake: &str) -> Result<Vec<u8>, ApiError> {
    match member(object, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::String(digits)) => hex::decode(digits).map_err(|_| malformed(camel, "hex")),
        Some(_) => Err(malformed(camel, "a hex string")),
    }
}

fn key_values(object: &Value) -> Result<Vec<KeyValue>, ApiError> {
    list(object, "attributes", "attributes")?.iter().map(key_value).collect()
}

fn key_value(pair: &Value) -> Result<KeyValue, ApiError> {
    let key = text(pair, "key", "key").ok_or_else(|| malformed("key", "a string"))?;
    let value = member(pair, "value", "value").map(any_value).transpose()?;
    Ok(KeyValue { key, value, ..KeyValue::default() })
}

fn any_value(value: &Value) -> Result<AnyValue, ApiError> {
    use any_value::Value as Any;
    let Value::Object(fields) = value else { return Err(malformed("AnyValue", "an object")) };
    let Some((kind, inner)) = fields.iter().next() else { return Ok(AnyValue::default()) };
    let wrong = || malformed(kind, "of its declared type");
    let any = match kind.as_str() {
        "stringValue" | "string_value" => Any::StringValue(inner.as_str().ok_or_else(wrong)?.to_owned()),
        "boolValue" | "bool_value" => Any::BoolValue(inner.as_bool().ok_or_else(wrong)?),
        "intValue" | "int_value" => Any::IntValue(match inner {
            Value::String(digits) => digits.parse().map_err(|_| wrong())?,
            Value::Number(number) => number.as_i64().ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
        "doubleValue" | "double_value" => Any::DoubleValue(match inner {
            Value::Number(number) => number.as_f64().ok_or_else(wrong)?,
            Value::String(special) => special.parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        }),
        "bytesValue" | "bytes_value" => {
            use base64::Engine as _;
            let encoded = inner.as_str().ok_or_else(wrong)?;
            Any::BytesValue(base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| wrong())?)
        }
        "arrayValue" | "array_value" => Any::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: list(inner, "values", "values")?.iter().map(any_value).collect::<Result<_, _>>()?,
        }),
        "kvlistValue" | "kvlist_value" => Any::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
            values: list(inner, "values", "values")?.iter().map(key_value).collect::<Result<_, _>>()?,
        }),
        _ => return Err(malformed(kind, "a known AnyValue kind")),
    };
    Ok(AnyValue { value: Some(any) })
}
