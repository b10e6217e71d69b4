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
/// The reason is the adapter's one-line account, causes included.
impl From<StoreError> for Failure<String> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { reason, .. } => Self::Transient(reason),
            StoreError::Rejected { reason, .. } => Self::Permanent(reason),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerSettings;
    use crate::ports::SystemClock;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_counted_until_a_permanent_one_ends_the_loop() {
        let settings =
            BreakerSettings { failure_threshold: 10, success_threshold: 1, open_timeout: Duration::from_secs(1) };
        let breaker = CircuitBreaker::new(settings, Arc::new(SystemClock));
        let policy = RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let mut answers = vec![
            Err(Failure::Permanent("refused")),
            Err(Failure::Transient("b".into())),
            Err(Failure::Transient("a".into())),
        ];
        let mut retried = Vec::new();
        let outcome: Result<(), &str> = retry_transient(
            Some(&breaker),
            &policy,
            || std::future::ready(answers.pop().expect("no attempt after a permanent failure")),
            |retrying| retried.push((retrying.cause.to_owned(), retrying.attempt, retrying.delay)),
        )
        .await;
        assert_eq!(outcome, Err("refused"));
        assert_eq!(
            retried.iter().map(|(cause, attempt, _)| (cause.as_str(), *attempt)).collect::<Vec<_>>(),
            [("a", 1), ("b", 2)]
        );
        assert!(retried.iter().all(|(_, attempt, delay)| *delay <= policy.base_delay * (1 << (attempt - 1))));
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.failure_count, snapshot.last_error.as_deref()), (2, Some("b")));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_breaker_the_first_success_ends_the_loop() {
        let mut attempts = 0;
        let outcome: Result<u32, std::convert::Infallible> = retry_transient(
            None,
            &RetryPolicy::default(),
            || {
                attempts += 1;
                std::future::ready(if attempts < 4 { Err(Failure::Transient("down".into())) } else { Ok(attempts) })
            },
            |_| {},
        )
        .await;
        assert_eq!(outcome, Ok(4));
    }
}
