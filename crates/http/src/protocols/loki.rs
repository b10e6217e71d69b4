//! `POST /loki/api/v1/push`: Loki's push API, in JSON or in snappy-compressed protobuf (the
//! default of Vector's loki sink, Promtail, Grafana Alloy and winston-loki). Each entry
//! becomes an event; its stream's labels and its structured metadata become its metadata.

use super::{Encoding, EventBuilder};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest::{self, Format};
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::FieldError;
use aurore_domain::validation::Incoming;
use chrono::{DateTime, Utc};
use prost::Message;
use serde_json::{Map, Value};

/// The push request's messages, written from Loki's documented wire format (field
/// numbers and types only); public for clients that encode pushes (the suites do).
pub mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        /// The label set in Prometheus' text form: `{app="api", env="prod"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

#[utoipa::path(post, path = "/loki/api/v1/push", tag = "loki",
    request_body(description = "Loki's push request: JSON (`{\"streams\": [{\"stream\": {labels}, \"values\": [[\"<ns>\", \"line\", {metadata}?]]}]}`) or snappy-compressed protobuf (`application/x-protobuf`)", content(
        (String = "application/json"),
        (String = "application/x-protobuf"),
    )),
    responses(
        (status = 204, description = "Every entry accepted"),
        (status = 400, description = "Some entries refused (the others were accepted): the text says which; or not a push request at all", content(
            (String = "text/plain"),
            (crate::body::ErrorBody = "application/json"),
        )),
        (status = 413, description = "Body or entry count over the limits", body = crate::body::ErrorBody),
        (status = 429, description = "Buffer full or rate limited; `Retry-After` set", body = crate::body::ErrorBody),
        (status = 503, description = "Journal full or unavailable; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn push(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let durability = ingest::admitted(&request, &state)?;
    let encoding = Encoding::of(&request)?;
    let limits = &state.request_limits;
    // The decoded form keeps its share of the budget until the request is answered.
    let (streams, _decoded) = {
        let (bytes, _budget) =
            ingest::read_body(&request, payload, Format::Protocol, limits, &state.body_budget).await?;
        match encoding {
            Encoding::Protobuf => from_protobuf(&bytes, &state)?,
            Encoding::Json => {
                let decoded = super::reserve_decoding(&state, &bytes, encoding)?;
                (from_json(&bytes, limits.max_events_per_request)?, decoded)
            }
        }
    };
    let entries: usize = streams.iter().map(|stream| stream.entries.len()).sum();
    // The decoded form is bounded already (`reserve_decoding`); its entries are counted here.
    if entries > limits.max_events_per_request {
        return Err(ApiError::TooManyEvents { limit: limits.max_events_per_request });
    }
    let mut events = Vec::with_capacity(entries);
    for stream in streams {
        let labels = stream.labels;
        for entry in stream.entries {
            events.push(event(&labels, entry));
        }
    }
    if events.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    let outcome = ingest::ingest_many(&request, &state, events, durability).await;
    let Some((refused, summary)) = super::refusals(&ingest::per_item("loki", entries, outcome)?) else {
        return Ok(HttpResponse::NoContent().finish());
    };
    // As Loki does: the valid entries are kept, and the refusal says which were not.
    let message = format!("{refused} of {entries} entries refused, the others accepted: {summary}");
    Ok(HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body(message))
}

/// A stream, its labels parsed, and its entries.
#[derive(Debug)]
struct Stream {
    labels: Result<Map<String, Value>, FieldError>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    timestamp: Result<DateTime<Utc>, FieldError>,
    line: String,
    structured_metadata: Map<String, Value>,
}

/// Labels that name the service, in order of preference.
const SERVICE_LABELS: [&str; 4] = ["service_name", "service", "app", "job"];

/// The service when no label names one, as Loki itself calls such streams.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// An entry as an event: service from the first of [`SERVICE_LABELS`] present, the other
/// labels and the entry's structured metadata as metadata (structured metadata wins a
/// clash, being the more specific).
fn event(labels: &Result<Map<String, Value>, FieldError>, entry: Entry) -> Result<Incoming, FieldError> {
    let labels = labels.as_ref().map_err(Clone::clone)?;
    let timestamp = entry.timestamp?;
    let service_label = SERVICE_LABELS.iter().find(|name| labels.contains_key(**name));
    let service =
        service_label.and_then(|name| labels.get(*name)).and_then(Value::as_str).unwrap_or(UNKNOWN_SERVICE).to_owned();
    let mut metadata: Map<String, Value> = labels
        .iter()
        .filter(|(name, _)| Some(&name.as_str()) != service_label)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.extend(entry.structured_metadata);
    Ok(EventBuilder { metadata }.build(timestamp, service, entry.line))
}

/// Snappy's block format, as Loki expects it; the declared length is checked against the
/// body limit before anything is allocated.
/// The streams, and the budget their decoded form holds.
fn from_protobuf(
    bytes: &[u8],
    state: &crate::AppState,
) -> Result<(Vec<Stream>, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let limits = &state.request_limits;
    let declared = snap::raw::decompress_len(bytes)
        .map_err(|error| ApiError::Malformed(format!("not snappy-compressed: {error}")))?;
    if declared > limits.max_body_bytes {
        return Err(ApiError::BodyTooLarge { limit: limits.max_body_bytes });
    }
    let _decompressing = u32::try_from(declared)
        .ok()
        .and_then(|bytes| state.body_budget.clone().try_acquire_many_owned(bytes).ok())
        .ok_or(ApiError::BodiesInFlight)?;
    let decompressed = snap::raw::Decoder::new()
        .decompress_vec(bytes)
        .map_err(|error| ApiError::Malformed(format!("not snappy-compressed: {error}")))?;
    let decoded = super::reserve_decoding(state, &decompressed, Encoding::Protobuf)?;
    let request = wire::PushRequest::decode(&decompressed[..])
        .map_err(|error| ApiError::Malformed(format!("not a Loki PushRequest: {error}")))?;
    let streams = request
        .streams
        .into_iter()
        .map(|stream| Stream {
            labels: parse_labels(&stream.labels),
            entries: stream
                .entries
                .into_iter()
                .map(|entry| Entry {
                    timestamp: entry
                        .timestamp
                        .and_then(|at| DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?))
                        .ok_or_else(|| {
                            FieldError::new("timestamp", "isTimestamp", "the entry's timestamp is out of range")
                        }),
                    line: entry.line,
                    structured_metadata: entry
                        .structured_metadata
                        .into_iter()
                        .map(|pair| (pair.name, Value::String(pair.value)))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok((streams, decoded))
}

/// The JSON push body: `streams[].stream` (labels as an object) with `values` of
/// `[nanoseconds, line]` or `[nanoseconds, line, {structured metadata}]`; also the older
/// `streams[].labels` (text) with `entries[].{ts, line}`, which some clients still send.
fn from_json(bytes: &[u8], max_entries: usize) -> Result<Vec<Stream>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Push {
        streams: Vec<JsonStream>,
    }
    #[derive(serde::Deserialize)]
    struct JsonStream {
        stream: Option<Map<String, Value>>,
        labels: Option<String>,
        #[serde(default)]
        values: Vec<Vec<Value>>,
        #[serde(default)]
        entries: Vec<LegacyEntry>,
    }
    #[derive(serde::Deserialize)]
    struct LegacyEntry {
        ts: String,
        line: String,
    }
    let push: Push = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::Malformed(format!("not a Loki push request: {error}")))?;
    let entries: usize = push.streams.iter().map(|stream| stream.values.len() + stream.entries.len()).sum();
    if entries > max_entries {
        return Err(ApiError::TooManyEvents { limit: max_entries });
    }
    Ok(push
        .streams
        .into_iter()
        .map(|stream| {
            let labels = match (stream.stream, stream.labels) {
                (Some(labels), _) => Ok(labels),
                (None, Some(text)) => parse_labels(&text),
                (None, None) => Ok(Map::new()),
            };
            let mut entries: Vec<Entry> = stream.values.into_iter().map(json_entry).collect();
            entries.extend(stream.entries.into_iter().map(|entry| {
                Entry {
                    timestamp: aurore_domain::validation::parse_timestamp(&entry.ts).ok_or_else(|| {
                        FieldError::new("ts", "isTimestamp", format!("ts {:?} is not a date", entry.ts))
                    }),
                    line: entry.line,
                    structured_metadata: Map::new(),
                }
            }));
            Stream { labels, entries }
        })
        .collect())
}

fn json_entry(value: Vec<Value>) -> Entry {
    let mut parts = value.into_iter();
    let timestamp = match parts.next() {
        Some(Value::String(nanos)) => nanos.parse::<i64>().ok().map(DateTime::from_timestamp_nanos),
        _ => None,
    }
    .ok_or_else(|| {
        FieldError::new("timestamp", "isTimestamp", "an entry's first element must be nanoseconds as a string")
    });
    let line = match parts.next() {
        Some(Value::String(line)) => line,
        _ => String::new(),
    };
    let structured_metadata = match parts.next() {
        Some(Value::Object(metadata)) => metadata,
        _ => Map::new(),
    };
    Entry { timestamp, line, structured_metadata }
}

/// Parses Prometheus' label text, `{name="value", other="with \"quotes\""}`, with the
/// escapes Loki writes (`\\`, `\"`, `\n`).
fn parse_labels(text: &str) -> Result<Map<String, Value>, FieldError> {
    let invalid =
        |why: &str| FieldError::new("labels", "isLabelSet", format!("labels {text:?} are not a label set: {why}"));
    let inner =
        text.trim().strip_prefix('{').and_then(|rest| rest.strip_suffix('}')).ok_or_else(|| invalid("no braces"))?;
    let mut labels = Map::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or_else(|| invalid("a label has no ="))?;
        let name = name.trim();
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(at, c)| c == '_' || c.is_ascii_alphabetic() || (at > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(invalid("a label name is not [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let mut chars =
            after.trim_start().strip_prefix('"').ok_or_else(|| invalid("a value is not quoted"))?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err(invalid("a value is not closed")),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped @ ('\\' | '"'))) => value.push(escaped),
                    _ => return Err(invalid("an unknown escape")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        let quoted = after.trim_start().strip_prefix('"').unwrap_or_default();
        labels.insert(name.to_owned(), Value::String(value));
        rest = quoted[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(next) => next.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(invalid("labels must be separated by commas")),
        };
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn label_sets_are_read_as_prometheus_writes_them() {
        let labels = parse_labels(r#"{app="api", env="prod",msg="say \"hi\"\n\\"}"#).unwrap();
        assert_eq!(Value::Object(labels), serde_json::json!({"app": "api", "env": "prod", "msg": "say \"hi\"\n\\"}));
        assert_eq!(parse_labels("{}").unwrap(), Map::new());
        for invalid in
            ["", "app=\"x\"", "{app=x}", "{app=\"x}", "{1a=\"x\"}", "{app=\"x\" env=\"y\"}", "{=\"x\"}", "{a=\"\\q\"}"]
        {
            assert!(parse_labels(invalid).is_err(), "{invalid}");
        }
    }

    proptest! {
        /// Any label set written with Loki's escapes reads back as itself; any text at all
        /// is parsed or refused, never a panic.
        #[test]
        fn labels_round_trip(labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}", 0..6), noise in "\\PC{0,40}") {
            let written: Vec<String> = labels
                .iter()
                .map(|(name, value)| format!("{name}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
                .collect();
            let text = format!("{{{}}}", written.join(", "));
            let parsed = parse_labels(&text).unwrap();
            let expected: Map<String, Value> = labels.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
            prop_assert_eq!(parsed, expected);
            let _ = parse_labels(&noise);
        }
    }
}
