//! Ingest and writer replicas apart, over NATS JetStream: real `nats-server` processes
//! (one, or a 3-node cluster), real `aurore` processes in each role, a real PostgreSQL.
//! Every process is killed with SIGKILL at some point under load; what was acknowledged
//! is stored, once.

use crate::nats::{NatsCluster, NatsNode};
use crate::support::{Api, Proxy, Service, TestDatabase, assert_all_stored_once, event, poll, stored_ids, through};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The settings of a replica of `role` on the queue at `nats_url`, plus `extra`.
fn replica(database: &TestDatabase, journal: &Path, nats_url: &str, role: &str, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("AURORE_ROLE", role),
        ("AURORE__QUEUE__KIND", "nats"),
        ("AURORE__QUEUE__NATS_URL", nats_url),
        ("AURORE__WRITER__LINGER_MS", "20"),
    ];
    env.extend_from_slice(extra);
    Service::start(&database.url, journal, &env)
}

async fn post(service: &Service, body: &Value) -> StatusCode {
    service.client.post(format!("{}/events", service.address)).json(body).send().await.unwrap().status()
}

/// Replicas the load goes to, updated as they are killed and restarted.
type Targets = Arc<RwLock<Vec<String>>>;

/// Posts arrays of `size` events of `service` round-robin to `targets` until `stop`,
/// counting acknowledged events in `progress`. A request cut off by a kill does not count.
async fn load(
    targets: Targets,
    service: &'static str,
    size: usize,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
) -> Vec<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut acknowledged = Vec::new();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let address = {
            let targets = targets.read().unwrap();
            targets[round % targets.len()].clone()
        };
        let events: Vec<Value> = (0..size).map(|i| event(service, &format!("{round}-{i}"))).collect();
        match client.post(format!("{address}/events")).json(&events).send().await {
            Ok(response) if response.status() == StatusCode::ACCEPTED => {
                let Ok(body) = response.json::<Value>().await else { continue };
                let ids = body["event_ids"].as_array().unwrap();
                acknowledged.extend(ids.iter().map(|id| id.as_str().unwrap().to_owned()));
                progress.fetch_add(ids.len(), Ordering::Relaxed);
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    acknowledged
}

/// Load on every target from four clients, until the returned handle is stopped.
struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(targets: &Targets, service: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicUsize::new(0));
        let clients =
            (0..4).map(|_| tokio::spawn(load(targets.clone(), service, 20, stop.clone(), progress.clone()))).collect();
        Self { stop, progress, clients }
    }

    /// Until `more` further events have been acknowledged.
    async fn advance(&self, more: usize, what: &str) {
        let target = self.progress.load(Ordering::Relaxed) + more;
        let reached =
            poll(Duration::from_secs(60), || async { self.progress.load(Ordering::Relaxed) }, |done| *done >= target)
                .await;
        assert!(reached >= target, "the load stalled {what}: {reached} of {target} acknowledged");
    }

    async fn finish(self) -> HashSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acknowledged = HashSet::new();
        for client in self.clients {
            acknowledged.extend(client.await.unwrap());
        }
        acknowledged
    }
}

/// A counter or gauge from `/metrics/prometheus`, summed over its labels (0 when absent).
async fn metric(service: &Service, name: &str) -> f64 {
    let text = service.get_text("/metrics/prometheus").await;
    text.lines()
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Acknowledged events a phase of load runs for before and after its fault.
const PHASE_EVENTS: usize = 3_000;

/// Waits until the phase's acknowledged events are all stored, once, and reports them.
async fn settle_phase(database: &TestDatabase, load: Load, service: &'static str, fault: &str) {
    let started = std::time::Instant::now();
    let acknowledged = load.finish().await;
    eprintln!("load finished in {:?}", started.elapsed());
    assert_all_stored_once(database, service, &acknowledged, Duration::from_secs(90)).await;
    let stored = database.count(&format!("SELECT count(*) AS n FROM events WHERE service = '{service}'")).await;
    eprintln!(
        "fault: {fault}: acknowledged {}, stored {stored}, lost 0, duplicated 0 (settled in {:?})",
        acknowledged.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_an_ingest_a_writer_or_a_nats_node_under_load_loses_and_duplicates_nothing() {
    let database = TestDatabase::create().await;
    let mut cluster = NatsCluster::start();
    let url = cluster.url();
    // A killed writer's batches come back after ack_wait: short, so the test is.
    let replicated = [("AURORE__QUEUE__REPLICAS", "3"), ("AURORE__QUEUE__ACK_WAIT", "3")];
    let journals: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut writers: Vec<Service> =
        (0..2).map(|n| replica(&database, journals[n].path(), &url, "writer", &replicated)).collect();
    let mut ingests: Vec<Service> =
        (2..4).map(|n| replica(&database, journals[n].path(), &url, "ingest", &replicated)).collect();
    for service in writers.iter().chain(&ingests) {
        service.wait_until_ready().await;
    }
    let targets: Targets = Arc::new(RwLock::new(ingests.iter().map(|ingest| ingest.address.clone()).collect()));

    // An ingest replica: what it acknowledged is in its journal, published again on restart.
    let started = std::time::Instant::now();
    let load = Load::start(&targets, "faults-ingest");
    load.advance(PHASE_EVENTS, "before the ingest kill").await;
    let killed = ingests.remove(0);
    targets.write().unwrap().retain(|address| *address != killed.address);
    killed.kill().await;
    load.advance(PHASE_EVENTS, "with one ingest replica").await;
    let restarted = replica(&database, journals[2].path(), &url, "ingest", &replicated);
    restarted.wait_until_ready().await;
    targets.write().unwrap().push(restarted.address.clone());
    ingests.push(restarted);
    load.advance(PHASE_EVENTS, "after the ingest restart").await;
    settle_phase(&database, load, "faults-ingest", "kill -9 of an ingest replica").await;

    // A writer: what it held unacknowledged goes to the other.
    let load = Load::start(&targets, "faults-writer");
    load.advance(PHASE_EVENTS, "before the writer kill").await;
    writers.remove(0).kill().await;
    load.advance(PHASE_EVENTS, "with one writer").await;
    let restarted = replica(&database, journals[0].path(), &url, "writer", &replicated);
    restarted.wait_until_ready().await;
    writers.push(restarted);
    load.advance(PHASE_EVENTS, "after the writer restart").await;
    settle_phase(&database, load, "faults-writer", "kill -9 of a writer replica").await;

    // Each NATS node in turn, so the stream's leader is among them: the other two keep a
    // quorum, and clients move to them.
    let load = Load::start(&targets, "faults-nats");
    for node in 0..3 {
        load.advance(PHASE_EVENTS / 3, "before a NATS node kill").await;
        cluster.nodes[node].kill();
        load.advance(PHASE_EVENTS / 3, "with a NATS node down").await;
        cluster.nodes[node].restart();
    }
    load.advance(PHASE_EVENTS, "after the NATS restarts").await;
    settle_phase(&database, load, "faults-nats", "kill -9 of each NATS node in turn").await;

    eprintln!("faults: {:?} in all", started.elapsed());
    for service in writers.iter().chain(&ingests) {
        let errors = service.errors_logged();
        assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nats_down_ingest_journals_until_full_then_refuses_and_all_drains_after() {
    let database = TestDatabase::create().await;
    let mut nats = NatsNode::start();
    let (writer_journal, ingest_journal) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = replica(&database, writer_journal.path(), &nats.url(), "writer", &[]);
    let small_journal = [("AURORE__JOURNAL__MAX_SIZE", "1048576"), ("AURORE__JOURNAL__SEGMENT_SIZE", "65536")];
    let ingest = replica(&database, ingest_journal.path(), &nats.url(), "ingest", &small_journal);
    writer.wait_until_ready().await;
    ingest.wait_until_ready().await;

    nats.kill();
    let mut acknowledged = HashSet::new();
    let mut refused = None;
    for round in 0..2_000 {
        let events: Vec<Value> = (0..50).map(|i| event("queue-outage", &format!("{round}-{i}"))).collect();
        let response = ingest.client.post(format!("{}/events", ingest.address)).json(&events).send().await.unwrap();
        if response.status() == StatusCode::ACCEPTED {
            let body: Value = response.json().await.unwrap();
            acknowledged.extend(body["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
            continue;
        }
        refused = Some((response.status(), response.headers().get("retry-after").cloned()));
        break;
    }
    let (status, retry_after) = refused.expect("a full journal refuses at last");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after.is_some(), "a refusal says when to come back");
    assert!(acknowledged.len() >= 1_000, "the journal took events while NATS was away: {}", acknowledged.len());
    assert_eq!(database.count("SELECT count(*) AS n FROM events WHERE service = 'queue-outage'").await, 0);

    nats.restart();
    assert_all_stored_once(&database, "queue-outage", &acknowledged, Duration::from_secs(90)).await;
    let accepted_again = poll(
        Duration::from_secs(30),
        || async { post(&ingest, &event("queue-outage", "after")).await },
        |status| *status == StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(accepted_again, StatusCode::ACCEPTED, "the drained journal takes events again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tail_on_one_replica_shows_an_event_posted_to_another() {
    let database = TestDatabase::create().await;
    let nats = NatsNode::start();
    let journals: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = replica(&database, journals[0].path(), &nats.url(), "writer", &[]);
    let (a, b) = (
        replica(&database, journals[1].path(), &nats.url(), "ingest", &[]),
        replica(&database, journals[2].path(), &nats.url(), "ingest", &[]),
    );
    for service in [&writer, &a, &b] {
        service.wait_until_ready().await;
    }
    let mut tail = a.get("/events/tail?service=queue-tail").await;
    assert_eq!(tail.status(), StatusCode::OK);
    assert_eq!(post(&b, &event("queue-tail", "posted to b")).await, StatusCode::ACCEPTED);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("posted to b") {
        let chunk = tokio::time::timeout_at(deadline, tail.chunk()).await.expect("the event reached a's tail");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the tail stays open")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_published_again_after_an_ingest_crash_is_dropped_by_the_stream() {
    let database = TestDatabase::create().await;
    let nats = NatsNode::start();
    let (writer_journal, ingest_journal) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = replica(&database, writer_journal.path(), &nats.url(), "writer", &[]);
    let ingest = replica(&database, ingest_journal.path(), &nats.url(), "ingest", &[]);
    writer.wait_until_ready().await;
    ingest.wait_until_ready().await;
    let events: Vec<Value> = (0..10).map(|i| event("queue-dedup", &format!("{i}"))).collect();
    let stored =
        ingest.client.post(format!("{}/events?durability=stored", ingest.address)).json(&events).send().await.unwrap();
    assert_eq!(stored.status(), StatusCode::ACCEPTED);
    // Acknowledgements live in memory: after SIGKILL the journal replays the batch.
    ingest.kill().await;
    let restarted = replica(&database, ingest_journal.path(), &nats.url(), "ingest", &[]);
    let dropped = poll(
        Duration::from_secs(30),
        || metric(&restarted, "aurore_queue_deduplicated_messages_total"),
        |dropped| *dropped >= 1.0,
    )
    .await;
    assert!(dropped >= 1.0, "the replayed batch has the original's Nats-Msg-Id");
    assert_eq!(database.count("SELECT count(*) AS n FROM events WHERE service = 'queue-dedup'").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_published_again_outside_the_duplicate_window_is_absorbed_by_the_store() {
    let database = TestDatabase::create().await;
    let nats = NatsNode::start();
    let (writer_journal, ingest_journal) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let short_window = [("AURORE__QUEUE__DUPLICATE_WINDOW", "1")];
    let writer = replica(&database, writer_journal.path(), &nats.url(), "writer", &short_window);
    let ingest = replica(&database, ingest_journal.path(), &nats.url(), "ingest", &short_window);
    writer.wait_until_ready().await;
    ingest.wait_until_ready().await;
    let events: Vec<Value> = (0..10).map(|i| event("queue-window", &format!("{i}"))).collect();
    let stored =
        ingest.client.post(format!("{}/events?durability=stored", ingest.address)).json(&events).send().await.unwrap();
    assert_eq!(stored.status(), StatusCode::ACCEPTED);
    ingest.kill().await;
    // The window is what is under test: it has to pass.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let restarted = replica(&database, ingest_journal.path(), &nats.url(), "ingest", &short_window);
    let written =
        poll(Duration::from_secs(30), || metric(&writer, "aurore_events_stored_total"), |written| *written >= 20.0)
            .await;
    assert!(written >= 20.0, "the writer took the batch a second time: {written}");
    assert_eq!(metric(&restarted, "aurore_queue_deduplicated_messages_total").await, 0.0);
    assert_eq!(database.count("SELECT count(*) AS n FROM events WHERE service = 'queue-window'").await, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_that_lost_postgresql_hands_its_batches_to_one_that_has_it() {
    let database = TestDatabase::create().await;
    let nats = NatsNode::start();
    let (_, upstream) = through(&database.url, 0);
    let proxy = Proxy::start(upstream).await;
    let (proxied, _) = through(&database.url, proxy.port);
    let journals: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nats_url = nats.url();
    let queue = [
        ("AURORE_ROLE", "writer"),
        ("AURORE__QUEUE__KIND", "nats"),
        ("AURORE__QUEUE__NATS_URL", nats_url.as_str()),
        // Handing a batch back counts as a delivery; room for many here.
        ("AURORE__QUEUE__MAX_DELIVER", "100"),
        ("AURORE__WRITER__LINGER_MS", "20"),
        ("AURORE__WRITER__WRITERS", "2"),
        ("AURORE__WRITER__BACKOFF_BASE_MS", "50"),
        ("AURORE__CIRCUIT_BREAKER__FAILURE_THRESHOLD", "2"),
        // Open for the whole hand-over: every batch it takes meanwhile goes back.
        ("AURORE__CIRCUIT_BREAKER__OPEN_TIMEOUT_SECS", "10"),
    ];
    let cut_off = Service::start(&proxied, journals[0].path(), &queue);
    let ingest = replica(&database, journals[1].path(), &nats_url, "ingest", &[("AURORE__QUEUE__MAX_DELIVER", "100")]);
    cut_off.wait_until_ready().await;
    ingest.wait_until_ready().await;
    let to_writer = cut_off.client.post(format!("{}/events", cut_off.address)).json(&event("queue-handover", "x"));
    assert_eq!(to_writer.send().await.unwrap().status(), StatusCode::NOT_FOUND, "AURORE_ROLE=writer takes no events");

    proxy.cut().await;
    let ids = |body: Value| -> HashSet<String> {
        body["event_ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect()
    };
    let post_batch = |name: &'static str| {
        let events: Vec<Value> = (0..5).map(|i| event("queue-handover", &format!("{name}-{i}"))).collect();
        let request = ingest.client.post(format!("{}/events", ingest.address)).json(&events).send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            response.json::<Value>().await.unwrap()
        }
    };
    // The first batch is being written when the circuit opens: its writer keeps it.
    let held = ids(post_batch("held").await);
    let open = poll(
        Duration::from_secs(30),
        || async { cut_off.get_json("/health/database").await["circuitBreaker"]["state"].clone() },
        |state| *state == "OPEN",
    )
    .await;
    assert_eq!(open, "OPEN", "the cut-off writer's circuit opened");
    let mut handed_over = HashSet::new();
    for name in ["later-1", "later-2", "later-3"] {
        handed_over.extend(ids(post_batch(name).await));
    }
    let released = poll(
        Duration::from_secs(30),
        || metric(&cut_off, "aurore_queue_released_messages_total"),
        |released| *released >= 1.0,
    )
    .await;
    assert!(released >= 1.0, "the cut-off writer handed a batch back instead of holding it");

    // A writer that reaches PostgreSQL stores what was handed back while the other is
    // still cut off (a batch the cut-off one takes again as a half-open probe waits).
    let healthy = replica(&database, journals[2].path(), &nats_url, "writer", &[("AURORE__QUEUE__MAX_DELIVER", "100")]);
    healthy.wait_until_ready().await;
    let stored_meanwhile = poll(
        Duration::from_secs(60),
        || async { stored_ids(&database, "queue-handover").await.intersection(&handed_over).count() },
        |stored| *stored > 0,
    )
    .await;
    assert!(stored_meanwhile > 0, "nothing handed back was stored by the writer that has PostgreSQL");
    assert!(stored_ids(&database, "queue-handover").await.is_disjoint(&held), "the held batch waited for its writer");

    proxy.restore();
    let everything: HashSet<String> = held.union(&handed_over).cloned().collect();
    let stored = assert_all_stored_once(&database, "queue-handover", &everything, Duration::from_secs(60)).await;
    assert_eq!(stored as usize, everything.len());
    assert_eq!(database.count("SELECT count(*) AS n FROM dead_letters").await, 0, "an outage makes no dead letters");
}
