//! The edge: listening, request limits, rate limits and API keys.

use super::units;
use aurore_http::{IpNet, KeyDigests, RateLimits, RequestLimits};
use garde::Validate;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// Requests per second per client IP (events per second for ingest), by route group; `0`
/// turns a group's limit off. A client may spend `burst_factor` seconds' worth at once.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
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

impl Default for RateLimitConfig {
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

impl From<&RateLimitConfig> for RateLimits {
    fn from(config: &RateLimitConfig) -> Self {
        Self {
            ingest_per_second: config.ingest_per_second,
            query_per_second: config.query_per_second,
            health_per_second: config.health_per_second,
            admin_per_second: config.admin_per_second,
            burst_factor: config.burst_factor,
        }
    }
}

impl RateLimitConfig {
    /// Every group unlimited.
    pub fn off() -> Self {
        Self { ingest_per_second: 0, query_per_second: 0, health_per_second: 0, admin_per_second: 0, burst_factor: 1.0 }
    }
}

/// API keys, comma-separated. Only their SHA-256 digests are kept once loaded; the
/// effective configuration shows how many there are, never what they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
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
pub(super) fn comma_separated<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
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
pub struct ServerConfig {
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
    #[serde(alias = "max_body_bytes", with = "units::bytes")]
    pub max_body_size: usize,
    /// Most events in one array or NDJSON request.
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_events_per_request: usize,
    /// Longest query string; longer gets `414`.
    #[garde(range(min = 256, max = 1_048_576))]
    #[serde(alias = "max_query_string_bytes", with = "units::bytes")]
    pub max_query_string_size: usize,
    /// Most bytes of header names and values together; more gets `431`. The HTTP parser
    /// refuses heads over 128 KiB whatever this says.
    #[garde(range(min = 1024, max = 131_072))]
    #[serde(alias = "max_header_bytes", with = "units::bytes")]
    pub max_header_size: usize,
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
    #[serde(alias = "max_body_bytes_in_flight", with = "units::bytes")]
    pub max_bodies_in_flight_size: usize,
    /// Longest a client may take to send a body (`408` beyond): slow bodies hold memory.
    #[garde(custom(units::duration_within(
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "server.body_timeout_secs"
    )))]
    #[serde(alias = "body_timeout_secs", with = "units::seconds")]
    pub body_timeout: Duration,
    /// Open connections per worker thread; more wait in the kernel's backlog.
    #[garde(range(min = 1, max = 1_000_000))]
    pub max_connections_per_worker: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            max_body_size: 8 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_query_string_size: 8192,
            max_header_size: 32 * 1024,
            trusted_proxies: Vec::new(),
            // Any page an operator visits could otherwise read events and delete dead
            // letters: cross-origin access is something to turn on, never a default.
            cors_origins: Vec::new(),
            max_bodies_in_flight_size: 256 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_connections_per_worker: 5_000,
        }
    }
}

impl From<&ServerConfig> for RequestLimits {
    fn from(config: &ServerConfig) -> Self {
        Self {
            max_body_bytes: config.max_body_size,
            max_events_per_request: config.max_events_per_request,
            max_query_string_bytes: config.max_query_string_size,
            max_header_bytes: config.max_header_size,
            body_timeout: config.body_timeout,
        }
    }
}
