//! Realistic events: several services, varied messages, metadata of a chosen size.

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

const VERBS: [&str; 8] = ["completed", "started", "failed", "retried", "queued", "validated", "processed", "rejected"];
const OBJECTS: [&str; 8] = [
    "checkout session",
    "password reset",
    "profile update",
    "inventory sync",
    "invoice batch",
    "shipment label",
    "payment capture",
    "email dispatch",
];

/// The service names of a run: the run id makes its events findable.
pub fn service(run_id: &str, index: usize) -> String {
    format!("lg-{run_id}-{index}")
}

/// With `personal`, metadata also holds an email and a document number, and the message
/// names an email and an IP address: what privacy rules and detectors work on.
pub fn event(run_id: &str, services: usize, metadata_bytes: usize, personal: bool) -> Value {
    let mut message = format!(
        "{} {} for request {:08x} in region eu-west-{}",
        OBJECTS[fastrand::usize(..OBJECTS.len())],
        VERBS[fastrand::usize(..VERBS.len())],
        fastrand::u32(..),
        fastrand::u8(1..4)
    );
    let padding = metadata_bytes.saturating_sub(60);
    let user = fastrand::u32(..1_000_000);
    if personal {
        message.push_str(&format!(" by user{user:06}@example.com from 192.0.2.{}", fastrand::u8(1..255)));
    }
    let mut event = json!({
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "service": service(run_id, fastrand::usize(..services.max(1))),
        "message": message,
        "metadata": {
            "user_id": format!("usr_{user:06}"),
            "ip_address": format!("10.{}.{}.{}", fastrand::u8(..), fastrand::u8(..), fastrand::u8(1..255)),
            "detail": "x".repeat(padding),
        },
    });
    if personal {
        event["metadata"]["email"] = format!("user{user:06}@example.com").into();
        event["metadata"]["document"] = format!("D{:09}", fastrand::u32(..1_000_000_000)).into();
    }
    event
}

/// The events as one OTLP logs export in protobuf: a resource per service, each record's
/// metadata as its attributes.
pub fn otlp_export(events: Vec<Value>) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message as _;
    let text = |value: &Value| AnyValue {
        value: Some(any_value::Value::StringValue(value.as_str().unwrap_or_default().to_owned())),
    };
    let mut by_service: std::collections::BTreeMap<String, Vec<LogRecord>> = std::collections::BTreeMap::new();
    for event in events {
        let nanos = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap_or_default())
            .ok()
            .and_then(|at| at.timestamp_nanos_opt())
            .and_then(|nanos| u64::try_from(nanos).ok())
            .unwrap_or_default();
        let attributes = event["metadata"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| KeyValue { key: key.clone(), value: Some(text(value)), ..KeyValue::default() })
            .collect();
        let record = LogRecord {
            time_unix_nano: nanos,
            severity_number: 9,
            body: Some(text(&event["message"])),
            attributes,
            ..LogRecord::default()
        };
        by_service.entry(event["service"].as_str().unwrap_or_default().to_owned()).or_default().push(record);
    }
    let resource_logs = by_service
        .into_iter()
        .map(|(service, log_records)| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(text(&Value::String(service))),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs { log_records, ..ScopeLogs::default() }],
            ..ResourceLogs::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }.encode_to_vec()
}
