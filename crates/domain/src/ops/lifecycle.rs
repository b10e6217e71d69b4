//! Whether the service may take traffic: shared by start-up, the health routes and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};

/// Start-up marks the journal replayed (ingest may begin) and the schema migrated (writes
/// may begin); shutdown flips `shutting_down` first so load balancers stop sending
/// traffic before the buffer drains.
#[derive(Debug, Default)]
pub struct Lifecycle {
    replayed: AtomicBool,
    schema_ready: AtomicBool,
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn mark_replayed(&self) {
        self.replayed.store(true, Ordering::Release);
    }

    pub fn mark_schema_ready(&self) {
        self.schema_ready.store(true, Ordering::Release);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Every journaled event from before the start is back in the pipeline.
    pub fn replayed(&self) -> bool {
        self.replayed.load(Ordering::Acquire)
    }

    pub fn schema_ready(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
