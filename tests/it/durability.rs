//! What `202` promises: events survive kill -9, database outages and poison batch-mates,
//! exactly once. Real binary, real files, real PostgreSQL (through a proxy that can cut it).

// A failed unwrap is a failed test, which is what these helpers are for.

use crate::support::{
    Api, Proxy, Service, TestApp, TestDatabase, assert_all_stored_once, event, poll, post_with, stored_ids, through,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Posts arrays of `size` events in a loop until `stop`, returning the acknowledged ids.
/// Requests cut off by a kill simply do not count.
async fn load(
    client: reqwest::Client,
    address: String,
    service: &'static str,
    size: usize,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let events: Vec<Value> = (0..size).map(|i| event(service, &format!("{round}-{i}"))).collect();
        let Ok(response) = client.post(format!("{address}/events")).json(&events).send().await else { break };
        if response.status() == StatusCode::ACCEPTED {
            let Ok(body) = response.json::<Value>().await else { break };
            acknowledged.extend(body["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acknowledged
}

async fn run_load_for(client: &reqwest::Client, address: &str, service: &'static str, length: Duration) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..4).map(|_| tokio::spawn(load(client.clone(), address.to_owned(), service, 20, stop.clone()))).collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_and_duplicates_nothing() {
    let cycles: usize = std::env::var("AURORE_KILL_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let mut acknowledged = HashSet::new();
    for _ in 0..cycles {
        let service = Service::start(&database.url, journal.path(), &[]);
        service.wait_until_ready().await;
        acknowledged
            .extend(run_load_for(&service.client, &service.address, "killed", Duration::from_millis(400)).await);
        // Keep the load on while the kill lands: requests in flight are cut off mid-way.
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = tokio::spawn(load(service.client.clone(), service.address.clone(), "killed", 20, stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        service.kill().await;
        stop.store(true, Ordering::Relaxed);
        acknowledged.extend(in_flight.await.unwrap());
    }
    let service = Service::start(&database.url, journal.path(), &[]);
    service.wait_until_ready().await;
    assert!(acknowledged.len() > 1000, "the load got through: {}", acknowledged.len());
    let stored = assert_all_stored_once(&database, "killed", &acknowledged, Duration::from_secs(30)).await;
    println!(
        "kill -9 cycles: {cycles}, acknowledged: {}, stored: {stored}, lost: 0, duplicated: 0",
        acknowledged.len()
    );
    assert!(service.terminate().await.success());
}

/// Segments of 4 KiB and a long group-commit wait put dozens of requests in one group and
/// roll the segment in the middle of it, while the writers hold every event in memory:
/// only the journal has them when the process dies.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_segments_roll_inside_group_commits_loses_nothing() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let tiny_segments = [
        ("AURORE__JOURNAL__SEGMENT_BYTES", "4096"),
        ("AURORE__JOURNAL__GROUP_COMMIT_WAIT_US", "50000"),
        ("AURORE__WRITER__LINGER_MS", "60000"),
        ("AURORE__WRITER__BATCH_SIZE", "100000"),
    ];
    let mut acknowledged = HashSet::new();
    for round in 0..3 {
        let service = Service::start(&database.url, journal.path(), &tiny_segments);
        service.wait_until_ready().await;
        let posts: Vec<_> = (0..40)
            .map(|i| {
                let client = service.client.clone();
                let url = format!("{}/events", service.address);
                let body = event("rolled", &format!("{round}-{i}-{}", "x".repeat(250)));
                tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
            })
            .collect();
        for post in posts {
            let response = post.await.unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let body: Value = response.json().await.unwrap();
            acknowledged.insert(body["event_id"].as_str().unwrap().to_owned());
        }
        service.kill().await;
    }
    let service = Service::start(&database.url, journal.path(), &[]);
    service.wait_until_ready().await;
    let stored = assert_all_stored_once(&database, "rolled", &acknowledged, Duration::from_secs(30)).await;
    println!("4 KiB segments, 3 × kill -9: acknowledged {}, stored {stored}, lost 0, duplicated 0", acknowledged.len());
    assert_eq!(stored as usize, acknowledged.len());
    assert!(service.terminate().await.success());
}

async fn circuit(app: &TestApp) -> Value {
    let health: Value = app.get_json("/health/database").await;
    health["circuitBreaker"].clone()
}

/// The app on a fresh database reached through a [`Proxy`] that can cut it, ready, with
/// quick connection timeouts and retries.
async fn behind_a_proxy(configure: impl FnOnce(&mut aurore::Settings)) -> (TestApp, Proxy) {
    let database = TestDatabase::create().await;
    let (_, upstream) = through(&database.url, 0);
    let proxy = Proxy::start(upstream).await;
    let (proxied_url, _) = through(&database.url, proxy.port);
    let app = TestApp::start(database, |settings| {
        settings.database.url = serde_json::from_value(json!(proxied_url)).unwrap();
        settings.database.connect_timeout = Duration::from_millis(500);
        settings.writer.backoff_max = Duration::from_millis(200);
        configure(settings);
    })
    .await;
    app.wait_until_ready().await;
    (app, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_under_load_loses_nothing_and_the_circuit_opens_and_closes() {
    let (app, proxy) = behind_a_proxy(|settings| {
        settings.circuit_breaker.failure_threshold = 3;
        settings.circuit_breaker.open_timeout = Duration::from_secs(1);
        // Far less memory than the outage needs: the rest waits in the journal.
        settings.buffer.capacity = 100;
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(app.client.clone(), app.address.clone(), "outage", 20, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut().await;
    let mut states_seen = HashSet::new();
    for _ in 0..30 {
        states_seen.insert(circuit(&app).await["state"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }

    assert!(states_seen.contains("OPEN"), "the circuit opened during the outage: {states_seen:?}");
    assert!(acknowledged.len() > 2000, "ingest kept accepting into the journal: {}", acknowledged.len());
    let stored = assert_all_stored_once(&app.database, "outage", &acknowledged, Duration::from_secs(30)).await;
    assert_eq!(stored, i64::try_from(acknowledged.len()).unwrap());
    let breaker = poll(Duration::from_secs(10), || circuit(&app), |breaker| breaker["state"] == "CLOSED").await;
    assert_eq!(breaker["state"], "CLOSED", "the circuit closed again");
    assert!(breaker["opened"].as_u64().unwrap() >= 1, "{breaker}");
    let dead: Value = app.get_json("/dlq/statistics").await;
    assert_eq!(dead["total"], 0, "an outage never sends events to dead letters");
    drop(proxy);
}

/// Events accepted with `durability=none` live only in memory: when the drain deadline
/// passes while a writer still retries them, the stop says how many were lost and fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_that_loses_unjournaled_events_held_by_a_writer_says_so_and_fails() {
    let (app, proxy) = behind_a_proxy(|settings| settings.shutdown.drain_deadline = Duration::from_secs(1)).await;
    proxy.cut().await;
    let batch: Vec<Value> = (0..5).map(|i| event("memory", &i.to_string())).collect();
    let response =
        post_with(&app.client, format!("{}/events", app.address), &[("Prefer", "durability=none")], &json!(batch))
            .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // A writer has taken the batch and retries it against the unreachable database.
    let buffered = || async {
        let body: Value = app.get_json("/health/buffer").await;
        body["buffer"]["size"].as_u64()
    };
    assert_eq!(poll(Duration::from_secs(10), buffered, |events| *events == Some(0)).await, Some(0));
    let error = app.shutdown().await.expect_err("events were lost");
    let message = error.to_string();
    assert!(message.contains("5 events") && message.contains("5 held by writers"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_goes_to_the_dlq_while_its_batch_mates_land() {
    // Stripping markup would drop the NUL that PostgreSQL refuses; this is about the store.
    let app = TestApp::spawn_with(|settings| settings.ingest.sanitize = aurore_domain::Markup::Off).await;
    let mut batch: Vec<Value> = (0..50).map(|i| event("poison", &format!("fine {i}"))).collect();
    batch[17] = event("poison", "bad \u{0} byte");
    let response = app.post_json(&Value::Array(batch)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let receipt: Value = response.json().await.unwrap();
    let poison_id = receipt["event_ids"][17].as_str().unwrap().to_owned();
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'poison'";
    assert_eq!(app.database.wait_for_count(stored, 49, Duration::from_secs(10)).await, 49);

    let dlq = |path: String| app.client.get(format!("{}{path}", app.address)).send();
    let probe = || async { dlq("/dlq?service=poison".into()).await.unwrap().json::<Value>().await.unwrap() };
    let listed = poll(Duration::from_secs(10), probe, |listed| listed["total"] == 1).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let entry = &listed["events"][0];
    assert_eq!(entry["eventId"], poison_id.as_str());
    assert!(entry["failureReason"].as_str().unwrap().contains("0x00"), "{entry}");
    assert!(entry["retryCount"].as_u64().unwrap() >= 1);
    let id = entry["id"].as_str().unwrap().to_owned();

    let one: Value = dlq(format!("/dlq/{id}")).await.unwrap().json().await.unwrap();
    assert_eq!(one["originalEvent"]["message"], "bad \u{0} byte", "the original event is kept exactly");
    let stats: Value = dlq("/dlq/statistics".into()).await.unwrap().json().await.unwrap();
    assert_eq!(
        (stats["total"].clone(), stats["pending"].clone(), stats["byService"]["poison"].clone()),
        (json!(1), json!(1), json!(1))
    );

    let reprocess = |id: String| app.client.patch(format!("{}/dlq/{id}/reprocess", app.address)).send();
    assert_eq!(reprocess(id.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(reprocess(id.clone()).await.unwrap().status(), StatusCode::CONFLICT);
    // Still poison: it goes through the pipeline again and lands in the queue again.
    let probe = || async { dlq("/dlq/statistics".into()).await.unwrap().json::<Value>().await.unwrap() };
    let stats = poll(Duration::from_secs(10), probe, |stats| stats["total"] == 2).await;
    assert_eq!((stats["total"].clone(), stats["reprocessed"].clone()), (json!(2), json!(1)), "{stats}");
    let delete = |id: String| app.client.delete(format!("{}/dlq/{id}", app.address)).send();
    assert_eq!(delete(id.clone()).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(delete(id.clone()).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(dlq(format!("/dlq/{id}")).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(dlq("/dlq/not-a-uuid".into()).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(dlq("/dlq?limit=0".into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
}

/// A counter from `/metrics` (0 when not exported yet).
async fn counter(service: &Service, name: &str) -> f64 {
    let text = service.get_text("/metrics").await;
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn dlq_statistics(service: &Service) -> Value {
    service.get_json("/dlq/statistics").await
}

fn poisoned_batch(service: &str) -> Value {
    let mut batch: Vec<Value> = (0..20).map(|i| event(service, &format!("fine {i}"))).collect();
    batch[7] = event(service, "bad \u{0} byte");
    Value::Array(batch)
}

/// kill -9 leaves the open segment to be replayed whole, poison event included: the
/// replay dead-letters it again, which must not add an entry.
#[tokio::test(flavor = "multi_thread")]
async fn replaying_the_journal_after_kill_9_adds_no_dead_letter() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let unsanitised = [("AURORE__INGEST__SANITIZE", "off")];
    let service = Service::start(&database.url, journal.path(), &unsanitised);
    service.wait_until_ready().await;
    let response = service.client.post(format!("{}/events", service.address)).json(&poisoned_batch("replayed")).send();
    assert_eq!(response.await.unwrap().status(), StatusCode::ACCEPTED);
    let stats = poll(Duration::from_secs(10), || dlq_statistics(&service), |stats| stats["total"] == 1).await;
    assert_eq!(stats["total"], 1);
    service.kill().await;
    let service = Service::start(&database.url, journal.path(), &unsanitised);
    service.wait_until_ready().await;
    // The replayed poison event has been dead-lettered again once this counts it.
    let counted = poll(Duration::from_secs(10), || counter(&service, "aurore_dead_letters_total"), |n| *n >= 1.0);
    assert!(counted.await >= 1.0, "the replay reached the dead-letter store");
    // The poison event is isolated before the mates after it are written: each kill above
    // may come before them, so wait for them here.
    let mates = || database.count("SELECT count(*) AS n FROM events WHERE service = 'replayed'");
    assert_eq!(
        poll(Duration::from_secs(10), mates, |n| *n >= 19).await,
        19,
        "batch mates stored once across the replays"
    );
    let stats = dlq_statistics(&service).await;
    assert_eq!((stats["total"].clone(), stats["pending"].clone()), (json!(1), json!(1)), "{stats}");
    service.kill().await;
}

/// A reprocess whose requeue is refused (the journal is full) leaves the entry pending,
/// so it can be reprocessed once there is room.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_reprocess_leaves_the_entry_reprocessable() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let unsanitised = [("AURORE__INGEST__SANITIZE", "off")];
    let service = Service::start(&database.url, journal.path(), &unsanitised);
    service.wait_until_ready().await;
    let response = service.client.post(format!("{}/events", service.address)).json(&poisoned_batch("requeued")).send();
    assert_eq!(response.await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(poll(Duration::from_secs(10), || dlq_statistics(&service), |s| s["total"] == 1).await["total"], 1);
    assert!(service.terminate().await.success());

    // Writers that hold everything in memory and a 1 MiB journal: it fills.
    let full = tempfile::tempdir().unwrap();
    let holding = [
        ("AURORE__INGEST__SANITIZE", "off"),
        ("AURORE__JOURNAL__MAX_BYTES", "1048576"),
        ("AURORE__JOURNAL__SEGMENT_BYTES", "262144"),
        ("AURORE__WRITER__LINGER_MS", "60000"),
        ("AURORE__WRITER__BATCH_SIZE", "1000000"),
    ];
    let service = Service::start(&database.url, full.path(), &holding);
    service.wait_until_ready().await;
    // Ever smaller requests until not even one small event fits.
    for (size, length) in [(100, 1500), (10, 100), (1, 1)] {
        let filler = "x".repeat(length);
        let mut filled = false;
        for round in 0..5000 {
            let batch: Vec<Value> = (0..size).map(|i| event("filler", &format!("{round} {i} {filler}"))).collect();
            let response = service.client.post(format!("{}/events", service.address)).json(&batch).send();
            if response.await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE {
                filled = true;
                break;
            }
        }
        assert!(filled, "the journal filled with requests of {size}");
    }
    let listed: Value = service.get_json("/dlq").await;
    let id = listed["events"][0]["id"].as_str().unwrap().to_owned();
    let reprocess = |service: &Service| service.client.patch(format!("{}/dlq/{id}/reprocess", service.address)).send();
    let refused = reprocess(&service).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let entry: Value = service.get_json(&format!("/dlq/{id}")).await;
    assert_eq!(entry["reprocessed"], false, "{entry}");
    service.kill().await;

    let service = Service::start(&database.url, journal.path(), &unsanitised);
    service.wait_until_ready().await;
    assert_eq!(reprocess(&service).await.unwrap().status(), StatusCode::OK, "reprocessable once there is room");
    assert!(service.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_is_stored_once_however_often_it_is_sent() {
    let app = TestApp::spawn().await;
    let timestamp = "2026-11-23T10:00:00.000Z";
    let body = json!({"timestamp": timestamp, "service": "keys", "message": "charge card"});
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let response =
            post_with(&app.client, format!("{}/events", app.address), &[("Idempotency-Key", "order-42")], &body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.insert(response.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned());
    }
    let keyed = json!([{"timestamp": timestamp, "service": "keys", "message": "charge card", "idempotencyKey": "order-42"},
                       {"timestamp": timestamp, "service": "keys", "message": "ship", "idempotencyKey": "order-43"}]);
    let receipt: Value = app.post_json(&keyed).await.json().await.unwrap();
    ids.insert(receipt["event_ids"][0].as_str().unwrap().to_owned());
    assert_eq!(ids.len(), 1, "the same key and timestamp always get the same id");
    assert_eq!(receipt["duplicates"], 1);
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'keys'";
    assert_eq!(app.database.wait_for_count(stored, 2, Duration::from_secs(5)).await, 2);
}

/// A key names one event of one service at one instant: other services and other
/// timestamps using the same key are other events, each stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_from_two_services_or_for_two_timestamps_names_two_events() {
    let app = TestApp::spawn().await;
    let body = json!([
        {"timestamp": "2026-11-23T10:00:00Z", "service": "billing", "message": "a", "idempotencyKey": "k-1"},
        {"timestamp": "2026-11-23T10:00:00Z", "service": "shipping", "message": "b", "idempotencyKey": "k-1"},
        {"timestamp": "2026-11-23T10:00:01Z", "service": "billing", "message": "c", "idempotencyKey": "k-1"},
    ]);
    let receipt: Value = app.post_json(&body).await.json().await.unwrap();
    let ids: HashSet<&str> = receipt["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    assert_eq!((ids.len(), receipt["duplicates"].clone()), (3, json!(0)), "{receipt}");
    let stored = "SELECT count(*) AS n FROM events WHERE message IN ('a', 'b', 'c')";
    assert_eq!(app.database.wait_for_count(stored, 3, Duration::from_secs(5)).await, 3);
}

/// A repeated key that asks to wait for the store reports what became of the event: 202
/// when it is stored, 422 when it was dead-lettered, never a 202 for an event not stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_that_waits_for_the_store_reports_the_original_s_fate() {
    let app = TestApp::spawn_with(|settings| settings.ingest.sanitize = aurore_domain::Markup::Off).await;
    let send = |message: &str, prefer: &str| {
        app.client
            .post(format!("{}/events", app.address))
            .header("Idempotency-Key", format!("key-{}", message.len()))
            .header("Prefer", prefer)
            .json(&json!({"timestamp": "2026-11-23T10:00:00Z", "service": "fate", "message": message}))
            .send()
    };
    assert_eq!(send("bad \u{0}", "durability=journal").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(send("fine", "durability=journal").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(send("bad \u{0}", "durability=stored").await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(send("fine", "durability=stored").await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(app.database.count("SELECT count(*) AS n FROM events WHERE service = 'fate'").await, 1);
    let stats: Value = app.get_json("/dlq/statistics").await;
    assert_eq!(stats["total"], 1, "the repeat's failure is the same dead letter: {stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn durability_stored_answers_after_the_commit() {
    // A long linger: a journaled event is still waiting when its 202 arrives.
    let app = TestApp::spawn_with(|settings| settings.writer.linger = Duration::from_secs(1)).await;
    let journaled = "SELECT count(*) AS n FROM events WHERE service = 'journaled'";
    let committed = "SELECT count(*) AS n FROM events WHERE service = 'committed'";
    assert_eq!(app.post_json(&event("journaled", "m")).await.status(), StatusCode::ACCEPTED);
    assert_eq!(app.database.count(journaled).await, 0, "durability=journal answers before the write");

    let response = app
        .client
        .post(format!("{}/events", app.address))
        .header("Prefer", "durability=stored")
        .json(&event("committed", "m"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.database.count(committed).await, 1, "durability=stored answers after the commit");

    let response = app
        .client
        .post(format!("{}/events?durability=eventually", app.address))
        .json(&event("x", "m"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_journal_answers_503_with_retry_after() {
    let database = TestDatabase::create().await;
    let app = TestApp::start(database, |settings| {
        // No database: nothing drains, so the journal fills.
        settings.database.url = serde_json::from_value(json!("postgres://postgres@127.0.0.1:1/none")).unwrap();
        settings.journal.max_size = 1 << 20;
        settings.journal.segment_size = 1 << 18;
        settings.shutdown.drain_deadline = Duration::from_secs(1);
    })
    .await;
    let big = "x".repeat(1500);
    let mut statuses = Vec::new();
    for round in 0..20 {
        let batch: Vec<Value> = (0..100).map(|i| event("full", &format!("{round} {i} {big}"))).collect();
        let response = app.post_json(&Value::Array(batch)).await;
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(response.json::<Value>().await.unwrap()["errorCode"], "JOURNAL_FULL");
        }
        statuses.push(status);
    }
    assert_eq!(statuses[0], StatusCode::ACCEPTED);
    assert!(statuses.contains(&StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn aurore_drain_stores_a_dead_replicas_journal_exactly_once() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    // A replica that never reaches PostgreSQL: everything it acknowledges stays journaled.
    let unreachable = "postgres://postgres@127.0.0.1:1/none";
    let service = Service::start(unreachable, journal.path(), &[("AURORE__JOURNAL__SEGMENT_BYTES", "65536")]);
    let accepted = || async {
        let response =
            service.client.post(format!("{}/events", service.address)).json(&event("drained", "first")).send();
        response.await.is_ok_and(|response| response.status() == StatusCode::ACCEPTED)
    };
    assert!(poll(Duration::from_secs(10), accepted, |accepted| *accepted).await, "ingest opens without the database");
    let acknowledged: HashSet<String> =
        run_load_for(&service.client, &service.address, "drained", Duration::from_millis(500))
            .await
            .into_iter()
            .collect();
    service.kill().await;
    assert!(acknowledged.len() > 200, "the load got through: {}", acknowledged.len());
    let segments = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "seg"))
            .count()
    };
    assert!(segments(journal.path()) > 1, "the killed replica left its journal behind");

    let drain = |database_url: &str| {
        std::process::Command::new(crate::support::aurore_binary())
            .env_clear()
            .env("AURORE__DATABASE__URL", database_url)
            .env("AURORE__DATABASE__CONNECT_TIMEOUT_MS", "500")
            .env("AURORE__PARTITIONS__DAYS_BEHIND", "1")
            .env("RUST_LOG", "warn")
            .args(["drain", "--deadline-secs", "60", "--journal-dir"])
            .arg(journal.path())
            .output()
            .expect("run aurore drain")
    };
    // Without PostgreSQL it says so and fails, keeping every segment.
    let failed = drain(unreachable);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("cannot reach PostgreSQL"), "{failed:?}");
    assert!(segments(journal.path()) > 1);

    let drained = drain(&database.url);
    assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
    assert!(String::from_utf8_lossy(&drained.stdout).contains("holds no journal segment"), "{drained:?}");
    assert_eq!(segments(journal.path()), 0, "the journal is empty");
    // Stored by the time drain exits, not eventually.
    let missing = acknowledged.difference(&stored_ids(&database, "drained").await).count();
    assert_eq!(missing, 0, "{missing} of {} acknowledged events were not drained", acknowledged.len());
    let rows = database.count("SELECT count(*) AS n FROM events WHERE service = 'drained'").await;
    let distinct = database.count("SELECT count(DISTINCT id) AS n FROM events WHERE service = 'drained'").await;
    assert_eq!(rows, distinct, "no event is stored twice");

    // Draining an empty journal is a no-op that succeeds.
    let again = drain(&database.url);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(database.count("SELECT count(*) AS n FROM events WHERE service = 'drained'").await, rows);
}
