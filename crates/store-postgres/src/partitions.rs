//! Partition upkeep: one day per statement, each in its own short transaction with a lock
//! timeout, so one day that cannot be attached (a writer committing into the default
//! partition meanwhile, a reader holding the table) costs only that day, and only until the
//! next pass; its events land in the default partition in between.

use crate::{PostgresStore, error};
use aurore_domain::StoreError;
use chrono::{Days, NaiveDate};
use std::time::Duration;

/// Tries per day. A conflict with ingest clears as soon as the writer's transaction ends,
/// so a few quick retries usually win; what still fails is left for the next pass.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// What one pass of partition upkeep did.
#[derive(Debug, Default)]
pub struct PartitionReport {
    /// Partitions this pass created.
    pub created: u64,
    /// Days whose partition is still missing, with the last error; their events go to the
    /// default partition until a later pass creates it.
    pub failed: Vec<PartitionFailure>,
}

#[derive(Debug)]
pub struct PartitionFailure {
    pub day: NaiveDate,
    pub error: StoreError,
}

impl PostgresStore {
    /// Makes sure a partition exists for every UTC day in `first..=last`, day by day, and
    /// reports how many it created and which days failed. Fails as a whole only when
    /// PostgreSQL cannot be reached at all.
    pub async fn ensure_partitions(&self, first: NaiveDate, last: NaiveDate) -> Result<PartitionReport, StoreError> {
        let mut client = self.upkeep_client().await?;
        let mut report = PartitionReport::default();
        let days =
            std::iter::successors(Some(first), |day| day.checked_add_days(Days::new(1))).take_while(|day| *day <= last);
        for day in days {
            match ensure_day(&mut client, day).await {
                Ok(true) => report.created += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%day, %error, "cannot create the day's event partition; its events land in the default partition");
                    report.failed.push(PartitionFailure { day, error: error::from_postgres(error) });
                    if client.is_closed() {
                        // The connection is gone: every later day would fail the same way.
                        return Err(StoreError::unavailable(
                            format!("connection lost during partition upkeep at {day}"),
                            None,
                        ));
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Creates `day`'s partition unless it exists, retrying a transient conflict; returns
/// whether it created it.
async fn ensure_day(client: &mut tokio_postgres::Client, day: NaiveDate) -> Result<bool, tokio_postgres::Error> {
    let mut attempt = 1;
    loop {
        match try_ensure_day(client, day).await {
            Err(error) if attempt < ATTEMPTS && error::is_transient_conflict(&error) => {
                tracing::debug!(%day, attempt, %error, "partition creation conflicted; retrying");
                tokio::time::sleep(RETRY_DELAY * attempt).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn try_ensure_day(client: &mut tokio_postgres::Client, day: NaiveDate) -> Result<bool, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction.batch_execute(crate::SET_UPKEEP_LOCK_TIMEOUT).await?;
    let created: bool = transaction.query_one("SELECT aurore_ensure_event_partition($1)", &[&day]).await?.get(0);
    transaction.commit().await?;
    Ok(created)
}
