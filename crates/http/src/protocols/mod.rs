//! Decoders for the protocols shippers already speak. Each turns its body into the same
//! [`Incoming`] events `POST /events` takes and hands them to [`crate::ingest::ingest_many`]:
//! one validation, one journal, one set of limits, keys and rate limits, whatever the wire.

pub(crate) mod elastic;
pub(crate) mod loki;
pub(crate) mod otlp;

use crate::error::ApiError;
use actix_web::HttpRequest;
use actix_web::http::header;
use aurore_domain::FieldError;
use aurore_domain::validation::{EventFields, Incoming};
use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::{Map, Value};

/// The two encodings OTLP and Loki push share: protobuf or JSON, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn of(request: &HttpRequest) -> Result<Self, ApiError> {
        let mime = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap_or("invalid"))
            .unwrap_or("(none)")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            _ => Err(ApiError::UnsupportedMediaType(mime)),
        }
    }
}

/// An event's metadata, put together member by member, then the event.
#[derive(Debug, Default)]
struct EventBuilder {
    metadata: Map<String, Value>,
}

impl EventBuilder {
    /// Sets `key` when there is a value; a later value for the same key wins.
    fn put(&mut self, key: &str, value: Option<Value>) {
        if let Some(value) = value {
            self.metadata.insert(key.to_owned(), value);
        }
    }

    fn build(self, timestamp: DateTime<Utc>, service: String, message: String) -> Incoming {
        Incoming::Object(EventFields::new(
            Value::String(timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Value::String(service),
            Value::String(message),
            (!self.metadata.is_empty()).then_some(Value::Object(self.metadata)),
        ))
    }
}

/// An OTLP value as the JSON it stands for: bytes as base64, a double that JSON cannot
/// hold (NaN, ±∞) as its name.
fn any_to_json(value: Option<any_value::Value>) -> Value {
    use any_value::Value as Any;
    match value {
        None | Some(Any::StringValueStrindex(_)) => Value::Null,
        Some(Any::StringValue(text)) => Value::String(text),
        Some(Any::BoolValue(flag)) => Value::Bool(flag),
        Some(Any::IntValue(number)) => Value::from(number),
        Some(Any::DoubleValue(number)) => {
            serde_json::Number::from_f64(number).map_or_else(|| Value::String(number.to_string()), Value::Number)
        }
        Some(Any::BytesValue(bytes)) => {
            use base64::Engine as _;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(Any::ArrayValue(array)) => {
            Value::Array(array.values.into_iter().map(|value| any_to_json(value.value)).collect())
        }
        Some(Any::KvlistValue(list)) => Value::Object(
            list.values
                .into_iter()
                .map(|pair| (pair.key, any_to_json(pair.value.and_then(|value| value.value))))
                .collect(),
        ),
    }
}

/// How many refusals a protocol's summary spells out.
const REASONS_SHOWN: usize = 5;

/// One refused item, as the protocols' summaries say it: `record 3: message: must be …`.
fn describe(index: usize, errors: &[FieldError]) -> String {
    let reasons: Vec<&str> = errors.iter().flat_map(|error| error.constraints.values()).map(String::as_str).collect();
    format!("record {index}: {}", reasons.join(", "))
}
