//! The storage side's long-running and one-off jobs: migrate then write, keep partitions
//! ahead, run retention on its schedule, replay the journal, drain a journal.

use crate::settings::{PartitionConfig, Settings};
use anyhow::Context as _;
use aurore_domain::{
    BatchSource, BatchWorker, Buffer, Failure, Journal, Lifecycle, LocalQueue, Observer, Retention, Sinks, SystemClock,
    Unobserved, WriterSettings, replay_journal, retry_transient,
};
use aurore_journal::{FileJournal, JournalSettings};
use aurore_store_postgres::PostgresStore;
use chrono::{Duration as Days, Utc};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

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
        breaker: crate::wiring::breaker(settings, Arc::new(SystemClock)),
        // Nobody subscribes to a drain.
        tail: None,
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

/// Storage as one task: migrations, partitions, then the writer tasks over a source.
pub(crate) struct Storage {
    pub(crate) store: Arc<PostgresStore>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) sinks: Sinks,
    pub(crate) settings: WriterSettings,
    pub(crate) count: usize,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) partitions: PartitionConfig,
    pub(crate) schema_ready: tokio::sync::watch::Sender<bool>,
}

impl Storage {
    pub(crate) fn spawn<S: BatchSource>(self, source: Arc<S>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(source))
    }

    /// Migrates (retrying while PostgreSQL is unreachable), creates partitions, then runs
    /// the writers until their source is closed and drained.
    async fn run<S: BatchSource>(self, source: Arc<S>) {
        let store = &self.store;
        // Every failure to migrate is waited out: until the schema is current nothing is stored.
        let Ok(applied) = retry_transient(
            None,
            &self.settings.retry,
            || async {
                store.migrate().await.map_err(|error| Failure::<Infallible>::Transient(aurore_domain::error_chain(&error)))
            },
            |retrying| tracing::warn!(error = %retrying.cause, retry_in = ?retrying.delay, "cannot migrate the database yet"),
        )
        .await;
        tracing::info!(applied, "database schema is current");
        // Partitions exist before the first write, so writes never race an ATTACH at start-up.
        ensure_partitions(store, &self.partitions).await;
        self.lifecycle.mark_schema_ready();
        self.schema_ready.send_replace(true);
        let mut tasks = JoinSet::new();
        for _ in 0..self.count {
            let worker =
                BatchWorker::new(source.clone(), self.sinks.clone(), self.settings.clone(), self.observer.clone());
            tasks.spawn(worker.run());
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Puts what the journal held at start-up back into the pipeline, then opens ingest.
pub(crate) async fn replay(journal: Arc<dyn Journal>, buffer: Arc<Buffer>, lifecycle: Arc<Lifecycle>) {
    match replay_journal(journal.as_ref(), &buffer).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "journal replayed"),
        Err(error) => tracing::error!(%error, "journal replay stopped; the rest is replayed at the next start"),
    }
    lifecycle.mark_replayed();
}

/// Keeps a partition for every day of the retention window and a few days ahead, checking
/// again every interval after the start-up pass.
pub(crate) async fn keep_partitions(
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

pub(crate) async fn ensure_partitions(store: &PostgresStore, settings: &PartitionConfig) {
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

/// How often a writer replica samples the stream's backlog for `/metrics`.
const BACKLOG_SAMPLE: Duration = Duration::from_secs(5);

/// Keeps the queue's backlog gauges current: the writers' lag, what an autoscaler reads.
pub(crate) async fn sample_backlog(queue: aurore_queue_nats::NatsQueue) {
    let mut every = tokio::time::interval(BACKLOG_SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match queue.backlog().await {
            Ok(backlog) => aurore_telemetry::metrics::record_queue_backlog(backlog.pending, backlog.in_flight),
            Err(error) => tracing::debug!(%error, "cannot read the queue's backlog"),
        }
    }
}

/// Runs retention at each time the schedule names (UTC), once the schema is ready.
pub(crate) async fn run_retention_on_schedule(
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
