//! Decoders for the protocols shippers already speak. Each turns its body into the same
//! [`Incoming`] events `POST /events` takes and hands them to [`crate::ingest::ingest_many`]:
//! one validation, one journal, one set of limits, keys and rate limits, whatever the wire.

pub(crate) mod elastic;
pub(crate) mod loki;
pub(crate) mod otlp;

use crate::error::ApiError;
use actix_web::HttpRequest;
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
        let mime = crate::ingest::media_type(request);
        match mime.as_deref() {
            Some("application/x-protobuf" | "application/protobuf") => Ok(Self::Protobuf),
            Some("application/json") => Ok(Self::Json),
            _ => Err(ApiError::UnsupportedMediaType(mime.unwrap_or_else(|| "(none)".to_owned()))),
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

/// The refused items of a per-item outcome: how many, and the first few reasons
/// (`record 3: …; record 7: …; and 12 more`). `None` when every item was accepted.
fn refusals(items: &[Result<aurore_domain::EventId, Vec<FieldError>>]) -> Option<(usize, String)> {
    let refused: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| item.as_ref().err().map(|errors| describe(index, errors)))
        .collect();
    if refused.is_empty() {
        return None;
    }
    let mut summary = refused[..refused.len().min(REASONS_SHOWN)].join("; ");
    if refused.len() > REASONS_SHOWN {
        summary.push_str(&format!("; and {} more", refused.len() - REASONS_SHOWN));
    }
    Some((refused.len(), summary))
}

/// One refused item, as the protocols' summaries say it: `record 3: message: must be …`.
fn describe(index: usize, errors: &[FieldError]) -> String {
    let reasons: Vec<&str> = errors.iter().flat_map(|error| error.constraints.values()).map(String::as_str).collect();
    format!("record {index}: {}", reasons.join(", "))
}

/// Reads one field: its key, and its bytes when it is length-delimited.
fn next_field<'a>(bytes: &mut &'a [u8]) -> Option<(u64, Option<&'a [u8]>)> {
    use prost::encoding::decode_varint;
    let key = decode_varint(bytes).ok()?;
    let skip = match key & 7 {
        0 => {
            decode_varint(bytes).ok()?;
            return Some((key, None));
        }
        1 => 8,
        5 => 4,
        2 => usize::try_from(decode_varint(bytes).ok()?).ok()?,
        _ => return None,
    };
    let value = bytes.get(..skip)?;
    *bytes = &bytes[skip..];
    Some((key, (key & 7 == 2).then_some(value)))
}

/// What a decoded message may cost per nested message, beyond its bytes: the largest
/// struct a protocol decodes into (OTLP's `LogRecord`), with its vector slot, rounded up.
const BYTES_PER_MESSAGE: usize = 256;

/// What a parsed JSON value may cost per object or array, beyond its bytes.
const BYTES_PER_JSON_CONTAINER: usize = 96;

/// A bound on the memory a protobuf body takes once decoded, from its bytes and the
/// number of nested messages it could hold: every length-delimited field that reads as
/// fields is counted as a message. Empty messages cost a few bytes on the wire and a whole
/// struct in memory, so a body of millions of them is refused on this bound, never decoded.
fn decoded_protobuf_bound(bytes: &[u8]) -> usize {
    fn messages(mut bytes: &[u8], depth: usize) -> Option<usize> {
        let mut count = 0;
        while !bytes.is_empty() {
            let (_, value) = next_field(&mut bytes)?;
            if let Some(value) = value {
                // Past the decoder's own nesting limit every two bytes could be a message.
                let inner = if depth < MAX_DEPTH { messages(value, depth + 1).unwrap_or(0) } else { value.len() / 2 };
                count += 1 + inner;
            }
        }
        Some(count)
    }
    const MAX_DEPTH: usize = 32;
    bytes.len() + messages(bytes, 0).unwrap_or(0) * BYTES_PER_MESSAGE
}

/// A bound on the memory a JSON body takes once parsed: its bytes and its objects and
/// arrays, counted outside strings.
fn parsed_json_bound(bytes: &[u8]) -> usize {
    let mut containers = 0;
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'{' | b'[') => containers += 1,
            _ => {}
        }
    }
    bytes.len() + containers * BYTES_PER_JSON_CONTAINER
}

/// Takes the memory a body will need once decoded from the budget all bodies share, on top
/// of its bytes already held: refused with `413` past what any body may decode into (a
/// fixed multiple of the body limit), with `503` while other bodies hold the budget.
fn reserve_decoding(
    state: &crate::AppState,
    bytes: &[u8],
    encoding: Encoding,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let bound = match encoding {
        Encoding::Protobuf => decoded_protobuf_bound(bytes),
        Encoding::Json => parsed_json_bound(bytes),
    };
    let limit = state.request_limits.max_body_bytes.saturating_mul(DECODED_PER_BODY_BYTE);
    if bound > limit {
        return Err(ApiError::DecodedTooLarge { limit });
    }
    let permits = u32::try_from(bound.saturating_sub(bytes.len())).unwrap_or(u32::MAX);
    state.body_budget.clone().try_acquire_many_owned(permits).map_err(|_| ApiError::BodiesInFlight)
}

/// How much larger than the body limit a body's decoded form may be.
const DECODED_PER_BODY_BYTE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use proptest::prelude::*;
    use prost::Message as _;

    proptest! {
        /// The bound counts every record the decoder will build, whatever it holds; any
        /// bytes at all get a bound, never a panic.
        #[test]
        fn the_decoded_bound_counts_every_record(
            shape in proptest::collection::vec(proptest::collection::vec(0usize..6, 0..4), 0..4),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let export = ExportLogsServiceRequest {
                resource_logs: shape.iter().map(|scopes| ResourceLogs {
                    scope_logs: scopes.iter().map(|records| ScopeLogs {
                        log_records: (0..*records).map(|n| LogRecord { severity_text: "x".repeat(n), time_unix_nano: n as u64, ..LogRecord::default() }).collect(),
                        ..ScopeLogs::default()
                    }).collect(),
                    ..ResourceLogs::default()
                }).collect(),
            };
            let total: usize = shape.iter().flatten().sum();
            let bytes = export.encode_to_vec();
            let bound = decoded_protobuf_bound(&bytes);
            prop_assert!(bound >= bytes.len() + total * BYTES_PER_MESSAGE, "{bound} for {total} records in {} bytes", bytes.len());
            prop_assert!(decoded_protobuf_bound(&noise) >= noise.len());
        }
    }
}
