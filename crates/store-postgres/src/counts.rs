//! Events per service per UTC hour (`event_counts`) and per UTC minute
//! (`event_counts_minute`). Batches add to both in their own transaction. A range is
//! counted from whole hours, then whole minutes, and only the partial minutes at its two
//! ends row by row, so its cost does not grow with the events in it; a histogram counts
//! each of its buckets the same way, in one statement.

use crate::error;
use aurore_domain::{
    BusinessMetrics, Event, EventQuery, Histogram, HistogramQuery, HourlyCount, ServiceSummary, StoreError,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::BTreeMap;

const UPSERT_HOURS: &str = "INSERT INTO event_counts (service, hour, events) \
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) \
     ON CONFLICT (service, hour) DO UPDATE SET events = event_counts.events + EXCLUDED.events";

const UPSERT_MINUTES: &str = "INSERT INTO event_counts_minute (service, minute, events) \
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) \
     ON CONFLICT (service, minute) DO UPDATE SET events = event_counts_minute.events + EXCLUDED.events";

fn floor(instant: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    instant.duration_trunc(unit).unwrap_or(instant)
}

fn ceil(instant: DateTime<Utc>, unit: TimeDelta) -> DateTime<Utc> {
    let floor = floor(instant, unit);
    if floor == instant { floor } else { floor + unit }
}

/// Adds the stored events to their minutes and hours: one statement per table, however
/// many events. Keys are sorted, and every writer takes minutes before hours, so
/// concurrent writers lock rows in the same order and never deadlock.
pub(crate) async fn add<'a>(
    transaction: &tokio_postgres::Transaction<'_>,
    stored: impl Iterator<Item = (&'a str, DateTime<Utc>)>,
) -> Result<(), tokio_postgres::Error> {
    let mut minutes: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
    for (service, timestamp) in stored {
        *minutes.entry((service, floor(timestamp, TimeDelta::minutes(1)))).or_default() += 1;
    }
    let mut hours: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
    for ((service, minute), count) in &minutes {
        *hours.entry((service, floor(*minute, TimeDelta::hours(1)))).or_default() += count;
    }
    for (statement, counts) in [(UPSERT_MINUTES, minutes), (UPSERT_HOURS, hours)] {
        let (mut services, mut starts, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for ((service, start), count) in counts {
            services.push(service);
            starts.push(start);
            events.push(count);
        }
        transaction.execute(statement, &[&services, &starts, &events]).await?;
    }
    Ok(())
}

pub(crate) fn of_events<'a>(events: &'a [&'a Event]) -> impl Iterator<Item = (&'a str, DateTime<Utc>)> {
    events.iter().map(|event| (event.service.as_str(), event.timestamp))
}

/// Spans `[from, until)` to count from one source, each for one bucket.
#[derive(Debug, Default)]
struct Spans {
    buckets: Vec<i32>,
    from: Vec<DateTime<Utc>>,
    until: Vec<DateTime<Utc>>,
}

impl Spans {
    fn push(&mut self, bucket: i32, from: DateTime<Utc>, until: DateTime<Utc>) {
        if from < until {
            self.buckets.push(bucket);
            self.from.push(from);
            self.until.push(until);
        }
    }
}

/// A partial minute at one end of the range, counted row by row for its bucket: the rows
/// of `[from, until)`, times `sign`.
#[derive(Debug, Clone, Copy)]
struct Edge {
    bucket: i32,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    sign: i64,
}

impl Edge {
    fn new(bucket: i32, from: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        Self { bucket, from, until, sign: 1 }
    }

    /// An edge that is the head or tail of its minute and covers more than half of it is
    /// counted as the whole minute (from the rollup, which the caller adds) less the rows of
    /// the rest, so no edge reads more than half a minute of rows. Returns that minute.
    fn count_the_rest(&mut self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let minute = TimeDelta::minutes(1);
        let start = floor(self.from, minute);
        let end = start + minute;
        if self.until - self.from <= minute / 2 || self.until > end {
            return None;
        }
        (self.from, self.until) = if self.until == end {
            (start, self.from)
        } else if self.from == start {
            (self.until, end)
        } else {
            return None;
        };
        self.sign = -1;
        Some((start, end))
    }
}

/// How to count contiguous buckets exactly: whole hours from `event_counts`, whole minutes
/// from `event_counts_minute`, and from `events` only the partial minute at each end of
/// the range (or the rest of that minute, subtracted from the whole, where that is less).
/// Every boundary between buckets is a whole minute, so no other minute is partial.
#[derive(Debug)]
struct Plan {
    hours: Spans,
    minutes: Spans,
    edges: [Edge; 2],
}

impl Plan {
    /// `buckets` are `(bucket, from, until)`, contiguous and in order. Hours before
    /// `history_before` may still count events retention removed (the rollup keeps them
    /// as history): there, minutes count instead, which always follow the rows.
    fn new(buckets: &[(i32, DateTime<Utc>, DateTime<Utc>)], history_before: Option<DateTime<Utc>>) -> Self {
        let minute = TimeDelta::minutes(1);
        let (Some(&(first, from, _)), Some(&(last, _, end))) = (buckets.first(), buckets.last()) else {
            let nothing = Edge::new(0, DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH);
            return Self { hours: Spans::default(), minutes: Spans::default(), edges: [nothing; 2] };
        };
        // Whole minutes lie in [whole_from, whole_until); in one minute, the left edge is all.
        let whole_from = ceil(from, minute).min(end);
        let whole_until = floor(end, minute).max(whole_from);
        let edges = [Edge::new(first, from, whole_from), Edge::new(last, whole_until, end)];
        let mut plan = Self { hours: Spans::default(), minutes: Spans::default(), edges };
        for edge in &mut plan.edges {
            if let Some((minute_start, minute_end)) = edge.count_the_rest() {
                plan.minutes.push(edge.bucket, minute_start, minute_end);
            }
        }
        for &(bucket, since, until) in buckets {
            let (since, until) = (since.max(whole_from), until.min(whole_until));
            let hours_from = ceil(history_before.map_or(since, |before| before.max(since)), TimeDelta::hours(1));
            let hours_until = floor(until, TimeDelta::hours(1));
            if hours_from < hours_until {
                plan.minutes.push(bucket, since, hours_from);
                plan.hours.push(bucket, hours_from, hours_until);
                plan.minutes.push(bucket, hours_until, until);
            } else {
                plan.minutes.push(bucket, since, until);
            }
        }
        plan
    }

    /// Events per bucket, for buckets `0..buckets`. Runs inside the caller's transaction.
    async fn count(
        self,
        connection: &mut AsyncPgConnection,
        service: &str,
        buckets: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let [left, right] = self.edges;
        // The edge counts are estimated big enough to start parallel workers, whose start-up
        // costs more than the scans they would share (measured on a busy hour: 10 ms → 0.7 ms).
        // A simple query: one round trip, where a statement would be prepared first.
        connection.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0").await.map_err(error::from_diesel)?;
        let rows: Vec<BucketCount> = diesel::sql_query(COUNT_BY_BUCKET)
            .bind::<Text, _>(service)
            .bind::<Array<Integer>, _>(self.hours.buckets)
            .bind::<Array<Timestamptz>, _>(self.hours.from)
            .bind::<Array<Timestamptz>, _>(self.hours.until)
            .bind::<Array<Integer>, _>(self.minutes.buckets)
            .bind::<Array<Timestamptz>, _>(self.minutes.from)
            .bind::<Array<Timestamptz>, _>(self.minutes.until)
            .bind::<Integer, _>(left.bucket)
            .bind::<Timestamptz, _>(left.from)
            .bind::<Timestamptz, _>(left.until)
            .bind::<Integer, _>(right.bucket)
            .bind::<Timestamptz, _>(right.from)
            .bind::<Timestamptz, _>(right.until)
            .bind::<BigInt, _>(left.sign)
            .bind::<BigInt, _>(right.sign)
            .load(connection)
            .await
            .map_err(error::from_diesel)?;
        let mut counts = vec![0; buckets];
        for row in rows {
            if let Some(count) = usize::try_from(row.bucket).ok().and_then(|bucket| counts.get_mut(bucket)) {
                *count = row.events.unsigned_abs();
            }
        }
        Ok(counts)
    }
}

/// Each span is a range of a primary key (`(service, hour)`, `(service, minute)`); each edge
/// a range of the events' `(service, timestamp)` index, with its bounds bound as values so
/// the planner keeps only the partition it lies in, and its sign (−1: rows subtracted from
/// a whole minute).
const COUNT_BY_BUCKET: &str = r#"SELECT bucket, sum(n)::int8 AS events FROM (
        SELECT s.bucket, c.events AS n
        FROM unnest($2::int4[], $3::timestamptz[], $4::timestamptz[]) AS s(bucket, since, until)
        JOIN event_counts c ON c.service = $1 AND c.hour >= s.since AND c.hour < s.until
        UNION ALL
        SELECT s.bucket, c.events
        FROM unnest($5::int4[], $6::timestamptz[], $7::timestamptz[]) AS s(bucket, since, until)
        JOIN event_counts_minute c ON c.service = $1 AND c.minute >= s.since AND c.minute < s.until
        UNION ALL
        SELECT $8, $14 * count(*) FROM events WHERE service = $1 AND "timestamp" >= $9 AND "timestamp" < $10
        UNION ALL
        SELECT $11, $15 * count(*) FROM events WHERE service = $1 AND "timestamp" >= $12 AND "timestamp" < $13
    ) AS counted GROUP BY bucket"#;

#[derive(diesel::QueryableByName)]
struct BucketCount {
    #[diesel(sql_type = Integer)]
    bucket: i32,
    #[diesel(sql_type = BigInt)]
    events: i64,
}

/// Events matching the query's service and inclusive range, exactly. Before
/// `history_before` the hourly counts may hold events retention removed, so that part of
/// the range is counted from the minutes, which never do.
pub(crate) async fn total(
    connection: &mut AsyncPgConnection,
    query: &EventQuery,
    history_before: Option<DateTime<Utc>>,
) -> Result<u64, StoreError> {
    // `to` is inclusive; instants are microseconds.
    let plan = Plan::new(&[(0, query.from, query.to + TimeDelta::microseconds(1))], history_before);
    Ok(plan.count(connection, &query.service, 1).await?.iter().sum())
}

/// Every bucket of the histogram, counted as [`total`] counts a range.
pub(crate) async fn histogram(
    connection: &mut AsyncPgConnection,
    query: &HistogramQuery,
    history_before: Option<DateTime<Utc>>,
) -> Result<Histogram, StoreError> {
    let spans = query.buckets();
    let buckets: Vec<_> = (0..).zip(&spans).map(|(bucket, span)| (bucket, span.from, span.until)).collect();
    let counts = Plan::new(&buckets, history_before).count(connection, &query.service, spans.len()).await?;
    Ok(Histogram::new(&spans, counts))
}

#[derive(diesel::QueryableByName)]
struct ServiceRow {
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = BigInt)]
    events: i64,
    #[diesel(sql_type = Timestamptz)]
    latest_hour: DateTime<Utc>,
}

/// One row per service per hour is read, whatever the number of stored events. Hours that
/// retention emptied are skipped.
pub(crate) async fn services(connection: &mut AsyncPgConnection) -> Result<Vec<ServiceSummary>, StoreError> {
    let rows: Vec<ServiceRow> = diesel::sql_query(
        "SELECT service, sum(events)::int8 AS events, max(hour) AS latest_hour FROM event_counts \
         WHERE events > 0 GROUP BY service ORDER BY service",
    )
    .load(connection)
    .await
    .map_err(error::from_diesel)?;
    Ok(rows
        .into_iter()
        .map(|row| ServiceSummary {
            service: row.service,
            events: row.events.unsigned_abs(),
            latest_hour: row.latest_hour,
        })
        .collect())
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
    let since = floor(now, TimeDelta::hours(1)) - TimeDelta::hours(23);
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
