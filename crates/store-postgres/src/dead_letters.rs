//! The dead-letter store on PostgreSQL.

use crate::schema::dead_letters::dsl;
use crate::{PostgresStore, error};
use async_trait::async_trait;
use aurore_domain::{
    DeadLetter, DeadLetterAdmin, DeadLetterFilter, DeadLetterSink, DeadLetterStats, Event, StoreError,
};
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::{BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

#[derive(diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = crate::schema::dead_letters)]
struct Row {
    id: Uuid,
    original_event: String,
    failure_reason: String,
    retry_count: i32,
    last_attempt_at: DateTime<Utc>,
    reprocessed: bool,
    reprocessed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for DeadLetter {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self, StoreError> {
        let event: Event = serde_json::from_str(&row.original_event).map_err(|e| {
            StoreError::rejected(format!("dead letter {} holds an unreadable event: {e}", row.id), Some(e.into()))
        })?;
        Ok(DeadLetter {
            id: row.id,
            event,
            reason: row.failure_reason,
            attempts: row.retry_count.unsigned_abs(),
            last_attempt_at: row.last_attempt_at,
            reprocessed: row.reprocessed,
            reprocessed_at: row.reprocessed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Text columns refuse NUL; the exact value survives in `original_event`.
fn printable(text: &str) -> String {
    text.replace('\u{0}', "\u{FFFD}")
}

#[async_trait]
impl DeadLetterSink for PostgresStore {
    async fn put(&self, event: &Event, reason: &str, attempts: u32) -> Result<(), StoreError> {
        use diesel::sql_types::{Integer, Text, Timestamptz, Uuid as SqlUuid};
        let original = serde_json::to_string(event).map_err(|e| StoreError::rejected(e.to_string(), Some(e.into())))?;
        let mut connection = self.query_connection().await?;
        // A pending entry for the event means this is a replay of the same failure: it
        // only touches `updated_at`, which tells a reprocess racing with it that the
        // event failed again (see `mark_reprocessed`).
        diesel::sql_query(
            "INSERT INTO dead_letters (id, event_id, service, original_event, failure_reason, retry_count, \
             last_attempt_at, original_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (event_id) WHERE NOT reprocessed DO UPDATE SET updated_at = clock_timestamp()",
        )
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<SqlUuid, _>(event.id.as_uuid())
        .bind::<Text, _>(printable(&event.service))
        .bind::<Text, _>(original)
        .bind::<Text, _>(printable(reason))
        .bind::<Integer, _>(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind::<Timestamptz, _>(Utc::now())
        .bind::<Timestamptz, _>(event.timestamp)
        .execute(&mut connection)
        .await
        .map_err(error::from_diesel)?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetterAdmin for PostgresStore {
    async fn list(&self, filter: &DeadLetterFilter) -> Result<(Vec<DeadLetter>, u64), StoreError> {
        let matching = || {
            let mut query = dsl::dead_letters.into_boxed();
            if let Some(service) = &filter.service {
                query = query.filter(dsl::service.eq(service.clone()));
            }
            if let Some(reprocessed) = filter.reprocessed {
                query = query.filter(dsl::reprocessed.eq(reprocessed));
            }
            query
        };
        let mut connection = self.query_connection().await?;
        let total: i64 =
            matching().select(count_star()).get_result(&mut connection).await.map_err(error::from_diesel)?;
        let rows: Vec<Row> = matching()
            .select(Row::as_select())
            .order((dsl::created_at.desc(), dsl::id.desc()))
            .limit(i64::from(filter.limit))
            .offset(i64::try_from(filter.offset).unwrap_or(i64::MAX))
            .load(&mut connection)
            .await
            .map_err(error::from_diesel)?;
        let entries = rows.into_iter().map(DeadLetter::try_from).collect::<Result<_, _>>()?;
        Ok((entries, total.unsigned_abs()))
    }

    async fn stats(&self) -> Result<DeadLetterStats, StoreError> {
        let mut connection = self.query_connection().await?;
        let by_service: Vec<(String, i64)> = dsl::dead_letters
            .group_by(dsl::service)
            .select((dsl::service, count_star()))
            .load(&mut connection)
            .await
            .map_err(error::from_diesel)?;
        let reprocessed: i64 = dsl::dead_letters
            .filter(dsl::reprocessed.eq(true))
            .select(count_star())
            .get_result(&mut connection)
            .await
            .map_err(error::from_diesel)?;
        let oldest_event: Option<DateTime<Utc>> = dsl::dead_letters
            .filter(dsl::reprocessed.eq(false))
            .select(diesel::dsl::min(dsl::created_at))
            .get_result(&mut connection)
            .await
            .map_err(error::from_diesel)?;
        let total: u64 = by_service.iter().map(|(_, count)| count.unsigned_abs()).sum();
        let reprocessed = reprocessed.unsigned_abs();
        Ok(DeadLetterStats {
            total,
            by_service: by_service.into_iter().map(|(service, count)| (service, count.unsigned_abs())).collect(),
            reprocessed,
            pending: total - reprocessed,
            oldest_event,
        })
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        let mut connection = self.query_connection().await?;
        let row: Option<Row> = dsl::dead_letters
            .find(id)
            .select(Row::as_select())
            .first(&mut connection)
            .await
            .optional()
            .map_err(error::from_diesel)?;
        row.map(DeadLetter::try_from).transpose()
    }

    async fn mark_reprocessed(&self, id: Uuid, seen: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut connection = self.query_connection().await?;
        let now = Utc::now();
        let unchanged = dsl::id.eq(id).and(dsl::reprocessed.eq(false)).and(dsl::updated_at.eq(seen));
        let updated = diesel::update(dsl::dead_letters.filter(unchanged))
            .set((dsl::reprocessed.eq(true), dsl::reprocessed_at.eq(now), dsl::updated_at.eq(now)))
            .execute(&mut connection)
            .await
            .map_err(error::from_diesel)?;
        Ok(updated == 1)
    }

    async fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
        let mut connection = self.query_connection().await?;
        let deleted =
            diesel::delete(dsl::dead_letters.find(id)).execute(&mut connection).await.map_err(error::from_diesel)?;
        Ok(deleted == 1)
    }
}
