//! The PostgreSQL adapter behind the domain's storage ports: [`EventSink`], [`EventReader`],
//! [`StoreHealth`], [`DeadLetterSink`](aurore_domain::DeadLetterSink) and
//! [`DeadLetterAdmin`](aurore_domain::DeadLetterAdmin).
//!
//! Batches go in with binary `COPY` over tokio-postgres (diesel-async has no COPY), which
//! is several times faster than multi-row INSERT; queries, migrations and health go through
//! diesel-async; upkeep (partitions, retention) opens a connection of its own for each
//! pass, so it never holds a writer's or a query's slot. All three connect alike, with TLS
//! by libpq's `sslmode` (`tls.rs`). Driver errors become
//! [`StoreError`]s here and nowhere else. This crate knows SQL; no other crate does.

mod conninfo;
mod counts;
mod dead_letters;
mod erasure;
mod error;
mod filter;
mod page;
mod partitions;
mod retention;
mod schema;
mod tls;

use async_trait::async_trait;
use aurore_domain::{
    BusinessMetrics, ConnectionStats, Event, EventPage, EventQuery, EventReader, EventSink, Histogram, HistogramQuery,
    QueryError, ReplicaState, RetentionPolicy, ServiceSummary, SortField, StoreError, StoreHealth,
};
use chrono::{DateTime, Utc};

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use conninfo::redact;
pub use error::SetupError;
pub use partitions::{PartitionFailure, PartitionReport};
pub use tls::SslMode;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// How to reach PostgreSQL and how many connections to hold.
#[derive(Clone)]
pub struct PostgresSettings {
    /// A URL or key/value connection string; it may carry `sslmode` and `sslrootcert`.
    pub url: String,
    /// A streaming replica for what people read (pages, exports, histograms, counts and
    /// the service list), in the same forms as `url`; `None` reads from `url`.
    pub read_url: Option<String>,
    /// Overrides the connection string's `sslmode`; both unset means `prefer`, as libpq.
    pub sslmode: Option<SslMode>,
    /// PEM root certificates for `verify-ca`/`verify-full`; overrides `sslrootcert`.
    pub sslrootcert: Option<PathBuf>,
    /// Connections for queries, health checks and upkeep.
    pub query_connections: usize,
    /// Connections for batch writes: one per writer is enough.
    pub write_connections: usize,
    pub connect_timeout: Duration,
    /// Server-side limit on one query, so a runaway query is cancelled, not abandoned.
    pub query_timeout: Duration,
    /// Where events end and the hourly counts' history begins: with a rollup longer than
    /// event retention, totals count the hours past the event window from the minutes,
    /// which follow the rows left.
    pub retention: RetentionPolicy,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &redact(&self.url))
            .field("read_url", &self.read_url.as_deref().map(redact))
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("query_connections", &self.query_connections)
            .field("write_connections", &self.write_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("retention", &self.retention)
            .finish()
    }
}

/// Upkeep waits at most this long for a lock. While a DDL statement waits for its lock on
/// `events`, every writer and reader queues behind it; a short wait means a busy table makes
/// upkeep skip a day, never ingest stall.
pub(crate) const SET_UPKEEP_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '1s'";
/// Bounds one upkeep statement. Deleting the day that straddles the retention cut-off
/// may take minutes on a big day; this only stops a run that would never end.
const UPKEEP_STATEMENT_TIMEOUT: &str = "-c statement_timeout=600000";

type PooledConnection = deadpool::managed::Object<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// PostgreSQL storage for events.
#[derive(Clone)]
pub struct PostgresStore {
    /// On the primary: dead letters, health, migrations, and reads without a replica.
    queries: Pool<AsyncPgConnection>,
    /// What [`EventReader`] reads from: the replica's pool, or `queries` itself.
    reads: Pool<AsyncPgConnection>,
    /// Whether `reads` is a replica's.
    replica: bool,
    writes: deadpool_postgres::Pool,
    /// How upkeep connects: its own connection per pass, never one of the pools'.
    upkeep: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    retention: RetentionPolicy,
    /// The erasures the writers have read, shared by every clone.
    erasures: Arc<Mutex<erasure::Known>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("queries", &self.queries.status())
            .field("reads", &self.reads.status())
            .field("writes", &self.writes.status())
            .finish()
    }
}

/// The connection settings and TLS connector `url` names, `settings` overriding its
/// `sslmode` and `sslrootcert`.
fn target(url: &str, settings: &PostgresSettings) -> Result<(tokio_postgres::Config, MakeRustlsConnect), SetupError> {
    let mut conninfo = conninfo::Conninfo::parse(url);
    let url_mode = conninfo.take("sslmode").map(|mode| mode.parse::<SslMode>()).transpose()?;
    let url_root_cert = conninfo.take("sslrootcert").map(PathBuf::from);
    // Text that does not parse goes to tokio-postgres whole, for its own error.
    let url = if conninfo.is_malformed() { url.to_owned() } else { conninfo.to_string() };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(SetupError::InvalidUrl)?;
    let root_cert = settings.sslrootcert.clone().or(url_root_cert);
    let mode = settings.sslmode.or(url_mode).unwrap_or_default().with_root_cert(root_cert.as_deref());
    config.ssl_mode(mode.negotiation());
    Ok((config, tls::connector(mode, root_cert.as_deref())?))
}

/// A pool of diesel connections for queries, each with the query timeout.
fn query_pool(
    mut config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    url: &str,
    settings: &PostgresSettings,
) -> Result<Pool<AsyncPgConnection>, SetupError> {
    config
        .application_name("aurore")
        .connect_timeout(settings.connect_timeout)
        .options(format!("-c statement_timeout={}", settings.query_timeout.as_millis()));
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |_url| {
        let config = config.clone();
        let tls = tls.clone();
        Box::pin(async move {
            let (client, connection) = config
                .connect(tls)
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(aurore_domain::error_chain(&e)))?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(url.to_owned(), manager_config);
    let wait = Some(settings.connect_timeout);
    Pool::builder(manager)
        .max_size(settings.query_connections.max(1))
        .wait_timeout(wait)
        .create_timeout(wait)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|error| SetupError::Pool(error.into()))
}

const COPY_EVENTS: &str =
    r#"COPY events (id, "timestamp", service, message, metadata, ingested_at) FROM STDIN (FORMAT binary)"#;
const COPY_TYPES: [Type; 6] = [Type::UUID, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT, Type::JSONB, Type::TIMESTAMPTZ];

impl PostgresStore {
    /// Builds the pools. Connections open lazily, so this succeeds while the database is down.
    pub fn connect(settings: &PostgresSettings) -> Result<Self, SetupError> {
        let (base, tls) = target(&settings.url, settings)?;
        let wait = Some(settings.connect_timeout);

        let mut write_config = base.clone();
        write_config.application_name("aurore-writer").connect_timeout(settings.connect_timeout);
        let manager = deadpool_postgres::Manager::from_config(
            write_config,
            tls.clone(),
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let writes = deadpool_postgres::Pool::builder(manager)
            .max_size(settings.write_connections.max(1))
            .wait_timeout(wait)
            .create_timeout(wait)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| SetupError::Pool(error.into()))?;

        let mut upkeep = base.clone();
        upkeep
            .application_name("aurore-upkeep")
            .connect_timeout(settings.connect_timeout)
            .options(UPKEEP_STATEMENT_TIMEOUT);

        let queries = query_pool(base, tls.clone(), &settings.url, settings)?;
        let reads = match &settings.read_url {
            Some(read_url) => {
                let (replica, replica_tls) = target(read_url, settings)?;
                query_pool(replica, replica_tls, read_url, settings)?
            }
            None => queries.clone(),
        };
        let replica = settings.read_url.is_some();
        Ok(Self {
            queries,
            reads,
            replica,
            writes,
            upkeep,
            tls,
            retention: settings.retention,
            erasures: Arc::default(),
        })
    }

    /// Applies pending migrations from `migrations/`; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, SetupError> {
        let connection = self.queries.get().await.map_err(|error| SetupError::Migration(error.into()))?;
        let connection = deadpool::managed::Object::take(connection);
        // The harness is synchronous and blocks on the async connection, so it gets a thread.
        tokio::task::spawn_blocking(move || {
            let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(connection);
            wrapper.run_pending_migrations(MIGRATIONS).map(|applied| applied.len())
        })
        .await
        .map_err(|error| SetupError::Migration(error.into()))?
        .map_err(SetupError::Migration)
    }

    /// A fresh connection for one upkeep pass; it closes when the client is dropped.
    pub(crate) async fn upkeep_client(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = self.upkeep.connect(self.tls.clone()).await.map_err(error::from_postgres)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upkeep connection ended");
            }
        });
        Ok(client)
    }

    pub(crate) async fn query_connection(&self) -> Result<PooledConnection, StoreError> {
        self.queries.get().await.map_err(error::from_pool)
    }

    /// A connection for [`EventReader`]: to the replica when one is configured.
    pub(crate) async fn read_connection(&self) -> Result<PooledConnection, StoreError> {
        self.reads.get().await.map_err(error::from_pool)
    }

    /// Before this instant `event_counts` may hold hours whose rows retention removed (the
    /// rollup keeps them as history); `None` when the counts follow the rows exactly.
    fn history_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cutoffs = self.retention.cutoffs(now);
        (!cutoffs.rollup_in_step()).then_some(cutoffs.events)
    }
}

/// A query's failure inside its transaction, which diesel must be able to end with its own.
struct InSnapshot(QueryError);

impl From<diesel::result::Error> for InSnapshot {
    fn from(error: diesel::result::Error) -> Self {
        Self(QueryError::Store(error::from_diesel(error)))
    }
}

impl From<StoreError> for InSnapshot {
    fn from(error: StoreError) -> Self {
        Self(QueryError::Store(error))
    }
}

impl From<QueryError> for InSnapshot {
    fn from(error: QueryError) -> Self {
        Self(error)
    }
}

/// The cost check, the total and the page, all in the caller's snapshot.
async fn read_page(
    connection: &mut AsyncPgConnection,
    query: &EventQuery,
    history_before: Option<DateTime<Utc>>,
) -> Result<EventPage, InSnapshot> {
    // Only the timestamp sort has an index: another reads the whole range, so the range's
    // size (from the hourly counts, cheap; filters only make it smaller) must be in bounds.
    let range_events = match query.sort_field {
        SortField::Timestamp => None,
        _ => Some(counts::total(connection, query, history_before).await?),
    };
    if let Some(events) = range_events {
        query.check_sort_cost(events)?;
    }
    let total = match (&query.cursor, range_events) {
        (Some(_), _) => None,
        (None, _) if query.is_filtered() => Some(page::count(connection, query).await?),
        (None, Some(events)) => Some(events),
        (None, None) => Some(counts::total(connection, query, history_before).await?),
    };
    let (events, has_more) = page::fetch(connection, query).await?;
    Ok(EventPage { events, total, has_more })
}

/// The fast path: one binary COPY and the counts by minute and hour, in one transaction.
async fn copy(
    client: &mut tokio_postgres::Client,
    events: &[&Event],
    erasures: &Mutex<erasure::Known>,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let events = &erasure::unerased(&transaction, erasures, events).await?;
    let sink = transaction.copy_in(COPY_EVENTS).await?;
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
    counts::add(&transaction, counts::of_events(events)).await?;
    transaction.commit().await
}

const INSERT_NEW_EVENTS: &str = r#"INSERT INTO events (id, "timestamp", service, message, metadata, ingested_at)
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING service, "timestamp""#;

/// The path for batches that hold stored events (a journal replay, a client retry): one
/// `INSERT … ON CONFLICT DO NOTHING` over arrays (no bind-parameter limit), counting only
/// the rows it actually inserted.
async fn insert_skipping_stored(
    client: &mut tokio_postgres::Client,
    events: &[&Event],
    erasures: &Mutex<erasure::Known>,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let events = &erasure::unerased(&transaction, erasures, events).await?;
    let ids: Vec<&uuid::Uuid> = events.iter().map(|event| event.id.as_uuid()).collect();
    let timestamps: Vec<_> = events.iter().map(|event| event.timestamp).collect();
    let services: Vec<&str> = events.iter().map(|event| event.service.as_str()).collect();
    let messages: Vec<&str> = events.iter().map(|event| event.message.as_str()).collect();
    let metadata: Vec<&Option<serde_json::Value>> = events.iter().map(|event| &event.metadata).collect();
    let ingested: Vec<_> = events.iter().map(|event| event.ingested_at).collect();
    let inserted =
        transaction.query(INSERT_NEW_EVENTS, &[&ids, &timestamps, &services, &messages, &metadata, &ingested]).await?;
    let stored: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        inserted.iter().map(|row| (row.get(0), row.get(1))).collect();
    counts::add(&transaction, stored.iter().map(|(service, timestamp)| (service.as_str(), *timestamp))).await?;
    transaction.commit().await
}

#[async_trait]
impl EventSink for PostgresStore {
    #[tracing::instrument(name = "db.write_batch", skip_all, fields(db.system = "postgresql", events = i64::try_from(events.len()).unwrap_or(i64::MAX)))]
    async fn write_batch(&self, events: &[&Event]) -> Result<(), StoreError> {
        let mut client = self.writes.get().await.map_err(error::from_pool)?;
        match copy(&mut client, events, &self.erasures).await {
            Err(copy_error) if copy_error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Some events are already stored (a journal replay or a client retry):
                // the slower path skips them.
                tracing::debug!(events = events.len(), "batch holds stored events; inserting the rest");
                insert_skipping_stored(&mut client, events, &self.erasures).await.map_err(error::from_postgres)
            }
            result => result.map_err(error::from_postgres),
        }
    }
}

#[async_trait]
impl EventReader for PostgresStore {
    #[tracing::instrument(name = "db.query_events", skip_all, fields(db.system = "postgresql", service = %query.service))]
    async fn query(&self, query: &EventQuery) -> Result<EventPage, QueryError> {
        let mut connection = self.read_connection().await?;
        let history_before = self.history_before(Utc::now());
        // One snapshot for every statement: a batch committed between the count and the
        // page would otherwise make `total` disagree with the pages.
        connection
            .build_transaction()
            .repeatable_read()
            .read_only()
            .run(async |connection| read_page(connection, query, history_before).await)
            .await
            .map_err(|InSnapshot(error)| error)
    }

    #[tracing::instrument(name = "db.histogram", skip_all, fields(db.system = "postgresql", service = %query.service))]
    async fn histogram(&self, query: &HistogramQuery) -> Result<Histogram, QueryError> {
        let mut connection = self.read_connection().await?;
        let history_before = self.history_before(Utc::now());
        // One statement reads every bucket, so one snapshot; the transaction bounds the
        // settings the count takes for itself.
        connection
            .build_transaction()
            .read_only()
            .run(async |connection| {
                counts::histogram(connection, query, history_before).await.map_err(InSnapshot::from)
            })
            .await
            .map_err(|InSnapshot(error)| error)
    }

    #[tracing::instrument(name = "db.business_metrics", skip_all, fields(db.system = "postgresql"))]
    async fn business_metrics(&self, now: DateTime<Utc>) -> Result<BusinessMetrics, StoreError> {
        let mut connection = self.read_connection().await?;
        counts::business_metrics(&mut connection, now).await
    }

    #[tracing::instrument(name = "db.services", skip_all, fields(db.system = "postgresql"))]
    async fn services(&self) -> Result<Vec<ServiceSummary>, StoreError> {
        let mut connection = self.read_connection().await?;
        counts::services(&mut connection).await
    }
}

#[async_trait]
impl StoreHealth for PostgresStore {
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

    async fn replica(&self) -> Option<Result<ReplicaState, StoreError>> {
        #[derive(diesel::QueryableByName)]
        struct State {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            streaming: bool,
            #[diesel(sql_type = diesel::sql_types::Double)]
            seconds: f64,
        }
        if !self.replica {
            return None;
        }
        let state = async {
            let mut connection = self.read_connection().await?;
            let state: State =
                diesel::sql_query(REPLICA_STATE).get_result(&mut connection).await.map_err(error::from_diesel)?;
            Ok(ReplicaState { streaming: state.streaming, lag: Duration::from_secs_f64(state.seconds.max(0.0)) })
        };
        Some(state.await)
    }
}

/// Whether the WAL receiver streams (a server not in recovery is its own primary), and
/// the age of the last replayed transaction, or zero once everything received is replayed
/// (an idle primary sends nothing new, and age alone would grow).
const REPLICA_STATE: &str = "SELECT NOT pg_is_in_recovery() \
    OR coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false) AS streaming, \
    CASE WHEN NOT pg_is_in_recovery() \
    OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
    ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8 AS seconds";
