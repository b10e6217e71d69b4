//! Durations and sizes as settings take them: `"30s"`, `"250ms"`, `"1h 30m"`, `"8 MiB"`,
//! `"4096"`. A bare number is read in the unit of the key's former name, so the old keys
//! (`body_timeout_secs = 30`, `AURORE__WRITER__LINGER_MS=50`), kept as aliases, mean what
//! they always meant. `aurore config` prints the new forms.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};
use std::time::Duration;

/// A number or a text, as TOML files and environment variables give them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(u64),
    Text(String),
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D, unit: Duration, unit_name: &str) -> Result<Duration, D::Error> {
    let count = match Raw::deserialize(deserializer)? {
        Raw::Number(count) => count,
        Raw::Text(text) => match text.trim().parse::<u64>() {
            Ok(count) => count,
            Err(_) => {
                return humantime::parse_duration(text.trim()).map_err(|error| {
                    de::Error::custom(format!(
                        "invalid duration {text:?} ({error}): write e.g. \"30s\", \"250ms\", \"1h 30m\", or a number of {unit_name}"
                    ))
                });
            }
        },
    };
    u32::try_from(count)
        .ok()
        .and_then(|count| unit.checked_mul(count))
        .ok_or_else(|| de::Error::custom(format!("{count} {unit_name} is too long a duration")))
}

fn format_duration<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// Durations whose bare numbers are seconds.
pub mod seconds {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        duration(deserializer, Duration::from_secs(1), "seconds")
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        format_duration(value, serializer)
    }
}

/// Durations whose bare numbers are milliseconds.
pub mod millis {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        duration(deserializer, Duration::from_millis(1), "milliseconds")
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        format_duration(value, serializer)
    }
}

/// Durations whose bare numbers are microseconds.
pub mod micros {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        duration(deserializer, Duration::from_micros(1), "microseconds")
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        format_duration(value, serializer)
    }
}

/// Sizes in bytes: `"8 MiB"`, `"64KB"` (SI and IEC units), or a number of bytes.
pub mod bytes {
    use super::*;

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        let bytes = match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) => bytes,
            Raw::Text(text) => {
                text.trim().parse::<bytesize::ByteSize>().map(|size| size.as_u64()).map_err(|error| {
                    de::Error::custom(format!(
                        "invalid size {text:?} ({error}): write e.g. \"8 MiB\", \"64KB\", or a number of bytes"
                    ))
                })?
            }
        };
        T::try_from(bytes).map_err(|_| de::Error::custom(format!("{bytes} bytes is too large a size here")))
    }

    /// In the largest binary unit that divides it exactly, so it reads back the same.
    pub fn serialize<S, T>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Copy,
        u64: TryFrom<T>,
    {
        let bytes = u64::try_from(*value).unwrap_or(u64::MAX);
        let unit = ["GiB", "MiB", "KiB"]
            .into_iter()
            .zip([1u64 << 30, 1 << 20, 1 << 10])
            .find(|(_, size)| bytes >= *size && bytes % size == 0);
        match unit {
            Some((name, size)) => serializer.serialize_str(&format!("{} {name}", bytes / size)),
            None => serializer.serialize_str(&format!("{bytes} B")),
        }
    }
}

/// A garde rule: `value` lies within `min..=max`. The message names the key's old name
/// too, which is the one older configurations set.
pub fn duration_within(
    min: Duration,
    max: Duration,
    old_key: &'static str,
) -> impl FnOnce(&Duration, &()) -> garde::Result {
    move |value, _| {
        if (min..=max).contains(value) {
            Ok(())
        } else {
            Err(garde::Error::new(format!(
                "must be from {} to {} (also when set as {old_key})",
                humantime::format_duration(min),
                humantime::format_duration(max)
            )))
        }
    }
}
