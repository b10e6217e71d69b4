//! The PostgreSQL store against a real server, one fresh database per test.

// A failed unwrap is a failed test, which is what these helpers are for.

use crate::support::TestDatabase;
use aurore_domain::{
    Event, EventDraft, EventId, EventPage, EventQuery, EventReader, EventSink, HistogramQuery, QueryLimits,
    RetentionPolicy, SortField, SortOrder, StoreError, StoredEvent,
};
use aurore_store_postgres::{PostgresSettings, PostgresStore};
use chrono::{DateTime, Duration, DurationRound, SubsecRound, TimeZone, Utc};
use serde_json::json;
use std::collections::HashSet;

/// Retention as configured by default: the hourly counts follow the events.
const RETENTION: RetentionPolicy = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 30 };

/// Pools on the test database, without migrating.
fn pools(database: &TestDatabase) -> PostgresStore {
    pools_under(database, RETENTION)
}

fn pools_under(database: &TestDatabase, retention: RetentionPolicy) -> PostgresStore {
    PostgresStore::connect(&PostgresSettings {
        url: database.url.clone(),
        read_url: None,
        sslmode: None,
        sslrootcert: None,
        query_connections: 2,
        write_connections: 1,
        connect_timeout: std::time::Duration::from_secs(5),
        query_timeout: std::time::Duration::from_secs(30),
        retention,
    })
    .expect("build pools")
}

async fn store(database: &TestDatabase) -> PostgresStore {
    store_under(database, RETENTION).await
}

async fn store_under(database: &TestDatabase, retention: RetentionPolicy) -> PostgresStore {
    let store = pools_under(database, retention);
    store.migrate().await.expect("migrate");
    let today = Utc::now().date_naive();
    store.ensure_partitions(today - Duration::days(2), today + Duration::days(2)).await.expect("partitions");
    store
}

fn event(service: &str, timestamp: DateTime<Utc>, message: &str) -> Event {
    EventDraft {
        timestamp,
        service: service.to_owned(),
        message: message.to_owned(),
        metadata: Some(json!({"user_id": "12345", "nested": {"ok": true}})),
        idempotency_key: None,
    }
    .enrich(EventId::generate(), Utc::now())
}

fn query(service: &str, from: DateTime<Utc>, to: DateTime<Utc>, page_size: u32, order: SortOrder) -> EventQuery {
    EventQuery {
        service: service.to_owned(),
        from,
        to,
        page: 1,
        page_size,
        sort_field: SortField::Timestamp,
        sort_order: order,
        cursor: None,
        metadata: Vec::new(),
        filter: None,
        max_sorted_rows: QueryLimits::default().max_sorted_rows,
    }
}

fn refs(events: &[Event]) -> Vec<&Event> {
    events.iter().collect()
}

fn ids(events: &[StoredEvent]) -> Vec<EventId> {
    events.iter().map(|stored| stored.event.id).collect()
}

/// Follows `next_cursor` from the first page to the last.
async fn walk(store: &PostgresStore, mut query: EventQuery) -> Vec<StoredEvent> {
    let mut seen = Vec::new();
    loop {
        let page: EventPage = store.query(&query).await.expect("query page");
        let next = page.next_cursor(&query);
        seen.extend(page.events);
        match next {
            Some(cursor) => query.cursor = Some(cursor),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_batch_lands_whole_and_reads_back_intact() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let now = Utc::now();
    let batch: Vec<Event> = (0..1000).map(|i| event("auth", now - Duration::seconds(i), &format!("m{i}"))).collect();
    store.write_batch(&refs(&batch)).await.expect("write batch");

    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 1000);
    let page = store.query(&query("auth", now - Duration::hours(1), now, 1000, SortOrder::Desc)).await.unwrap();
    assert_eq!(page.total, Some(1000));
    assert!(!page.has_more);
    let read_back = &page.events[0].event;
    assert_eq!(read_back.id, batch[0].id);
    assert_eq!(read_back.message, "m0");
    assert_eq!(read_back.metadata, batch[0].metadata);
    assert_eq!(read_back.timestamp, batch[0].timestamp);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_data_postgres_refuses_lands_not_at_all() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let mut batch: Vec<Event> = (0..10).map(|i| event("auth", Utc::now(), &format!("m{i}"))).collect();
    batch[7].message = "nul \u{0} byte".to_owned();

    let error = store.write_batch(&refs(&batch)).await.expect_err("PostgreSQL refuses NUL in text");
    assert!(matches!(error, StoreError::Rejected { .. }), "{error:?}");
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_filter_by_service_and_inclusive_range_in_either_order() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let base = Utc::now() - Duration::hours(1);
    let mut batch = Vec::new();
    for minute in 0..10 {
        batch.push(event("auth", base + Duration::minutes(minute), &format!("auth {minute}")));
        batch.push(event("billing", base + Duration::minutes(minute), &format!("billing {minute}")));
    }
    store.write_batch(&refs(&batch)).await.unwrap();

    let (from, to) = (base + Duration::minutes(2), base + Duration::minutes(5));
    let page = store.query(&query("auth", from, to, 100, SortOrder::Desc)).await.unwrap();
    let messages: Vec<&str> = page.events.iter().map(|stored| stored.event.message.as_str()).collect();
    assert_eq!(messages, ["auth 5", "auth 4", "auth 3", "auth 2"]);
    assert_eq!(page.total, Some(4));

    let page = store.query(&query("auth", from, to, 100, SortOrder::Asc)).await.unwrap();
    let messages: Vec<&str> = page.events.iter().map(|stored| stored.event.message.as_str()).collect();
    assert_eq!(messages, ["auth 2", "auth 3", "auth 4", "auth 5"]);

    let mut second_page = query("auth", from, to, 3, SortOrder::Asc);
    second_page.page = 2;
    let page = store.query(&second_page).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].event.message, "auth 5");
    assert!(!page.has_more);
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_pages_cover_every_row_exactly_once_whatever_the_sort() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let base = Utc::now() - Duration::hours(1);
    // Many rows share a timestamp and a message, so the id tie-breaker must do its job.
    let batch: Vec<Event> =
        (0..257).map(|i| event("auth", base + Duration::seconds(i / 10), &format!("m{}", i % 7))).collect();
    store.write_batch(&refs(&batch)).await.unwrap();
    let expected: HashSet<EventId> = batch.iter().map(|event| event.id).collect();

    for sort_field in [SortField::Timestamp, SortField::Message, SortField::CreatedAt] {
        for sort_order in [SortOrder::Asc, SortOrder::Desc] {
            let mut first = query("auth", base, base + Duration::hours(1), 20, sort_order);
            first.sort_field = sort_field;
            let seen = ids(&walk(&store, first).await);
            assert_eq!(seen.len(), 257, "{sort_field:?} {sort_order:?}");
            assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected, "{sort_field:?} {sort_order:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_day_without_a_partition_still_lands() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let long_ago = Utc.with_ymd_and_hms(2001, 9, 9, 1, 46, 40).unwrap();
    store.write_batch(&[&event("archive", long_ago, "old")]).await.expect("write into the default partition");

    let in_default = "SELECT count(*) AS n FROM events_default";
    assert_eq!(database.count(in_default).await, 1);
    let page =
        store.query(&query("archive", long_ago - Duration::days(1), long_ago, 10, SortOrder::Desc)).await.unwrap();
    assert_eq!(page.events.len(), 1);

    // Creating that day's partition later moves the row out of the default partition.
    let day = long_ago.date_naive();
    assert_eq!(store.ensure_partitions(day, day).await.unwrap().created, 1);
    assert_eq!(database.count(in_default).await, 0);
    assert_eq!(database.count("SELECT count(*) AS n FROM events_p20010909").await, 1);
    assert_eq!(store.ensure_partitions(day, day).await.unwrap().created, 0, "ensuring is idempotent");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_day_that_cannot_be_created_does_not_stop_the_others() {
    use diesel_async::RunQueryDsl;
    let database = TestDatabase::create().await;
    let store = pools(&database);
    store.migrate().await.unwrap();
    let first = chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    let last = first + Duration::days(4);
    let blocked = first + Duration::days(2);
    // A type of the partition's name: creating that day's table fails, every time.
    let mut connection = database.connection().await;
    diesel::sql_query(format!("CREATE TYPE events_p{} AS ENUM ('taken')", blocked.format("%Y%m%d")))
        .execute(&mut connection)
        .await
        .unwrap();

    let report = store.ensure_partitions(first, last).await.expect("the pass itself succeeds");
    assert_eq!(report.created, 4, "{report:?}");
    let failed: Vec<_> = report.failed.iter().map(|failure| failure.day).collect();
    assert_eq!(failed, vec![blocked], "{report:?}");
    let partitions = "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'events'::regclass \
                      AND inhrelid::regclass::text ~ '^events_p2030'";
    assert_eq!(database.count(partitions).await, 4);
    // The day without a partition still takes writes, in the default partition.
    let at = blocked.and_hms_opt(12, 0, 0).unwrap().and_utc();
    store.write_batch(&[&event("late", at, "m")]).await.unwrap();
    assert_eq!(database.count("SELECT count(*) AS n FROM events_default").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_makes_upkeep_report_the_day_not_wait_for_it() {
    use diesel_async::RunQueryDsl;
    let database = TestDatabase::create().await;
    let store = pools(&database);
    store.migrate().await.unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2030, 6, 1).unwrap();
    // Attaching needs the default partition exclusively; a long reader holds it.
    let mut reader = database.connection().await;
    diesel::sql_query("BEGIN").execute(&mut reader).await.unwrap();
    diesel::sql_query("LOCK TABLE events_default IN ACCESS SHARE MODE").execute(&mut reader).await.unwrap();

    let started = std::time::Instant::now();
    let report = store.ensure_partitions(day, day).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(report.created, 0);
    assert_eq!(report.failed.iter().map(|failure| failure.day).collect::<Vec<_>>(), vec![day], "{report:?}");
    // Ingest went on meanwhile, into the default partition.
    store.write_batch(&[&event("busy", day.and_hms_opt(8, 0, 0).unwrap().and_utc(), "m")]).await.unwrap();

    // Released while a pass waits, the day is created.
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        drop(reader);
    });
    let report = store.ensure_partitions(day, day).await.unwrap();
    release.await.unwrap();
    assert_eq!((report.created, report.failed.len()), (1, 0), "{report:?}");
    assert_eq!(database.count("SELECT count(*) AS n FROM events_p20300601").await, 1, "the row moved into it");
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_cover_the_requested_days() {
    let database = TestDatabase::create().await;
    let _store = store(&database).await;
    let partitions = "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'events'::regclass";
    // Five days plus the default partition.
    assert_eq!(database.count(partitions).await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_stored_events_again_skips_them_instead_of_duplicating() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let batch: Vec<Event> = (0..50).map(|i| event("replay", Utc::now(), &format!("m{i}"))).collect();
    store.write_batch(&refs(&batch[..20])).await.expect("first part");
    // A replay: half already stored, half new. COPY hits the key and the insert path runs.
    store.write_batch(&refs(&batch)).await.expect("replayed batch");
    store.write_batch(&refs(&batch)).await.expect("fully stored batch");
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 50);
    assert_eq!(database.count("SELECT count(DISTINCT id) AS n FROM events").await, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_keep_what_postgres_refuses_and_can_be_managed() {
    use aurore_domain::{DeadLetterAdmin, DeadLetterFilter, DeadLetterSink};
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let mut poison = event("billing", Utc::now(), "nul \u{0} inside");
    poison.service = "bill\u{0}ing".into();
    store.put(&poison, "invalid byte sequence for encoding \"UTF8\": 0x00", 3).await.expect("put");
    store.put(&event("auth", Utc::now(), "other"), "refused", 1).await.expect("put");

    let (entries, total) =
        store.list(&DeadLetterFilter { limit: 10, ..DeadLetterFilter::default() }).await.expect("list");
    assert_eq!((entries.len(), total), (2, 2));
    let kept = entries.iter().find(|entry| entry.event.id == poison.id).expect("the poison event");
    assert_eq!(kept.event, poison, "the original event is kept exactly, NUL bytes included");
    assert_eq!(kept.attempts, 3);

    let only_auth = DeadLetterFilter { service: Some("auth".into()), limit: 10, ..DeadLetterFilter::default() };
    assert_eq!(store.list(&only_auth).await.unwrap().1, 1);
    // A journal replay puts the same failure again: no second entry, but the entry is
    // touched, so a reprocess that read it before does not mark it.
    store.put(&poison, "invalid byte sequence for encoding \"UTF8\": 0x00", 3).await.expect("put again");
    assert_eq!(store.list(&DeadLetterFilter { limit: 10, ..DeadLetterFilter::default() }).await.unwrap().1, 2);
    assert!(!store.mark_reprocessed(kept.id, kept.updated_at).await.unwrap(), "failed again since it was read");
    let kept = store.get(kept.id).await.unwrap().unwrap();
    assert_eq!((kept.attempts, kept.reprocessed), (3, false));
    assert!(store.mark_reprocessed(kept.id, kept.updated_at).await.unwrap());
    assert!(!store.mark_reprocessed(kept.id, kept.updated_at).await.unwrap(), "only once");
    // Once reprocessed, a new failure of the same event is a new entry.
    store.put(&poison, "refused again", 1).await.expect("put after reprocess");
    assert_eq!(store.list(&DeadLetterFilter { limit: 10, ..DeadLetterFilter::default() }).await.unwrap().1, 3);
    store.put(&poison, "refused again", 1).await.expect("put after reprocess");
    assert_eq!(store.list(&DeadLetterFilter { limit: 10, ..DeadLetterFilter::default() }).await.unwrap().1, 3);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.reprocessed, stats.pending), (3, 1, 2));
    assert!(store.get(kept.id).await.unwrap().unwrap().reprocessed);
    assert!(store.delete(kept.id).await.unwrap());
    assert!(store.get(kept.id).await.unwrap().is_none());
    assert!(!store.delete(kept.id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn totals_are_exact_across_whole_and_partial_hours_and_replays() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    // Microseconds, as stored, so the expected counts compare like PostgreSQL does.
    let start = (Utc::now() - Duration::hours(20)).trunc_subsecs(6);
    // One event every 7 minutes for 15 hours, so hours hold uneven counts.
    let batch: Vec<Event> = (0..130).map(|i| event("hours", start + Duration::minutes(7 * i), "m")).collect();
    store.write_batch(&refs(&batch[..70])).await.unwrap();
    store.write_batch(&refs(&batch)).await.expect("a replay of the first 70 plus 60 new");
    let exact = |from: DateTime<Utc>, to: DateTime<Utc>| {
        batch.iter().filter(|event| event.timestamp >= from && event.timestamp <= to).count() as u64
    };
    let ranges = [
        (start, start + Duration::hours(16)),
        (start + Duration::minutes(13), start + Duration::minutes(611)),
        (start + Duration::minutes(61), start + Duration::minutes(64)),
        (batch[10].timestamp, batch[50].timestamp),
        (start - Duration::days(1), start + Duration::days(1)),
    ];
    for (from, to) in ranges {
        let page = store.query(&query("hours", from, to, 1, SortOrder::Desc)).await.unwrap();
        assert_eq!(page.total, Some(exact(from, to)), "{from} .. {to}");
    }
}

/// `count` events of `service` every `every_seconds` from `start`, three more a microsecond
/// before, on and after each of `edges`, and one of another service on the first edge.
/// Written as a first part of `replayed` events, then all again, as a journal replay would.
async fn write_with_edges(
    store: &PostgresStore,
    service: &str,
    start: DateTime<Utc>,
    (count, every_seconds): (i64, i64),
    edges: [Duration; 3],
    replayed: usize,
) -> Vec<Event> {
    let mut batch: Vec<Event> =
        (0..count).map(|i| event(service, start + Duration::seconds(every_seconds * i), "m")).collect();
    for edge in edges {
        for offset in [-1, 0, 1] {
            batch.push(event(service, start + edge + Duration::microseconds(offset), "edge"));
        }
    }
    batch.push(event(&format!("{service}-other"), start + edges[0], "another service"));
    store.write_batch(&refs(&batch[..replayed])).await.unwrap();
    store.write_batch(&refs(&batch)).await.expect("a replay of the first part plus the rest");
    batch
}

#[tokio::test(flavor = "multi_thread")]
async fn totals_are_exact_across_whole_and_partial_minutes_and_replays() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(5);
    // One event every 37 s for three hours, plus events on and just around minute and hour
    // boundaries, where an off-by-one in the edges would show.
    let edges = [Duration::minutes(61), Duration::hours(2), Duration::minutes(17)];
    let batch = write_with_edges(&store, "minutes", hour, (300, 37), edges, 100).await;
    let exact = |from: DateTime<Utc>, to: DateTime<Utc>| {
        batch.iter().filter(|e| e.service == "minutes" && e.timestamp >= from && e.timestamp <= to).count() as u64
    };
    let at = |minutes: i64, micros: i64| hour + Duration::minutes(minutes) + Duration::microseconds(micros);
    let ranges = [
        (at(0, 0), at(180, 0)),
        (at(0, 1), at(180, -1)),
        (at(17, 0), at(61, 0)),
        (at(17, 1), at(61, -1)),
        (at(16, 999_999), at(61, 1)),
        (at(3, 500_000), at(3, 900_000)),
        (at(59, 30_000_000), at(121, 7_000_000)),
        (at(60, 0), at(120, 0)),
        (at(61, -1), at(61, 1)),
        (at(-600, 0), at(600, 0)),
        // Edges over half their minute (the minute less the rest), at both ends, and a head
        // and an interior of one minute.
        (at(16, 20_000_000), at(61, 40_000_000)),
        (at(16, 0), at(16, 45_000_000)),
        (at(3, 10_000_000), at(3, 50_000_000)),
    ];
    // And ends anywhere in their minutes (xorshift, fixed seed, so a failure replays).
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut below = |bound: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound.unsigned_abs()) as i64
    };
    let anywhere: Vec<_> = (0..100)
        .map(|_| {
            let from = at(0, below(180 * 60_000_000));
            (from, from + Duration::microseconds(below(90 * 60_000_000)))
        })
        .collect();
    for (from, to) in ranges.into_iter().chain(anywhere) {
        let page = store.query(&query("minutes", from, to, 1, SortOrder::Desc)).await.unwrap();
        assert_eq!(page.total, Some(exact(from, to)), "{from} .. {to}");
    }
    assert_eq!(database.count(events_per_minute_match_counts_sql()).await, 0, "event_counts_minute equals the rows");
    assert_eq!(database.count(events_per_hour_match_counts_sql()).await, 0, "event_counts equals the rows");
}

/// Rows of `events_per_minute` that differ from the rows of `events`: none while the rollup holds.
fn events_per_minute_match_counts_sql() -> &'static str {
    r#"SELECT count(*) AS n FROM (
           SELECT service, date_trunc('minute', "timestamp", 'UTC') AS minute, count(*) AS events FROM events GROUP BY 1, 2
       ) AS actual FULL JOIN event_counts_minute USING (service, minute)
       WHERE actual.events IS DISTINCT FROM event_counts_minute.events"#
}

#[tokio::test(flavor = "multi_thread")]
async fn a_total_over_a_busy_hour_reads_at_most_half_a_minute_of_rows_at_each_end() {
    let database = TestDatabase::create().await;
    let start = (Utc::now() - Duration::minutes(90)).duration_trunc(Duration::minutes(1)).unwrap();
    // Ten events a second for 50 minutes: 30,000 rows.
    let events: Vec<Event> = (0..30_000).map(|i| event("busy", start + Duration::milliseconds(100 * i), "m")).collect();
    {
        let store = store(&database).await;
        for chunk in events.chunks(5_000) {
            store.write_batch(&chunk.iter().collect::<Vec<_>>()).await.unwrap();
        }
    }
    // Both ends cover most of their minutes (50 s): each is counted as its minute less the
    // other 10 s, about 100 rows, where reading it would take 500.
    let (from, to) = (start + Duration::milliseconds(10_234), start + Duration::seconds(49 * 60 + 50));
    let expected = events.iter().filter(|e| e.timestamp >= from && e.timestamp <= to).count() as u64;
    let page_one = query("busy", from, to, 1, SortOrder::Desc);
    let fetched = index_rows_fetched(&database, |store| async move {
        assert_eq!(store.query(&page_one).await.unwrap().total, Some(expected));
    })
    .await;
    assert!(fetched <= 2 * 300 + 10, "the page's row and at most half a minute of 600 rows at each end: {fetched}");

    let histogram = histogram_query("busy", from, to, "5m");
    let fetched = index_rows_fetched(&database, |store| async move {
        assert_eq!(store.histogram(&histogram).await.unwrap().total, expected);
    })
    .await;
    assert!(fetched <= 2 * 300 + 2, "at most half of each partial minute is read row by row: {fetched}");
}

fn histogram_query(service: &str, from: DateTime<Utc>, to: DateTime<Utc>, interval: &str) -> HistogramQuery {
    let interval = aurore_domain::Interval::parse(interval).expect("a valid interval");
    HistogramQuery { service: service.to_owned(), from, to, interval }.check().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn histogram_buckets_are_exact_at_minute_and_hour_edges_and_count_replays_once() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(6);
    // One event every 53 s for three hours, nothing in the fourth, and events around the
    // boundaries of minutes and hours.
    let edges = [Duration::minutes(60), Duration::minutes(75), Duration::minutes(121)];
    let batch = write_with_edges(&store, "histo", hour, (200, 53), edges, 120).await;

    let at = |minutes: i64, micros: i64| hour + Duration::minutes(minutes) + Duration::microseconds(micros);
    let cases = [
        ("1m", at(59, 400_000), at(76, 1)),
        ("7m", at(3, 1), at(150, 999_999)),
        ("15m", at(0, 0), at(240, 0)),
        ("1h", at(10, 30_000_000), at(230, 10)),
        ("90m", at(-30, 0), at(245, 0)),
        ("1d", at(-300, 0), at(300, 0)),
        ("60", at(121, -1), at(121, 1)),
    ];
    for (interval, from, to) in cases {
        let query = histogram_query("histo", from, to, interval);
        let histogram = store.histogram(&query).await.unwrap();
        let spans = query.buckets();
        assert_eq!(histogram.buckets.len(), spans.len(), "{interval}: every bucket, empty ones too");
        let width = query.interval.duration();
        for (bucket, span) in histogram.buckets.iter().zip(&spans) {
            let expected = batch
                .iter()
                .filter(|e| e.service == "histo" && e.timestamp >= span.from && e.timestamp < span.until)
                .count() as u64;
            assert_eq!(bucket.count, expected, "{interval} bucket {}", bucket.start);
            assert_eq!(bucket.start.timestamp() % width.num_seconds(), 0, "{interval}: aligned on the interval");
        }
        assert!(histogram.buckets.windows(2).all(|pair| pair[1].start - pair[0].start == width), "{interval}");
        let page = store.query(&query_for(&query)).await.unwrap();
        assert_eq!(Some(histogram.total), page.total, "{interval}: the buckets sum to the page's total");
    }
    let empty = store.histogram(&histogram_query("histo", at(190, 0), at(230, 0), "5m")).await.unwrap();
    assert_eq!((empty.buckets.len(), empty.total), (9, 0), "the empty fourth hour still has its buckets");
}

fn query_for(histogram: &HistogramQuery) -> EventQuery {
    query(&histogram.service, histogram.from, histogram.to, 1, SortOrder::Desc)
}

fn events_per_hour_match_counts_sql() -> &'static str {
    r#"SELECT count(*) AS n FROM (
           SELECT service, date_trunc('hour', "timestamp", 'UTC') AS hour, count(*) AS events FROM events GROUP BY 1, 2
       ) AS actual FULL JOIN event_counts USING (service, hour)
       WHERE actual.events IS DISTINCT FROM event_counts.events"#
}

#[tokio::test]
async fn retention_drops_old_days_deletes_the_straddling_part_and_keeps_counts_in_step() {
    use aurore_domain::RetentionStore;
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let now = Utc::now().trunc_subsecs(6);
    let today = now.date_naive();
    store.ensure_partitions(today - Duration::days(40), today).await.unwrap();
    // Every day of 40, one event every 6 hours (04:00 of day 30 back straddles a 30-day cut-off
    // taken at now), plus an old event that sits in the default partition (no partition for it).
    let mut events: Vec<Event> =
        (0..40 * 4).map(|i| event(if i % 2 == 0 { "a" } else { "b" }, now - Duration::hours(6 * i), "e")).collect();
    events.push(event("a", now - Duration::days(50), "default partition"));
    store.write_batch(&refs(&events)).await.unwrap();
    let policy = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 30 };
    let cutoffs = policy.cutoffs(now);
    let expected_kept = events.iter().filter(|event| event.timestamp >= cutoffs.events).count();
    let old_partitions = database
        .count(&format!(
            "SELECT count(*) AS n FROM pg_class WHERE relname ~ '^events_p[0-9]{{8}}$' AND relname < 'events_p{}'",
            cutoffs.events.format("%Y%m%d")
        ))
        .await;
    assert!(old_partitions >= 10, "partitions for the ten oldest days exist: {old_partitions}");

    let report = store.apply_retention(&cutoffs).await.unwrap();
    assert!(report.ran);
    assert_eq!(report.partitions_dropped.len() as i64, old_partitions);
    let kept = database.count("SELECT count(*) AS n FROM events").await;
    assert_eq!(kept as usize, expected_kept, "exactly the events older than the cut-off are gone");
    let too_old = format!(
        r#"SELECT count(*) AS n FROM events WHERE "timestamp" < '{}'"#,
        cutoffs.events.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    assert_eq!(database.count(&too_old).await, 0);
    assert!(report.events_deleted >= 1, "the default partition's old event went row by row: {report:?}");
    assert!(
        report.events_deleted <= 5,
        "only the straddling day (4 events a day) and the default partition are deleted row by row; \
         older days go whole with their partitions, whatever their size: {report:?}"
    );
    assert_eq!(database.count(events_per_hour_match_counts_sql()).await, 0, "event_counts equals the rows per hour");
    assert_eq!(database.count(events_per_minute_match_counts_sql()).await, 0, "and event_counts_minute per minute");
    let remaining_old = format!(
        "SELECT count(*) AS n FROM pg_class WHERE relname ~ '^events_p[0-9]{{8}}$' AND relname < 'events_p{}'",
        cutoffs.events.format("%Y%m%d")
    );
    assert_eq!(database.count(&remaining_old).await, 0);

    // Running again finds nothing more to do.
    let again = store.apply_retention(&cutoffs).await.unwrap();
    assert_eq!((again.partitions_dropped.len(), again.events_deleted), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_cutting_through_a_minute_leaves_its_count_exact_and_no_empty_minutes() {
    use aurore_domain::{RetentionCutoffs, RetentionStore};
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let today = Utc::now().date_naive();
    store.ensure_partitions(today - Duration::days(33), today).await.unwrap();
    // The cut-off falls half-way through minute `m`, 30 days back.
    let m = (Utc::now() - Duration::days(30)).duration_trunc(Duration::minutes(1)).unwrap();
    let cutoff = m + Duration::seconds(30);
    let offsets = [
        Duration::days(-2),     // a day dropped whole, with its minutes
        Duration::seconds(-55), // the minute before, emptied row by row
        Duration::seconds(1),   // before the cut-off, inside m
        Duration::microseconds(29_999_999),
        Duration::seconds(30), // from the cut-off on, kept
        Duration::seconds(45),
        Duration::seconds(61),
    ];
    let events: Vec<Event> = offsets.iter().map(|offset| event("cut", m + *offset, "e")).collect();
    store.write_batch(&refs(&events[..3])).await.unwrap();
    store.write_batch(&refs(&events)).await.expect("a replay of three plus the rest");
    let cutoffs = RetentionCutoffs { events: cutoff, dead_letters: cutoff, rollup: cutoff };
    let report = store.apply_retention(&cutoffs).await.unwrap();
    assert!(report.ran && report.skipped.is_empty(), "{report:?}");

    assert_eq!(database.count(events_per_minute_match_counts_sql()).await, 0, "the minutes equal the rows left");
    assert_eq!(database.count(events_per_hour_match_counts_sql()).await, 0, "and so do the hours");
    assert_eq!(database.count("SELECT count(*) AS n FROM event_counts_minute WHERE events <= 0").await, 0);
    let (from, to) = (m - Duration::minutes(3), m + Duration::minutes(3));
    assert_eq!(store.query(&query("cut", from, to, 1, SortOrder::Asc)).await.unwrap().total, Some(3));
    let histogram = store.histogram(&histogram_query("cut", from, to, "1m")).await.unwrap();
    let counts: Vec<u64> = histogram.buckets.iter().map(|bucket| bucket.count).collect();
    assert_eq!(counts, [0, 0, 0, 2, 1, 0, 0], "from m − 3 to m + 3, minute by minute");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_reader_makes_retention_skip_the_day_not_freeze_ingest() {
    use aurore_domain::RetentionStore;
    use diesel_async::RunQueryDsl;
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let now = Utc::now().trunc_subsecs(6);
    let today = now.date_naive();
    store.ensure_partitions(today - Duration::days(32), today).await.unwrap();
    let old: Vec<Event> = [31, 32].iter().map(|days| event("old", now - Duration::days(*days), "e")).collect();
    store.write_batch(&refs(&old)).await.unwrap();
    let cutoffs = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 30 }.cutoffs(now);
    let old_partitions: Vec<String> =
        [32, 31].iter().map(|days| format!("events_p{}", (today - Duration::days(*days)).format("%Y%m%d"))).collect();

    // A long reader (an export, a report) holds its snapshot of `events` open.
    let mut reader = database.connection().await;
    diesel::sql_query("BEGIN").execute(&mut reader).await.unwrap();
    diesel::sql_query("SELECT count(*) FROM events").execute(&mut reader).await.unwrap();

    let run = {
        let store = store.clone();
        tokio::spawn(async move { store.apply_retention(&cutoffs).await })
    };
    // Once retention waits for its lock on `events`, ingest still lands.
    let waiting = "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                   WHERE NOT l.granted AND c.relname = 'events'";
    crate::support::poll(std::time::Duration::from_secs(10), || database.count(waiting), |n| *n > 0).await;
    let fresh = event("fresh", now, "written while retention runs");
    tokio::time::timeout(std::time::Duration::from_secs(5), store.write_batch(&[&fresh]))
        .await
        .expect("ingest is not frozen behind retention")
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("retention does not wait for the reader")
        .unwrap()
        .unwrap();
    assert!(report.ran);
    assert_eq!(report.skipped, old_partitions, "{report:?}");
    assert!(report.partitions_dropped.is_empty(), "{report:?}");
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 3, "nothing was lost or half-dropped");
    assert_eq!(database.count(events_per_hour_match_counts_sql()).await, 0, "event_counts equals the rows per hour");

    // Once the reader is done, the next run drops what this one skipped.
    drop(reader);
    let report = store.apply_retention(&cutoffs).await.unwrap();
    assert_eq!(report.partitions_dropped, old_partitions, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(database.count(events_per_hour_match_counts_sql()).await, 0, "event_counts equals the rows per hour");
}

#[tokio::test]
async fn retention_skips_while_another_replica_holds_the_lock() {
    use aurore_domain::RetentionStore;
    use diesel_async::RunQueryDsl;
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let mut other_replica = database.connection().await;
    diesel::sql_query("SELECT pg_advisory_lock(hashtext('aurore_retention'))")
        .execute(&mut other_replica)
        .await
        .unwrap();
    let cutoffs = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 30 }.cutoffs(Utc::now());
    let report = store.apply_retention(&cutoffs).await.unwrap();
    assert!(!report.ran, "{report:?}");
    diesel::sql_query("SELECT pg_advisory_unlock(hashtext('aurore_retention'))")
        .execute(&mut other_replica)
        .await
        .unwrap();
    assert!(store.apply_retention(&cutoffs).await.unwrap().ran);
}

#[tokio::test]
async fn large_metadata_is_stored_lz4_compressed_and_still_queryable() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let today = Utc::now().date_naive();
    // A partition created after the migration copies the setting.
    store.ensure_partitions(today - Duration::days(5), today).await.unwrap();
    let note: String = (0..200).map(|i| format!("retry {i} after upstream timeout; ")).collect();
    let mut events = Vec::new();
    for age in [0, 5] {
        let mut event = event("compressed", Utc::now() - Duration::days(age), "large metadata");
        event.metadata = Some(json!({"region": "eu", "note": note}));
        events.push(event);
    }
    store.write_batch(&refs(&events)).await.unwrap();
    let lz4 = database
        .count("SELECT count(*) AS n FROM events WHERE pg_column_compression(metadata) = 'lz4' AND metadata @> '{\"region\": \"eu\"}'")
        .await;
    assert_eq!(lz4, 2);
}

/// Heap rows fetched through the event partitions' indexes by what `run` does with a
/// store of its own. Its connections close when it is dropped, and a closing backend
/// publishes its statistics at once: polled until they move.
async fn index_rows_fetched<F, Fut>(database: &TestDatabase, run: F) -> i64
where
    F: FnOnce(PostgresStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sql =
        "SELECT coalesce(sum(idx_tup_fetch), 0)::int8 AS n FROM pg_stat_user_tables WHERE relname LIKE 'events_%'";
    let before = database.count(sql).await;
    run(pools(database)).await;
    crate::support::poll(std::time::Duration::from_secs(10), || database.count(sql), |fetched| *fetched > before).await
        - before
}

#[tokio::test]
async fn a_cursor_page_a_thousand_pages_deep_reads_only_its_own_rows() {
    let database = TestDatabase::create().await;
    let start = Utc::now().trunc_subsecs(6) - Duration::hours(1);
    let events: Vec<Event> = (0..2_100).map(|i| event("deep", start + Duration::milliseconds(i), "m")).collect();
    let mut query = query("deep", start, start + Duration::hours(1), 1000, SortOrder::Asc);
    {
        let store = store(&database).await;
        store.write_batch(&refs(&events)).await.unwrap();
        // Keyset pages from the start, two of 1,000: the cursor is 2,000 rows in.
        query.cursor = query.cursor_before_first();
        for _ in 0..2 {
            let page = store.query(&query).await.unwrap();
            query.cursor = page.next_cursor(&query);
        }
    }
    // With pages of 2, that is page 1,001.
    query.page_size = 2;
    let deep = query.clone();
    let by_cursor = index_rows_fetched(&database, |store| async move {
        let page = store.query(&deep).await.unwrap();
        assert_eq!(page.events[0].event.id, events[2000].id);
    })
    .await;
    let mut by_page = query.clone();
    by_page.cursor = None;
    by_page.page = 1001;
    let by_offset = index_rows_fetched(&database, |store| async move {
        store.query(&by_page).await.unwrap();
    })
    .await;
    assert!(by_cursor <= 10, "a cursor page reads its rows and one more, not the 2,000 before it: {by_cursor}");
    assert!(by_offset >= 2000, "an OFFSET page walks every row before it: {by_offset}");
}

#[tokio::test]
async fn a_longer_rollup_window_keeps_business_history_after_the_events_go() {
    use aurore_domain::RetentionStore;
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let now = Utc::now().trunc_subsecs(6);
    let today = now.date_naive();
    store.ensure_partitions(today - Duration::days(40), today).await.unwrap();
    let events: Vec<Event> =
        [0, 10, 35, 39].iter().map(|days| event("kept", now - Duration::days(*days), "e")).collect();
    store.write_batch(&refs(&events)).await.unwrap();

    let policy = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 37 };
    let report = store.apply_retention(&policy.cutoffs(now)).await.unwrap();
    assert!(report.ran);
    assert_eq!(database.count("SELECT count(*) AS n FROM events").await, 2, "events older than 30 days are gone");
    let counted = database.count("SELECT coalesce(sum(events), 0)::int8 AS n FROM event_counts").await;
    assert_eq!(counted, 3, "the 35-day-old event is still counted; the 39-day-old one is past the rollup window");
    let business = store.business_metrics(now).await.unwrap();
    assert_eq!(business.total_events, 3);
    assert_eq!(
        database.count(events_per_minute_match_counts_sql()).await,
        0,
        "the minutes follow the rows even while the hours keep history"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_reaching_before_the_event_window_totals_only_the_rows_left() {
    use aurore_domain::RetentionStore;
    // The rollup keeps the 35-day-old event's hour as history after its row is gone.
    let policy = RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 37 };
    let database = TestDatabase::create().await;
    let store = store_under(&database, policy).await;
    let now = Utc::now().trunc_subsecs(6);
    let today = now.date_naive();
    store.ensure_partitions(today - Duration::days(40), today).await.unwrap();
    let events: Vec<Event> = [0, 10, 35].iter().map(|days| event("window", now - Duration::days(*days), "e")).collect();
    store.write_batch(&refs(&events)).await.unwrap();
    assert!(store.apply_retention(&policy.cutoffs(now)).await.unwrap().ran);
    // A row older than the window that the next run will remove still counts while it exists.
    let late = event("window", now - Duration::days(30) - Duration::hours(2), "not yet removed");
    store.write_batch(&[&late]).await.unwrap();

    let (from, to) = (now - Duration::days(36), now + Duration::minutes(1));
    for order in [SortOrder::Desc, SortOrder::Asc] {
        let page = store.query(&query("window", from, to, 1, order)).await.unwrap();
        let mut walked = query("window", from, to, 1, order);
        walked.cursor = walked.cursor_before_first();
        let rows = walk(&store, walked).await.len() as u64;
        assert_eq!(rows, 3);
        assert_eq!(page.total, Some(rows), "total counts the rows one can page through, not expired history");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_between_count_and_page_never_makes_total_disagree_with_the_rows() {
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let now = Utc::now().trunc_subsecs(6);
    let (from, to) = (now - Duration::hours(3), now + Duration::minutes(1));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                let at = from + Duration::seconds(i * 17 % 10_000);
                store.write_batch(&[&event("racing", at, "m")]).await.unwrap();
            }
        })
    };
    let mut filtered = query("racing", from, to, 1000, SortOrder::Desc);
    filtered.filter = aurore_domain::Filter::parse("m").unwrap();
    let mut checked = 0;
    while !writer.is_finished() {
        for query in [query("racing", from, to, 1000, SortOrder::Desc), filtered.clone()] {
            let page = store.query(&query).await.unwrap();
            assert!(!page.has_more);
            assert_eq!(page.total, Some(page.events.len() as u64), "total and page read one snapshot");
            checked += 1;
        }
    }
    writer.await.unwrap();
    assert!(checked > 20, "the reader raced the writer: {checked} pages");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sort_without_an_index_is_refused_over_a_range_holding_more_than_the_limit() {
    use aurore_domain::QueryError;
    let database = TestDatabase::create().await;
    let store = store(&database).await;
    let start = Utc::now().trunc_subsecs(6) - Duration::hours(5);
    let events: Vec<Event> =
        (0..30).map(|i| event("sorted", start + Duration::minutes(9 * i), &format!("m{i:02}"))).collect();
    store.write_batch(&refs(&events)).await.unwrap();
    let (from, to) = (start, start + Duration::hours(5));
    let sorted = |field: SortField, limit: u64| EventQuery {
        sort_field: field,
        max_sorted_rows: limit,
        ..query("sorted", from, to, 5, SortOrder::Asc)
    };

    for field in [SortField::Message, SortField::Service, SortField::IngestedAt, SortField::CreatedAt] {
        let page = store.query(&sorted(field, 30)).await.expect("exactly the limit");
        assert_eq!(page.total, Some(30));
        let mut cursor_page = sorted(field, 29);
        cursor_page.cursor = page.next_cursor(&sorted(field, 30));
        let mut filtered = sorted(field, 29);
        filtered.filter = aurore_domain::Filter::parse("m0").unwrap();
        for refused in [sorted(field, 29), cursor_page, filtered] {
            match store.query(&refused).await {
                Err(QueryError::TooManyToSort { sort_field, limit: 29 }) => assert_eq!(sort_field, field),
                other => panic!("{field:?} over 29 events: {other:?}"),
            }
        }
    }
    // The index serves a timestamp sort whatever the range holds.
    let page = store.query(&sorted(SortField::Timestamp, 1)).await.unwrap();
    assert_eq!(page.total, Some(30));
}
