//! The real HTTP server on a random port against a fresh PostgreSQL database, and the
//! real binary as a child process where signals and exit codes matter.

// A failed unwrap is a failed test, which is what these helpers are for.

use crate::support::{self, Api, Service, TestApp, TestDatabase, aurore_binary, iso, poll, window};
use chrono::{Duration as Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

/// An event with metadata, so every path here carries some.
fn event(service: &str, message: &str) -> Value {
    let mut event = support::event(service, message);
    event["metadata"] = json!({"k": "v"});
    event
}

/// Every event of `service` in the last/next hour, following `next_cursor` to the end.
async fn walk_all(app: &TestApp, service: &str, page_size: &str) -> Vec<Value> {
    let (from, to) = window();
    let mut cursor: Option<String> = None;
    let mut events = Vec::new();
    loop {
        let mut query = vec![("service", service), ("from", &from), ("to", &to), ("pageSize", page_size)];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let response = app.get_events(&query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        events.extend(body["events"].as_array().unwrap().iter().cloned());
        match body.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// Polls `GET /events` until it reports `expected` events for `service` or `within` passes.
async fn wait_for_total(app: &TestApp, service: &str, expected: u64, within: Duration) -> u64 {
    let probe = || async {
        let (from, to) = window();
        let query = [("service", service), ("from", &from), ("to", &to), ("pageSize", "1")];
        app.get_events(&query).await.json::<Value>().await.unwrap()["total"].as_u64().unwrap()
    };
    poll(within, probe, |total| *total == expected).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_sample_is_accepted_and_read_back_with_the_contract_fields() {
    let app = TestApp::spawn().await;
    let sample = json!({"timestamp": "2024-01-15T12:30:00.000+02:00", "service": "auth-service",
                        "message": "User login successful", "metadata": {"user_id": "12345", "ip_address": "192.168.1.1"}});
    let response = app.post_json(&sample).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["statusCode"], 202);
    assert_eq!(receipt["message"], "Event accepted");
    assert_eq!(receipt["status"], "accepted");
    let event_id = receipt["event_id"].as_str().unwrap().to_owned();

    let query = [("service", "auth-service"), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")];
    let probe = || async { app.get_events(&query).await.json::<Value>().await.unwrap() };
    let body = poll(Duration::from_secs(5), probe, |body| body["total"] == 1).await;
    assert_eq!(body["total"], 1, "{body}");
    let stored = &body["events"][0];
    assert_eq!(stored["eventId"], event_id.as_str());
    assert_eq!(stored["id"], event_id.as_str());
    assert_eq!(stored["timestamp"], "2024-01-15T10:30:00.000Z", "stored in UTC");
    assert_eq!(stored["service"], "auth-service");
    assert_eq!(stored["metadata"], sample["metadata"]);
    assert_eq!(stored["ingestedAt"], receipt["queued_at"]);
    assert!(stored["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["pagination"], json!({"total": 1, "limit": 100, "offset": 0, "has_more": false}));
    assert_eq!((body["page"].clone(), body["pageSize"].clone()), (json!(1), json!(100)));
    assert_eq!((body["sortField"].clone(), body["sortOrder"].clone()), (json!("timestamp"), json!("DESC")));
    assert!(body.get("next_cursor").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_events_in_arrays_are_all_stored_and_each_cursor_page_yields_them_once() {
    let app = TestApp::spawn().await;
    let mut acknowledged = HashSet::new();
    for batch in 0..20 {
        let events: Vec<Value> = (0..500).map(|i| event("bulk", &format!("batch {batch} event {i}"))).collect();
        let response = app.post_json(&Value::Array(events)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let receipt: Value = response.json().await.unwrap();
        assert_eq!(receipt["accepted"], 500);
        assert_eq!(receipt["rejected"], 0);
        acknowledged.extend(receipt["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
    }
    assert_eq!(acknowledged.len(), 10_000);
    assert_eq!(wait_for_total(&app, "bulk", 10_000, Duration::from_secs(5)).await, 10_000);

    let walked = walk_all(&app, "bulk", "1000").await;
    let ids: Vec<String> = walked.iter().map(|event| event["eventId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 10_000, "every event exactly once");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), acknowledged);
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_is_accepted_line_by_line_with_bad_lines_reported_by_index() {
    let app = TestApp::spawn().await;
    let mut body = String::new();
    for i in 0..3 {
        body.push_str(&event("ndjson", &format!("line {i}")).to_string());
        body.push('\n');
    }
    body.push_str("{not json\n");
    body.push_str(&json!({"service": "ndjson", "message": "no timestamp"}).to_string());
    let response = app
        .client
        .post(format!("{}/events", app.address))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!((receipt["accepted"].clone(), receipt["rejected"].clone()), (json!(3), json!(2)));
    assert_eq!(receipt["errors"][0]["index"], 3);
    assert_eq!(
        receipt["errors"][0]["errors"][0]["constraints"]["isJson"].as_str().unwrap().split(':').next(),
        Some("line 4 is not valid JSON")
    );
    assert_eq!(receipt["errors"][1]["index"], 4);
    assert_eq!(receipt["errors"][1]["errors"][0]["field"], "timestamp");
    assert_eq!(wait_for_total(&app, "ndjson", 3, Duration::from_secs(5)).await, 3);
}

/// The field and rule a 400 names, for each kind of bad event.
#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_event_gets_a_400_naming_the_field_and_the_rule() {
    let app = TestApp::spawn().await;
    let valid = event("svc", "ok");
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("timestamp", json!("yesterday")), "timestamp", "isParseableTimestamp"),
        (with("timestamp", json!("1900-01-01T00:00:00Z")), "timestamp", "isInRange"),
        (with("service", json!("")), "service", "isNotEmpty"),
        (with("service", json!("s".repeat(101))), "service", "maxLength"),
        (with("message", json!(7)), "message", "isString"),
        (with("message", json!("m".repeat(2001))), "message", "maxLength"),
        (with("metadata", json!(["a"])), "metadata", "isObject"),
        (with("metadata", json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}})), "metadata", "isMetadataSizeValid"),
        (with("metadata", json!({"blob": "x".repeat(17 * 1024)})), "metadata", "isMetadataSizeValid"),
        (with("extra", json!(1)), "extra", "whitelistValidation"),
    ];
    for (body, field, rule) in cases {
        let response = app.post_json(&body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field} {rule}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["errorCode"], "INVALID_EVENT");
        assert_eq!(error["message"], "Invalid event schema");
        let entry = error["errors"].as_array().unwrap().iter().find(|entry| entry["field"] == field);
        let entry = entry.unwrap_or_else(|| panic!("no error for {field}: {error}"));
        assert!(entry["constraints"].get(rule).is_some(), "{field} should break {rule}: {error}");
    }
    let (from, to) = window();
    let stored: Value = app.get_events(&[("service", "svc"), ("from", &from), ("to", &to)]).await.json().await.unwrap();
    assert_eq!(stored["total"], 0, "nothing invalid was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_foreign_bodies_are_refused_with_the_limit() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.max_body_size = 64 * 1024;
        settings.server.max_events_per_request = 10;
    })
    .await;
    let post = |body: String, content_type: &'static str| {
        app.client.post(format!("{}/events", app.address)).header("Content-Type", content_type).body(body).send()
    };

    let response = post("{\"timestamp\":".into(), "application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["errorCode"], "MALFORMED_BODY");

    let response = post("\"just a string\"".into(), "application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = post(format!("{{\"message\":\"{}\"}}", "x".repeat(70 * 1024)), "application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["limit"], 65536, "{body}");

    let eleven: Vec<Value> = (0..11).map(|i| event("svc", &i.to_string())).collect();
    let response = app.post_json(&Value::Array(eleven)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["errorCode"], "TOO_MANY_EVENTS");

    let response = post("timestamp=now".into(), "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let all_bad = json!([{"service": "svc"}, 42]);
    let response = app.post_json(&all_bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let indexes: Vec<u64> = body["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1]);
    assert!(body["errors"].as_array().unwrap().iter().any(|e| e["field"] == "[1].event"), "{body}");

    let response = app.post_json(&json!([])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_parameters_are_checked_by_name() {
    let app = TestApp::spawn().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 6] = [
        (&[("from", "2024-01-01T00:00:00Z"), ("to", "2024-01-02T00:00:00Z")], "service", "isNotEmpty"),
        (
            &[("service", "s"), ("from", "2024-01-02T00:00:00Z"), ("to", "2024-01-01T00:00:00Z")],
            "to",
            "isValidTimeRange",
        ),
        (&[("service", "s"), ("from", "2024-01-01T00:00:00Z"), ("to", "2024-03-01T00:00:00Z")], "to", "isMaxTimeRange"),
        (
            &[("service", "s"), ("from", "2024-01-01T00:00:00Z"), ("to", "2024-01-02T00:00:00Z"), ("pageSize", "5000")],
            "pageSize",
            "max",
        ),
        (
            &[("service", "s"), ("from", "2024-01-01T00:00:00Z"), ("to", "2024-01-02T00:00:00Z"), ("cursor", "bogus")],
            "cursor",
            "isCursor",
        ),
        (
            &[("service", "s"), ("from", "2024-01-01T00:00:00Z"), ("to", "2024-01-02T00:00:00Z"), ("offset", "5")],
            "offset",
            "whitelistValidation",
        ),
    ];
    for (query, field, rule) in cases {
        let response = app.get_events(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
        let body: Value = response.json().await.unwrap();
        let entry = body["errors"].as_array().unwrap().iter().find(|entry| entry["field"] == field).cloned();
        assert!(entry.is_some_and(|entry| entry["constraints"].get(rule).is_some()), "{field} {rule}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_answers_429_with_retry_after_and_takes_nothing() {
    // In memory only: with the journal, events that do not fit wait there instead.
    let app = TestApp::spawn_with(|settings| {
        settings.ingest.durability = aurore_domain::Durability::None;
        settings.buffer.capacity = 10;
        settings.buffer.retry_after = Duration::from_secs(7);
    })
    .await;
    let eleven: Vec<Value> = (0..11).map(|i| event("full", &i.to_string())).collect();
    let response = app.post_json(&Value::Array(eleven)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "rate_limited", "message": "Buffer is full. Please retry in a few seconds.", "retry_after": 7, "errorCode": "BUFFER_SATURATED"})
    );
    let ten: Vec<Value> = (0..10).map(|i| event("full", &i.to_string())).collect();
    assert_eq!(app.post_json(&Value::Array(ten)).await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        wait_for_total(&app, "full", 10, Duration::from_secs(5)).await,
        10,
        "only the batch that fit was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_routes_follow_the_lifecycle() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/health/ready", "/ready"] {
        let response = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"message": "SERVER_IS_READY"}));
    }
    for path in ["/health/live", "/live"] {
        let response = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let response = app.get("/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_database_the_service_stays_ready_until_the_journal_fills() {
    let database = TestDatabase::create().await;
    let app = TestApp::start(database, |settings| {
        // Nothing listens on port 1: every connection attempt is refused at once.
        settings.database.url = serde_json::from_value(json!("postgres://postgres@127.0.0.1:1/none")).expect("url");
        settings.shutdown.drain_deadline = Duration::from_secs(1);
        settings.journal.max_size = 1 << 20;
        settings.journal.segment_size = 1 << 18;
    })
    .await;
    // The journal takes the events while the database is down: this replica can take traffic.
    let ready = || app.client.get(format!("{}/health/ready", app.address)).send();
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);
    let database_health: Value = app.get_json("/health/database").await;
    assert_ne!(database_health["status"], "healthy", "{database_health}");
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(app.post_json(&event("offline", "buffered")).await.status(), StatusCode::ACCEPTED);

    let (from, to) = window();
    let query = app.get_events(&[("service", "offline"), ("from", &from), ("to", &to)]).await;
    assert_eq!(query.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(query.headers().contains_key("retry-after"));

    // Ever smaller requests until not even one small event fits: then traffic belongs elsewhere.
    for (size, length) in [(100, 1500), (10, 100), (1, 1)] {
        let filler = "x".repeat(length);
        let mut refused = false;
        for round in 0..5000 {
            let batch: Vec<Value> = (0..size).map(|i| event("offline", &format!("{round} {i} {filler}"))).collect();
            if app.post_json(&Value::Array(batch)).await.status() == StatusCode::SERVICE_UNAVAILABLE {
                refused = true;
                break;
            }
        }
        assert!(refused, "the journal filled with requests of {size}");
    }
    let full = ready().await.unwrap();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers().contains_key("retry-after"));
    assert_eq!(full.json::<Value>().await.unwrap()["reason"], "the journal is full");

    let mut app = app;
    let journal = app.journal.take().unwrap();
    app.shutdown().await.expect("journaled events wait in the journal: nothing is lost");
    let segments: u64 =
        std::fs::read_dir(journal.path()).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).sum();
    assert!(segments > 0, "the buffered events are still in the journal");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_the_buffer_to_postgres_and_exits_zero() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    // A linger of a minute and huge batches: nothing is written unless shutdown flushes it.
    let service = Service::start(
        &database.url,
        journal.path(),
        &[("AURORE__WRITER__LINGER_MS", "60000"), ("AURORE__WRITER__BATCH_SIZE", "1000000")],
    );
    service.wait_until_ready().await;
    for batch in 0..3 {
        let events: Vec<Value> = (0..100).map(|i| event("sigterm", &format!("{batch}-{i}"))).collect();
        let response = service.client.post(format!("{}/events", service.address)).json(&events).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'sigterm'";
    assert_eq!(database.count(stored).await, 0, "still buffered before the signal");

    let status = service.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(database.count(stored).await, 300);
    let left: Vec<_> = std::fs::read_dir(journal.path()).unwrap().collect();
    assert!(left.is_empty(), "a clean stop leaves nothing to replay: {left:?}");
}

#[test]
fn an_invalid_setting_stops_start_up_naming_the_key() {
    let output = Command::new(aurore_binary())
        .env_clear()
        .env("AURORE__WRITER__LINGER_MS", "0")
        .arg("config")
        .output()
        .expect("run aurore");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writer.linger_ms"), "{stderr}");
}

#[test]
fn config_prints_the_effective_settings_with_secrets_redacted() {
    let output = Command::new(aurore_binary())
        .env_clear()
        .env("DATABASE_URL", "postgres://aurore:s3cret@db:5432/events")
        .env("AURORE__SERVER__PORT", "9999")
        .arg("config")
        .output()
        .expect("run aurore");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("port = 9999"), "{stdout}");
    assert!(stdout.contains("postgres://aurore:***@db:5432/events"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");

    for url in [
        "postgres://app@db/aurore?sslmode=require&password=secret",
        "host=db user=app password=secret",
        "host=db user=app password = 'a secret'",
    ] {
        let output = Command::new(aurore_binary()).env_clear().env("DATABASE_URL", url).arg("config").output().unwrap();
        assert!(output.status.success(), "{url}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("password=***"), "{url}: {stdout}");
        assert!(!stdout.contains("secret"), "{url}: {stdout}");
    }
}

#[tokio::test]
async fn retention_runs_on_demand_over_http_and_from_the_command_line() {
    let app = TestApp::spawn().await;
    let old = json!({"timestamp": iso(Utc::now() - Days::days(40)), "service": "old", "message": "m"});
    let fresh = event("fresh", "m");
    assert_eq!(app.post_json(&json!([old, fresh])).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count("SELECT count(*) AS n FROM events", 2, Duration::from_secs(10)).await;

    let response = app.client.post(format!("{}/admin/retention/run", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["ran"], true, "{report}");
    assert_eq!(report["eventsDeleted"], 1, "the 40-day-old event sat in the default partition: {report}");
    assert_eq!(app.database.count("SELECT count(*) AS n FROM events WHERE service = 'old'").await, 0);
    assert_eq!(app.database.count("SELECT count(*) AS n FROM events WHERE service = 'fresh'").await, 1);

    let output = Command::new(aurore_binary())
        .env_clear()
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_LOG", "warn")
        .args(["retention", "run"])
        .output()
        .expect("run aurore");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((printed["ran"].clone(), printed["eventsDeleted"].clone()), (json!(true), json!(0)));
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_histogram_counts_events_per_bucket_with_empty_buckets_and_names_bad_parameters() {
    use chrono::DurationRound;
    let app = TestApp::spawn().await;
    let hour = Utc::now().duration_trunc(Days::hours(1)).unwrap() - Days::hours(1);
    let at = |minutes: i64| iso(hour + Days::minutes(minutes));
    let events: Vec<Value> = [3, 4, 4, 47]
        .iter()
        .map(|minute| json!({"timestamp": at(*minute), "service": "histo", "message": "m"}))
        .collect();
    assert_eq!(app.post_json(&Value::Array(events)).await.status(), StatusCode::ACCEPTED);
    let get = |query: Vec<(&'static str, String)>| {
        let request = app.client.get(format!("{}/events/histogram", app.address)).query(&query);
        async move { request.send().await.expect("GET /events/histogram") }
    };
    let (from, to) = (at(0), at(59));
    let base = |interval: &str| {
        vec![
            ("service", "<b>histo</b>".to_owned()),
            ("from", from.clone()),
            ("to", to.clone()),
            ("interval", interval.to_owned()),
        ]
    };
    let body: Value = poll(
        Duration::from_secs(10),
        || async { get(base("15m")).await.json::<Value>().await.unwrap() },
        |body| body["total"] == 4,
    )
    .await;
    assert_eq!(
        body,
        json!({
            "service": "histo",
            "from": from,
            "to": to,
            "interval": "15m",
            "buckets": [
                {"start": at(0), "count": 3},
                {"start": at(15), "count": 0},
                {"start": at(30), "count": 0},
                {"start": at(45), "count": 1},
            ],
            "total": 4,
        }),
        "markup is stripped from service as ingest strips it; empty buckets are listed"
    );
    let by_seconds: Value = get(base("3600")).await.json().await.unwrap();
    assert_eq!((&by_seconds["interval"], &by_seconds["buckets"][0]["count"]), (&json!("1h"), &json!(4)));

    let mut missing = base("1m");
    missing.retain(|(name, _)| *name != "service");
    let mut wide = base("1m");
    wide[2].1 = iso(hour + Days::days(1));
    let mut extra = base("1h");
    extra.push(("q", "m".to_owned()));
    let mut reversed = base("1h");
    reversed.swap(1, 2);
    reversed[1].0 = "from";
    reversed[2].0 = "to";
    let cases = [
        (missing, "service", "isNotEmpty"),
        (base("30s"), "interval", "isInterval"),
        (base(""), "interval", "isNotEmpty"),
        (wide, "interval", "maxBuckets"),
        (extra, "q", "whitelistValidation"),
        (reversed, "to", "isValidTimeRange"),
    ];
    for (query, field, rule) in cases {
        let response = get(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field} {rule}");
        let body: Value = response.json().await.unwrap();
        let entry = body["errors"].as_array().unwrap().iter().find(|entry| entry["field"] == field).cloned();
        assert!(entry.is_some_and(|entry| entry["constraints"].get(rule).is_some()), "{field} {rule}: {body}");
    }
}

#[tokio::test]
async fn metadata_filters_and_text_search_narrow_pages_and_totals() {
    let app = TestApp::spawn().await;
    let events = json!([
        {"timestamp": iso(Utc::now()), "service": "filtered", "message": "Request TIMED OUT after 30s", "metadata": {"region": "eu", "status": 504}},
        {"timestamp": iso(Utc::now()), "service": "filtered", "message": "ok", "metadata": {"region": "eu", "status": 200, "user": {"id": "7"}}},
        {"timestamp": iso(Utc::now()), "service": "filtered", "message": "100% done_now", "metadata": {"region": "us", "status": "504"}},
        {"timestamp": iso(Utc::now()), "service": "filtered", "message": "no metadata"},
    ]);
    assert_eq!(app.post_json(&events).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count("SELECT count(*) AS n FROM events", 4, Duration::from_secs(10)).await;
    let (from, to) = window();
    let search = |filters: &'static [(&'static str, &'static str)]| {
        let (from, to) = (from.clone(), to.clone());
        let app = &app;
        async move {
            let mut query = vec![("service", "filtered"), ("from", from.as_str()), ("to", to.as_str())];
            query.extend_from_slice(filters);
            let response = app.get_events(&query).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            let mut messages: Vec<String> = body["events"].as_array().map_or_else(Vec::new, |events| {
                events.iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect()
            });
            messages.sort();
            (status, body["total"].clone(), messages)
        }
    };
    let (status, total, messages) = search(&[("metadata.region", "eu")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((total, messages), (json!(2), vec!["Request TIMED OUT after 30s".to_owned(), "ok".to_owned()]));
    let (_, total, messages) = search(&[("metadata.status", "504")]).await;
    assert_eq!(total, 2, "504 matches the number and the string: {messages:?}");
    let (_, total, _) = search(&[("metadata.status", "504"), ("metadata.region", "us")]).await;
    assert_eq!(total, 1, "filters are ANDed");
    let (_, _, messages) = search(&[("metadata.user.id", "7")]).await;
    assert_eq!(messages, ["ok"]);
    let (_, _, messages) = search(&[("q", "timed out")]).await;
    assert_eq!(messages, ["Request TIMED OUT after 30s"], "case-insensitive substring");
    let (_, total, messages) = search(&[("q", "0% done_")]).await;
    assert_eq!((total, messages), (json!(1), vec!["100% done_now".to_owned()]), "% and _ are literal");
    let (_, total, _) = search(&[("q", "%")]).await;
    assert_eq!(total, 1, "a lone % matches only messages containing %");
    let (status, _, _) = search(&[("metadata.a..b", "x")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn export_streams_every_matching_event_as_ndjson_compressed_on_request() {
    let app = TestApp::spawn().await;
    let batch: Vec<Value> = (0..2500)
        .map(|i| json!({"timestamp": iso(Utc::now()), "service": "exported", "message": format!("m{i}"), "metadata": {"even": i % 2 == 0}}))
        .collect();
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), StatusCode::ACCEPTED);
    app.database.wait_for_count("SELECT count(*) AS n FROM events", 2500, Duration::from_secs(20)).await;
    let (from, to) = (iso(Utc::now() - Days::days(20)), iso(Utc::now() + Days::hours(1)));
    let url = format!("{}/events/export", app.address);
    let query = [("service", "exported"), ("from", from.as_str()), ("to", to.as_str()), ("sortOrder", "asc")];

    let response = app.client.get(&url).query(&query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2500, "more than two internal pages, every event once");
    let ids: HashSet<&str> = lines.iter().map(|line| line["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2500);
    let stamps: Vec<&str> = lines.iter().map(|line| line["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|pair| pair[0] <= pair[1]), "ascending as asked");

    let filtered = [query.as_slice(), &[("metadata.even", "true")]].concat();
    let response = app.client.get(&url).query(&filtered).header("accept-encoding", "zstd").send().await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "zstd");
    let compressed = response.bytes().await.unwrap();
    let decompressed = zstd::decode_all(compressed.as_ref()).unwrap();
    assert!(compressed.len() * 3 < decompressed.len(), "{} → {}", decompressed.len(), compressed.len());
    assert_eq!(String::from_utf8(decompressed).unwrap().lines().count(), 1250);

    let paged = [query.as_slice(), &[("page", "2")]].concat();
    assert_eq!(app.client.get(&url).query(&paged).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn live_tail_streams_are_capped_and_the_next_one_is_told_to_retry() {
    let app = TestApp::spawn_with(|settings| settings.tail.max_subscribers = 2).await;
    let url = format!("{}/events/tail", app.address);
    let open = || app.client.get(&url).query(&[("service", "capped")]).send();
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = open().await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().await.unwrap();
    assert_eq!((body["errorCode"].as_str(), body["limit"].as_u64()), (Some("TAIL_FULL"), Some(2)));
    // The open streams still get what is stored.
    assert_eq!(app.post_json(&event("capped", "seen")).await.status(), StatusCode::ACCEPTED);
    let mut first = first;
    let chunk = tokio::time::timeout(Duration::from_secs(10), first.chunk()).await.unwrap().unwrap().unwrap();
    assert!(std::str::from_utf8(&chunk).unwrap().contains("seen"));
}

#[tokio::test]
async fn tail_streams_newly_stored_events_of_one_service_as_server_sent_events() {
    let app = TestApp::spawn().await;
    let url = format!("{}/events/tail", app.address);
    let mut stream = app.client.get(&url).query(&[("service", "tailed"), ("q", "WANTED")]).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    let batch = json!([
        event("tailed", "wanted 1"),
        event("other", "wanted elsewhere"),
        event("tailed", "skipped"),
        event("tailed", "wanted 2"),
    ]);
    assert_eq!(app.post_json(&batch).await.status(), StatusCode::ACCEPTED);
    let mut received = String::new();
    while received.matches("event: event").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let messages: Vec<String> = received
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<Value>(data).unwrap()["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages, ["wanted 1", "wanted 2"], "only the service's events whose message matches");

    let missing = app.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST, "a service is required");
    drop(stream);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sort_other_than_timestamp_over_too_large_a_range_is_refused_naming_sortfield_and_the_limit() {
    let app = TestApp::spawn_with(|settings| settings.query.max_sorted_rows = 2).await;
    let batch: Vec<Value> = (0..3).map(|i| event("sorting", &format!("m{i}"))).collect();
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), StatusCode::ACCEPTED);
    assert_eq!(wait_for_total(&app, "sorting", 3, Duration::from_secs(10)).await, 3);
    let (from, to) = window();
    let by = |field: &'static str| [("service", "sorting"), ("from", &from), ("to", &to), ("sortField", field)];

    let response = app.get_events(&by("message")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "sortField", "{body}");
    let message = body["errors"][0]["constraints"]["maxSortedRows"].as_str().unwrap();
    assert!(message.contains("more than 2") && message.contains("timestamp"), "{message}");

    let response = app.get_events(&by("timestamp")).await;
    assert_eq!(response.status(), StatusCode::OK, "the index serves a timestamp sort");
    app.shutdown().await.unwrap();
}

/// A cursor holds the last row's timestamp and id, never its sort key: messages as long as
/// the limit allows still give cursors far below the query-string limit, and a walk by
/// message visits every event once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn message_sorted_cursors_stay_short_however_long_the_messages() {
    let app = TestApp::spawn().await;
    let messages: Vec<String> = (0..7).map(|i| format!("{i}{}", "m".repeat(1999))).collect();
    let batch: Vec<Value> = messages.iter().map(|message| event("long", message)).collect();
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), StatusCode::ACCEPTED);
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'long'";
    assert_eq!(app.database.wait_for_count(stored, 7, Duration::from_secs(5)).await, 7);
    let (from, to) = window();
    let mut cursor: Option<String> = None;
    let mut walked = Vec::new();
    loop {
        let mut query = vec![
            ("service", "long".to_owned()),
            ("from", from.clone()),
            ("to", to.clone()),
            ("sortField", "message".to_owned()),
            ("sortOrder", "asc".to_owned()),
            ("pageSize", "2".to_owned()),
        ];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = app.get_events(&query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        walked.extend(page["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert!(next.len() < 256, "a cursor of {} characters", next.len());
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(walked, messages, "every event once, by message");
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_are_stored_and_returned_as_written() {
    let app = TestApp::spawn().await;
    // Past u64, past a double's 2^53, a long decimal, and a tiny exponent.
    let written = r#"{"big":123456789012345678901234567890,"odd":9007199254740993,"long":0.10000000000000000555,"neg":-98765432109876543210,"tiny":1e-400}"#;
    let body =
        format!(r#"{{"timestamp":"{}","service":"numbers","message":"n","metadata":{written}}}"#, iso(Utc::now()));
    let response = app
        .client
        .post(format!("{}/events", app.address))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (from, to) = window();
    let probe = || async {
        app.get_events(&[("service", "numbers"), ("from", &from), ("to", &to)]).await.text().await.unwrap()
    };
    let page = poll(Duration::from_secs(10), probe, |text| text.contains("\"metadata\"")).await;
    for number in
        ["123456789012345678901234567890", "9007199254740993", "0.10000000000000000555", "-98765432109876543210"]
    {
        assert!(page.contains(number), "{number} was changed: {page}");
    }
    // PostgreSQL's numeric keeps it; it may only respell the exponent.
    assert!(
        page.contains("\"tiny\":0.0000") || page.contains("\"tiny\":1e-400") || page.contains("\"tiny\":1E-400"),
        "{page}"
    );
}
