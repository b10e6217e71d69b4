//! What ingest accepts and what queries and the live tail may ask.

use super::Settings;
use super::units;
use aurore_domain::{Durability, IngestSettings, Limits, Markup, QueryLimits};
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct TailConfig {
    /// Events queued per live-tail subscriber; a slower one loses its oldest.
    #[garde(range(min = 1, max = 1_000_000))]
    pub queue_events: usize,
    /// Live-tail streams open at once; more get `503`. Each costs memory and a filter run
    /// per stored event.
    #[garde(range(min = 1, max = 100_000))]
    pub max_subscribers: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self { queue_events: 1024, max_subscribers: 256 }
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
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(86_400),
        "ingest.idempotency_ttl_secs"
    )))]
    #[serde(alias = "idempotency_ttl_secs", with = "units::seconds")]
    pub idempotency_ttl: Duration,
    #[garde(range(min = 0, max = 100_000_000))]
    pub idempotency_cache_entries: u64,
    /// Farthest ahead of the server's clock an event's timestamp may be (`400` beyond):
    /// a broken clock's events would otherwise sit where retention never reaches.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(31_536_000),
        "ingest.max_future_secs"
    )))]
    #[serde(alias = "max_future_secs", with = "units::seconds")]
    pub max_future: Duration,
    /// Farthest behind the clock a timestamp may be; `0` takes any age (retention removes
    /// old events).
    #[garde(skip)]
    #[serde(alias = "max_past_secs", with = "units::seconds")]
    pub max_past: Duration,
    /// The Elasticsearch bulk document field that names the service: a key or a dotted
    /// path (`service.name` matches `{"service.name": …}` and `{"service": {"name": …}}`);
    /// documents without it take their index's name.
    #[garde(length(min = 1, max = 256))]
    pub elasticsearch_service_field: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Journal,
            sanitize: Markup::Strip,
            idempotency_ttl: Duration::from_secs(600),
            idempotency_cache_entries: 100_000,
            max_future: Duration::from_secs(600),
            max_past: Duration::from_secs(0),
            elasticsearch_service_field: aurore_http::ElasticSettings::default().service_field,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    #[garde(range(min = 1, max = 10_000))]
    pub max_service_chars: usize,
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_message_chars: usize,
    #[garde(range(min = 2, max = 1_048_576))]
    #[serde(alias = "max_metadata_bytes", with = "units::bytes")]
    pub max_metadata_size: usize,
    #[garde(range(min = 0, max = 64))]
    pub max_metadata_depth: usize,
    #[garde(range(min = 0, max = 100_000))]
    pub max_metadata_keys: usize,
    #[garde(range(min = 1, max = 10_000))]
    pub max_idempotency_key_chars: usize,
}

impl From<&LimitsConfig> for Limits {
    fn from(config: &LimitsConfig) -> Self {
        Self {
            max_service_chars: config.max_service_chars,
            max_message_chars: config.max_message_chars,
            max_metadata_bytes: config.max_metadata_size,
            max_metadata_depth: config.max_metadata_depth,
            max_metadata_keys: config.max_metadata_keys,
            max_idempotency_key_chars: config.max_idempotency_key_chars,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = aurore_domain::Limits::default();
        Self {
            max_service_chars: limits.max_service_chars,
            max_message_chars: limits.max_message_chars,
            max_metadata_size: limits.max_metadata_bytes,
            max_metadata_depth: limits.max_metadata_depth,
            max_metadata_keys: limits.max_metadata_keys,
            max_idempotency_key_chars: limits.max_idempotency_key_chars,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
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

impl Default for QueryConfig {
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

impl Settings {
    pub fn ingest_settings(&self) -> IngestSettings {
        IngestSettings {
            limits: Limits::from(&self.limits),
            markup: self.ingest.sanitize,
            recent_keys_ttl: self.ingest.idempotency_ttl,
            recent_keys_capacity: self.ingest.idempotency_cache_entries,
            max_future: self.ingest.max_future,
            // Zero takes events of any age.
            max_past: (!self.ingest.max_past.is_zero()).then_some(self.ingest.max_past),
        }
    }

    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_service_chars: self.limits.max_service_chars,
            max_range_days: self.query.max_range_days,
            max_page: self.query.max_page,
            max_page_size: self.query.max_page_size,
            default_page_size: self.query.default_page_size,
            max_offset_rows: self.query.max_offset_rows,
            max_sorted_rows: self.query.max_sorted_rows,
        }
    }
}
