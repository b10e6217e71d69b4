//! Typed configuration: compiled-in defaults < optional TOML file < `DATABASE_URL` <
//! `AURORE__SECTION__KEY` environment variables. Checked once at start-up; every error
//! names the key. No setting is required.

mod edge;
mod ingest;
mod ops;
mod privacy;
mod queue;
mod storage;
mod units;

pub use edge::{AuthConfig, RateLimitConfig, ServerConfig, TrustedProxy};
pub use ingest::{IngestConfig, LimitsConfig, QueryConfig, TailConfig};
pub use ops::{ShutdownConfig, TelemetryConfig};
pub use privacy::{PrivacyConfig, PrivacyConfigError};
pub use queue::{QueueConfig, QueueKind};
pub use storage::{
    BufferConfig, CircuitBreakerConfig, DatabaseConfig, DatabaseUrl, JournalConfig, PartitionConfig, RetentionConfig,
    WriterConfig,
};

use config::{Config, Environment, File, FileFormat};
use garde::Validate;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

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
    pub server: ServerConfig,
    #[garde(dive)]
    pub database: DatabaseConfig,
    #[garde(dive)]
    pub buffer: BufferConfig,
    #[garde(dive)]
    pub ingest: IngestConfig,
    #[garde(dive)]
    pub journal: JournalConfig,
    #[garde(dive)]
    pub writer: WriterConfig,
    #[garde(dive)]
    pub queue: QueueConfig,
    #[garde(dive)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[garde(dive)]
    pub limits: LimitsConfig,
    #[garde(dive)]
    pub query: QueryConfig,
    #[garde(dive)]
    pub partitions: PartitionConfig,
    #[garde(dive)]
    pub shutdown: ShutdownConfig,
    #[garde(dive)]
    pub telemetry: TelemetryConfig,
    #[garde(dive)]
    pub retention: RetentionConfig,
    #[garde(dive)]
    pub tail: TailConfig,
    #[garde(dive)]
    pub rate_limit: RateLimitConfig,
    #[garde(skip)]
    pub auth: AuthConfig,
    #[garde(skip)]
    pub privacy: PrivacyConfig,
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
        let (keys, prefixed): (HashMap<String, String>, HashMap<String, String>) =
            env.iter().filter(|(key, _)| key.starts_with("AURORE__")).map(|(k, v)| (k.clone(), v.clone())).partition(
                |(key, _)| {
                    ["AURORE__AUTH__", "AURORE__PRIVACY__HMAC_KEY", "AURORE__PRIVACY__ENCRYPTION_KEYS__"]
                        .iter()
                        .any(|secret| key.starts_with(secret))
                },
            );
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurore_domain::Markup;
    use aurore_http::KeyDigests;
    use aurore_store_postgres::SslMode;
    use std::time::Duration;

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
    fn privacy_rules_come_from_the_environment_and_the_key_never_prints() {
        let key = "a-pseudonym-key-of-at-least-32-bytes";
        let settings = Settings::load(
            None,
            &env(&[
                ("AURORE__PRIVACY__HMAC_KEY", key),
                ("AURORE__PRIVACY__RULES", r#"[{"field": "metadata.user_id", "action": "hash"}]"#),
                ("AURORE__PRIVACY__SCAN_MESSAGE", "email, card"),
                ("AURORE__PRIVACY__EXPORT_REQUIRES_PROFILE", "true"),
                ("AURORE__PRIVACY__ENCRYPTION_KEY_ID", "k2"),
                ("AURORE__PRIVACY__ENCRYPTION_KEYS__K2", "S2V5T2ZUaGlydHlUd29CeXRlc0Zvckx1Y2tMdWNrISE="),
            ]),
        )
        .unwrap();
        let privacy = settings.privacy.compile().unwrap();
        let report = privacy.report();
        assert_eq!(report.rules[0].rule, "metadata.user_id:hash");
        assert_eq!(report.detectors.len(), 2);
        assert!(report.keyed && privacy.export_requires_profile());
        assert_eq!(report.encryption_key_id.as_deref(), Some("k2"));
        let printed = format!("{}\n{settings:?}", settings.to_toml());
        assert!(!printed.contains(key), "{printed}");
        assert!(!printed.contains("S2V5T2ZU"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");

        let error = Settings::load(None, &env(&[("AURORE__PRIVACY__SCAN_MESSAGE", "email,phone")])).unwrap_err();
        assert!(error.to_string().contains("phone"), "{error}");
        let unkeyed = Settings::load(None, &env(&[("AURORE__PRIVACY__SCAN_MESSAGE", "email")])).unwrap();
        let error = unkeyed.privacy.compile().unwrap_err().to_string();
        assert!(error.contains("privacy.hmac_key"), "{error}");
        let dir = std::env::temp_dir().join(format!("aurore-privacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let from_file = Settings::load(
            None,
            &env(&[
                ("AURORE__PRIVACY__HMAC_KEY_FILE", file.to_str().unwrap()),
                ("AURORE__PRIVACY__SCAN_MESSAGE", "email"),
            ]),
        )
        .unwrap();
        let hashed = |settings: &Settings| settings.privacy.compile().unwrap().query_text("a@b.io").into_owned();
        assert_eq!(hashed(&from_file), hashed(&settings), "the file's trailing newline is not part of the key");
        std::fs::remove_dir_all(&dir).unwrap();
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
            let pools = settings.postgres();
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

    #[test]
    fn durations_and_sizes_take_units_and_the_old_keys_keep_their_meaning() {
        let old = Settings::load(
            None,
            &env(&[
                ("AURORE__SERVER__BODY_TIMEOUT_SECS", "45"),
                ("AURORE__WRITER__LINGER_MS", "250"),
                ("AURORE__JOURNAL__GROUP_COMMIT_WAIT_US", "500"),
                ("AURORE__SERVER__MAX_BODY_BYTES", "65536"),
                ("AURORE__JOURNAL__SEGMENT_BYTES", "1048576"),
            ]),
        )
        .unwrap();
        let new = Settings::load(
            None,
            &env(&[
                ("AURORE__SERVER__BODY_TIMEOUT", "45s"),
                ("AURORE__WRITER__LINGER", "250ms"),
                ("AURORE__JOURNAL__GROUP_COMMIT_WAIT", "500us"),
                ("AURORE__SERVER__MAX_BODY_SIZE", "64 KiB"),
                ("AURORE__JOURNAL__SEGMENT_SIZE", "1MiB"),
            ]),
        )
        .unwrap();
        for settings in [&old, &new] {
            assert_eq!(settings.server.body_timeout, Duration::from_secs(45));
            assert_eq!(settings.writer.linger, Duration::from_millis(250));
            assert_eq!(settings.journal.group_commit_wait, Duration::from_micros(500));
            assert_eq!(settings.server.max_body_size, 64 * 1024);
            assert_eq!(settings.journal.segment_size, 1 << 20);
        }
        // A bare number under a new key is read in the unit its old key named.
        let bare = Settings::load(None, &env(&[("AURORE__WRITER__LINGER", "250")])).unwrap();
        assert_eq!(bare.writer.linger, Duration::from_millis(250));

        let dir = std::env::temp_dir().join(format!("aurore-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("aurore.toml");
        std::fs::write(&file, "[shutdown]\ndrain_deadline_secs = 7\n[journal]\nmax_size = \"2 GiB\"\n").unwrap();
        let from_file = Settings::load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!(from_file.shutdown.drain_deadline, Duration::from_secs(7));
        assert_eq!(from_file.journal.max_size, 2 << 30);

        // What `aurore config` prints reads back as the same configuration (but for the
        // keys, which it never prints).
        let printed = new.to_toml();
        let printed = printed.split("[auth]").next().unwrap_or_default().to_owned();
        assert!(printed.contains("linger = \"250ms\"") && printed.contains("max_body_size = \"64 KiB\""), "{printed}");
        std::fs::write(&file, &printed).unwrap();
        let reread = Settings::load(Some(&file), &HashMap::new()).unwrap();
        assert!(reread.to_toml().starts_with(&printed), "{printed}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_durations_and_sizes_name_the_key_and_the_accepted_forms() {
        let error = Settings::load(None, &env(&[("AURORE__WRITER__LINGER", "soon")])).unwrap_err().to_string();
        assert!(error.contains("linger") && error.contains("250ms"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__SERVER__BODY_TIMEOUT", "2h")])).unwrap_err().to_string();
        assert!(error.contains("server.body_timeout") && error.contains("1h"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__SERVER__MAX_BODY_SIZE", "lots")])).unwrap_err().to_string();
        assert!(error.contains("max_body_size") && error.contains("MiB"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__SERVER__MAX_BODY_SIZE", "1 GiB")])).unwrap_err().to_string();
        assert!(error.contains("server.max_body_size"), "{error}");
        let error = Settings::load(None, &env(&[("AURORE__WRITER__LINGER", "1s"), ("AURORE__WRITER__LINGER_MS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("linger"), "a key given under both names is refused: {error}");
    }
}
