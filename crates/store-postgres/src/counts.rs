//! Events per service per UTC hour. Batches add to it in their own transaction; a query's
//! total sums whole hours from it and counts only the two partial edge hours row by row
//! (and, when the rollup outlives the events, the hours past the event window).

use crate::error;
use aurore_domain::{BusinessMetrics, Event, EventQuery, HourlyCount, StoreError};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeMap;

const UPSERT: &str = "INSERT INTO event_counts (service, hour, events) \
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) \
     ON CONFLICT (service, hour) DO UPDATE SET events = event_counts.events + EXCLUDED.events";

fn hour_of(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant.duration_trunc(TimeDelta::hours(1)).unwrap_or(instant)
}

/// Adds the stored events to their hours. Keys are sorted so concurrent writers lock rows
/// in the same order and never deadlock.
pub(crate) async fn add<'a>(
    transaction: &tokio_postgres::Transaction<'_>,
    stored: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
) -> Result<(), tokio_postgres::Error> {
    let mut hours: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
    for (service, timestamp) in stored {
        *hours.entry((service, hour_of(timestamp))).or_default() += 1;
    }
    let (mut services, mut starts, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((service, hour), count) in hours {
        services.push(service);
        starts.push(hour);
        counts.push(count);
    }
    transaction.execute(UPSERT, &[&services, &starts, &counts]).await?;
    Ok(())
}

pub(crate) fn of_events<'a>(events: &'a [&'a Event]) -> impl Iterator<Item = (&'a str, DateTime<Utc>)> {
    events.iter().map(|event| (event.service.as_str(), event.timestamp))
}

#[derive(diesel::QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    total: i64,
}

fn next_hour_from(instant: DateTime<Utc>) -> DateTime<Utc> {
    let hour = hour_of(instant);
    if hour == instant { hour } else { hour + TimeDelta::hours(1) }
}

/// Events matching the query's service and inclusive range, exactly: whole hours from
/// `event_counts`, the partial hours at either end from `events`. Hours before
/// `history_before` may be counted after retention removed their rows, so that part of the
/// range is counted from the rows left instead (few, once retention has run).
pub(crate) async fn total(
    connection: &mut AsyncPgConnection,
    query: &EventQuery,
    history_before: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let mut whole_from = next_hour_from(query.from);
    if let Some(history_before) = history_before {
        whole_from = whole_from.max(next_hour_from(history_before));
    }
    let mut whole_to = hour_of(query.to);
    if whole_from >= whole_to {
        // No whole hour inside: one exact count covers the range.
        whole_from = query.to + TimeDelta::microseconds(1);
        whole_to = whole_from;
    }
    let total: Total = diesel::sql_query(
        r#"SELECT (SELECT coalesce(sum(events), 0) FROM event_counts WHERE service = $1 AND hour >= $3 AND hour < $4)::int8
                + (SELECT count(*) FROM events WHERE service = $1 AND "timestamp" >= $2 AND "timestamp" < $3)
                + (SELECT count(*) FROM events WHERE service = $1 AND "timestamp" >= $4 AND "timestamp" <= $5) AS total"#,
    )
    .bind::<Text, _>(&query.service)
    .bind::<Timestamptz, _>(query.from)
    .bind::<Timestamptz, _>(whole_from)
    .bind::<Timestamptz, _>(whole_to)
    .bind::<Timestamptz, _>(query.to)
    .get_result(connection)
    .await
    .map_err(error::from_diesel)?;
    Ok(total.total.unsigned_abs())
}

#[derive(diesel::QueryableByName)]
struct ServiceTotal {
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = BigInt)]
    events: i64,
}

#[derive(diesel::QueryableByName)]
struct Hourly {
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Timestamptz)]
    hour: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    events: i64,
}

/// Reads only the hourly rollup: one row per service per hour, whatever the number of
/// stored events.
pub(crate) async fn business_metrics(
    connection: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<BusinessMetrics, StoreError> {
    let totals: Vec<ServiceTotal> =
        diesel::sql_query("SELECT service, sum(events)::int8 AS events FROM event_counts GROUP BY service")
            .load(connection)
            .await
            .map_err(error::from_diesel)?;
    let since = hour_of(now) - TimeDelta::hours(23);
    let recent: Vec<Hourly> =
        diesel::sql_query("SELECT service, hour, events FROM event_counts WHERE hour >= $1 AND hour <= $2")
            .bind::<Timestamptz, _>(since)
            .bind::<Timestamptz, _>(now)
            .load(connection)
            .await
            .map_err(error::from_diesel)?;
    let recent: Vec<HourlyCount> = recent
        .into_iter()
        .map(|row| HourlyCount { service: row.service, hour: row.hour, events: row.events.unsigned_abs() })
        .collect();
    let totals = totals.into_iter().map(|row| (row.service, row.events.unsigned_abs()));
    Ok(BusinessMetrics::tally(totals, &recent, now))
}
