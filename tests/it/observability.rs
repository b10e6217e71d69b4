//! What operators watch: Prometheus metrics, OTLP traces (received by an in-process
//! OTLP/HTTP collector), correlation ids and the business figures.

// A failed unwrap is a failed test, which is what these helpers are for.

use crate::support::{Api, Service, TestApp, TestDatabase, poll, post_with};
use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{Duration as Days, SecondsFormat, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn event_at(service: &str, timestamp: chrono::DateTime<Utc>) -> Value {
    json!({"timestamp": timestamp.to_rfc3339_opts(SecondsFormat::Millis, true), "service": service, "message": "m"})
}

/// An OTLP/HTTP trace collector on a random port, keeping every span it receives.
pub(crate) struct Collector {
    pub(crate) url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    pub(crate) fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let received = web::Data::new(spans.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new().app_data(received.clone()).app_data(web::PayloadConfig::new(16 << 20)).route(
                "/v1/traces",
                web::post().to(|body: web::Bytes, spans: web::Data<Arc<Mutex<Vec<Span>>>>| async move {
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut spans = spans.lock().unwrap();
                    for resource in request.resource_spans {
                        for scope in resource.scope_spans {
                            spans.extend(scope.spans);
                        }
                    }
                    HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, spans }
    }

    pub(crate) fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
        match attribute.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        }
    })
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    span.attributes.iter().find(|attribute| attribute.key == key).and_then(|attribute| {
        match attribute.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(number) => Some(*number),
            _ => None,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_continues_its_trace_and_the_batch_that_stores_it_links_back() {
    let collector = Collector::start();
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let service = Service::start(
        &database.url,
        journal.path(),
        &[
            ("AURORE__TELEMETRY__OTLP_ENDPOINT", collector.url.as_str()),
            ("AURORE__TELEMETRY__SAMPLE_RATIO", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    service.wait_until_ready().await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let events: Vec<Value> = (0..3).map(|_| event_at("traced", Utc::now())).collect();
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let headers = [("traceparent", traceparent.as_str()), ("X-Correlation-ID", "order-42")];
    let response = post_with(&service.client, format!("{}/events", service.address), &headers, &json!(events)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-correlation-id"], "order-42", "the correlation id is echoed");

    let spans = poll(
        Duration::from_secs(15),
        || async { collector.spans() },
        |spans| {
            spans.iter().any(|span| span.name == "batch.write")
                && spans.iter().any(|span| span.name == "db.write_batch")
        },
    )
    .await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    let request = spans
        .iter()
        .find(|span| span.name == "POST /events")
        .unwrap_or_else(|| panic!("no request span among {names:?}"));
    assert_eq!(hex(&request.trace_id), trace_id, "the incoming trace is continued");
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(string_attribute(request, "correlation_id"), Some("order-42"));
    assert_eq!(int_attribute(request, "http.response.status_code"), Some(202));

    let batch = spans
        .iter()
        .find(|span| span.name == "batch.write" && span.links.iter().any(|link| hex(&link.trace_id) == trace_id))
        .unwrap_or_else(|| panic!("no batch span links to the request: {names:?}"));
    assert_ne!(hex(&batch.trace_id), trace_id, "a batch is a trace of its own");
    let link = batch.links.iter().find(|link| hex(&link.trace_id) == trace_id).unwrap();
    assert_eq!(link.span_id, request.span_id, "the link points at the request's span");
    assert_eq!(batch.links.len(), 1, "one request, one link, whatever its number of events");
    assert_eq!(int_attribute(batch, "events"), Some(3));

    let write = spans
        .iter()
        .find(|span| span.name == "db.write_batch" && span.parent_span_id == batch.span_id)
        .unwrap_or_else(|| panic!("no database span under the batch span: {names:?}"));
    assert_eq!(write.trace_id, batch.trace_id);
    assert_eq!(string_attribute(write, "db.system"), Some("postgresql"));
    assert_eq!(int_attribute(write, "events"), Some(3));

    // Without an id, one is made up and returned; with a sample ratio of 0 and no sampled
    // parent, the request is not exported.
    let response = service.get("/health/live").await;
    let generated = response.headers()["x-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    assert!(service.terminate().await.success());
    let exported = collector.spans();
    assert!(
        !exported.iter().any(|span| string_attribute(span, "correlation_id") == Some(generated)),
        "an unsampled request is not exported"
    );
}

/// Prometheus text as `series → value`, where a series is the name with its labels.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {line}")))
        })
        .collect()
}

async fn scrape(client: &reqwest::Client, address: &str) -> HashMap<String, f64> {
    let response = client.get(format!("{address}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse_prometheus(&response.text().await.unwrap())
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_what_happened_and_gauges_show_the_state() {
    // Its own process, so no other test's events reach these counters.
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let service = Service::start(
        &database.url,
        journal.path(),
        &[("AURORE__BUFFER__CAPACITY", "1234"), ("AURORE__JOURNAL__MAX_BYTES", "500000000")],
    );
    service.wait_until_ready().await;
    let (client, address) = (&service.client, service.address.as_str());
    let before = scrape(client, address).await;

    let batch = json!([event_at("metered", Utc::now()), event_at("metered", Utc::now()), {"service": "metered"}]);
    let response = client.post(format!("{address}/events")).json(&batch).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut keyed = event_at("metered", Utc::now());
    keyed["idempotencyKey"] = json!("k-1");
    for _ in 0..2 {
        let response = client.post(format!("{address}/events")).json(&keyed).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let response = client.post(format!("{address}/events")).body("{").header("content-type", "application/json");
    assert_eq!(response.send().await.unwrap().status(), StatusCode::BAD_REQUEST);

    let after = poll(
        Duration::from_secs(10),
        || scrape(client, address),
        |after| delta(&before, after, "aurore_events_stored_total") >= 3.0,
    )
    .await;
    assert_eq!(delta(&before, &after, "aurore_events_stored_total"), 3.0);
    assert_eq!(delta(&before, &after, r#"aurore_events_received_total{outcome="accepted"}"#), 3.0);
    assert_eq!(delta(&before, &after, r#"aurore_events_received_total{outcome="rejected"}"#), 1.0);
    assert_eq!(delta(&before, &after, r#"aurore_events_received_total{outcome="duplicate"}"#), 1.0);
    let posts = r#"aurore_http_requests_total{route="/events",method="POST",status="202"}"#;
    assert_eq!(delta(&before, &after, posts), 3.0);
    let malformed = r#"aurore_http_requests_total{route="/events",method="POST",status="400"}"#;
    assert_eq!(delta(&before, &after, malformed), 1.0);
    let batches = delta(&before, &after, "aurore_batches_written_total");
    assert!(batches >= 1.0);
    assert_eq!(delta(&before, &after, "aurore_batch_write_duration_seconds_count"), batches);
    assert_eq!(delta(&before, &after, "aurore_batch_size_events_sum"), 3.0);
    assert_eq!(after["aurore_buffer_capacity_events"], 1234.0);
    assert_eq!(after["aurore_journal_capacity_bytes"], 500_000_000.0);
    assert!(after["aurore_journal_bytes"] > 0.0, "the journal holds what was appended");
    assert_eq!(after["aurore_circuit_state"], 0.0);
    assert!(after["aurore_process_resident_memory_bytes"] > 1e6);
    assert_eq!(after[r#"aurore_build_info{version="0.1.0"}"#], 1.0);

    // The original service's JSON summary, for clients that ask for JSON.
    let summary = json_of(client.get(format!("{address}/metrics")).header("accept", "application/json")).await;
    assert_eq!(summary["buffer_capacity"], 1234);
    assert_eq!(summary["metrics"]["total_enqueued"], 3);
    assert_eq!(summary["buffer_utilization_percent"], "0.00");
    let prometheus = client.get(format!("{address}/metrics/prometheus")).send().await.unwrap().text().await.unwrap();
    assert!(prometheus.contains("# HELP aurore_events_received_total"), "every metric is described");
    assert!(service.terminate().await.success());
}

#[tokio::test]
async fn no_cache_recomputes_the_business_figures_at_most_once_every_few_seconds() {
    let app = TestApp::spawn().await;
    let fresh = || app.client.get(format!("{}/health/business", app.address)).header("cache-control", "no-cache");
    let count = "SELECT count(*) AS n FROM events";
    assert_eq!(app.post_json(&event_at("alpha", Utc::now())).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count(count, 1, Duration::from_secs(10)).await;
    assert_eq!(json_of(fresh()).await["totalEvents"], 1);

    // Each of these would read the database again if no-cache were always honoured.
    assert_eq!(app.post_json(&event_at("alpha", Utc::now())).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count(count, 2, Duration::from_secs(10)).await;
    for _ in 0..10 {
        assert_eq!(json_of(fresh()).await["totalEvents"], 1, "served from the cache within the interval");
    }
    tokio::time::sleep(aurore_http::BUSINESS_METRICS_FRESH_INTERVAL).await;
    assert_eq!(json_of(fresh()).await["totalEvents"], 2, "honoured again once the interval passed");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn business_figures_match_the_rows_stored() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let mut events = Vec::new();
    for (service, count, age) in
        [("alpha", 5, Days::zero()), ("beta", 3, Days::hours(2)), ("alpha", 4, Days::hours(30))]
    {
        events.extend((0..count).map(|_| event_at(service, now - age)));
    }
    assert_eq!(app.post_json(&Value::Array(events)).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count("SELECT count(*) AS n FROM events", 12, Duration::from_secs(10)).await;

    let business =
        json_of(app.client.get(format!("{}/health/business", app.address)).header("cache-control", "no-cache")).await;
    assert_eq!(business["totalEvents"], app.database.count("SELECT count(*) AS n FROM events").await);
    assert_eq!(
        business["eventsByService"]["alpha"],
        app.database.count("SELECT count(*) AS n FROM events WHERE service = 'alpha'").await
    );
    assert_eq!(
        business["eventsByService"]["beta"],
        app.database.count("SELECT count(*) AS n FROM events WHERE service = 'beta'").await
    );
    let hour = "date_trunc('hour', now(), 'UTC')";
    let last_day = format!(r#"SELECT count(*) AS n FROM events WHERE "timestamp" >= {hour} - interval '23 hours'"#);
    assert_eq!(business["eventsLast24Hours"], app.database.count(&last_day).await);
    let last_hour = format!(r#"SELECT count(*) AS n FROM events WHERE "timestamp" >= {hour}"#);
    assert_eq!(business["eventsLastHour"], app.database.count(&last_hour).await);
    assert_eq!(business["topServices"][0], json!({"service": "alpha", "count": 9}));
    let by_hour: i64 =
        business["eventsByHour"].as_array().unwrap().iter().map(|hour| hour["count"].as_i64().unwrap()).sum();
    assert_eq!(json!(by_hour), business["eventsLast24Hours"]);

    // Cached: more events do not show until the minute passes or fresh figures are asked for.
    assert_eq!(app.post_json(&event_at("gamma", now)).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count("SELECT count(*) AS n FROM events", 13, Duration::from_secs(10)).await;
    let cached = json_of(app.client.get(format!("{}/health/business", app.address))).await;
    assert_eq!(cached["totalEvents"], 12);
    let detailed = json_of(app.client.get(format!("{}/health/detailed", app.address))).await;
    assert_eq!(detailed["status"], "healthy");
    assert_eq!(detailed["business"]["totalEvents"], 12, "/health/detailed shares the cache");
    assert_eq!(detailed["database"]["database"], "connected");
    assert_eq!(detailed["buffer"]["buffer"]["capacity"], 50_000);
    assert!(detailed["journal"]["bytes"].as_u64().unwrap() > 0);
    app.shutdown().await.unwrap();
}
