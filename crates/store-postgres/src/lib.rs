//! The PostgreSQL adapter behind the domain's [`EventStore`] port.
//!
//! Batches go in with binary `COPY` over tokio-postgres (diesel-async has no COPY), which
//! is several times faster than multi-row INSERT; everything else (queries, migrations,
//! partition upkeep, health) goes through diesel-async. Driver errors become
//! [`StoreError`]s here and nowhere else. This crate knows SQL; no other crate does.

mod dead_letters;
mod error;
mod page;
mod schema;

use async_trait::async_trait;
use aurore_domain::{ConnectionStats, Event, EventPage, EventQuery, EventStore, StoreError};
use chrono::NaiveDate;
use diesel::sql_types::{BigInt, Date};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

pub use error::SetupError;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// How to reach PostgreSQL and how many connections to hold.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub url: String,
    /// Connections for queries, health checks and upkeep.
    pub query_connections: usize,
    /// Connections for batch writes: one per writer is enough.
    pub write_connections: usize,
    pub connect_timeout: Duration,
    /// Server-side limit on one query, so a runaway query is cancelled, not abandoned.
    pub query_timeout: Duration,
}

/// PostgreSQL storage for events.
#[derive(Clone)]
pub struct PostgresStore {
    queries: Pool<AsyncPgConnection>,
    writes: deadpool_postgres::Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("queries", &self.queries.status())
            .field("writes", &self.writes.status())
            .finish()
    }
}

#[derive(diesel::Insertable)]
#[diesel(table_name = schema::events)]
struct NewEvent<'a> {
    id: &'a uuid::Uuid,
    timestamp: &'a chrono::DateTime<chrono::Utc>,
    service: &'a str,
    message: &'a str,
    metadata: Option<&'a serde_json::Value>,
    ingested_at: &'a chrono::DateTime<chrono::Utc>,
}

impl<'a> From<&'a Event> for NewEvent<'a> {
    fn from(event: &'a Event) -> Self {
        Self {
            id: event.id.as_uuid(),
            timestamp: &event.timestamp,
            service: &event.service,
            message: &event.message,
            metadata: event.metadata.as_ref(),
            ingested_at: &event.ingested_at,
        }
    }
}

const COPY_EVENTS: &str =
    r#"COPY events (id, "timestamp", service, message, metadata, ingested_at) FROM STDIN (FORMAT binary)"#;
const COPY_TYPES: [Type; 6] = [Type::UUID, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT, Type::JSONB, Type::TIMESTAMPTZ];

impl PostgresStore {
    /// Builds the pools. Connections open lazily, so this succeeds while the database is down.
    pub fn connect(settings: &PostgresSettings) -> Result<Self, SetupError> {
        let base = tokio_postgres::Config::from_str(&settings.url).map_err(SetupError::InvalidUrl)?;
        let wait = Some(settings.connect_timeout);

        let mut write_config = base.clone();
        write_config.application_name("aurore-writer").connect_timeout(settings.connect_timeout);
        let manager = deadpool_postgres::Manager::from_config(
            write_config,
            NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let writes = deadpool_postgres::Pool::builder(manager)
            .max_size(settings.write_connections.max(1))
            .wait_timeout(wait)
            .create_timeout(wait)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| SetupError::Pool(error.to_string()))?;

        let mut query_config = base;
        query_config
            .application_name("aurore")
            .connect_timeout(settings.connect_timeout)
            .options(format!("-c statement_timeout={}", settings.query_timeout.as_millis()));
        let mut manager_config = ManagerConfig::default();
        manager_config.custom_setup = Box::new(move |_url| {
            let config = query_config.clone();
            Box::pin(async move {
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            })
        });
        let manager = AsyncDieselConnectionManager::new_with_config(settings.url.clone(), manager_config);
        let queries = Pool::builder(manager)
            .max_size(settings.query_connections.max(1))
            .wait_timeout(wait)
            .create_timeout(wait)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| SetupError::Pool(error.to_string()))?;
        Ok(Self { queries, writes })
    }

    /// Applies pending migrations from `migrations/`; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, SetupError> {
        let connection = self.queries.get().await.map_err(|error| SetupError::Migration(error.to_string()))?;
        let connection = deadpool::managed::Object::take(connection);
        // The harness is synchronous and blocks on the async connection, so it gets a thread.
        tokio::task::spawn_blocking(move || {
            let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(connection);
            wrapper.run_pending_migrations(MIGRATIONS).map(|applied| applied.len())
        })
        .await
        .map_err(|error| SetupError::Migration(error.to_string()))?
        .map_err(|error| SetupError::Migration(error.to_string()))
    }

    /// Makes sure a partition exists for every UTC day in `first..=last`; returns how many
    /// it created.
    pub async fn ensure_partitions(&self, first: NaiveDate, last: NaiveDate) -> Result<u64, StoreError> {
        #[derive(diesel::QueryableByName)]
        struct Created {
            #[diesel(sql_type = BigInt)]
            created: i64,
        }
        let mut connection = self.query_connection().await?;
        let created: Created = diesel::sql_query(
            "SELECT count(*) FILTER (WHERE aurore_ensure_event_partition(day::date)) AS created \
             FROM generate_series($1::date, $2::date, interval '1 day') AS day",
        )
        .bind::<Date, _>(first)
        .bind::<Date, _>(last)
        .get_result(&mut connection)
        .await
        .map_err(error::from_diesel)?;
        Ok(created.created.unsigned_abs())
    }

    /// `INSERT … ON CONFLICT DO NOTHING` in one transaction, in chunks that stay under
    /// PostgreSQL's 65,535 bind parameters per statement.
    async fn insert_skipping_stored(&self, events: &[&Event]) -> Result<(), StoreError> {
        const ROWS_PER_STATEMENT: usize = 5_000;
        let rows: Vec<NewEvent<'_>> = events.iter().map(|event| NewEvent::from(*event)).collect();
        let mut connection = self.query_connection().await?;
        connection
            .transaction(async |connection| {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    diesel::insert_into(schema::events::table)
                        .values(chunk)
                        .on_conflict_do_nothing()
                        .execute(connection)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .await
            .map_err(error::from_diesel)
    }

    pub(crate) async fn query_connection(
        &self,
    ) -> Result<deadpool::managed::Object<AsyncDieselConnectionManager<AsyncPgConnection>>, StoreError> {
        self.queries.get().await.map_err(|error| StoreError::Unavailable(error.to_string()))
    }
}

/// The fast path: one binary COPY, which commits whole or not at all.
async fn copy(client: &tokio_postgres::Client, events: &[&Event]) -> Result<(), tokio_postgres::Error> {
    let sink = client.copy_in(COPY_EVENTS).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut writer = std::pin::pin!(writer);
    for event in events {
        writer
            .as_mut()
            .write(&[
                event.id.as_uuid(),
                &event.timestamp,
                &event.service,
                &event.message,
                &event.metadata,
                &event.ingested_at,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn write_batch(&self, events: &[&Event]) -> Result<(), StoreError> {
        let client = self.writes.get().await.map_err(|error| StoreError::Unavailable(error.to_string()))?;
        match copy(&client, events).await {
            Err(copy_error) if copy_error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Some events are already stored (a journal replay or a client retry):
                // the slower path skips them.
                tracing::debug!(events = events.len(), "batch holds stored events; inserting the rest");
                self.insert_skipping_stored(events).await
            }
            result => result.map_err(error::from_postgres),
        }
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let mut connection = self.query_connection().await?;
        let total = match query.cursor {
            Some(_) => None,
            None => Some(
                schema::events::table
                    .filter(schema::events::service.eq(&query.service))
                    .filter(schema::events::timestamp.between(query.from, query.to))
                    .count()
                    .get_result::<i64>(&mut connection)
                    .await
                    .map_err(error::from_diesel)?
                    .unsigned_abs(),
            ),
        };
        let (events, has_more) = page::fetch(&mut connection, query).await?;
        Ok(EventPage { events, total, has_more })
    }

    fn connections(&self) -> ConnectionStats {
        let queries = self.queries.status();
        let writes = self.writes.status();
        ConnectionStats {
            active: (queries.size - queries.available) + (writes.size - writes.available),
            idle: queries.available + writes.available,
            waiting: queries.waiting + writes.waiting,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.query_connection().await?;
        diesel::sql_query("SELECT 1").execute(&mut connection).await.map_err(error::from_diesel)?;
        Ok(())
    }
}
