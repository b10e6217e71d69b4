//! Runs the built service until a shutdown future resolves, then stops it in order.

use aurore_domain::{Buffer, Lifecycle, Tail};
use aurore_journal::FileJournal;
use aurore_queue_nats::NatsSource;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The running service: the HTTP server, the journal replay, and the storage side
/// (migrations, writers, partition upkeep), which keeps retrying while PostgreSQL is away.
pub struct Application {
    pub(crate) port: u16,
    pub(crate) server: aurore_http::Server,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) buffer: Arc<Buffer>,
    /// The journal, where this process ingests.
    pub(crate) journal: Option<Arc<FileJournal>>,
    /// The stream writers take from, where this process stores from a shared queue.
    pub(crate) nats_source: Option<Arc<NatsSource>>,
    pub(crate) tail: Arc<Tail>,
    /// Each finishes once its source is closed and drained: the buffer, or the stream.
    pub(crate) writers: Vec<JoinHandle<()>>,
    pub(crate) background: Vec<JoinHandle<()>>,
    pub(crate) drain_deadline: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).field("buffered", &self.buffer.len()).finish()
    }
}

impl Application {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking requests, drains the buffer to
    /// PostgreSQL (or the stream) within the deadline and returns; a writer replica
    /// finishes the batches it holds and leaves the rest to the others. Journaled events still buffered at the
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
        if let Some(source) = &self.nats_source {
            source.close();
        }
        tracing::info!(events = self.buffer.len(), deadline = ?self.drain_deadline, "draining the buffer");
        let drained = tokio::time::timeout(self.drain_deadline, futures_util::future::join_all(self.writers)).await;
        for task in self.background {
            task.abort();
        }
        if let Some(journal) = &self.journal {
            journal.close().await;
        }
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
