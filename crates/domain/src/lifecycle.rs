//! Whether the service may take traffic: shared by start-up, the health routes and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};

/// Start-up marks the schema ready once migrations ran; shutdown flips `shutting_down`
/// first so load balancers stop sending traffic before the buffer drains.
#[derive(Debug, Default)]
pub struct Lifecycle {
    schema_ready: AtomicBool,
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn mark_schema_ready(&self) {
        self.schema_ready.store(true, Ordering::Release);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn schema_ready(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
