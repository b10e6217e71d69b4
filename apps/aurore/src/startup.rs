//! Builds the service from [`Settings`] and runs it until a shutdown future resolves.

use crate::settings::{PartitionSettings, Settings};
use anyhow::Context as _;
use aurore_domain::{
    BatchWorker, Buffer, EventStore, IngestService, Lifecycle, Limits, PipelineStats, QueryLimits, RetryPolicy,
    SystemClock, WriterSettings,
};
use aurore_http::{AppState, RequestLimits, ServerOptions};
use aurore_store_postgres::{PostgresSettings, PostgresStore};
use chrono::{Duration as Days, Utc};
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};

/// The running service: the HTTP server plus the storage side (migrations, writers,
/// partition upkeep), which keeps retrying in the background while PostgreSQL is away.
pub struct Application {
    port: u16,
    server: aurore_http::Server,
    lifecycle: Arc<Lifecycle>,
    buffer: Arc<Buffer>,
    /// Finishes once the buffer is closed and every writer has drained it.
    writers: JoinHandle<()>,
    partition_upkeep: JoinHandle<()>,
    drain_deadline: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).field("buffered", &self.buffer.len()).finish()
    }
}

pub fn postgres_settings(settings: &Settings) -> PostgresSettings {
    PostgresSettings {
        url: settings.database.url.expose().to_owned(),
        query_connections: settings.database.pool_size,
        write_connections: settings.writer.writers,
        connect_timeout: Duration::from_millis(settings.database.connect_timeout_ms),
        query_timeout: Duration::from_millis(settings.database.query_timeout_ms),
    }
}

impl Application {
    /// Binds the port and starts everything. Returns while PostgreSQL may still be
    /// unreachable: readiness stays 503 and events wait in the buffer until it answers.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = Arc::new(PostgresStore::connect(&postgres_settings(settings))?);
        let lifecycle = Arc::new(Lifecycle::default());
        let buffer = Arc::new(Buffer::new(settings.buffer.capacity, settings.writer.batch_size));
        let limits = Limits {
            max_service_chars: settings.limits.max_service_chars,
            max_message_chars: settings.limits.max_message_chars,
            max_metadata_bytes: settings.limits.max_metadata_bytes,
            max_metadata_depth: settings.limits.max_metadata_depth,
            max_metadata_keys: settings.limits.max_metadata_keys,
        };
        let query_limits = QueryLimits {
            max_service_chars: settings.limits.max_service_chars,
            max_range_days: settings.query.max_range_days,
            max_page: settings.query.max_page,
            max_page_size: settings.query.max_page_size,
            default_page_size: settings.query.default_page_size,
        };

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.server.host, settings.server.port))?;
        let port = listener.local_addr()?.port();
        let state = AppState {
            ingest: IngestService::new(buffer.clone(), Arc::new(SystemClock), limits),
            store: store.clone(),
            lifecycle: lifecycle.clone(),
            request_limits: RequestLimits {
                max_body_bytes: settings.server.max_body_bytes,
                max_events_per_request: settings.server.max_events_per_request,
            },
            query_limits,
            retry_after: Duration::from_secs(settings.buffer.retry_after_secs),
        };
        let drain_deadline = Duration::from_secs(settings.shutdown.drain_deadline_secs);
        let server = aurore_http::serve(
            listener,
            state,
            &ServerOptions { workers: settings.server.workers, shutdown_timeout: drain_deadline },
        )?;

        let writer_settings = WriterSettings {
            linger: settings.linger(),
            retry: RetryPolicy {
                max_attempts: settings.writer.max_attempts,
                base_delay: Duration::from_millis(settings.writer.backoff_base_ms),
                max_delay: Duration::from_millis(settings.writer.backoff_max_ms),
            },
        };
        let schema_ready = Arc::new(tokio::sync::Notify::new());
        let writers = tokio::spawn(run_storage(
            store.clone(),
            buffer.clone(),
            lifecycle.clone(),
            writer_settings,
            settings.writer.writers,
            settings.partitions.clone(),
            schema_ready.clone(),
        ));
        let partition_upkeep = tokio::spawn(keep_partitions(store, settings.partitions.clone(), schema_ready));
        tracing::info!("aurore listening on http://{}:{port}", settings.server.host);
        Ok(Self { port, server, lifecycle, buffer, writers, partition_upkeep, drain_deadline })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking requests, drains the buffer to
    /// PostgreSQL within the deadline and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested"),
            result = &mut server => tracing::warn!(?result, "HTTP server stopped on its own"),
        }
        self.lifecycle.begin_shutdown();
        handle.stop(true).await;
        self.buffer.close();
        let waiting = self.buffer.len();
        tracing::info!(events = waiting, deadline = ?self.drain_deadline, "draining the buffer");
        let drained = tokio::time::timeout(self.drain_deadline, self.writers).await;
        self.partition_upkeep.abort();
        match drained {
            Ok(_) => {
                tracing::info!("buffer drained; bye");
                Ok(())
            }
            Err(_) => {
                let lost = self.buffer.len();
                tracing::error!(events = lost, "drain deadline passed with events still buffered");
                anyhow::bail!("{lost} events were still buffered when the drain deadline passed")
            }
        }
    }
}

/// Migrates (retrying while PostgreSQL is unreachable), then runs the writers until the
/// buffer is closed and drained.
async fn run_storage(
    store: Arc<PostgresStore>,
    buffer: Arc<Buffer>,
    lifecycle: Arc<Lifecycle>,
    settings: WriterSettings,
    writers: usize,
    partitions: PartitionSettings,
    schema_ready: Arc<tokio::sync::Notify>,
) {
    let mut failures = 0;
    loop {
        match store.migrate().await {
            Ok(applied) => {
                tracing::info!(applied, "database schema is current");
                break;
            }
            Err(error) => {
                failures += 1;
                let delay = settings.retry.delay(failures, fastrand::f64());
                tracing::warn!(%error, retry_in = ?delay, "cannot migrate the database yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
    // Partitions exist before the first write, so writes never race an ATTACH at start-up.
    ensure_partitions(&store, &partitions).await;
    lifecycle.mark_schema_ready();
    schema_ready.notify_one();
    let store: Arc<dyn EventStore> = store;
    let stats = Arc::new(PipelineStats::default());
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        tasks.spawn(BatchWorker::new(buffer.clone(), store.clone(), settings.clone(), stats.clone()).run());
    }
    while tasks.join_next().await.is_some() {}
}

/// Keeps a partition for every day of the retention window and a few days ahead, checking
/// again every interval after the start-up pass.
async fn keep_partitions(
    store: Arc<PostgresStore>,
    settings: PartitionSettings,
    schema_ready: Arc<tokio::sync::Notify>,
) {
    schema_ready.notified().await;
    let period = Duration::from_secs(settings.maintenance_interval_secs);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        ensure_partitions(&store, &settings).await;
    }
}

async fn ensure_partitions(store: &PostgresStore, settings: &PartitionSettings) {
    let today = Utc::now().date_naive();
    let first = today - Days::days(settings.days_behind);
    let last = today + Days::days(settings.days_ahead);
    match store.ensure_partitions(first, last).await {
        Ok(created) => tracing::info!(created, %first, %last, "event partitions checked"),
        Err(error) => tracing::warn!(%error, "cannot create event partitions; new days land in the default partition"),
    }
}
