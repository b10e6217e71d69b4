//! `[privacy]`: the rules privacy applies at ingest and on export, the key that makes
//! pseudonyms and the keys `encrypt` uses. Keys are secrets: from the environment or a
//! file, never printed.

use aurore_domain::privacy::{Action, Detector, EncryptionKeys, ExportProfileSpec, RuleSpec};
use aurore_domain::{Privacy, PrivacySpec};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyConfigError {
    #[error("cannot read privacy.hmac_key_file {path}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("privacy.encryption_keys.{0} is not base64")]
    EncryptionKey(String),
    #[error("privacy: {0}")]
    Rules(#[from] aurore_domain::PrivacyError),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, garde::Validate)]
#[serde(default, deny_unknown_fields)]
#[garde(allow_unvalidated)]
pub struct PrivacyConfig {
    /// `[[privacy.rules]]` with `field`, `action` and optional `services`, `bucket`; from
    /// the environment as a JSON array in `AURORE__PRIVACY__RULES`.
    #[serde(deserialize_with = "list_or_json")]
    pub rules: Vec<RuleSpec>,
    /// Detectors for free text: `["email", "ip", "card"]`, or `email,ip,card`.
    #[serde(deserialize_with = "super::edge::comma_separated")]
    pub scan_message: Vec<Detector>,
    /// Each detector's action when not its default (emails hashed, IPs generalised, cards redacted).
    pub detector_actions: BTreeMap<Detector, Action>,
    /// `[privacy.export_profiles.<name>]` with its own `rules`.
    pub export_profiles: BTreeMap<String, ExportProfileSpec>,
    pub export_requires_profile: bool,
    /// The HMAC-SHA-256 key (at least 32 bytes); shown as `<redacted>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<Secret>,
    /// A file holding the key (a trailing newline is ignored), for secrets mounted as files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_key_file: Option<PathBuf>,
    /// The key `encrypt` seals new values with, by its id in `encryption_keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
    /// `[privacy.encryption_keys]`: id = 32 bytes in base64 (`AURORE__PRIVACY__ENCRYPTION_KEYS__K1`);
    /// keep old ids to read what they sealed. Shown as `<redacted>`.
    pub encryption_keys: BTreeMap<String, Secret>,
}

impl PrivacyConfig {
    /// The compiled rules, their key read from the environment's value or the file.
    pub fn compile(&self) -> Result<Privacy, PrivacyConfigError> {
        let key = match (&self.hmac_key, &self.hmac_key_file) {
            (Some(Secret(key)), _) => Some(key.clone().into_bytes()),
            (None, Some(path)) => {
                let mut key =
                    std::fs::read(path).map_err(|source| PrivacyConfigError::KeyFile { path: path.clone(), source })?;
                while key.last().is_some_and(|byte| matches!(byte, b'\n' | b'\r')) {
                    key.pop();
                }
                Some(key)
            }
            (None, None) => None,
        };
        let spec = PrivacySpec {
            rules: self.rules.clone(),
            scan_message: self.scan_message.clone(),
            detector_actions: self.detector_actions.clone(),
            export_profiles: self.export_profiles.clone(),
            export_requires_profile: self.export_requires_profile,
        };
        let keys = self
            .encryption_keys
            .iter()
            .map(|(id, Secret(key))| {
                STANDARD
                    .decode(key.trim())
                    .map(|key| (id.clone(), key))
                    .map_err(|_| PrivacyConfigError::EncryptionKey(id.clone()))
            })
            .collect::<Result<_, _>>()?;
        let encryption = EncryptionKeys { current: self.encryption_key_id.clone(), keys };
        Ok(Privacy::keyed(&spec, key.as_deref(), &encryption)?)
    }
}

/// A key: read as text, never printed nor serialised.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// A TOML array of tables, or (from the environment) a string holding a JSON array.
fn list_or_json<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<RuleSpec>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rules {
        Json(String),
        List(Vec<RuleSpec>),
    }
    match Rules::deserialize(deserializer)? {
        Rules::List(rules) => Ok(rules),
        Rules::Json(text) => serde_json::from_str(&text)
            .map_err(|error| serde::de::Error::custom(format!("privacy.rules as JSON: {error}"))),
    }
}
