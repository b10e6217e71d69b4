//! Builds the service from [`Settings`]: each adapter made once and handed to the ports
//! that use it.

use crate::jobs::{Writers, keep_partitions, replay, run_retention_on_schedule, run_storage};
use crate::settings::Settings;
use crate::startup::Application;
use anyhow::Context as _;
use aurore_domain::{
    BreakerSettings, Buffer, CircuitBreaker, Clock, IngestService, Journal, Lifecycle, LocalQueue, Observer, Retention,
    RetentionPolicy, Sinks, SystemClock, Tail, WriterSettings,
};
use aurore_http::{ApiKeys, AppState, Edge, RateLimiter, RateLimits, RequestLimits, ServerOptions};
use aurore_journal::{FileJournal, JournalSettings};
use aurore_store_postgres::PostgresStore;
use aurore_telemetry::{Metrics, TelemetryObserver};
use std::net::TcpListener;
use std::sync::Arc;

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
}
