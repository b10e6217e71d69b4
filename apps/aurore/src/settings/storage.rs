//! Where events go: the database, the journal, the buffer, the writers, partitions and
//! retention.

use super::Settings;
use super::units;
use aurore_domain::{BreakerSettings, RetentionPolicy, RetryPolicy, WriterSettings};
use aurore_journal::JournalSettings;
use aurore_store_postgres::{PostgresSettings, SslMode};
use garde::Validate;
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events older than this many days are removed.
    #[garde(range(min = 1, max = 3650))]
    pub days: u32,
    /// Dead letters older than this many days are removed.
    #[garde(range(min = 1, max = 3650))]
    pub dead_letter_days: u32,
    /// Days of hourly counts kept for `/health/business`; at least `days`. Longer keeps
    /// business history after the events are gone.
    #[garde(range(min = 1, max = 3650))]
    pub rollup_days: u32,
    /// When retention runs, as a five-field cron expression in UTC.
    #[garde(custom(valid_cron))]
    pub schedule: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { days: 30, dead_letter_days: 30, rollup_days: 30, schedule: "0 2 * * *".into() }
    }
}

impl RetentionConfig {
    pub fn schedule(&self) -> Result<croner::Cron, croner::errors::CronError> {
        croner::Cron::from_str(&self.schedule)
    }
}

fn valid_cron(schedule: &str, _: &()) -> garde::Result {
    croner::Cron::from_str(schedule)
        .map(|_| ())
        .map_err(|error| garde::Error::new(format!("not a cron expression: {error}")))
}

/// A database URL whose password never reaches logs or `aurore config`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Every password masked, in either spelling of a connection string.
    fn redacted(&self) -> String {
        aurore_store_postgres::redact(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

fn valid_database_url(url: &DatabaseUrl, _: &()) -> garde::Result {
    let text = url.expose();
    let url_form = text.starts_with("postgres://") || text.starts_with("postgresql://");
    let key_value_form = text.contains('=');
    if url_form || key_value_form {
        Ok(())
    } else {
        Err(garde::Error::new("must be a postgres:// URL or a key=value connection string"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Also set by `DATABASE_URL`. May carry `sslmode` and `sslrootcert` parameters.
    #[garde(custom(valid_database_url))]
    pub url: DatabaseUrl,
    /// A streaming replica of `url` for what people read: pages, exports, histograms, the
    /// service list and business figures. Writes, dead letters, health and migrations
    /// stay on `url`. Unset: everything reads from `url`.
    #[garde(inner(custom(valid_database_url)))]
    pub read_url: Option<DatabaseUrl>,
    /// TLS to PostgreSQL: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`,
    /// as libpq. Overrides the URL's `sslmode`; with neither, `prefer`.
    #[garde(skip)]
    pub sslmode: Option<SslMode>,
    /// PEM file of the root certificates `verify-ca`/`verify-full` trust (Mozilla's set
    /// when unset). Overrides the URL's `sslrootcert`.
    #[garde(skip)]
    pub sslrootcert: Option<PathBuf>,
    /// Connections for queries, health checks and upkeep.
    #[garde(range(min = 1, max = 1000))]
    pub pool_size: usize,
    #[garde(custom(units::duration_within(
        Duration::from_millis(100),
        Duration::from_millis(600_000),
        "database.connect_timeout_ms"
    )))]
    #[serde(alias = "connect_timeout_ms", with = "units::millis")]
    pub connect_timeout: Duration,
    /// Server-side limit on one query (the original's 30 s).
    #[garde(custom(units::duration_within(
        Duration::from_millis(100),
        Duration::from_millis(3_600_000),
        "database.query_timeout_ms"
    )))]
    #[serde(alias = "query_timeout_ms", with = "units::millis")]
    pub query_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl("postgres://postgres@127.0.0.1:5432/aurore".into()),
            read_url: None,
            sslmode: None,
            sslrootcert: None,
            pool_size: 16,
            connect_timeout: Duration::from_millis(5_000),
            query_timeout: Duration::from_millis(30_000),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Events held in memory before ingest answers 429.
    #[garde(range(min = 1, max = 100_000_000))]
    pub capacity: usize,
    /// `Retry-After` sent with a 429 when the buffer is full.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(300),
        "buffer.retry_after_secs"
    )))]
    #[serde(alias = "retry_after_secs", with = "units::seconds")]
    pub retry_after: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self { capacity: 50_000, retry_after: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Events per COPY batch.
    #[garde(range(min = 1, max = 1_000_000))]
    pub batch_size: usize,
    /// Longest an event waits for its batch to fill.
    #[garde(custom(units::duration_within(
        Duration::from_millis(1),
        Duration::from_millis(60_000),
        "writer.linger_ms"
    )))]
    #[serde(alias = "linger_ms", with = "units::millis")]
    pub linger: Duration,
    /// Concurrent writer tasks, each with its own connection.
    #[garde(range(min = 1, max = 64))]
    pub writers: usize,
    #[garde(custom(units::duration_within(
        Duration::from_millis(1),
        Duration::from_millis(60_000),
        "writer.backoff_base_ms"
    )))]
    #[serde(alias = "backoff_base_ms", with = "units::millis")]
    pub backoff_base: Duration,
    #[garde(custom(units::duration_within(
        Duration::from_millis(1),
        Duration::from_millis(600_000),
        "writer.backoff_max_ms"
    )))]
    #[serde(alias = "backoff_max_ms", with = "units::millis")]
    pub backoff_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            linger: Duration::from_millis(50),
            writers: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(5_000),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory of the journal's segment files; give each replica its own.
    #[garde(skip)]
    pub dir: PathBuf,
    /// Past this size on disk, ingest answers 503 until writers catch up.
    #[garde(range(min = 1_048_576))]
    #[serde(alias = "max_bytes", with = "units::bytes")]
    pub max_size: u64,
    #[garde(range(min = 4096, max = self.max_size))]
    #[serde(alias = "segment_bytes", with = "units::bytes")]
    pub segment_size: u64,
    /// How long the journal waits for more appends to share one fsync.
    #[garde(custom(units::duration_within(
        Duration::from_micros(0),
        Duration::from_micros(100_000),
        "journal.group_commit_wait_us"
    )))]
    #[serde(alias = "group_commit_wait_us", with = "units::micros")]
    pub group_commit_wait: Duration,
    /// A group is written as soon as it holds this many bytes.
    #[garde(range(min = 4096, max = 1_073_741_824))]
    #[serde(alias = "group_commit_bytes", with = "units::bytes")]
    pub group_commit_size: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".aurore/journal"),
            max_size: 1 << 30,
            segment_size: 64 << 20,
            group_commit_wait: Duration::from_micros(0),
            group_commit_size: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed writes that open the circuit (writers pause).
    #[garde(range(min = 1, max = 1000))]
    pub failure_threshold: u32,
    /// Consecutive successes while half-open that close it.
    #[garde(range(min = 1, max = 1000))]
    pub success_threshold: u32,
    /// How long writers pause before one probe.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "circuit_breaker.open_timeout_secs"
    )))]
    #[serde(alias = "open_timeout_secs", with = "units::seconds")]
    pub open_timeout: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        let defaults = aurore_domain::BreakerSettings::default();
        Self {
            failure_threshold: defaults.failure_threshold,
            success_threshold: defaults.success_threshold,
            open_timeout: defaults.open_timeout,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionConfig {
    /// Days of past partitions kept ready (the retention window).
    #[garde(range(min = 1, max = 3650))]
    pub days_behind: i64,
    /// Days of future partitions created ahead.
    #[garde(range(min = 1, max = 365))]
    pub days_ahead: i64,
    /// How often partitions are checked and created.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        "partitions.maintenance_interval_secs"
    )))]
    #[serde(alias = "maintenance_interval_secs", with = "units::seconds")]
    pub maintenance_interval: Duration,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self { days_behind: 30, days_ahead: 7, maintenance_interval: Duration::from_secs(3600) }
    }
}

impl Settings {
    /// The store's pools: queries from `database`, one write connection per writer.
    pub fn postgres(&self) -> PostgresSettings {
        PostgresSettings {
            url: self.database.url.expose().to_owned(),
            read_url: self.database.read_url.as_ref().map(|url| url.expose().to_owned()),
            sslmode: self.database.sslmode,
            sslrootcert: self.database.sslrootcert.clone(),
            query_connections: self.database.pool_size,
            write_connections: self.writer.writers,
            connect_timeout: self.database.connect_timeout,
            query_timeout: self.database.query_timeout,
            retention: RetentionPolicy::from(&self.retention),
        }
    }
}

impl From<&RetentionConfig> for RetentionPolicy {
    fn from(config: &RetentionConfig) -> Self {
        Self { event_days: config.days, dead_letter_days: config.dead_letter_days, rollup_days: config.rollup_days }
    }
}

impl From<&JournalConfig> for JournalSettings {
    fn from(config: &JournalConfig) -> Self {
        Self {
            dir: config.dir.clone(),
            max_bytes: config.max_size,
            segment_bytes: config.segment_size,
            group_commit_wait: config.group_commit_wait,
            group_commit_bytes: config.group_commit_size,
        }
    }
}

impl From<&CircuitBreakerConfig> for BreakerSettings {
    fn from(config: &CircuitBreakerConfig) -> Self {
        Self {
            failure_threshold: config.failure_threshold,
            success_threshold: config.success_threshold,
            open_timeout: config.open_timeout,
        }
    }
}

impl From<&WriterConfig> for WriterSettings {
    fn from(config: &WriterConfig) -> Self {
        Self {
            linger: config.linger,
            retry: RetryPolicy { base_delay: config.backoff_base, max_delay: config.backoff_max },
        }
    }
}
