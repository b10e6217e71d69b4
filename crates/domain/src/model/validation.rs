//! The contract's rules for an incoming event. Every failure names the field, the rule
//! (the original service's constraint names, so its clients keep parsing them) and the limit.

use crate::event::EventDraft;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::{fmt, io};

/// Limits on one event. Defaults are the original service's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_service_chars: usize,
    pub max_message_chars: usize,
    pub max_metadata_bytes: usize,
    pub max_metadata_depth: usize,
    pub max_metadata_keys: usize,
    pub max_idempotency_key_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_service_chars: 100,
            max_message_chars: 2000,
            max_metadata_bytes: 16 * 1024,
            max_metadata_depth: 5,
            max_metadata_keys: 100,
            max_idempotency_key_chars: 256,
        }
    }
}

/// One invalid field and every rule it broke: `constraints` maps a rule name to its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub constraints: BTreeMap<&'static str, String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        let mut constraints = BTreeMap::new();
        constraints.insert(rule, message.into());
        Self { field: field.into(), constraints }
    }

    fn missing(field: &str) -> Self {
        let mut error = Self::new(field, "isNotEmpty", format!("{field} should not be empty"));
        error.constraints.insert("isString", format!("{field} must be a string"));
        error
    }
}

/// Earliest and latest instants accepted: older or later values are client bugs
/// (epoch seconds sent as milliseconds, year typos), better refused than stored.
const EARLIEST_YEAR: i32 = 1970;
const LATEST_YEAR: i32 = 2100;

/// A JSON value that arrived as an event. An object is read member by member into its five
/// known fields, each kept as JSON, and the names of any others, so no map of the whole
/// object is built; any other value is only skipped over. A repeated member keeps its
/// last value, as a JSON object would.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Object(EventFields),
    NotObject,
}

/// The members of an incoming event object, as they came.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventFields {
    pub timestamp: Option<Value>,
    pub service: Option<Value>,
    pub message: Option<Value>,
    pub metadata: Option<Value>,
    pub idempotency_key: Option<Value>,
    unknown: BTreeSet<String>,
}

impl EventFields {
    /// The members of an event another protocol's decoder put together from its own
    /// fields; validated like any other.
    pub fn new(timestamp: Value, service: Value, message: Value, metadata: Option<Value>) -> Self {
        Self { timestamp: Some(timestamp), service: Some(service), message: Some(message), metadata, ..Self::default() }
    }
}

impl From<Value> for Incoming {
    fn from(value: Value) -> Self {
        // Every JSON value is an `Incoming`: reading one from a `Value` cannot fail.
        Self::deserialize(value).unwrap_or(Self::NotObject)
    }
}

impl<'de> Deserialize<'de> for Incoming {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IncomingVisitor)
    }
}

struct IncomingVisitor;

impl<'de> Visitor<'de> for IncomingVisitor {
    type Value = Incoming;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Incoming, A::Error> {
        let mut fields = EventFields::default();
        while let Some(member) = map.next_key::<Member>()? {
            let slot = match member {
                Member::Timestamp => &mut fields.timestamp,
                Member::Service => &mut fields.service,
                Member::Message => &mut fields.message,
                Member::Metadata => &mut fields.metadata,
                Member::IdempotencyKey => &mut fields.idempotency_key,
                Member::Number => {
                    map.next_value::<IgnoredAny>()?;
                    fields.unknown.insert(NUMBER_TOKEN.to_owned());
                    continue;
                }
                Member::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    fields.unknown.insert(name);
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        // serde_json's number map has the token as its one entry; an object that merely
        // uses the name among others is an object, read to its end.
        let mut number = EventFields::default();
        number.unknown.insert(NUMBER_TOKEN.to_owned());
        Ok(if fields == number { Incoming::NotObject } else { Incoming::Object(fields) })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Incoming, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Incoming::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Incoming, E> {
        Ok(Incoming::NotObject)
    }
}

/// A member name of an event object: one of the contract's fields, or another name.
enum Member {
    Timestamp,
    Service,
    Message,
    Metadata,
    IdempotencyKey,
    /// Not a member: how serde_json (with `arbitrary_precision`, which keeps numbers as
    /// written) hands a number to `deserialize_any`, as a one-entry map under this name.
    Number,
    Unknown(String),
}

/// serde_json's name for the map entry that carries a number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(MemberVisitor)
    }
}

struct MemberVisitor;

impl Visitor<'_> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
        Ok(match name {
            "timestamp" => Member::Timestamp,
            "service" => Member::Service,
            "message" => Member::Message,
            "metadata" => Member::Metadata,
            "idempotencyKey" => Member::IdempotencyKey,
            NUMBER_TOKEN => Member::Number,
            other => Member::Unknown(other.to_owned()),
        })
    }
}

/// Checks one event against the contract and returns the draft or every field error.
pub fn validate_event(incoming: impl Into<Incoming>, limits: &Limits) -> Result<EventDraft, Vec<FieldError>> {
    let Incoming::Object(fields) = incoming.into() else {
        return Err(vec![FieldError::new("event", "isObject", "an event must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = fields
        .unknown
        .iter()
        .map(|key| FieldError::new(key.as_str(), "whitelistValidation", format!("property {key} should not exist")))
        .collect();

    let timestamp = check(&mut errors, timestamp_field(fields.timestamp));
    let service = check(&mut errors, text_field(fields.service, "service", limits.max_service_chars, "service name"));
    let message = check(&mut errors, text_field(fields.message, "message", limits.max_message_chars, "message"));
    let metadata = check(&mut errors, metadata_field(fields.metadata, limits));
    let idempotency_key = match fields.idempotency_key {
        None | Some(Value::Null) => Some(None),
        key @ Some(_) => check(
            &mut errors,
            text_field(key, "idempotencyKey", limits.max_idempotency_key_chars, "idempotencyKey").map(Some),
        ),
    };

    match (timestamp, service, message, metadata, idempotency_key) {
        (Some(timestamp), Some(service), Some(message), Some(metadata), Some(idempotency_key)) if errors.is_empty() => {
            Ok(EventDraft { timestamp, service, message, metadata, idempotency_key })
        }
        _ => Err(errors),
    }
}

fn check<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

fn timestamp_field(value: Option<Value>) -> Result<DateTime<Utc>, FieldError> {
    let parsed = match value {
        None | Some(Value::Null) => return Err(FieldError::missing("timestamp")),
        Some(Value::String(text)) if text.is_empty() => {
            return Err(FieldError::new("timestamp", "isNotEmpty", "timestamp should not be empty"));
        }
        Some(Value::String(text)) => parse_timestamp(&text),
        Some(Value::Number(number)) => number.as_i64().and_then(from_epoch_millis),
        Some(_) => None,
    };
    parsed
        .ok_or_else(|| {
            FieldError::new(
                "timestamp",
                "isParseableTimestamp",
                "timestamp must be a parseable date (RFC 3339 / ISO 8601, or Unix epoch milliseconds)",
            )
        })
        .and_then(|instant| {
            let year = chrono::Datelike::year(&instant);
            if (EARLIEST_YEAR..LATEST_YEAR).contains(&year) {
                Ok(instant)
            } else {
                Err(FieldError::new(
                    "timestamp",
                    "isInRange",
                    format!("timestamp must be between {EARLIEST_YEAR}-01-01 and {LATEST_YEAR}-01-01"),
                ))
            }
        })
}

/// The instants Aurore accepts anywhere (event timestamps, query bounds, cursors): what
/// PostgreSQL, chrono and every client can represent and compute one step beyond.
pub const SUPPORTED_RANGE: &str = "between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z";

pub fn supported_instant(instant: DateTime<Utc>) -> bool {
    let earliest = DateTime::UNIX_EPOCH;
    let latest = NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|day| day.and_hms_micro_opt(23, 59, 59, 999_999))
        .map(|naive| Utc.from_utc_datetime(&naive));
    latest.is_some_and(|latest| (earliest..=latest).contains(&instant))
}

/// Parses RFC 3339 with any offset, a date-time without offset (read as UTC), a bare date,
/// or a string of digits as Unix epoch milliseconds. Everything is normalised to UTC.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    // chrono's format parser skips whitespace; surrounding spaces are a client bug.
    if text.trim() != text {
        return None;
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().and_then(from_epoch_millis);
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| Utc.from_utc_datetime(&naive))
}

fn from_epoch_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

fn text_field(value: Option<Value>, field: &'static str, max_chars: usize, label: &str) -> Result<String, FieldError> {
    match value {
        None | Some(Value::Null) => Err(FieldError::missing(field)),
        Some(Value::String(text)) if text.is_empty() => {
            Err(FieldError::new(field, "isNotEmpty", format!("{field} should not be empty")))
        }
        Some(Value::String(text)) if char_length(&text) > max_chars => {
            Err(FieldError::new(field, "maxLength", format!("{label} must be at most {max_chars} characters")))
        }
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(FieldError::new(field, "isString", format!("{field} must be a string"))),
    }
}

/// Counts characters as the original did: code points, not counting the emoji
/// presentation selectors U+FE0E and U+FE0F.
fn char_length(text: &str) -> usize {
    text.chars().filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}')).count()
}

fn metadata_field(value: Option<Value>, limits: &Limits) -> Result<Option<Value>, FieldError> {
    let metadata = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(metadata @ Value::Object(_)) => metadata,
        Some(_) => {
            return Err(FieldError::new("metadata", "isObject", "metadata must be an object"));
        }
    };
    let mut broken = Vec::new();
    let bytes = serialized_len(&metadata);
    if bytes > limits.max_metadata_bytes {
        broken.push(format!(
            "metadata must not exceed {} bytes when serialised (got {bytes})",
            limits.max_metadata_bytes
        ));
    }
    let depth = nesting_depth(&metadata);
    if depth > limits.max_metadata_depth {
        broken.push(format!("metadata must not nest deeper than {} levels (got {depth})", limits.max_metadata_depth));
    }
    let keys = key_count(&metadata);
    if keys > limits.max_metadata_keys {
        broken
            .push(format!("metadata must not have more than {} keys in total (got {keys})", limits.max_metadata_keys));
    }
    if let Some(number) = unstorable_number(&metadata) {
        let shown: String = number.chars().take(40).collect();
        broken.push(format!(
            "metadata numbers must have at most {MAX_NUMBER_DIGITS} digits and an exponent within ±{MAX_NUMBER_EXPONENT} (got {shown})"
        ));
    }
    if broken.is_empty() {
        Ok(Some(metadata))
    } else {
        Err(FieldError::new("metadata", "isMetadataSizeValid", broken.join("; ")))
    }
}

/// Digits and exponent a metadata number may have. Numbers are kept as written, and
/// PostgreSQL expands `1e131071` to every digit on each read: bounding both keeps a few
/// bytes sent from becoming megabytes read, and keeps numbers inside what `numeric` stores.
pub const MAX_NUMBER_DIGITS: usize = 1000;
pub const MAX_NUMBER_EXPONENT: i64 = 1000;

/// Whether `number`, as written, is within [`MAX_NUMBER_DIGITS`] and [`MAX_NUMBER_EXPONENT`].
pub fn is_storable_number(number: &serde_json::Number) -> bool {
    let text = number.to_string();
    let (mantissa, exponent) = text.split_once(['e', 'E']).unwrap_or((&text, "0"));
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let exponent_ok = exponent.trim_start_matches('+').parse::<i64>().is_ok_and(|e| e.abs() <= MAX_NUMBER_EXPONENT);
    digits <= MAX_NUMBER_DIGITS && exponent_ok
}

/// The first number anywhere in `value` that [`is_storable_number`] refuses, as written.
fn unstorable_number(value: &Value) -> Option<String> {
    match value {
        Value::Number(number) if !is_storable_number(number) => Some(number.to_string()),
        Value::Array(items) => items.iter().find_map(unstorable_number),
        Value::Object(members) => members.values().find_map(unstorable_number),
        _ => None,
    }
}

/// Length of the compact JSON encoding, measured without building the string.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The root object is depth 0; each nested object or array adds one, including inside
/// arrays (the original skipped array elements, which let deep objects through).
fn nesting_depth(value: &Value) -> usize {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Object(map) => Box::new(map.values()),
        Value::Array(items) => Box::new(items.iter()),
        _ => return 0,
    };
    children
        .filter(|child| child.is_object() || child.is_array())
        .map(|child| 1 + nesting_depth(child))
        .max()
        .unwrap_or(0)
}

/// Keys of every object at any depth, including objects inside arrays.
fn key_count(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(key_count).sum::<usize>(),
        Value::Array(items) => items.iter().map(key_count).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({"timestamp": "2024-01-15T10:30:00.000Z", "service": "auth-service",
               "message": "User login successful", "metadata": {"user_id": "12345"}})
    }

    fn errors_for(value: Value) -> Vec<FieldError> {
        validate_event(value, &Limits::default()).expect_err("event should be invalid")
    }

    fn with(field: &str, value: Value) -> Value {
        let mut event = valid();
        event[field] = value;
        event
    }

    fn rules(errors: &[FieldError], field: &str) -> Vec<&'static str> {
        errors.iter().filter(|e| e.field == field).flat_map(|e| e.constraints.keys().copied()).collect()
    }

    #[test]
    fn an_incoming_event_reads_its_members_as_a_json_object_would() {
        let body = br#"{"serv\u0069ce": "first", "service": "last", "extra": [1, {"a": 2}], "extra": null,
                        "timestamp": "2024-01-15T10:30:00Z", "message": "m", "metadata": {"k": [1, 2]}}"#;
        let from_bytes: Incoming = serde_json::from_slice(body).unwrap();
        assert_eq!(from_bytes, Incoming::from(serde_json::from_slice::<Value>(body).unwrap()));
        let errors = validate_event(from_bytes, &Limits::default()).unwrap_err();
        assert_eq!(rules(&errors, "extra"), ["whitelistValidation"], "a repeated unknown member is one error");
        assert_eq!(errors.len(), 1);
        let mut without_extra = serde_json::from_slice::<Value>(body).unwrap();
        without_extra.as_object_mut().unwrap().remove("extra");
        let draft = validate_event(without_extra, &Limits::default()).unwrap();
        assert_eq!((draft.service.as_str(), draft.metadata), ("last", Some(json!({"k": [1, 2]}))));
        for other in ["1", "-1", "1.5", "\"text\"", "[{\"service\": \"s\"}]", "null", "true"] {
            assert_eq!(serde_json::from_str::<Incoming>(other).unwrap(), Incoming::NotObject, "{other}");
        }
    }

    #[test]
    fn numbers_past_the_digit_or_exponent_bound_are_refused_naming_the_limit() {
        let with = |number: &str| {
            let body = format!(
                r#"{{"timestamp": "2024-01-15T10:30:00Z", "service": "s", "message": "m", "metadata": {{"a": [1, {{"n": {number}}}]}}}}"#
            );
            validate_event(serde_json::from_str::<Value>(&body).unwrap(), &Limits::default())
        };
        for fine in ["1e1000", "-1E-1000", "1e+1000", "123456789012345678901234567890", &"9".repeat(1000)] {
            assert!(with(fine).is_ok(), "{fine:.40}");
        }
        for refused in [
            "1e1001",
            "1e-1001",
            "1e131071",
            "1e99999999999999999999",
            &"9".repeat(1001),
            &format!("0.{}", "1".repeat(1000)),
        ] {
            let errors = with(refused).unwrap_err();
            assert_eq!(rules(&errors, "metadata"), ["isMetadataSizeValid"], "{refused:.40}");
            let message = &errors[0].constraints["isMetadataSizeValid"];
            assert!(message.contains("at most 1000 digits"), "{message}");
        }
    }

    #[test]
    fn accepts_the_contract_sample_and_normalises_to_utc() {
        let draft = validate_event(with("timestamp", json!("2024-01-15T12:30:00+02:00")), &Limits::default()).unwrap();
        assert_eq!(draft.timestamp.to_rfc3339(), "2024-01-15T10:30:00+00:00");
        assert_eq!(draft.service, "auth-service");
        assert_eq!(draft.metadata, Some(json!({"user_id": "12345"})));
    }

    #[test]
    fn accepts_epoch_milliseconds_as_number_or_string() {
        for value in [json!(1_705_314_600_000_i64), json!("1705314600000")] {
            let draft = validate_event(with("timestamp", value), &Limits::default()).unwrap();
            assert_eq!(draft.timestamp.to_rfc3339(), "2024-01-15T10:30:00+00:00");
        }
    }

    #[test]
    fn accepts_bare_dates_and_naive_times_as_utc() {
        assert_eq!(parse_timestamp("2024-01-15").unwrap().to_rfc3339(), "2024-01-15T00:00:00+00:00");
        assert_eq!(parse_timestamp("2024-01-15 10:30").unwrap().to_rfc3339(), "2024-01-15T10:30:00+00:00");
    }

    #[test]
    fn rejects_unparseable_and_out_of_range_timestamps() {
        for bad in ["2024-13-01", "invalid-date", " 2024-01-15", "foo 1"] {
            assert_eq!(
                rules(&errors_for(with("timestamp", json!(bad))), "timestamp"),
                ["isParseableTimestamp"],
                "{bad}"
            );
        }
        assert_eq!(rules(&errors_for(with("timestamp", json!("1969-12-31T23:59:59Z"))), "timestamp"), ["isInRange"]);
        assert_eq!(rules(&errors_for(with("timestamp", json!("2100-01-01T00:00:00Z"))), "timestamp"), ["isInRange"]);
        assert_eq!(rules(&errors_for(with("timestamp", json!(true))), "timestamp"), ["isParseableTimestamp"]);
    }

    #[test]
    fn reports_every_missing_field_at_once() {
        let errors = errors_for(json!({}));
        for field in ["timestamp", "service", "message"] {
            assert_eq!(rules(&errors, field), ["isNotEmpty", "isString"], "{field}");
        }
        assert!(rules(&errors, "metadata").is_empty(), "metadata is optional");
    }

    #[test]
    fn service_and_message_lengths_count_code_points() {
        let limits = Limits::default();
        let at_limit = "🦀".repeat(limits.max_service_chars);
        assert!(validate_event(with("service", json!(at_limit)), &limits).is_ok());
        let errors = errors_for(with("service", json!("s".repeat(101))));
        assert_eq!(errors[0].constraints["maxLength"], "service name must be at most 100 characters");
        let errors = errors_for(with("message", json!("m".repeat(2001))));
        assert_eq!(errors[0].constraints["maxLength"], "message must be at most 2000 characters");
        assert_eq!(rules(&errors_for(with("message", json!(""))), "message"), ["isNotEmpty"]);
        assert_eq!(rules(&errors_for(with("service", json!(42))), "service"), ["isString"]);
    }

    #[test]
    fn metadata_must_be_an_object_or_absent() {
        assert_eq!(validate_event(with("metadata", Value::Null), &Limits::default()).unwrap().metadata, None);
        assert_eq!(rules(&errors_for(with("metadata", json!([1, 2]))), "metadata"), ["isObject"]);
        assert_eq!(rules(&errors_for(with("metadata", json!("x"))), "metadata"), ["isObject"]);
    }

    #[test]
    fn metadata_limits_name_the_limit() {
        let deep_ok = json!({"a":{"b":{"c":{"d":{"e":{"f":1}}}}}});
        assert!(validate_event(with("metadata", deep_ok), &Limits::default()).is_ok());
        let too_deep = json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}});
        let message = &errors_for(with("metadata", too_deep))[0].constraints["isMetadataSizeValid"];
        assert!(message.contains("deeper than 5 levels (got 6)"), "{message}");
        let deep_in_array = json!({"a":[{"b":{"c":{"d":{"e":{"f":1}}}}}]});
        assert_eq!(rules(&errors_for(with("metadata", deep_in_array)), "metadata"), ["isMetadataSizeValid"]);

        let many_keys: serde_json::Map<String, Value> = (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
        let message = &errors_for(with("metadata", Value::Object(many_keys)))[0].constraints["isMetadataSizeValid"];
        assert!(message.contains("more than 100 keys in total (got 101)"), "{message}");

        let big = json!({"blob": "x".repeat(16 * 1024)});
        let message = &errors_for(with("metadata", big))[0].constraints["isMetadataSizeValid"];
        assert!(message.contains("must not exceed 16384 bytes"), "{message}");
    }

    #[test]
    fn metadata_size_is_the_compact_json_length() {
        let metadata = json!({"a": "é", "b": [1, null]});
        assert_eq!(serialized_len(&metadata), serde_json::to_string(&metadata).unwrap().len());
    }

    #[test]
    fn unknown_properties_are_rejected_by_name() {
        let errors = errors_for(with("colour", json!("blue")));
        assert_eq!(errors[0].constraints["whitelistValidation"], "property colour should not exist");
    }

    #[test]
    fn non_objects_are_rejected() {
        assert_eq!(rules(&errors_for(json!([1])), "event"), ["isObject"]);
        assert_eq!(rules(&errors_for(json!("text")), "event"), ["isObject"]);
    }

    /// Any JSON value, weighted towards objects with the contract's field names.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            Just(json!("2024-01-15T10:30:00Z")),
            Just(json!("<script>alert(1)</script>")),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            let key = prop_oneof![
                Just("timestamp".to_owned()),
                Just("service".to_owned()),
                Just("message".to_owned()),
                Just("metadata".to_owned()),
                Just("idempotencyKey".to_owned()),
                ".{0,8}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever a client sends, validation answers: a draft, or errors that each name a
        /// field and a rule (which the HTTP adapter maps to 400). It never panics.
        #[test]
        fn any_json_value_validates_or_names_what_is_wrong(value in any_json()) {
            match validate_event(value, &Limits::default()).and_then(|draft| crate::Markup::Strip.apply(draft)) {
                Ok(draft) => {
                    proptest::prop_assert!(!draft.service.is_empty() && !draft.message.is_empty());
                    proptest::prop_assert_eq!(crate::Markup::Strip.clean(&draft.message), draft.message.as_str());
                }
                Err(errors) => {
                    proptest::prop_assert!(!errors.is_empty());
                    for error in &errors {
                        proptest::prop_assert!(!error.constraints.is_empty(), "{error:?}");
                    }
                }
            }
        }
    }
}
