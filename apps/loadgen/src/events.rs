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

pub fn event(run_id: &str, services: usize, metadata_bytes: usize) -> Value {
    let message = format!(
        "{} {} for request {:08x} in region eu-west-{}",
        OBJECTS[fastrand::usize(..OBJECTS.len())],
        VERBS[fastrand::usize(..VERBS.len())],
        fastrand::u32(..),
        fastrand::u8(1..4)
    );
    let padding = metadata_bytes.saturating_sub(60);
    json!({
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "service": service(run_id, fastrand::usize(..services.max(1))),
        "message": message,
        "metadata": {
            "user_id": format!("usr_{:06}", fastrand::u32(..1_000_000)),
            "ip_address": format!("10.{}.{}.{}", fastrand::u8(..), fastrand::u8(..), fastrand::u8(1..255)),
            "detail": "x".repeat(padding),
        },
    })
}
