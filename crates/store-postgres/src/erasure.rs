//! Erasure. Recording an erasure and writing a batch exclude each other through one
//! advisory lock: writers hold it shared for their transaction and read the erasures
//! recorded since they last looked once they have it; an erasure is recorded under it
//! held exclusively. A batch in flight when an erasure is recorded is therefore committed
//! before the record, and deleted with the rest; a batch after it sees the record and
//! leaves out what it selects. The deletion runs in one transaction with the counts and
//! the record's completion, so the counts stay equal to the rows.

use crate::filter::{Bound, compile};
use crate::retention::delete_counted;
use crate::{PostgresStore, error};
use async_trait::async_trait;
use aurore_domain::{Erasure, ErasureRecord, ErasureStore, Event, Filter, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Instant;
use tokio_postgres::types::ToSql;

const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('aurore_erasures'))";
pub(crate) const SHARED_LOCK: &str = "SELECT pg_advisory_xact_lock_shared(hashtext('aurore_erasures'))";
const LATEST: &str = "SELECT coalesce(max(id), 0) FROM erasures";
const SINCE: &str =
    "SELECT id, requested_at, service, range_from, range_to, filter FROM erasures WHERE id > $1 ORDER BY id";
const RECORD: &str = "INSERT INTO erasures (requested_at, service, range_from, range_to, filter, key_digest) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
const COMPLETE: &str =
    "UPDATE erasures SET events = $2, dead_letters = $3, completed_at = $4, took_ms = $5 WHERE id = $1";
const LIST: &str = "SELECT id, requested_at, service, range_from, range_to, filter, key_digest, events, \
     dead_letters, completed_at, took_ms FROM erasures ORDER BY id DESC LIMIT $1";
const DEAD_LETTERS: &str = "SELECT id, original_event FROM dead_letters WHERE $1::text IS NULL OR service = $1";
const DELETE_DEAD_LETTERS: &str = "DELETE FROM dead_letters WHERE id = ANY($1)";

/// The erasures this process has read, and the newest id among them.
#[derive(Debug, Default)]
pub(crate) struct Known {
    latest: i64,
    erasures: Vec<(DateTime<Utc>, Erasure)>,
}

/// In a writer's transaction, before it writes: takes the lock shared (so no erasure is
/// recorded until the transaction ends), reads the erasures recorded since last time, and
/// returns the events none of them removes: those ingested after it, or that it does not select.
pub(crate) async fn unerased<'a>(
    transaction: &tokio_postgres::Transaction<'_>,
    known: &Mutex<Known>,
    events: &[&'a Event],
) -> Result<Vec<&'a Event>, tokio_postgres::Error> {
    transaction.execute(SHARED_LOCK, &[]).await?;
    let latest: i64 = transaction.query_one(LATEST, &[]).await?.get(0);
    let seen = lock(known).latest;
    if latest > seen {
        let rows = transaction.query(SINCE, &[&seen]).await?;
        let mut known = lock(known);
        for row in rows {
            let id: i64 = row.get(0);
            if id <= known.latest {
                continue;
            }
            known.latest = id;
            let text: String = row.get(5);
            match Filter::parse(&text) {
                Ok(Some(filter)) => known
                    .erasures
                    .push((row.get(1), Erasure { service: row.get(2), from: row.get(3), to: row.get(4), filter })),
                // Only this module writes the column, from a parsed filter's canonical spelling.
                _ => tracing::error!(id, filter = %text, "an erasure's filter does not parse; it is not applied"),
            }
        }
    }
    let known = lock(known);
    let Some(oldest) = events.iter().map(|event| event.ingested_at).min() else { return Ok(Vec::new()) };
    // Erasures recorded before every event here was ingested remove none of them. Ids
    // follow the order of recording, not of `requested_at`, so every one is looked at.
    let relevant: Vec<&(DateTime<Utc>, Erasure)> =
        known.erasures.iter().filter(|(requested_at, _)| *requested_at >= oldest).collect();
    if relevant.is_empty() {
        return Ok(events.to_vec());
    }
    Ok(events
        .iter()
        .copied()
        .filter(|event| {
            !relevant.iter().any(|(requested_at, erasure)| event.ingested_at <= *requested_at && erasure.matches(event))
        })
        .collect())
}

fn lock(known: &Mutex<Known>) -> std::sync::MutexGuard<'_, Known> {
    // The lists inside stay consistent whatever panicked while holding it.
    known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The WHERE condition of an erasure over `events`, and what its placeholders bind.
fn condition(erasure: &Erasure, requested_at: DateTime<Utc>) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(requested_at)];
    let mut sql = "ingested_at <= $1".to_owned();
    if let Some(service) = &erasure.service {
        params.push(Box::new(service.clone()));
        sql.push_str(&format!(" AND service = ${}", params.len()));
    }
    for (bound, operator) in [(erasure.from, ">="), (erasure.to, "<=")] {
        if let Some(instant) = bound {
            params.push(Box::new(instant));
            sql.push_str(&format!(r#" AND "timestamp" {operator} ${}"#, params.len()));
        }
    }
    let mut next = params.len() + 1;
    let mut bound = Vec::new();
    sql.push_str(&format!(" AND ({})", compile(&erasure.filter, &mut next, &mut bound)));
    params.extend(bound.into_iter().map(|value| -> Box<dyn ToSql + Sync + Send> {
        match value {
            Bound::Text(text) => Box::new(text),
            Bound::Jsonbs(values) => Box::new(values),
            Bound::Path(keys) => Box::new(keys),
        }
    }));
    (sql, params)
}

fn record(row: &tokio_postgres::Row) -> ErasureRecord {
    let count = |index: usize| row.get::<_, Option<i64>>(index).map(i64::unsigned_abs);
    ErasureRecord {
        id: row.get(0),
        requested_at: row.get(1),
        service: row.get(2),
        from: row.get(3),
        to: row.get(4),
        filter: row.get(5),
        key_digest: row.get(6),
        events: count(7),
        dead_letters: count(8),
        completed_at: row.get(9),
        took_ms: count(10),
    }
}

#[async_trait]
impl ErasureStore for PostgresStore {
    #[tracing::instrument(name = "db.erase", skip_all, fields(db.system = "postgresql"))]
    async fn erase(
        &self,
        erasure: &Erasure,
        requested_at: DateTime<Utc>,
        key_digest: &str,
    ) -> Result<ErasureRecord, StoreError> {
        let started = Instant::now();
        let mut client = self.upkeep_client().await?;
        let filter = erasure.filter.to_string();
        let recorded = client.transaction().await.map_err(error::from_postgres)?;
        recorded.execute(LOCK, &[]).await.map_err(error::from_postgres)?;
        let id: i64 = recorded
            .query_one(RECORD, &[&requested_at, &erasure.service, &erasure.from, &erasure.to, &filter, &key_digest])
            .await
            .map_err(error::from_postgres)?
            .get(0);
        recorded.commit().await.map_err(error::from_postgres)?;

        let deletion = client.transaction().await.map_err(error::from_postgres)?;
        let (sql, params) = condition(erasure, requested_at);
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| param.as_ref() as _).collect();
        let events = delete_counted(&deletion, "events", &sql, &params, true).await.map_err(error::from_postgres)?;
        let letters: Vec<uuid::Uuid> = deletion
            .query(DEAD_LETTERS, &[&erasure.service])
            .await
            .map_err(error::from_postgres)?
            .iter()
            .filter(|row| serde_json::from_str::<Event>(row.get(1)).is_ok_and(|event| erasure.matches(&event)))
            .map(|row| row.get(0))
            .collect();
        if !letters.is_empty() {
            deletion.execute(DELETE_DEAD_LETTERS, &[&letters]).await.map_err(error::from_postgres)?;
        }
        let took_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let completed_at = Utc::now();
        let (events, dead_letters) = (events as i64, letters.len() as i64);
        deletion
            .execute(COMPLETE, &[&id, &events, &dead_letters, &completed_at, &took_ms])
            .await
            .map_err(error::from_postgres)?;
        deletion.commit().await.map_err(error::from_postgres)?;
        Ok(ErasureRecord {
            id,
            requested_at,
            service: erasure.service.clone(),
            from: erasure.from,
            to: erasure.to,
            filter,
            key_digest: key_digest.to_owned(),
            events: Some(events.unsigned_abs()),
            dead_letters: Some(dead_letters.unsigned_abs()),
            completed_at: Some(completed_at),
            took_ms: Some(took_ms.unsigned_abs()),
        })
    }

    async fn erasures(&self, limit: u32) -> Result<Vec<ErasureRecord>, StoreError> {
        let client = self.upkeep_client().await?;
        let rows = client.query(LIST, &[&i64::from(limit)]).await.map_err(error::from_postgres)?;
        Ok(rows.iter().map(record).collect())
    }
}
