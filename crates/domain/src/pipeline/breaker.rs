//! The circuit breaker between the writers and the store: after repeated transient
//! failures writers stop hammering a sick database and wait, while ingest keeps
//! journaling.

use crate::ports::Clock;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// Consecutive successes in half-open that close it again.
    pub success_threshold: u32,
    /// How long the circuit stays open before one probe is let through.
    pub open_timeout: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, success_threshold: 2, open_timeout: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What `/health/database` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub failure_count: u32,
    pub success_count: u32,
    /// Epoch milliseconds, as the original service reported it.
    pub last_failure_time: Option<i64>,
    pub last_error: Option<String>,
    /// Times the circuit opened since start.
    pub opened: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    successes: u32,
    open_until: Instant,
    last_failure: Option<DateTime<Utc>>,
    last_error: Option<String>,
    opened: u64,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner {
            state: BreakerState::Closed,
            failures: 0,
            successes: 0,
            open_until: Instant::now(),
            last_failure: None,
            last_error: None,
            opened: 0,
        };
        Self { inner: Mutex::new(inner), settings, clock }
    }

    /// `Ok` when a call may go ahead; otherwise how long to wait before asking again.
    pub fn permit(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        if inner.state == BreakerState::Open {
            let now = Instant::now();
            if now < inner.open_until {
                return Err(inner.open_until - now);
            }
            inner.state = BreakerState::HalfOpen;
            inner.successes = 0;
        }
        Ok(())
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        if inner.state == BreakerState::HalfOpen {
            inner.successes += 1;
            if inner.successes >= self.settings.success_threshold {
                inner.state = BreakerState::Closed;
                inner.successes = 0;
                tracing::info!("circuit closed: the store answers again");
            }
        }
    }

    pub fn record_failure(&self, error: &str) {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.failures += 1;
        inner.last_failure = Some(now);
        inner.last_error = Some(error.to_owned());
        let trips = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => inner.failures >= self.settings.failure_threshold,
            BreakerState::Open => false,
        };
        if trips {
            inner.state = BreakerState::Open;
            inner.successes = 0;
            inner.open_until = Instant::now() + self.settings.open_timeout;
            inner.opened += 1;
            tracing::warn!(error, pause = ?self.settings.open_timeout, "circuit open: writers pause");
        }
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let inner = self.lock();
        BreakerSnapshot {
            state: inner.state,
            failure_count: inner.failures,
            success_count: inner.successes,
            last_failure_time: inner.last_failure.map(|at| at.timestamp_millis()),
            last_error: inner.last_error.clone(),
            opened: inner.opened,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the state consistent, so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SystemClock;

    fn breaker() -> CircuitBreaker {
        let settings =
            BreakerSettings { failure_threshold: 3, success_threshold: 2, open_timeout: Duration::from_secs(30) };
        CircuitBreaker::new(settings, Arc::new(SystemClock))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_probes_and_closes() {
        let breaker = breaker();
        breaker.record_failure("refused");
        breaker.record_failure("refused");
        breaker.record_success();
        breaker.record_failure("refused");
        breaker.record_failure("refused");
        assert_eq!(breaker.snapshot().state, BreakerState::Closed, "a success resets the count");
        breaker.record_failure("refused");
        assert_eq!(breaker.snapshot().state, BreakerState::Open);
        assert_eq!(breaker.permit(), Err(Duration::from_secs(30)));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.permit(), Ok(()));
        assert_eq!(breaker.snapshot().state, BreakerState::HalfOpen);
        breaker.record_success();
        assert_eq!(breaker.snapshot().state, BreakerState::HalfOpen);
        breaker.record_success();
        let snapshot = breaker.snapshot();
        assert_eq!(snapshot.state, BreakerState::Closed);
        assert_eq!(snapshot.opened, 1);
        assert_eq!(snapshot.last_error.as_deref(), Some("refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again() {
        let breaker = breaker();
        for _ in 0..3 {
            breaker.record_failure("timeout");
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(breaker.permit(), Ok(()));
        breaker.record_failure("timeout");
        assert_eq!(breaker.snapshot().state, BreakerState::Open);
        assert!(breaker.permit().is_err());
        assert_eq!(breaker.snapshot().opened, 2);
    }
}
