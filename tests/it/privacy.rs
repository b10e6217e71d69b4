//! Privacy by configuration, against the binary: raw personal data sent through every
//! ingest route never reaches the journal's files, the database, the logs, the exported
//! spans, the live tail or the dead-letter queue; queries with raw values find their
//! pseudonyms; export profiles transform what is stored; erasure removes a person's events
//! everywhere, keeps the counts exact and holds across a `kill -9` and its replay.

use crate::observability::Collector;
use crate::support::{Api, Proxy, Service, TestDatabase, iso, poll, through, window};
use aurore_domain::privacy::{Action, RuleSpec};
use aurore_domain::{Privacy, PrivacySpec};
use chrono::{Duration as Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const KEY: &str = "privacy-test-key-of-at-least-thirty-two-bytes";
const EMAIL: &str = "canary.person@example.org";
const IP: &str = "198.51.100.77";
const CARD: &str = "4111 1111 1111 1111";
const DOCUMENT: &str = "X99812345Z";
const USER: &str = "u-canary-4242";
const PASSPORT: &str = "PX-CANARY-7781";

/// Hashes the user id and document wherever a shipper puts them, generalises the client
/// address, redacts the card field, scans free text, and offers a `partner` profile.
const CONFIG: &str = r#"
[ingest]
sanitize = "off"

[privacy]
scan_message = ["email", "ip", "card"]
encryption_key_id = "k1"
encryption_keys = { k1 = "S2V5T2ZUaGlydHlUd29CeXRlc0Zvckx1Y2tMdWNrISE=" }

[[privacy.rules]]
field = "metadata.passport"
action = "encrypt"

[[privacy.rules]]
field = "metadata.user_id"
action = "hash"

[[privacy.rules]]
field = "metadata.*.user_id"
action = "hash"

[[privacy.rules]]
field = "metadata.document"
action = "hash"

[[privacy.rules]]
field = "metadata.*.document"
action = "hash"

[[privacy.rules]]
field = "metadata.client_ip"
action = "generalise"

[privacy.export_profiles.partner]
rules = [
    { field = "metadata.user_id", action = "redact" },
    { field = "metadata.*.user_id", action = "redact" },
    { field = "metadata.client_ip", action = "redact" },
]
"#;

/// The pseudonym the service gives `value` under `key`, from the same rules.
fn pseudonym(key: &str, value: &str) -> String {
    let spec = PrivacySpec {
        rules: vec![RuleSpec {
            field: "metadata.user_id".into(),
            action: Action::Hash,
            services: vec![],
            bucket: None,
        }],
        ..PrivacySpec::default()
    };
    let privacy = Privacy::new(&spec, Some(key.as_bytes())).unwrap();
    privacy.query_values(None, &["user_id".to_owned()], value).remove(0)
}

fn start(database_url: &str, journal: &Path, config: &Path, extra: &[(&str, &str)]) -> Service {
    let config = config.to_str().unwrap();
    let mut env = vec![("AURORE_CONFIG", config), ("AURORE__PRIVACY__HMAC_KEY", KEY)];
    env.extend_from_slice(extra);
    Service::start(database_url, journal, &env)
}

fn config_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("aurore.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

fn message() -> String {
    format!("signup by {EMAIL} from {IP}, card {CARD}")
}

fn canaries() -> [&'static str; 7] {
    [EMAIL, IP, CARD, "4111111111111111", DOCUMENT, USER, PASSPORT]
}

/// Which canaries `haystack` holds.
fn found_in(haystack: &[u8]) -> Vec<&'static str> {
    canaries()
        .into_iter()
        .filter(|canary| haystack.windows(canary.len()).any(|window| window == canary.as_bytes()))
        .collect()
}

fn assert_clean(what: &str, haystack: &[u8]) {
    assert!(found_in(haystack).is_empty(), "{what} holds raw values {:?}", found_in(haystack));
}

async fn send_everywhere(service: &Service) -> usize {
    let now = Utc::now();
    let client = &service.client;
    let at = |path: &str| format!("{}{path}", service.address);
    let metadata = json!({"user_id": USER, "document": DOCUMENT, "client_ip": IP, "passport": PASSPORT, "note": format!("mail {EMAIL}")});
    let mut sent = 0;
    for durability in ["none", "journal", "stored"] {
        let event = json!({"timestamp": iso(now), "service": "canary", "message": message(), "metadata": metadata});
        let response =
            client.post(at("/events")).query(&[("durability", durability)]).json(&event).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "durability={durability}");
        sent += 1;
    }
    let otlp = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "canary"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": (now.timestamp_nanos_opt().unwrap()).to_string(),
            "body": {"stringValue": message()},
            "attributes": [
                {"key": "user_id", "value": {"stringValue": USER}},
                {"key": "document", "value": {"stringValue": DOCUMENT}},
                {"key": "peer", "value": {"stringValue": IP}},
            ],
        }]}],
    }]});
    let response = client.post(at("/v1/logs")).json(&otlp).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    sent += 1;
    let document = json!({"@timestamp": iso(now), "service.name": "canary", "message": message(), "user_id": USER, "document": DOCUMENT});
    let bulk = format!("{{\"index\":{{}}}}\n{document}\n");
    let response =
        client.post(at("/es/_bulk")).header("content-type", "application/x-ndjson").body(bulk).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["errors"], false, "{answer}");
    sent += 1;
    let loki = json!({"streams": [{
        "stream": {"service_name": "canary", "user_id": USER},
        "values": [[now.timestamp_nanos_opt().unwrap().to_string(), message(), {"document": DOCUMENT}]],
    }]});
    let response = client.post(at("/loki/api/v1/push")).json(&loki).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", response.text().await.unwrap());
    sent += 1;
    sent
}

fn pg_dump(database_url: &str) -> Vec<u8> {
    let binary = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pg_dump"))
        .find(|path| path.exists())
        .unwrap_or_else(|| "pg_dump".into());
    let output = std::process::Command::new(binary).arg("--data-only").arg(database_url).output().expect("run pg_dump");
    assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![dir.to_owned()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                bytes.extend(std::fs::read(&path).unwrap());
                files += 1;
            }
        }
    }
    assert!(files > 0 && !bytes.is_empty(), "the journal wrote files");
    bytes
}

/// Reads the tail stream until `count` events came, or panics after ten seconds.
async fn tail_events(stream: &mut reqwest::Response, count: usize) -> String {
    let mut received = String::new();
    while received.matches("event: event").count() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_personal_data_reaches_no_disk_log_span_tail_or_dead_letter_on_any_route() {
    let collector = Collector::start();
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let service = start(
        &database.url,
        journal.path(),
        &config,
        &[
            ("RUST_LOG", "debug"),
            ("AURORE__TELEMETRY__OTLP_ENDPOINT", collector.url.as_str()),
            ("AURORE__TELEMETRY__SAMPLE_RATIO", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    service.wait_until_ready().await;
    let mut tail = service.client.get(format!("{}/events/tail?service=canary", service.address)).send().await.unwrap();
    assert_eq!(tail.status(), StatusCode::OK);

    let sent = send_everywhere(&service).await;
    // A poison event (NUL, which PostgreSQL refuses) goes to the dead letters as it was journaled.
    let poison = json!({"timestamp": iso(Utc::now()), "service": "canary", "message": format!("bad \u{0} {}", message()), "metadata": {"user_id": USER}});
    assert_eq!(
        service.client.post(format!("{}/events", service.address)).json(&poison).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'canary'";
    assert_eq!(database.wait_for_count(stored, sent as i64, Duration::from_secs(15)).await, sent as i64);
    let dlq = poll(Duration::from_secs(15), || service.get_json("/dlq"), |list| list["total"] == 1).await;
    assert_eq!(dlq["total"], 1, "{dlq}");

    let (from, to) = window();
    let range = format!("from={from}&to={to}");
    let hashed_user = pseudonym(KEY, USER);
    let hashed_email = pseudonym(KEY, EMAIL);
    let events = service.get_json(&format!("/events?service=canary&{range}")).await;
    let text = events.to_string();
    assert_clean("GET /events", text.as_bytes());
    for event in events["events"].as_array().unwrap_or_else(|| panic!("{events}")) {
        let message = event["message"].as_str().unwrap();
        assert_eq!(message, format!("signup by {hashed_email} from 198.51.100.0/24, card [redacted:card]"), "{event}");
    }
    assert!(text.contains(&hashed_user), "the user id is there as its pseudonym: {text}");
    assert!(text.contains(&pseudonym(KEY, DOCUMENT)));

    // Queries name raw values; the service looks for their pseudonyms.
    let by_user = service.get_json(&format!("/events?service=canary&{range}&metadata.user_id={USER}")).await;
    let expected =
        database.count(&format!("SELECT count(*) AS n FROM events WHERE metadata->>'user_id' = '{hashed_user}'")).await;
    assert!(expected >= 4, "/events, bulk and Loki put user_id at the top: {expected}");
    assert_eq!(by_user["pagination"]["total"], expected, "{by_user}");
    let q = format!("metadata.attributes.document:{DOCUMENT}");
    let by_document = service
        .client
        .get(format!("{}/events", service.address))
        .query(&[("service", "canary"), ("from", from.as_str()), ("to", to.as_str()), ("q", q.as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(by_document["pagination"]["total"], 1, "the OTLP record's attribute: {by_document}");
    let by_email = service
        .client
        .get(format!("{}/events", service.address))
        .query(&[("service", "canary"), ("from", from.as_str()), ("to", to.as_str()), ("q", EMAIL)])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(by_email["pagination"]["total"], sent, "free text is hashed as ingest hashed it: {by_email}");

    // The export profile redacts on top of what is stored; unknown profiles are refused.
    let export = service.get_text(&format!("/events/export?service=canary&{range}&profile=partner")).await;
    assert_eq!(export.lines().count(), sent);
    assert!(!export.contains(&hashed_user) && export.contains("[redacted]"), "{export}");
    let unknown = service.get(&format!("/events/export?service=canary&{range}&profile=nope")).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.text().await.unwrap().contains("partner"), "the refusal names the profiles");

    let tailed = tail_events(&mut tail, sent).await;
    assert_clean("the tail stream", tailed.as_bytes());
    assert!(tailed.contains(&hashed_email));
    let entry = &dlq["events"][0];
    let detail = service.get_json(&format!("/dlq/{}", entry["id"].as_str().unwrap())).await;
    assert_clean("the dead-letter queue", format!("{dlq}{detail}").as_bytes());
    assert!(detail.to_string().contains(&hashed_user), "{detail}");
    // The sealed passport opens only through the admin route, each copy sealed apart.
    let sealed: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["metadata"]["passport"].as_str())
        .collect();
    assert_eq!(sealed.len(), 3, "the three /events posts carry one: {events}");
    assert!(sealed[0] != sealed[1] && sealed.iter().all(|value| value.starts_with("enc:k1:")), "{sealed:?}");
    let opened = service
        .client
        .post(format!("{}/admin/decrypt", service.address))
        .json(&json!({"value": sealed[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.json::<Value>().await.unwrap()["value"], PASSPORT);
    let privacy = service.get_json("/privacy").await;
    assert_clean("GET /privacy", privacy.to_string().as_bytes());
    assert!(!privacy.to_string().contains(KEY));
    let rule =
        privacy["rules"].as_array().unwrap().iter().find(|rule| rule["rule"] == "metadata.user_id:hash").unwrap();
    // Every route but OTLP puts user_id at the top of metadata; the poison event does too.
    assert_eq!(rule["transformed"], sent, "{privacy}");
    let metrics = service.get_text("/metrics/prometheus").await;
    assert!(metrics.contains(r#"aurore_privacy_transformed_total{rule="scan:email"}"#), "{metrics}");

    let spans = poll(
        Duration::from_secs(15),
        || async { collector.spans() },
        |spans| spans.iter().any(|span| span.name == "db.write_batch"),
    )
    .await;
    assert_clean("the exported spans", format!("{spans:?}").as_bytes());
    // The open segment still holds every record (a clean stop removes what is stored).
    let journaled = journal_bytes(journal.path());
    assert_clean("the journal's files", &journaled);
    assert!(journaled.windows(hashed_user.len()).any(|window| window == hashed_user.as_bytes()));
    let logged = service.logged().join("\n");
    assert!(logged.contains("DEBUG"), "the service logged at debug level");
    assert!(service.terminate().await.success());
    assert_clean("the debug log", logged.as_bytes());
    assert_clean("pg_dump", &pg_dump(&database.url));
}

async fn post(service: &Service, body: &Value) {
    let response = service.client.post(format!("{}/events", service.address)).json(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{}", response.text().await.unwrap());
}

fn person_event(service: &str, user: &str, days_ago: i64, message: &str) -> Value {
    let at = Utc::now() - Days::days(days_ago);
    json!({"timestamp": iso(at), "service": service, "message": message, "metadata": {"user_id": user}})
}

async fn erase(service: &Service, body: &Value) -> Value {
    let response = service.client.post(format!("{}/admin/erase", service.address)).json(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The counts by minute and by hour, each summed per service, next to `count(*)`.
async fn counts_match_rows(database: &TestDatabase) {
    for (table, service) in [
        ("event_counts", "billing"),
        ("event_counts_minute", "billing"),
        ("event_counts", "shipping"),
        ("event_counts_minute", "shipping"),
    ] {
        let counted = database
            .count(&format!("SELECT coalesce(sum(events), 0)::int8 AS n FROM {table} WHERE service = '{service}'"))
            .await;
        let rows = database.count(&format!("SELECT count(*) AS n FROM events WHERE service = '{service}'")).await;
        assert_eq!(counted, rows, "{table} for {service}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_a_persons_events_everywhere_keeps_counts_exact_and_holds_across_kill_9() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let service = start(&database.url, journal.path(), &config, &[("AURORE__AUTH__ADMIN_KEYS", "root-key")]);
    service.wait_until_ready().await;
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth("root-key");
    // Today's partition, a day without one (the default partition) and two services.
    let batch: Vec<Value> = [
        ("billing", "gone", 0),
        ("billing", "gone", 20),
        ("shipping", "gone", 0),
        ("billing", "kept", 0),
        ("shipping", "kept", 20),
    ]
    .iter()
    .flat_map(|(service, user, days)| (0..3).map(move |i| person_event(service, user, *days, &format!("event {i}"))))
    .collect();
    post(&service, &json!(batch)).await;
    post(&service, &person_event("billing", "gone", 0, "poison \u{0}")).await;
    assert_eq!(database.wait_for_count("SELECT count(*) AS n FROM events", 15, Duration::from_secs(15)).await, 15);
    assert_eq!(database.wait_for_count("SELECT count(*) AS n FROM dead_letters", 1, Duration::from_secs(15)).await, 1);
    let in_default = "SELECT count(*) AS n FROM events_default";
    assert_eq!(database.count(in_default).await, 6, "events 20 days old are in the default partition");

    // Without an admin key, or without a filter, nothing is erased.
    let anonymous =
        service.client.post(format!("{}/admin/erase?metadata.user_id=gone", service.address)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let unfiltered =
        admin(service.client.post(format!("{}/admin/erase?service=billing", service.address))).send().await.unwrap();
    assert_eq!(unfiltered.status(), StatusCode::BAD_REQUEST);
    // Hostile values are refused by name and erase nothing: empty, NUL, over the limits,
    // far-future bounds, an inverted range, unknown names, a body that is no object.
    let hostile: Vec<Value> = vec![
        json!({"metadata.user_id": "gone", "from": "+10000-01-01T00:00:00Z"}),
        json!({"metadata.user_id": "gone", "to": "-0001-01-01T00:00:00Z"}),
        json!({"metadata.user_id": "gone", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
        json!({"metadata.user_id": "x".repeat(300)}),
        json!({"q": "a".repeat(2000)}),
        json!({"q": "("}),
        json!({"metadata.": "gone"}),
        json!({"metadata.user_id": "gone", "service": ""}),
        json!({"metadata.user_id": "gone", "everything": "true"}),
        json!({"metadata.user_id": ["gone"]}),
        json!(["metadata.user_id", "gone"]),
    ];
    for body in &hostile {
        let erase = admin(service.client.post(format!("{}/admin/erase", service.address)));
        let response = erase.json(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let refusal: Value = response.json().await.unwrap();
        assert!(refusal["errors"][0]["field"].is_string(), "the refusal names a field: {refusal}");
    }
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 15, "a refused erasure erases nothing");
    assert_eq!(database.count("SELECT count(*) AS n FROM erasures").await, 0, "nor is it recorded");

    let response = admin(service.client.post(format!("{}/admin/erase", service.address)))
        .json(&json!({"metadata.user_id": "gone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["events"], 9, "{record}");
    assert_eq!(record["deadLetters"], 1, "{record}");
    let hashed = pseudonym(KEY, "gone");
    assert!(record["filter"].as_str().unwrap().contains(&hashed), "the audit names the pseudonym: {record}");
    assert!(!record["filter"].as_str().unwrap().contains("\"gone\""), "{record}");
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 6);
    assert_eq!(
        database.count(&format!("SELECT count(*) AS n FROM events WHERE metadata->>'user_id' = '{hashed}'")).await,
        0
    );
    assert_eq!(database.count(in_default).await, 3, "the kept user's old events stay");
    assert_eq!(database.count("SELECT count(*) AS n FROM dead_letters").await, 0);
    counts_match_rows(&database).await;
    let trail = admin(service.client.get(format!("{}/admin/erasures", service.address))).send().await.unwrap();
    let trail: Value = trail.json().await.unwrap();
    assert_eq!(trail["erasures"].as_array().unwrap().len(), 1);
    assert_eq!(trail["erasures"][0]["id"], record["id"]);
    assert_eq!(trail["erasures"][0]["keyDigest"].as_str().unwrap().len(), 16);
    assert_eq!(database.count("SELECT count(*) AS n FROM erasures WHERE completed_at IS NOT NULL").await, 1);

    // Acknowledged but not stored: the database is cut off from this process when another
    // records the erasure; after kill -9 the journal replays the events, and the writers
    // leave out what the erasure selects.
    assert!(service.terminate().await.success());
    let proxy = Proxy::start(through(&database.url, 0).1).await;
    let (proxied, _) = through(&database.url, proxy.port);
    let cut_off = start(&proxied, journal.path(), &config, &[]);
    cut_off.wait_until_ready().await;
    proxy.cut().await;
    let pending: Vec<Value> = (0..4)
        .map(|i| person_event("billing", if i % 2 == 0 { "late" } else { "stays" }, 0, &format!("pending {i}")))
        .collect();
    post(&cut_off, &json!(pending)).await;
    let other_journal = tempfile::tempdir().unwrap();
    let eraser = start(&database.url, other_journal.path(), &config, &[]);
    eraser.wait_until_ready().await;
    let record = erase(&eraser, &json!({"service": "billing", "metadata.user_id": "late"})).await;
    assert_eq!(record["events"], 0, "nothing of it is stored yet: {record}");
    cut_off.kill().await;
    proxy.restore();
    let replayed = start(&proxied, journal.path(), &config, &[]);
    replayed.wait_until_ready().await;
    let stays = format!("SELECT count(*) AS n FROM events WHERE metadata->>'user_id' = '{}'", pseudonym(KEY, "stays"));
    assert_eq!(database.wait_for_count(&stays, 2, Duration::from_secs(20)).await, 2, "the replay stored the rest");
    let late = format!("SELECT count(*) AS n FROM events WHERE metadata->>'user_id' = '{}'", pseudonym(KEY, "late"));
    assert_eq!(database.count(&late).await, 0, "an erased event acknowledged before kill -9 did not come back");
    counts_match_rows(&database).await;
    assert!(replayed.terminate().await.success());
    assert!(eraser.terminate().await.success());
}
