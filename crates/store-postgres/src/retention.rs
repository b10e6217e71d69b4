//! Retention in short transactions on a connection of its own, behind a session advisory
//! lock. Whole days go by dropping their partitions (constant time whatever their size),
//! each in its own transaction that also takes the day's minutes off `event_counts_minute`
//! and its hours off `event_counts`; only the day that straddles the cut-off, and old rows in
//! the default partition, are deleted row by row, with their counts taken off in the same
//! transaction. The minutes always follow the rows; the hours do unless the rollup keeps a
//! longer history, which is then trimmed at its own cut-off.
//!
//! Dropping a partition takes ACCESS EXCLUSIVE on `events`, and while it waits for that
//! lock every writer and reader queues behind it. Each step therefore waits at most the
//! upkeep lock timeout: behind a long reader the day is skipped, reported, and dropped by a
//! later run, instead of ingest freezing until the reader ends.

use crate::{PostgresStore, SET_UPKEEP_LOCK_TIMEOUT, error};
use async_trait::async_trait;
use aurore_domain::{RetentionCutoffs, RetentionReport, RetentionStore, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::time::Instant;
use tokio_postgres::error::SqlState;

/// Another replica holding it makes this run a no-op. Session-level, on this run's own
/// connection: closing the connection releases it whatever happened.
const LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('aurore_retention'))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext('aurore_retention'))";

const EVENT_PARTITIONS: &str = "SELECT c.relname::text FROM pg_inherits i \
     JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
     WHERE p.relname = 'events' AND c.relname ~ '^events_p[0-9]{8}$'";

/// Deletes `table`'s rows that meet `condition` and takes them off their minutes in
/// `event_counts_minute` and, with `uncount`, off their hours in `event_counts`. Returns how
/// many went and the minutes and hours left at zero, to be removed by key (a statement
/// cannot both update and delete a row).
fn delete_rows(table: &str, condition: &str, uncount: bool) -> String {
    let hours = if uncount {
        ", hours AS (SELECT service, date_trunc('hour', minute, 'UTC') AS hour, sum(n)::int8 AS n FROM minutes GROUP BY 1, 2), \
           counted_hours AS (UPDATE event_counts c SET events = c.events - h.n FROM hours h \
               WHERE c.service = h.service AND c.hour = h.hour RETURNING c.service, c.hour, c.events)"
    } else {
        ""
    };
    let empty_hours = if uncount {
        "(SELECT coalesce(array_agg(service), '{}') FROM counted_hours WHERE events <= 0), \
         (SELECT coalesce(array_agg(hour), '{}') FROM counted_hours WHERE events <= 0)"
    } else {
        "'{}'::text[], '{}'::timestamptz[]"
    };
    format!(
        r#"WITH deleted AS (DELETE FROM {table} WHERE {condition} RETURNING service, "timestamp"),
                minutes AS (SELECT service, date_trunc('minute', "timestamp", 'UTC') AS minute, count(*) AS n FROM deleted GROUP BY 1, 2),
                counted_minutes AS (UPDATE event_counts_minute c SET events = c.events - m.n FROM minutes m
                    WHERE c.service = m.service AND c.minute = m.minute RETURNING c.service, c.minute, c.events){hours}
           SELECT (SELECT coalesce(sum(n), 0)::int8 FROM minutes),
                  (SELECT coalesce(array_agg(service), '{{}}') FROM counted_minutes WHERE events <= 0),
                  (SELECT coalesce(array_agg(minute), '{{}}') FROM counted_minutes WHERE events <= 0),
                  {empty_hours}"#
    )
}

/// Minutes and hours whose every event is gone, by primary key.
const DELETE_EMPTY_MINUTES: &str = "DELETE FROM event_counts_minute c \
     USING unnest($1::text[], $2::timestamptz[]) AS z(service, minute) \
     WHERE c.service = z.service AND c.minute = z.minute AND c.events <= 0";
const DELETE_EMPTY_HOURS: &str = "DELETE FROM event_counts c USING unnest($1::text[], $2::timestamptz[]) AS z(service, hour) \
     WHERE c.service = z.service AND c.hour = z.hour AND c.events <= 0";

/// The dropped day's minutes and hours: its events were all in its partition (the default
/// partition holds no row of a day that has one).
const DELETE_DAY_MINUTES: &str = "DELETE FROM event_counts_minute WHERE minute >= $1 AND minute < $2";
const DELETE_DAY_HOURS: &str = "DELETE FROM event_counts WHERE hour >= $1 AND hour < $2";

fn partition_day(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("events_p")?, "%Y%m%d").ok()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// One transaction: `table`'s rows in [from, to) and, in step, their counts (the hours'
/// only with `uncount`).
async fn delete_old_rows(
    client: &mut tokio_postgres::Client,
    table: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    uncount: bool,
) -> Result<u64, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction.batch_execute(SET_UPKEEP_LOCK_TIMEOUT).await?;
    let deleted =
        delete_counted(&transaction, table, r#""timestamp" >= $1 AND "timestamp" < $2"#, &[&from, &to], uncount)
            .await?;
    transaction.commit().await?;
    Ok(deleted)
}

/// In `transaction`: deletes `table`'s rows that meet `condition` (its placeholders bound
/// to `params`) and, in step, their minutes and, with `uncount`, their hours. Returns how
/// many rows went.
pub(crate) async fn delete_counted(
    transaction: &tokio_postgres::Transaction<'_>,
    table: &str,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    uncount: bool,
) -> Result<u64, tokio_postgres::Error> {
    let row = transaction.query_one(&delete_rows(table, condition, uncount), params).await?;
    for (statement, keys) in [(DELETE_EMPTY_MINUTES, 1), (DELETE_EMPTY_HOURS, 3)] {
        let services: Vec<String> = row.get(keys);
        let starts: Vec<DateTime<Utc>> = row.get(keys + 1);
        if !services.is_empty() {
            transaction.execute(statement, &[&services, &starts]).await?;
        }
    }
    Ok(row.get::<_, i64>(0).unsigned_abs())
}

/// One transaction: the partition and, in step, its day's counts.
async fn drop_partition(
    client: &mut tokio_postgres::Client,
    partition: &str,
    day: NaiveDate,
    uncount: bool,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction.batch_execute(SET_UPKEEP_LOCK_TIMEOUT).await?;
    // The name matched ^events_p[0-9]{8}$: safe to splice.
    transaction.batch_execute(&format!("DROP TABLE {partition}")).await?;
    let (from, to) = (midnight(day), midnight(day.succ_opt().unwrap_or(day)));
    transaction.execute(DELETE_DAY_MINUTES, &[&from, &to]).await?;
    if uncount {
        transaction.execute(DELETE_DAY_HOURS, &[&from, &to]).await?;
    }
    transaction.commit().await
}

#[async_trait]
impl RetentionStore for PostgresStore {
    #[tracing::instrument(name = "db.retention", skip_all, fields(db.system = "postgresql"))]
    async fn apply_retention(&self, cutoffs: &RetentionCutoffs) -> Result<RetentionReport, StoreError> {
        let started = Instant::now();
        let mut client = self.upkeep_client().await?;
        let locked: bool = client.query_one(LOCK, &[]).await.map_err(error::from_postgres)?.get(0);
        if !locked {
            return Ok(RetentionReport::default());
        }
        let mut report = RetentionReport { ran: true, ..RetentionReport::default() };
        let in_step = cutoffs.rollup_in_step();
        let cutoff_day = cutoffs.events.date_naive();
        // Events are never older than 1970 (validation), so the epoch bounds the default partition.
        for (table, from) in [("events", midnight(cutoff_day)), ("events_default", DateTime::UNIX_EPOCH)] {
            match delete_old_rows(&mut client, table, from, cutoffs.events, in_step).await {
                Ok(deleted) => report.events_deleted += deleted,
                Err(error) if is_lock_timeout(&error) => report.skipped.push(table.to_owned()),
                Err(error) => return Err(error::from_postgres(error)),
            }
        }
        let mut old_partitions: Vec<(String, NaiveDate)> = client
            .query(EVENT_PARTITIONS, &[])
            .await
            .map_err(error::from_postgres)?
            .iter()
            .filter_map(|row| {
                let name: String = row.get(0);
                partition_day(&name).filter(|day| *day < cutoff_day).map(|day| (name, day))
            })
            .collect();
        old_partitions.sort();
        for (partition, day) in old_partitions {
            match drop_partition(&mut client, &partition, day, in_step).await {
                Ok(()) => report.partitions_dropped.push(partition),
                Err(error) if is_lock_timeout(&error) => report.skipped.push(partition),
                Err(error) => return Err(error::from_postgres(error)),
            }
        }
        if !in_step {
            // The counts outlive their events, as history, until the rollup's own cut-off.
            client
                .execute(
                    "DELETE FROM event_counts WHERE hour < date_trunc('hour', $1::timestamptz, 'UTC')",
                    &[&cutoffs.rollup],
                )
                .await
                .map_err(error::from_postgres)?;
        }
        report.dead_letters_deleted = client
            .execute("DELETE FROM dead_letters WHERE created_at < $1", &[&cutoffs.dead_letters])
            .await
            .map_err(error::from_postgres)?;
        client.query_one(UNLOCK, &[]).await.map_err(error::from_postgres)?;
        report.took = started.elapsed();
        Ok(report)
    }
}
