//! Where events go: the database, the journal, the buffer, the writers, partitions and
//! retention.

use aurore_store_postgres::SslMode;
use garde::Validate;
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;
use std::str::FromStr as _;

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
    #[garde(range(min = 100, max = 600_000))]
    pub connect_timeout_ms: u64,
    /// Server-side limit on one query (the original's 30 s).
    #[garde(range(min = 100, max = 3_600_000))]
    pub query_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl("postgres://postgres@127.0.0.1:5432/aurore".into()),
            sslmode: None,
            sslrootcert: None,
            pool_size: 16,
            connect_timeout_ms: 5_000,
            query_timeout_ms: 30_000,
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
    #[garde(range(min = 1, max = 300))]
    pub retry_after_secs: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self { capacity: 50_000, retry_after_secs: 5 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Events per COPY batch.
    #[garde(range(min = 1, max = 1_000_000))]
    pub batch_size: usize,
    /// Longest an event waits for its batch to fill.
    #[garde(range(min = 1, max = 60_000))]
    pub linger_ms: u64,
    /// Concurrent writer tasks, each with its own connection.
    #[garde(range(min = 1, max = 64))]
    pub writers: usize,
    #[garde(range(min = 1, max = 60_000))]
    pub backoff_base_ms: u64,
    #[garde(range(min = 1, max = 600_000))]
    pub backoff_max_ms: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { batch_size: 5_000, linger_ms: 50, writers: 2, backoff_base_ms: 100, backoff_max_ms: 5_000 }
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
    pub max_bytes: u64,
    #[garde(range(min = 4096, max = self.max_bytes))]
    pub segment_bytes: u64,
    /// How long the journal waits for more appends to share one fsync.
    #[garde(range(max = 100_000))]
    pub group_commit_wait_us: u64,
    /// A group is written as soon as it holds this many bytes.
    #[garde(range(min = 4096, max = 1_073_741_824))]
    pub group_commit_bytes: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".aurore/journal"),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            group_commit_wait_us: 0,
            group_commit_bytes: 4 << 20,
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
    #[garde(range(min = 1, max = 3600))]
    pub open_timeout_secs: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        let defaults = aurore_domain::BreakerSettings::default();
        Self {
            failure_threshold: defaults.failure_threshold,
            success_threshold: defaults.success_threshold,
            open_timeout_secs: defaults.open_timeout.as_secs(),
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
    #[garde(range(min = 1, max = 86_400))]
    pub maintenance_interval_secs: u64,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self { days_behind: 30, days_ahead: 7, maintenance_interval_secs: 3600 }
    }
}
