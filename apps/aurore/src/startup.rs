//! Builds the service from [`Settings`] and runs it until a shutdown future resolves.

use crate::settings::{PartitionConfig, Settings};
use anyhow::Context as _;
use aurore_domain::{
    BatchWorker, BreakerSettings, Buffer, CircuitBreaker, Clock, Failure, IngestService, Journal, Lifecycle,
    LocalQueue, Observer, Retention, RetentionPolicy, Sinks, SystemClock, Tail, Unobserved, WriterSettings,
    replay_journal, retry_transient,
};
use aurore_http::{ApiKeys, AppState, Edge, RateLimiter, RateLimits, RequestLimits, ServerOptions};
use aurore_journal::{FileJournal, JournalSettings};
use aurore_store_postgres::PostgresStore;
use aurore_telemetry::{Metrics, TelemetryObserver};
use chrono::{Duration as Days, Utc};
use std::convert::Infallible;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};

/// The running service: the HTTP server, the journal replay, and the storage side
/// (migrations, writers, partition upkeep), which keeps retrying while PostgreSQL is away.
pub struct Application {
    port: u16,
    server: aurore_http::Server,
    lifecycle: Arc<Lifecycle>,
    buffer: Arc<Buffer>,
    journal: Arc<FileJournal>,
    tail: Arc<Tail>,
    /// Finishes once the buffer is closed and every writer has drained it.
    writers: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    drain_deadline: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).field("buffered", &self.buffer.len()).finish()
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

fn breaker(settings: &Settings, clock: Arc<dyn Clock>) -> Arc<CircuitBreaker> {
    Arc::new(CircuitBreaker::new(BreakerSettings::from(&settings.circuit_breaker), clock))
}

impl Application {
    /// Opens the journal, binds the port and starts everything. Returns while PostgreSQL
    /// may still be unreachable: readiness stays 503 and events wait in the journal.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = Arc::new(PostgresStore::connect(&settings.postgres())?);
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
        let file_journal = Arc::new(journal);
        let journal: Arc<dyn Journal> = file_journal.clone();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let lifecycle = Arc::new(Lifecycle::default());
        let buffer = Arc::new(Buffer::new(settings.buffer.capacity, settings.writer.batch_size));
        let breaker = breaker(settings, clock.clone());

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.server.host, settings.server.port))?;
        let port = listener.local_addr()?.port();
        let observer: Arc<dyn Observer> = Arc::new(TelemetryObserver);
        let retention = retention(settings, store.clone(), clock.clone(), observer.clone());
        let schedule = settings.retention.schedule()?;
        let tail = Arc::new(Tail::new(settings.tail.queue_events, settings.tail.max_subscribers));
        let state = AppState {
            retention: retention.clone(),
            tail: tail.clone(),
            ingest: IngestService::new(
                buffer.clone(),
                journal.clone(),
                clock,
                observer.clone(),
                settings.ingest_settings(),
            ),
            buffer: buffer.clone(),
            journal: journal.clone(),
            reader: store.clone(),
            store_health: store.clone(),
            dead_letters: store.clone(),
            breaker: breaker.clone(),
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
            },
        )?;

        let writer_settings = WriterSettings::from(&settings.writer);
        let sinks = Sinks { store: store.clone(), dead_letters: store.clone(), breaker, tail: tail.clone() };
        let source = Arc::new(LocalQueue::new(buffer.clone(), journal.clone()));
        let (schema_ready, schema_ready_seen) = tokio::sync::watch::channel(false);
        let writers = tokio::spawn(run_storage(
            store.clone(),
            lifecycle.clone(),
            Writers { source, sinks, settings: writer_settings, count: settings.writer.writers, observer },
            settings.partitions.clone(),
            schema_ready,
        ));
        let replay = tokio::spawn(replay(journal, buffer.clone(), lifecycle.clone()));
        let partition_upkeep =
            tokio::spawn(keep_partitions(store, settings.partitions.clone(), schema_ready_seen.clone()));
        let retention_schedule = tokio::spawn(run_retention_on_schedule(retention, schedule, schema_ready_seen));
        tracing::info!("aurore listening on http://{}:{port}", settings.server.host);
        Ok(Self {
            port,
            server,
            lifecycle,
            buffer,
            journal: file_journal,
            tail: tail.clone(),
            writers,
            background: vec![replay, partition_upkeep, retention_schedule],
            drain_deadline,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking requests, drains the buffer to
    /// PostgreSQL within the deadline and returns. Journaled events still buffered at the
    /// deadline stay in the journal for the next start; an error reports any others.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested"),
            result = &mut server => tracing::warn!(?result, "HTTP server stopped on its own"),
        }
        self.lifecycle.begin_shutdown();
        // Live-tail streams never end on their own; the graceful stop would wait for them.
        self.tail.close();
        handle.stop(true).await;
        self.buffer.close();
        tracing::info!(events = self.buffer.len(), deadline = ?self.drain_deadline, "draining the buffer");
        let drained = tokio::time::timeout(self.drain_deadline, self.writers).await;
        for task in self.background {
            task.abort();
        }
        self.journal.close().await;
        if drained.is_ok() {
            tracing::info!("buffer drained; bye");
            return Ok(());
        }
        let left = self.buffer.take_all();
        let buffered = left.queued.iter().filter(|queued| queued.seq.is_none()).count();
        // The writers were stopped at the deadline: what they held and had not settled is
        // gone with them unless the journal has it.
        let in_flight = self.buffer.stats().unjournaled_in_flight.load(Ordering::Relaxed);
        tracing::warn!(
            journaled = left.len() - buffered,
            "drain deadline passed; journaled events will be replayed at the next start"
        );
        let lost = buffered as u64 + in_flight;
        if lost > 0 {
            tracing::error!(events = lost, buffered, in_flight, "events accepted with durability=none were lost");
            anyhow::bail!(
                "{lost} events accepted without the journal were lost at the drain deadline \
                 ({buffered} still buffered, {in_flight} held by writers still retrying)"
            );
        }
        Ok(())
    }
}

/// What `aurore drain` moved out of a journal.
#[derive(Debug)]
pub struct Drained {
    pub segments: usize,
    pub events: u64,
}

/// Empties the journal in `settings.journal.dir` into PostgreSQL with the service's own
/// replay and writers, for the claim of a pod that is gone: nothing else may have the
/// journal open. Returns once every event is stored or dead-lettered and no segment is
/// left; fails if PostgreSQL cannot be reached or `deadline` passes first, leaving what is
/// not yet stored in the journal for the next attempt.
pub async fn drain(settings: &Settings, deadline: Duration) -> anyhow::Result<Drained> {
    let dir = &settings.journal.dir;
    let store = Arc::new(PostgresStore::connect(&settings.postgres())?);
    let (journal, recovered) = FileJournal::open(JournalSettings::from(&settings.journal))
        .with_context(|| format!("cannot open the journal in {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), segments = recovered.segments, events = recovered.events, "journal opened for draining");
    store.migrate().await.context("cannot reach PostgreSQL")?;
    ensure_partitions(&store, &settings.partitions).await;
    let journal = Arc::new(journal);
    let buffer = Arc::new(Buffer::new(settings.buffer.capacity, settings.writer.batch_size));
    let sinks = Sinks {
        store: store.clone(),
        dead_letters: store,
        breaker: breaker(settings, Arc::new(SystemClock)),
        // Nobody subscribes to a drain.
        tail: Arc::new(Tail::new(1, 1)),
    };
    let source = Arc::new(LocalQueue::new(buffer.clone(), journal.clone()));
    let mut writers = JoinSet::new();
    for _ in 0..settings.writer.writers {
        let worker = BatchWorker::new(
            source.clone(),
            sinks.clone(),
            WriterSettings::from(&settings.writer),
            Arc::new(Unobserved),
        );
        writers.spawn(worker.run());
    }
    let stored = async {
        replay_journal(journal.as_ref(), &buffer).await.context("cannot read the journal")?;
        // Writers stop once the buffer is closed and empty: every replayed event went.
        buffer.close();
        while writers.join_next().await.is_some() {}
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(deadline, stored).await;
    journal.close().await;
    match outcome {
        Ok(result) => result?,
        Err(_) => anyhow::bail!(
            "{} events were still waiting for PostgreSQL after {deadline:?}; they stay in {}: run drain again",
            buffer.len(),
            dir.display()
        ),
    }
    let left = journal.usage().segments;
    anyhow::ensure!(left == 0, "{left} journal segments in {} still hold events that were not stored", dir.display());
    Ok(Drained { segments: recovered.segments, events: recovered.events })
}

/// The writer tasks to start once the schema is ready.
struct Writers {
    source: Arc<LocalQueue>,
    sinks: Sinks,
    settings: WriterSettings,
    count: usize,
    observer: Arc<dyn Observer>,
}

/// Migrates (retrying while PostgreSQL is unreachable), creates partitions, then runs the
/// writers until their source is closed and drained.
async fn run_storage(
    store: Arc<PostgresStore>,
    lifecycle: Arc<Lifecycle>,
    writers: Writers,
    partitions: PartitionConfig,
    schema_ready: tokio::sync::watch::Sender<bool>,
) {
    // Every failure to migrate is waited out: until the schema is current nothing is stored.
    let Ok(applied) = retry_transient(
        None,
        &writers.settings.retry,
        || async { store.migrate().await.map_err(|error| Failure::<Infallible>::Transient(aurore_domain::error_chain(&error))) },
        |retrying| tracing::warn!(error = %retrying.cause, retry_in = ?retrying.delay, "cannot migrate the database yet"),
    )
    .await;
    tracing::info!(applied, "database schema is current");
    // Partitions exist before the first write, so writes never race an ATTACH at start-up.
    ensure_partitions(&store, &partitions).await;
    lifecycle.mark_schema_ready();
    schema_ready.send_replace(true);
    let mut tasks = JoinSet::new();
    for _ in 0..writers.count {
        let worker = BatchWorker::new(
            writers.source.clone(),
            writers.sinks.clone(),
            writers.settings.clone(),
            writers.observer.clone(),
        );
        tasks.spawn(worker.run());
    }
    while tasks.join_next().await.is_some() {}
}

/// Puts what the journal held at start-up back into the pipeline, then opens ingest.
async fn replay(journal: Arc<dyn Journal>, buffer: Arc<Buffer>, lifecycle: Arc<Lifecycle>) {
    match replay_journal(journal.as_ref(), &buffer).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "journal replayed"),
        Err(error) => tracing::error!(%error, "journal replay stopped; the rest is replayed at the next start"),
    }
    lifecycle.mark_replayed();
}

/// Keeps a partition for every day of the retention window and a few days ahead, checking
/// again every interval after the start-up pass.
async fn keep_partitions(
    store: Arc<PostgresStore>,
    settings: PartitionConfig,
    mut schema_ready: tokio::sync::watch::Receiver<bool>,
) {
    if schema_ready.wait_for(|ready| *ready).await.is_err() {
        return;
    }
    let period = settings.maintenance_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        ensure_partitions(&store, &settings).await;
    }
}

async fn ensure_partitions(store: &PostgresStore, settings: &PartitionConfig) {
    let today = Utc::now().date_naive();
    let first = today - Days::days(settings.days_behind);
    let last = today + Days::days(settings.days_ahead);
    match store.ensure_partitions(first, last).await {
        Ok(report) if report.failed.is_empty() => {
            tracing::info!(created = report.created, %first, %last, "event partitions checked");
        }
        Ok(report) => {
            let failed: Vec<String> = report.failed.iter().map(|failure| failure.day.to_string()).collect();
            tracing::warn!(
                created = report.created,
                ?failed,
                %first,
                %last,
                "some event partitions are missing; their days land in the default partition until the next pass"
            );
        }
        Err(error) => tracing::warn!(%error, "cannot create event partitions; new days land in the default partition"),
    }
}

/// Runs retention at each time the schedule names (UTC), once the schema is ready.
async fn run_retention_on_schedule(
    retention: Retention,
    schedule: croner::Cron,
    mut schema_ready: tokio::sync::watch::Receiver<bool>,
) {
    if schema_ready.wait_for(|ready| *ready).await.is_err() {
        return;
    }
    loop {
        let now = Utc::now();
        let Ok(next) = schedule.find_next_occurrence(&now, false) else {
            tracing::warn!(schedule = %schedule.pattern, "the retention schedule names no future time; retention runs only on demand");
            return;
        };
        tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
        if let Err(error) = retention.run().await {
            tracing::warn!(%error, "retention failed; it runs again at the next scheduled time");
        }
    }
}
