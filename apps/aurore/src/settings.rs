//! Typed configuration: compiled-in defaults < optional TOML file < `DATABASE_URL` <
//! `AURORE__SECTION__KEY` environment variables. Checked once at start-up; every error
//! names the key. No setting is required.

use aurore_domain::{Durability, Markup};
use aurore_http::{IpNet, KeyDigests};
use aurore_store_postgres::SslMode;
use aurore_telemetry::LogFormat;
use config::{Config, Environment, File, FileFormat};
use garde::Validate;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("{0}")]
    Invalid(#[from] garde::Report),
    #[error("retention.rollup_days ({rollup}) must be at least retention.days ({days}): counts cannot outlive nothing")]
    RollupShorterThanEvents { rollup: u32, days: u32 },
    #[error(
        "partitions.days_behind ({behind}) must not exceed retention.days ({days}): upkeep would recreate the partitions retention drops"
    )]
    PartitionsOutliveRetention { behind: i64, days: u32 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    #[garde(dive)]
    pub server: ServerSettings,
    #[garde(dive)]
    pub database: DatabaseSettings,
    #[garde(dive)]
    pub buffer: BufferSettings,
    #[garde(dive)]
    pub ingest: IngestConfig,
    #[garde(dive)]
    pub journal: JournalConfig,
    #[garde(dive)]
    pub writer: WriterSettings,
    #[garde(dive)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[garde(dive)]
    pub limits: LimitSettings,
    #[garde(dive)]
    pub query: QuerySettings,
    #[garde(dive)]
    pub partitions: PartitionSettings,
    #[garde(dive)]
    pub shutdown: ShutdownSettings,
    #[garde(dive)]
    pub telemetry: TelemetrySettings,
    #[garde(dive)]
    pub retention: RetentionSettings,
    #[garde(dive)]
    pub tail: TailSettings,
    #[garde(dive)]
    pub rate_limit: RateLimitSettings,
    #[garde(skip)]
    pub auth: AuthSettings,
}

/// Requests per second per client IP (events per second for ingest), by route group; `0`
/// turns a group's limit off. A client may spend `burst_factor` seconds' worth at once.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Events per second per client on `POST /events` (a batch counts its events).
    #[garde(skip)]
    pub ingest_per_second: u32,
    /// `GET /events`, export, tail and dead-letter reads.
    #[garde(skip)]
    pub query_per_second: u32,
    /// Health, metrics and `/openapi.json`.
    #[garde(skip)]
    pub health_per_second: u32,
    /// Dead-letter reprocess/delete and retention runs.
    #[garde(skip)]
    pub admin_per_second: u32,
    #[garde(range(min = 1.0, max = 3600.0))]
    pub burst_factor: f64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            ingest_per_second: 100_000,
            query_per_second: 200,
            health_per_second: 100,
            admin_per_second: 10,
            burst_factor: 2.0,
        }
    }
}

impl RateLimitSettings {
    pub fn to_limits(&self) -> aurore_http::RateLimits {
        aurore_http::RateLimits {
            ingest_per_second: self.ingest_per_second,
            query_per_second: self.query_per_second,
            health_per_second: self.health_per_second,
            admin_per_second: self.admin_per_second,
            burst_factor: self.burst_factor,
        }
    }

    /// Every group unlimited.
    pub fn off() -> Self {
        Self { ingest_per_second: 0, query_per_second: 0, health_per_second: 0, admin_per_second: 0, burst_factor: 1.0 }
    }
}

/// API keys, comma-separated. Only their SHA-256 digests are kept once loaded; the
/// effective configuration shows how many there are, never what they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys for ingest and query routes; none means those routes are open.
    #[serde(deserialize_with = "key_digests", serialize_with = "key_count")]
    pub api_keys: KeyDigests,
    /// Keys for dead-letter reprocess/delete and retention runs (and everything else);
    /// none means admin routes take the API keys.
    #[serde(deserialize_with = "key_digests", serialize_with = "key_count")]
    pub admin_keys: KeyDigests,
}

fn key_digests<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<KeyDigests, D::Error> {
    let keys: Vec<String> = comma_separated(deserializer)?;
    Ok(KeyDigests::of(keys))
}

fn key_count<S: Serializer>(keys: &KeyDigests, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("<{} keys>", keys.len()))
}

/// A list given as a TOML array or as one comma-separated string (how environment
/// variables carry lists).
fn comma_separated<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        Text(String),
        List(Vec<String>),
    }
    let items = match Items::deserialize(deserializer)? {
        Items::Text(text) => text.split(',').map(str::to_owned).collect(),
        Items::List(items) => items,
    };
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(|error| serde::de::Error::custom(format!("{item:?}: {error}"))))
        .collect()
}

/// A proxy address or network: `10.0.0.0/8`, or a single `10.1.2.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TrustedProxy(pub IpNet);

impl std::str::FromStr for TrustedProxy {
    type Err = ipnet::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<IpNet>()
            .or_else(|error| text.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| error))
            .map(Self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct TailSettings {
    /// Events queued per live-tail subscriber; a slower one loses its oldest.
    #[garde(range(min = 1, max = 1_000_000))]
    pub queue_events: usize,
    /// Live-tail streams open at once; more get `503`. Each costs memory and a filter run
    /// per stored event.
    #[garde(range(min = 1, max = 100_000))]
    pub max_subscribers: usize,
}

impl Default for TailSettings {
    fn default() -> Self {
        Self { queue_events: 1024, max_subscribers: 256 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
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

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { days: 30, dead_letter_days: 30, rollup_days: 30, schedule: "0 2 * * *".into() }
    }
}

impl RetentionSettings {
    pub fn schedule(&self) -> Result<croner::Cron, croner::errors::CronError> {
        croner::Cron::from_str(&self.schedule)
    }
}

fn valid_cron(schedule: &str, _: &()) -> garde::Result {
    croner::Cron::from_str(schedule)
        .map(|_| ())
        .map_err(|error| garde::Error::new(format!("not a cron expression: {error}")))
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Interface to bind; `0.0.0.0` to listen on all.
    #[garde(length(min = 1))]
    pub host: String,
    /// TCP port; 0 picks a free one.
    #[garde(skip)]
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    #[garde(range(max = 256))]
    pub workers: usize,
    /// Largest request body, after decompression.
    #[garde(range(min = 1024, max = 268_435_456))]
    pub max_body_bytes: usize,
    /// Most events in one array or NDJSON request.
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_events_per_request: usize,
    /// Longest query string; longer gets `414`.
    #[garde(range(min = 256, max = 1_048_576))]
    pub max_query_string_bytes: usize,
    /// Most bytes of header names and values together; more gets `431`. The HTTP parser
    /// refuses heads over 128 KiB whatever this says.
    #[garde(range(min = 1024, max = 131_072))]
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` names the client (addresses or CIDR networks,
    /// comma-separated); others are the client themselves.
    #[garde(skip)]
    #[serde(deserialize_with = "comma_separated")]
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Origins browsers may call from (comma-separated); `*` for any, empty for no CORS.
    #[garde(skip)]
    #[serde(deserialize_with = "comma_separated")]
    pub cors_origins: Vec<String>,
    /// Request bodies held in memory at once, across all requests; beyond, `503`.
    #[garde(range(min = 1_048_576))]
    pub max_body_bytes_in_flight: usize,
    /// Longest a client may take to send a body (`408` beyond): slow bodies hold memory.
    #[garde(range(min = 1, max = 3600))]
    pub body_timeout_secs: u64,
    /// Open connections per worker thread; more wait in the kernel's backlog.
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_connections_per_worker: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            max_body_bytes: 8 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_query_string_bytes: 8192,
            max_header_bytes: 32 * 1024,
            trusted_proxies: Vec::new(),
            // Any page an operator visits could otherwise read events and delete dead
            // letters: cross-origin access is something to turn on, never a default.
            cors_origins: Vec::new(),
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            body_timeout_secs: 30,
            max_connections_per_worker: 5_000,
        }
    }
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
pub struct DatabaseSettings {
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

impl Default for DatabaseSettings {
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
pub struct BufferSettings {
    /// Events held in memory before ingest answers 429.
    #[garde(range(min = 1, max = 100_000_000))]
    pub capacity: usize,
    /// `Retry-After` sent with a 429 when the buffer is full.
    #[garde(range(min = 1, max = 300))]
    pub retry_after_secs: u64,
}

impl Default for BufferSettings {
    fn default() -> Self {
        Self { capacity: 50_000, retry_after_secs: 5 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSettings {
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

impl Default for WriterSettings {
    fn default() -> Self {
        Self { batch_size: 5_000, linger_ms: 50, writers: 2, backoff_base_ms: 100, backoff_max_ms: 5_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// What `202` promises by default: `none` (in memory), `journal` (fsync'd to the
    /// journal) or `stored` (committed in PostgreSQL). Requests may ask otherwise.
    #[garde(skip)]
    pub durability: Durability,
    /// Markup in `service`, `message` and metadata strings: `strip` (tags, comments and
    /// script/style content removed, every other character kept as sent), `escape`
    /// (entity-encoded, nothing removed; query parameters are encoded alike) or `off`.
    #[garde(skip)]
    pub sanitize: Markup,
    /// How long an idempotency key is remembered in memory (older repeats are still
    /// stored once, by the database key).
    #[garde(range(min = 1, max = 86_400))]
    pub idempotency_ttl_secs: u64,
    #[garde(range(min = 0, max = 100_000_000))]
    pub idempotency_cache_entries: u64,
    /// Farthest ahead of the server's clock an event's timestamp may be (`400` beyond):
    /// a broken clock's events would otherwise sit where retention never reaches.
    #[garde(range(min = 1, max = 31_536_000))]
    pub max_future_secs: u64,
    /// Farthest behind the clock a timestamp may be; `0` takes any age (retention removes
    /// old events).
    #[garde(skip)]
    pub max_past_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Journal,
            sanitize: Markup::Strip,
            idempotency_ttl_secs: 600,
            idempotency_cache_entries: 100_000,
            max_future_secs: 600,
            max_past_secs: 0,
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
pub struct LimitSettings {
    #[garde(range(min = 1, max = 10_000))]
    pub max_service_chars: usize,
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_message_chars: usize,
    #[garde(range(min = 2, max = 1_048_576))]
    pub max_metadata_bytes: usize,
    #[garde(range(min = 0, max = 64))]
    pub max_metadata_depth: usize,
    #[garde(range(min = 0, max = 100_000))]
    pub max_metadata_keys: usize,
    #[garde(range(min = 1, max = 10_000))]
    pub max_idempotency_key_chars: usize,
}

impl LimitSettings {
    pub fn to_limits(&self) -> aurore_domain::Limits {
        aurore_domain::Limits {
            max_service_chars: self.max_service_chars,
            max_message_chars: self.max_message_chars,
            max_metadata_bytes: self.max_metadata_bytes,
            max_metadata_depth: self.max_metadata_depth,
            max_metadata_keys: self.max_metadata_keys,
            max_idempotency_key_chars: self.max_idempotency_key_chars,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        let limits = aurore_domain::Limits::default();
        Self {
            max_service_chars: limits.max_service_chars,
            max_message_chars: limits.max_message_chars,
            max_metadata_bytes: limits.max_metadata_bytes,
            max_metadata_depth: limits.max_metadata_depth,
            max_metadata_keys: limits.max_metadata_keys,
            max_idempotency_key_chars: limits.max_idempotency_key_chars,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySettings {
    #[garde(range(min = 1, max = 3650))]
    pub max_range_days: i64,
    #[garde(range(min = 1, max = 10_000_000))]
    pub max_page: u32,
    #[garde(range(min = 1, max = 100_000))]
    pub max_page_size: u32,
    #[garde(range(min = 1, max = self.max_page_size))]
    pub default_page_size: u32,
    /// Most rows a page-numbered request may skip (`400` beyond, pointing to `cursor`).
    #[garde(range(min = 1))]
    pub max_offset_rows: u64,
    /// Most events a range may hold for a sort other than `timestamp`, which reads and
    /// sorts them all (`400` beyond, pointing to a narrower range or the timestamp sort).
    #[garde(range(min = 1))]
    pub max_sorted_rows: u64,
}

impl Default for QuerySettings {
    fn default() -> Self {
        let limits = aurore_domain::QueryLimits::default();
        Self {
            max_range_days: limits.max_range_days,
            max_page: limits.max_page,
            max_page_size: limits.max_page_size,
            default_page_size: limits.default_page_size,
            max_offset_rows: limits.max_offset_rows,
            max_sorted_rows: limits.max_sorted_rows,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionSettings {
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

impl Default for PartitionSettings {
    fn default() -> Self {
        Self { days_behind: 30, days_ahead: 7, maintenance_interval_secs: 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// After SIGTERM, how long the buffer may take to reach PostgreSQL.
    #[garde(range(min = 1, max = 3600))]
    pub drain_deadline_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { drain_deadline_secs: 20 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// A `tracing` filter; `RUST_LOG` overrides it.
    #[garde(length(min = 1))]
    pub log_level: String,
    #[garde(skip)]
    pub log_format: LogFormat,
    /// OTLP/HTTP traces URL, e.g. `http://jaeger:4318/v1/traces`. Unset: the standard
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` apply; with none set, no traces leave.
    #[garde(inner(prefix("http")))]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces kept (0 to 1); requests continuing a sampled trace are kept.
    #[garde(range(min = 0.0, max = 1.0))]
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_level: "info".into(), log_format: LogFormat::Human, otlp_endpoint: None, sample_ratio: 0.1 }
    }
}

impl Settings {
    /// Loads and validates the layered configuration. `env` is the process environment,
    /// passed in so tests need not touch global state.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        if let Some(url) = env.get("DATABASE_URL").filter(|url| !url.is_empty()) {
            builder = builder.add_source(Config::builder().set_override("database.url", url.as_str())?.build()?);
        }
        // Keys are text even when they look like numbers, so they skip type guessing.
        let (keys, prefixed): (HashMap<String, String>, HashMap<String, String>) = env
            .iter()
            .filter(|(key, _)| key.starts_with("AURORE__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(key, _)| key.starts_with("AURORE__AUTH__"));
        for (variables, try_parsing) in [(prefixed, true), (keys, false)] {
            builder = builder.add_source(
                Environment::with_prefix("AURORE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(try_parsing)
                    .source(Some(variables)),
            );
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        if settings.retention.rollup_days < settings.retention.days {
            return Err(SettingsError::RollupShorterThanEvents {
                rollup: settings.retention.rollup_days,
                days: settings.retention.days,
            });
        }
        // Retention always runs (on its schedule or on demand), so the check always applies.
        if settings.partitions.days_behind > i64::from(settings.retention.days) {
            return Err(SettingsError::PartitionsOutliveRetention {
                behind: settings.partitions.days_behind,
                days: settings.retention.days,
            });
        }
        Ok(settings)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# cannot render the configuration: {error}\n"))
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.writer.linger_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_need_no_setting() {
        let settings = Settings::load(None, &HashMap::new()).unwrap();
        assert_eq!((settings.server.host.as_str(), settings.server.port), ("127.0.0.1", 8080));
        assert_eq!(settings.limits.max_message_chars, 2000);
    }

    #[test]
    fn file_then_database_url_then_prefixed_variables() {
        let dir = std::env::temp_dir().join(format!("aurore-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("aurore.toml");
        std::fs::write(
            &file,
            "[server]\nport = 9000\nhost = \"0.0.0.0\"\n[database]\nurl = \"postgres://file@h/db\"\n",
        )
        .unwrap();

        let settings = Settings::load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!((settings.server.host.as_str(), settings.server.port), ("0.0.0.0", 9000));
        assert_eq!(settings.database.url.expose(), "postgres://file@h/db");

        let settings = Settings::load(Some(&file), &env(&[("DATABASE_URL", "postgres://env@h/db")])).unwrap();
        assert_eq!(settings.database.url.expose(), "postgres://env@h/db");

        let settings = Settings::load(
            Some(&file),
            &env(&[
                ("DATABASE_URL", "postgres://env@h/db"),
                ("AURORE__DATABASE__URL", "postgres://prefixed@h/db"),
                ("AURORE__SERVER__PORT", "9100"),
                ("AURORE__WRITER__BATCH_SIZE", "1234"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.database.url.expose(), "postgres://prefixed@h/db");
        assert_eq!(settings.server.port, 9100);
        assert_eq!(settings.writer.batch_size, 1234);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn invalid_values_name_the_key_and_the_rule() {
        let error = Settings::load(None, &env(&[("AURORE__WRITER__BATCH_SIZE", "0")])).unwrap_err().to_string();
        assert!(error.contains("writer.batch_size"), "{error}");
        assert!(error.contains("lower than 1"), "{error}");

        let error = Settings::load(None, &env(&[("AURORE__SERVER__PORT", "http")])).unwrap_err().to_string();
        assert!(error.contains("server.port"), "{error}");

        let error = Settings::load(None, &env(&[("AURORE__DATABASE__URL", "mysql")])).unwrap_err().to_string();
        assert!(error.contains("database.url"), "{error}");

        let error = Settings::load(None, &env(&[("AURORE__SERVER__PROT", "1")])).unwrap_err().to_string();
        assert!(error.contains("prot"), "{error}");

        let error = Settings::load(None, &env(&[("AURORE__RETENTION__ROLLUP_DAYS", "7")])).unwrap_err().to_string();
        assert!(error.contains("retention.rollup_days (7) must be at least retention.days (30)"), "{error}");

        let error =
            Settings::load(None, &env(&[("AURORE__RETENTION__DAYS", "7"), ("AURORE__RETENTION__ROLLUP_DAYS", "7")]))
                .unwrap_err()
                .to_string();
        assert!(error.contains("partitions.days_behind (30) must not exceed retention.days (7)"), "{error}");
        let settings =
            Settings::load(None, &env(&[("AURORE__RETENTION__DAYS", "7"), ("AURORE__PARTITIONS__DAYS_BEHIND", "7")]))
                .unwrap();
        assert_eq!(settings.partitions.days_behind, 7, "as many days behind as retention keeps is fine");

        let error =
            Settings::load(None, &env(&[("AURORE__RETENTION__SCHEDULE", "every day")])).unwrap_err().to_string();
        assert!(error.contains("retention.schedule"), "{error}");
    }

    #[test]
    fn edge_lists_come_comma_separated_and_keys_stay_text() {
        let settings = Settings::load(
            None,
            &env(&[
                ("AURORE__AUTH__API_KEYS", "12345, hunter2,"),
                ("AURORE__AUTH__ADMIN_KEYS", "root"),
                ("AURORE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
                ("AURORE__SERVER__CORS_ORIGINS", "https://a.example,https://b.example"),
                ("AURORE__RATE_LIMIT__QUERY_PER_SECOND", "0"),
                ("AURORE__INGEST__SANITIZE", "escape"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.auth.api_keys, KeyDigests::of(["12345", "hunter2"]));
        assert_eq!(settings.auth.admin_keys.len(), 1);
        let proxies: Vec<String> = settings.server.trusted_proxies.iter().map(|proxy| proxy.0.to_string()).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32"]);
        assert_eq!(settings.server.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(settings.rate_limit.query_per_second, 0);
        assert_eq!(settings.ingest.sanitize, Markup::Escape);
        let printed = format!("{}\n{settings:?}", settings.to_toml());
        assert!(!printed.contains("hunter2") && !printed.contains("12345"), "{printed}");
        assert!(printed.contains("<2 keys>"), "{printed}");

        let error =
            Settings::load(None, &env(&[("AURORE__SERVER__TRUSTED_PROXIES", "10.0.0.300")])).unwrap_err().to_string();
        assert!(error.contains("trusted_proxies") && error.contains("10.0.0.300"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__INGEST__SANITIZE", "maybe")])).unwrap_err().to_string();
        assert!(error.contains("sanitize"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__RATE_LIMIT__BURST_FACTOR", "0.5")])).unwrap_err().to_string();
        assert!(error.contains("rate_limit.burst_factor"), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let settings =
            Settings::load(None, &env(&[("DATABASE_URL", "postgres://app:hunter2@db:5432/aurore")])).unwrap();
        let printed = format!("{}\n{settings:?}", settings.to_toml());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:***@db:5432/aurore"), "{printed}");
        for (url, shown) in [
            ("postgres://app:secret@db/aurore", "postgres://app:***@db/aurore"),
            ("postgres://app:sec@ret@db/aurore", "postgres://app:***@db/aurore"),
            ("postgres://app@db/aurore?password=secret", "postgres://app@db/aurore?password=***"),
            (
                "postgresql://app@db/aurore?sslmode=require&password=secret",
                "postgresql://app@db/aurore?sslmode=require&password=***",
            ),
            ("host=db user=app password=secret", "host=db user=app password=***"),
            ("host=db password = secret user=app", "host=db password=*** user=app"),
            ("host=db password='my secret' user=app", "host=db password=*** user=app"),
            ("host=db password = 'it\\'s secret'", "host=db password=***"),
        ] {
            let settings = Settings::load(None, &env(&[("AURORE__DATABASE__URL", url)])).unwrap();
            assert_eq!(settings.database.url.expose(), url);
            let pools = crate::startup::postgres_settings(&settings);
            for printed in [settings.to_toml(), format!("{settings:?}"), format!("{pools:?}")] {
                assert!(!printed.contains("secret"), "{url}: {printed}");
                assert!(printed.contains(shown), "{url}: {printed}");
            }
        }
    }

    #[test]
    fn tls_settings_take_libpq_names_and_https_traces_validate() {
        let settings = Settings::load(
            None,
            &env(&[
                ("AURORE__DATABASE__SSLMODE", "verify-full"),
                ("AURORE__DATABASE__SSLROOTCERT", "/etc/aurore/ca.pem"),
                ("AURORE__TELEMETRY__OTLP_ENDPOINT", "https://collector.example:4318/v1/traces"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.database.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(settings.database.sslrootcert.as_deref(), Some(Path::new("/etc/aurore/ca.pem")));
        assert!(settings.to_toml().contains("sslmode = \"verify-full\""), "{}", settings.to_toml());
        assert_eq!(Settings::load(None, &HashMap::new()).unwrap().database.sslmode, None, "the URL's, else prefer");

        let error = Settings::load(None, &env(&[("AURORE__DATABASE__SSLMODE", "allow")])).unwrap_err().to_string();
        assert!(error.contains("sslmode") && error.contains("verify-full"), "{error}");
    }
}
