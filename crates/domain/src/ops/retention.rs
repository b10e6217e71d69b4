//! Retention: how long events and dead letters are kept, and one run that removes the rest.

use crate::observe::Observer;
use crate::ports::{Clock, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub event_days: u32,
    pub dead_letter_days: u32,
    /// How long the hourly counts behind `/health/business` are kept; at least
    /// `event_days`. Longer keeps business history after the events themselves are gone.
    pub rollup_days: u32,
}

/// What is older than these goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    pub events: DateTime<Utc>,
    pub dead_letters: DateTime<Utc>,
    pub rollup: DateTime<Utc>,
}

impl RetentionCutoffs {
    /// Whether the hourly counts follow the events exactly (same window), or keep history.
    pub fn rollup_in_step(&self) -> bool {
        self.rollup >= self.events
    }
}

impl RetentionPolicy {
    pub fn cutoffs(&self, now: DateTime<Utc>) -> RetentionCutoffs {
        RetentionCutoffs {
            events: now - TimeDelta::days(i64::from(self.event_days)),
            dead_letters: now - TimeDelta::days(i64::from(self.dead_letter_days)),
            rollup: now - TimeDelta::days(i64::from(self.rollup_days.max(self.event_days))),
        }
    }
}

/// What one run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// False when another replica was running retention: this run did nothing.
    pub ran: bool,
    /// Whole days dropped, by partition name.
    pub partitions_dropped: Vec<String>,
    /// Rows deleted one by one: the part of the day that straddles the cut-off, and old
    /// rows that sat in the default partition.
    pub events_deleted: u64,
    /// What waited too long for a lock (a long reader on `events`) and is left for the
    /// next run: partition names, or the table whose old rows were not deleted.
    pub skipped: Vec<String>,
    pub dead_letters_deleted: u64,
    pub took: std::time::Duration,
}

/// Storage that can forget.
#[async_trait]
pub trait RetentionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Removes events older than `cutoffs.events` (whole days by dropping their partitions,
    /// the rest row by row, keeping the per-minute and hourly counts in step) and dead letters older than
    /// `cutoffs.dead_letters`. MUST do nothing and report `ran: false` while another run
    /// holds the lock, so replicas never collide. MUST NOT make ingest or queries wait
    /// long for it: a day whose lock is not granted soon is reported in `skipped` and left
    /// for the next run, and each step keeps the counts equal to the rows.
    async fn apply_retention(&self, cutoffs: &RetentionCutoffs) -> Result<RetentionReport, StoreError>;
}

/// Runs retention on demand or on schedule, with one report per run.
#[derive(Debug, Clone)]
pub struct Retention {
    pub store: Arc<dyn RetentionStore>,
    pub policy: RetentionPolicy,
    pub clock: Arc<dyn Clock>,
    pub observer: Arc<dyn Observer>,
}

impl Retention {
    pub async fn run(&self) -> Result<RetentionReport, StoreError> {
        let cutoffs = self.policy.cutoffs(self.clock.now());
        let report = self.store.apply_retention(&cutoffs).await?;
        if report.ran {
            tracing::info!(
                events_before = %cutoffs.events,
                partitions_dropped = report.partitions_dropped.len(),
                events_deleted = report.events_deleted,
                dead_letters_deleted = report.dead_letters_deleted,
                took_ms = report.took.as_millis(),
                "retention ran"
            );
            if !report.skipped.is_empty() {
                tracing::warn!(skipped = ?report.skipped, "retention left these for its next run: a lock was not granted in time");
            }
        } else {
            tracing::info!("retention skipped: another replica is running it");
        }
        self.observer.retention_ran(&report);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cutoffs_are_whole_days_before_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
        let cutoffs = RetentionPolicy { event_days: 30, dead_letter_days: 7, rollup_days: 90 }.cutoffs(now);
        assert_eq!(cutoffs.events, Utc.with_ymd_and_hms(2026, 10, 24, 2, 0, 0).unwrap());
        assert_eq!(cutoffs.dead_letters, Utc.with_ymd_and_hms(2026, 11, 16, 2, 0, 0).unwrap());
        assert_eq!(cutoffs.rollup, Utc.with_ymd_and_hms(2026, 8, 25, 2, 0, 0).unwrap());
        assert!(!cutoffs.rollup_in_step());
        let same = RetentionPolicy { event_days: 30, dead_letter_days: 7, rollup_days: 10 }.cutoffs(now);
        assert!(same.rollup_in_step(), "the rollup never ends before the events");
    }
}
