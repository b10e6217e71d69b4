//! Retention in one transaction behind an advisory lock: whole days go by dropping their
//! partitions (constant time whatever their size); only the day that straddles the
//! cut-off, and old rows in the default partition, are deleted row by row, with their
//! hourly counts taken off `event_counts` in the same statement (unless the rollup keeps a
//! longer history, which it then trims at its own cut-off).

use crate::{PostgresStore, error};
use async_trait::async_trait;
use aurore_domain::{RetentionCutoffs, RetentionReport, RetentionStore, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::time::Instant;

/// Another replica holding it makes this run a no-op.
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtext('aurore_retention'))";

const EVENT_PARTITIONS: &str = "SELECT c.relname::text FROM pg_inherits i \
     JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
     WHERE p.relname = 'events' AND c.relname ~ '^events_p[0-9]{8}$'";

/// Deletes `table`'s rows in [$1, $2) and returns how many; with `uncount`, also takes them
/// off their hours in `event_counts`.
fn delete_rows(table: &str, uncount: bool) -> String {
    let uncounted = if uncount {
        ", counted AS (UPDATE event_counts c SET events = c.events - h.n FROM hours h WHERE c.service = h.service AND c.hour = h.hour)"
    } else {
        ""
    };
    format!(
        r#"WITH deleted AS (DELETE FROM {table} WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING service, "timestamp"),
                hours AS (SELECT service, date_trunc('hour', "timestamp", 'UTC') AS hour, count(*) AS n FROM deleted GROUP BY 1, 2){uncounted}
           SELECT coalesce(sum(n), 0)::int8 FROM hours"#
    )
}

fn partition_day(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("events_p")?, "%Y%m%d").ok()
}

#[async_trait]
impl RetentionStore for PostgresStore {
    #[tracing::instrument(name = "db.retention", skip_all, fields(db.system = "postgresql"))]
    async fn apply_retention(&self, cutoffs: &RetentionCutoffs) -> Result<RetentionReport, StoreError> {
        let started = Instant::now();
        let mut client = self.writes.get().await.map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let transaction = client.transaction().await.map_err(error::from_postgres)?;
        let locked: bool = transaction.query_one(LOCK, &[]).await.map_err(error::from_postgres)?.get(0);
        if !locked {
            return Ok(RetentionReport::default());
        }
        let cutoff_day = cutoffs.events.date_naive();
        let day_start: DateTime<Utc> = cutoff_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let mut events_deleted = 0;
        // Events are never older than 1970 (validation), so the epoch bounds the default partition.
        for (table, from) in [("events", day_start), ("events_default", DateTime::UNIX_EPOCH)] {
            let row = transaction
                .query_one(&delete_rows(table, cutoffs.rollup_in_step()), &[&from, &cutoffs.events])
                .await
                .map_err(error::from_postgres)?;
            events_deleted += row.get::<_, i64>(0).unsigned_abs();
        }
        let mut partitions_dropped: Vec<String> = transaction
            .query(EVENT_PARTITIONS, &[])
            .await
            .map_err(error::from_postgres)?
            .iter()
            .map(|row| row.get::<_, String>(0))
            .filter(|name| partition_day(name).is_some_and(|day| day < cutoff_day))
            .collect();
        partitions_dropped.sort();
        for partition in &partitions_dropped {
            // The name matched ^events_p[0-9]{8}$: safe to splice.
            transaction.batch_execute(&format!("DROP TABLE {partition}")).await.map_err(error::from_postgres)?;
        }
        // In step, the counts go with their events; otherwise they stay as history until
        // the rollup's own cut-off.
        let counts_before = if cutoffs.rollup_in_step() { day_start } else { cutoffs.rollup };
        transaction
            .execute(
                "DELETE FROM event_counts WHERE hour < date_trunc('hour', $1::timestamptz, 'UTC') OR events <= 0",
                &[&counts_before],
            )
            .await
            .map_err(error::from_postgres)?;
        let dead_letters_deleted = transaction
            .execute("DELETE FROM dead_letters WHERE created_at < $1", &[&cutoffs.dead_letters])
            .await
            .map_err(error::from_postgres)?;
        transaction.commit().await.map_err(error::from_postgres)?;
        Ok(RetentionReport {
            ran: true,
            partitions_dropped,
            events_deleted,
            dead_letters_deleted,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}
