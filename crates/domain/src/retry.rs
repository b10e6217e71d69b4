//! One retry loop for every call that may fail for a while: batch writes, dead-letter
//! writes and the start-up migration wait out the same outages the same way.

use crate::breaker::CircuitBreaker;
use crate::ports::StoreError;
use std::future::Future;
use std::time::Duration;

/// The pause between attempts after failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The pause after `failures` consecutive failures: doubling from `base_delay`, capped
    /// at `max_delay`, then spread over its upper half by `jitter` (0..=1) so writers that
    /// failed together do not retry together.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let ceiling = self.base_delay.saturating_mul(1 << doublings).min(self.max_delay);
        ceiling / 2 + ceiling.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure<P> {
    /// The same call may succeed later; why it failed this time.
    Transient(String),
    /// Trying again would fail the same way.
    Permanent(P),
}

/// A store's refusal of the data is permanent (its reason is kept); its absence is not.
impl From<StoreError> for Failure<String> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::Transient(cause),
            StoreError::Rejected(reason) => Self::Permanent(reason),
        }
    }
}

/// A transient failure about to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying<'a> {
    pub cause: &'a str,
    /// Attempts made so far, this one included.
    pub attempt: u32,
    pub delay: Duration,
}

/// Makes `attempt` until it succeeds or fails for good, pausing by `policy` after each
/// transient failure (reported to `on_retry` first). With a breaker, every attempt waits
/// until it permits calls and every transient failure counts against it; what succeeds
/// or fails for good is the caller's to report.
pub async fn retry_transient<T, P, Fut>(
    breaker: Option<&CircuitBreaker>,
    policy: &RetryPolicy,
    mut attempt: impl FnMut() -> Fut,
    mut on_retry: impl FnMut(Retrying<'_>),
) -> Result<T, P>
where
    Fut: Future<Output = Result<T, Failure<P>>>,
{
    let mut attempts = 0;
    loop {
        if let Some(breaker) = breaker {
            while let Err(wait) = breaker.permit() {
                tokio::time::sleep(wait).await;
            }
        }
        attempts += 1;
        let cause = match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Permanent(error)) => return Err(error),
            Err(Failure::Transient(cause)) => cause,
        };
        if let Some(breaker) = breaker {
            breaker.record_failure(&cause);
        }
        let delay = policy.delay(attempts, fastrand::f64());
        on_retry(Retrying { cause: &cause, attempt: attempts, delay });
        tokio::time::sleep(delay).await;
    }
}
