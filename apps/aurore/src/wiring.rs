//! Builds the service from [`Settings`]: each adapter made once and handed to the ports
//! that use it. The role decides which halves run: ingest (HTTP, journal, buffer), the
//! writers (PostgreSQL), or both; with `queue.kind = nats` a JetStream stream joins them.

use crate::jobs::{Storage, keep_partitions, replay, run_retention_on_schedule, sample_backlog};
use crate::settings::{QueueKind, Settings};
use crate::startup::Application;
use anyhow::Context as _;
use async_trait::async_trait;
use aurore_domain::{
    Appended, BatchWorker, BreakerSettings, Buffer, CircuitBreaker, Clock, Event, IngestService, Journal, JournalError,
    JournalSeq, JournalUsage, Lifecycle, LocalQueue, Observer, RecordRef, Retention, RetentionPolicy, Sinks,
    StoreReports, SystemClock, Tail, WriterSettings,
};
use aurore_http::{ApiKeys, AppState, Edge, RateLimiter, RateLimits, RequestLimits, ServerOptions, Surface};
use aurore_journal::{FileJournal, JournalSettings};
use aurore_queue_nats::{NatsPublisher, NatsQueue, NatsSettings, NatsSource, follow_reports};
use aurore_store_postgres::PostgresStore;
use aurore_telemetry::{ForwardObserver, Metrics, TelemetryObserver};
use std::net::TcpListener;
use std::sync::Arc;

/// The longest the forwarding writers pause once NATS failed them: a stream leader
/// election lasts seconds, and a probe costs one publish.
const QUEUE_BREAKER_OPEN: std::time::Duration = std::time::Duration::from_secs(2);

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Ingest and writers together (with `queue.kind = local`, one process as a whole).
    #[default]
    All,
    /// HTTP API, journal and buffer; batches go to the stream. Needs `queue.kind = nats`.
    Ingest,
    /// Takes batches from the stream into PostgreSQL; serves only health and metrics.
    Writer,
}

impl Role {
    fn ingests(self) -> bool {
        self != Self::Writer
    }

    fn writes(self) -> bool {
        self != Self::Ingest
    }
}

/// Retention as configured, over `store`.
pub fn retention(
    settings: &Settings,
    store: Arc<PostgresStore>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
) -> Retention {
    Retention { store, policy: RetentionPolicy::from(&settings.retention), clock, observer }
}

pub(crate) fn breaker(settings: &Settings, clock: Arc<dyn Clock>) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(BreakerSettings::from(&settings.circuit_breaker), clock))
}

/// The journal of a writer replica, which takes no events: its HTTP surface has no ingest
/// route, so nothing appends; reads of its health find it empty.
#[derive(Debug)]
struct NoJournal;

#[async_trait]
impl Journal for NoJournal {
    async fn append(&self, _: &[Event]) -> Result<Appended, JournalError> {
        Err(JournalError::io("a writer replica takes no events", None))
    }

    async fn read(&self, _: RecordRef) -> Result<Vec<(JournalSeq, Event)>, JournalError> {
        Err(JournalError::io("a writer replica has no journal", None))
    }

    fn acknowledge(&self, _: &[JournalSeq]) {}

    fn next_unacknowledged(&self) -> Result<Option<Vec<(JournalSeq, Event)>>, JournalError> {
        Ok(None)
    }

    fn usage(&self) -> JournalUsage {
        JournalUsage::default()
    }
}

impl Application {
    /// Opens the journal, binds the port and starts everything `role` runs. Returns while
    /// PostgreSQL or NATS may still be unreachable: readiness stays 503 (or events wait
    /// in the journal) until they answer.
    pub async fn build(settings: &Settings, role: Role) -> anyhow::Result<Self> {
        let queue = match settings.queue.kind {
            QueueKind::Local if role != Role::All => {
                anyhow::bail!("--role {role:?} runs apart from the other role: it needs queue.kind = \"nats\"")
            }
            QueueKind::Local => None,
            QueueKind::Nats => Some(
                NatsQueue::connect(NatsSettings::from(&settings.queue), &format!("aurore-{role:?}").to_lowercase())
                    .await?,
            ),
        };
        let store = Arc::new(PostgresStore::connect(&settings.postgres())?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let lifecycle = Arc::new(Lifecycle::default());
        let buffer = Arc::new(Buffer::new(settings.buffer.capacity, settings.writer.batch_size));
        let breaker = breaker(settings, clock.clone());
        let observer: Arc<dyn Observer> = Arc::new(TelemetryObserver);
        let tail = Arc::new(Tail::new(settings.tail.queue_events, settings.tail.max_subscribers));
        let writer_settings = WriterSettings::from(&settings.writer);
        let mut writers = Vec::new();
        let mut background = Vec::new();

        let (file_journal, journal): (Option<Arc<FileJournal>>, Arc<dyn Journal>) = if role.ingests() {
            let (journal, recovered) = FileJournal::open(JournalSettings::from(&settings.journal))
                .with_context(|| format!("cannot open the journal in {}", settings.journal.dir.display()))?;
            tracing::info!(
                dir = %settings.journal.dir.display(),
                segments = recovered.segments,
                events = recovered.events,
                damaged_segments = recovered.damaged_segments,
                truncated_bytes = recovered.truncated_bytes,
                "journal opened"
            );
            let journal = Arc::new(journal);
            (Some(journal.clone()), journal)
        } else {
            buffer.close();
            lifecycle.mark_replayed();
            (None, Arc::new(NoJournal))
        };

        // The circuit the ingest half's writers go through: PostgreSQL's, or NATS's when
        // they forward.
        let mut ingest_breaker = breaker.clone();
        if role.ingests() {
            if let Some(queue) = &queue {
                let reports = Arc::new(StoreReports::default());
                background.push(follow_reports(queue.clone(), tail.clone(), reports.clone()));
                let mut queue_breaker = BreakerSettings::from(&settings.circuit_breaker);
                queue_breaker.open_timeout = queue_breaker.open_timeout.min(QUEUE_BREAKER_OPEN);
                ingest_breaker = Arc::new(CircuitBreaker::new(queue_breaker, clock.clone()));
                let forward = Sinks {
                    store: Arc::new(NatsPublisher::new(queue.clone())),
                    dead_letters: store.clone(),
                    breaker: ingest_breaker.clone(),
                    tail: None,
                };
                let source = Arc::new(LocalQueue::forwarding(buffer.clone(), journal.clone(), reports));
                for _ in 0..settings.writer.writers {
                    let worker = BatchWorker::new(
                        source.clone(),
                        forward.clone(),
                        writer_settings.clone(),
                        Arc::new(ForwardObserver),
                    );
                    writers.push(tokio::spawn(worker.run()));
                }
                if !role.writes() {
                    // The writer replicas keep the schema; nothing here waits for it.
                    lifecycle.mark_schema_ready();
                }
            }
            background.push(tokio::spawn(replay(journal.clone(), buffer.clone(), lifecycle.clone())));
        }

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.server.host, settings.server.port))?;
        let port = listener.local_addr()?.port();
        let retention = retention(settings, store.clone(), clock.clone(), observer.clone());
        let schedule = settings.retention.schedule()?;
        let privacy = Arc::new(settings.privacy.compile()?);
        let state = AppState {
            retention: retention.clone(),
            tail: tail.clone(),
            ingest: IngestService::new(
                buffer.clone(),
                journal.clone(),
                clock,
                observer.clone(),
                settings.ingest_settings(),
            )
            .with_privacy(privacy),
            buffer: buffer.clone(),
            journal: journal.clone(),
            reader: store.clone(),
            store_health: store.clone(),
            dead_letters: store.clone(),
            erasures: store.clone(),
            breaker: ingest_breaker,
            lifecycle: lifecycle.clone(),
            durability: settings.ingest.durability,
            request_limits: RequestLimits::from(&settings.server),
            body_budget: Arc::new(tokio::sync::Semaphore::new(settings.server.max_bodies_in_flight_size)),
            edge: Edge {
                rate_limiter: RateLimiter::new(&RateLimits::from(&settings.rate_limit)),
                api_keys: ApiKeys::new(settings.auth.api_keys.clone(), settings.auth.admin_keys.clone()),
                trusted_proxies: settings.server.trusted_proxies.iter().map(|proxy| proxy.0).collect(),
                cors_origins: settings.server.cors_origins.clone(),
            },
            query_limits: settings.query_limits(),
            elastic: aurore_http::ElasticSettings {
                service_field: settings.ingest.elasticsearch_service_field.clone(),
            },
            retry_after: settings.buffer.retry_after,
            metrics: Metrics::install()?,
            started: std::time::Instant::now(),
            business: aurore_http::BusinessCache::default(),
        };
        let drain_deadline = settings.shutdown.drain_deadline;
        let server = aurore_http::serve(
            listener,
            state,
            &ServerOptions {
                workers: settings.server.workers,
                shutdown_timeout: drain_deadline,
                max_connections_per_worker: settings.server.max_connections_per_worker,
                surface: if role.ingests() { Surface::Full } else { Surface::Probes },
            },
        )?;

        let mut nats_source = None;
        if role.writes() {
            let (schema_ready, schema_ready_seen) = tokio::sync::watch::channel(false);
            // Stored events: for this process's tail when it stores what it ingests;
            // reported to every replica's tail when they come from the stream.
            let local_tail = queue.is_none().then(|| tail.clone());
            let sinks = Sinks { store: store.clone(), dead_letters: store.clone(), breaker, tail: local_tail };
            let storage = Storage {
                store: store.clone(),
                lifecycle: lifecycle.clone(),
                sinks,
                settings: writer_settings,
                count: settings.writer.writers,
                observer,
                partitions: settings.partitions.clone(),
                schema_ready,
            };
            let storage = match &queue {
                None => storage.spawn(Arc::new(LocalQueue::new(buffer.clone(), journal.clone()))),
                Some(queue) => {
                    let source = Arc::new(NatsSource::new(queue.clone(), settings.writer.batch_size, store.clone()));
                    nats_source = Some(source.clone());
                    background.push(tokio::spawn(sample_backlog(queue.clone())));
                    storage.spawn(source)
                }
            };
            writers.push(storage);
            background.push(tokio::spawn(keep_partitions(
                store.clone(),
                settings.partitions.clone(),
                schema_ready_seen.clone(),
            )));
            background.push(tokio::spawn(run_retention_on_schedule(retention, schedule, schema_ready_seen)));
        }
        tracing::info!(role = ?role, queue = ?settings.queue.kind, "roles started");
        tracing::info!("aurore listening on http://{}:{port}", settings.server.host);
        Ok(Self {
            port,
            server,
            lifecycle,
            buffer,
            journal: file_journal,
            nats_source,
            tail,
            writers,
            background,
            drain_deadline,
        })
    }
}
