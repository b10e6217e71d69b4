//! The ingest hot path without I/O: parse, validate, clean markup and enrich one event and
//! an array of 1,000; the markup step also with markup off and with HTML in every message;
//! the same with a realistic privacy rule set (3 hashed fields, 1 generalised, scanning);
//! and the events' serde form, which the journal writes on ingest and reads back for
//! spilled events. `just bench` runs it.

use aurore_domain::privacy::{Action, Detector, PrivacyTally, RuleSpec};
use aurore_domain::validation::{Incoming, Limits, validate_event};
use aurore_domain::{EventId, Markup, Privacy, PrivacySpec};
use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;

fn event(i: usize) -> Value {
    json!({"timestamp": "2024-01-15T10:30:00.000Z", "service": format!("service-{}", i % 10),
           "message": format!("checkout session completed for request {i:08x} in region eu-west-1"),
           "metadata": {"user_id": format!("usr_{i:06}"), "ip_address": "10.1.2.3", "attempt": 1}})
}

/// With personal data where rules and detectors look for it.
fn personal(i: usize) -> Value {
    let mut event = event(i);
    event["message"] =
        json!(format!("checkout for request {i:08x} by user{i:06}@example.com from 192.0.2.{}", i % 250));
    event["metadata"]["email"] = json!(format!("user{i:06}@example.com"));
    event["metadata"]["document"] = json!(format!("D{i:09}"));
    event
}

fn privacy() -> Privacy {
    let rule = |field: &str, action| RuleSpec { field: field.into(), action, services: Vec::new(), bucket: None };
    let spec = PrivacySpec {
        rules: vec![
            rule("metadata.user_id", Action::Hash),
            rule("metadata.email", Action::Hash),
            rule("metadata.document", Action::Hash),
            rule("metadata.ip_address", Action::Generalise),
        ],
        scan_message: vec![Detector::Email, Detector::Ip, Detector::Card],
        ..PrivacySpec::default()
    };
    Privacy::new(&spec, Some(b"bench-key-of-at-least-thirty-two-bytes-long")).expect("valid rules")
}

fn with_html(i: usize) -> Value {
    let mut event = event(i);
    event["message"] = json!(format!("<b>checkout</b> for <a href=\"/r/{i}\">request {i:08x}</a> & region eu-west-1"));
    event
}

/// Reads the body as the HTTP adapter does: an array's elements, or the one event.
fn accept(body: &[u8], limits: &Limits, markup: Markup, privacy: &Privacy) -> Vec<aurore_domain::Event> {
    let elements: Vec<Incoming> = match body.first() {
        Some(b'[') => serde_json::from_slice(body).expect("valid JSON"),
        _ => vec![serde_json::from_slice(body).expect("valid JSON")],
    };
    let now = Utc::now();
    let mut tally = PrivacyTally::default();
    let events = elements
        .into_iter()
        .filter_map(|incoming| validate_event(incoming, limits).and_then(|draft| markup.apply(draft)).ok())
        .map(|mut draft| {
            privacy.apply(&mut draft, &mut tally);
            draft.enrich(EventId::generate(), now)
        })
        .collect();
    privacy.record(tally);
    events
}

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    let one = serde_json::to_vec(&event(1)).expect("encode");
    let thousand = serde_json::to_vec(&Value::Array((0..1000).map(event).collect())).expect("encode");

    let thousand_html = serde_json::to_vec(&Value::Array((0..1000).map(with_html).collect())).expect("encode");
    let thousand_personal = serde_json::to_vec(&Value::Array((0..1000).map(personal).collect())).expect("encode");
    let (none, rules) = (Privacy::default(), privacy());

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_validate_enrich/1", |b| {
        b.iter(|| accept(black_box(&one), &limits, Markup::Strip, &none))
    });
    group.throughput(Throughput::Elements(1000));
    for (name, body, markup, privacy) in [
        ("parse_validate_enrich/1000", &thousand, Markup::Strip, &none),
        ("parse_validate_enrich/1000/markup_off", &thousand, Markup::Off, &none),
        ("parse_validate_enrich/1000/html_stripped", &thousand_html, Markup::Strip, &none),
        ("parse_validate_enrich/1000/html_escaped", &thousand_html, Markup::Escape, &none),
        ("parse_validate_enrich/1000/personal_no_rules", &thousand_personal, Markup::Strip, &none),
        ("parse_validate_enrich/1000/personal_rules", &thousand_personal, Markup::Strip, &rules),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || body.clone(),
                |body| accept(black_box(&body), &limits, markup, privacy),
                BatchSize::SmallInput,
            )
        });
    }
    let events = accept(&thousand, &limits, Markup::Strip, &none);
    let record = serde_json::to_vec(&events).expect("encode");
    group.bench_function("serde_form/encode/1000", |b| b.iter(|| serde_json::to_vec(black_box(&events))));
    group.bench_function("serde_form/decode/1000", |b| {
        b.iter(|| serde_json::from_slice::<Vec<aurore_domain::Event>>(black_box(&record)))
    });
    group.finish();
}

criterion_group!(ingest, benches);
criterion_main!(ingest);
