//! `GET /events`: parsing its parameters into an [`EventQuery`], and the opaque keyset
//! [`Cursor`] that makes deep pages as cheap as the first.

use crate::event::Event;
use crate::markup::Markup;
use crate::ports::QueryError;
use crate::validation::{FieldError, SUPPORTED_RANGE, parse_timestamp, supported_instant};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Bounds on a query. Defaults are the original service's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    pub max_service_chars: usize,
    pub max_range_days: i64,
    pub max_page: u32,
    pub max_page_size: u32,
    pub default_page_size: u32,
    /// Most rows a page-numbered request may skip: an OFFSET reads every row before the
    /// page. Deeper pages are for `cursor`, whose cost does not grow with depth.
    pub max_offset_rows: u64,
    /// Most events a range may hold for a sort other than `timestamp`: only `timestamp`
    /// has an index, so any other sort reads and sorts the whole range, cursor or not.
    pub max_sorted_rows: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_service_chars: 100,
            max_range_days: 30,
            max_page: 10_000,
            max_page_size: 1000,
            default_page_size: 100,
            max_offset_rows: 100_000,
            max_sorted_rows: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortField {
    #[serde(rename = "timestamp")]
    Timestamp,
    #[serde(rename = "service")]
    Service,
    #[serde(rename = "message")]
    Message,
    #[serde(rename = "ingestedAt")]
    IngestedAt,
    #[serde(rename = "createdAt")]
    CreatedAt,
}

impl SortField {
    const ALL: [SortField; 5] = [Self::Timestamp, Self::Service, Self::Message, Self::IngestedAt, Self::CreatedAt];

    pub fn name(self) -> &'static str {
        match self {
            Self::Timestamp => "timestamp",
            Self::Service => "service",
            Self::Message => "message",
            Self::IngestedAt => "ingestedAt",
            Self::CreatedAt => "createdAt",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == text)
    }

    /// The value of this field in `event`, as a cursor key.
    pub fn key_of(self, event: &StoredEvent) -> CursorKey {
        match self {
            Self::Timestamp => CursorKey::Time(event.event.timestamp),
            Self::Service | Self::Message => CursorKey::Row(event.event.timestamp),
            Self::IngestedAt => CursorKey::Time(event.event.ingested_at),
            Self::CreatedAt => CursorKey::Time(event.created_at),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[serde(rename = "ASC")]
    Asc,
    #[serde(rename = "DESC")]
    Desc,
}

impl SortOrder {
    pub fn name(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

/// Where the last row a page returned sorts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CursorKey {
    /// The value of a time sort field.
    #[serde(rename = "t")]
    Time(DateTime<Utc>),
    /// The row's timestamp: with the id it names the row (the primary key), whose text sort
    /// key the store reads back, so a cursor stays short however long a message is.
    #[serde(rename = "r")]
    Row(DateTime<Utc>),
}

/// Namespace of query digests (UUIDv5): a cursor names the query it continues.
const QUERY_DIGEST_NAMESPACE: Uuid = Uuid::from_u128(0x6175_726f_7265_4000_8000_7175_6572_7921);

/// Where the next page starts: after (`key`, `id`) in the given order, for the query whose
/// digest it carries. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "f")]
    pub sort_field: SortField,
    #[serde(rename = "o")]
    pub sort_order: SortOrder,
    #[serde(rename = "k")]
    pub key: CursorKey,
    #[serde(rename = "i")]
    pub id: Uuid,
    /// [`EventQuery::digest`] of the query it was issued for.
    #[serde(rename = "q")]
    pub query: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        // Serialising plain data to JSON cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// `None` unless `text` is a cursor this API could have issued: its key fits its sort
    /// field and its instant lies in the supported range.
    pub fn decode(text: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(text).ok()?;
        let cursor: Cursor = serde_json::from_slice(&json).ok()?;
        let well_formed = match (cursor.sort_field, &cursor.key) {
            (SortField::Service | SortField::Message, CursorKey::Row(instant))
            | (SortField::Timestamp | SortField::IngestedAt | SortField::CreatedAt, CursorKey::Time(instant)) => {
                // One microsecond either side: the cursor before the first row of a range.
                supported_instant(*instant - Duration::microseconds(1))
                    || supported_instant(*instant + Duration::microseconds(1))
            }
            _ => false,
        };
        well_formed.then_some(cursor)
    }
}

/// A validated `GET /events` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub service: String,
    /// Inclusive bounds on the event timestamp.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub page: u32,
    pub page_size: u32,
    pub sort_field: SortField,
    pub sort_order: SortOrder,
    /// When present, the page starts after it and `page` is ignored.
    pub cursor: Option<Cursor>,
    /// `metadata.<path>=<value>` filters, all of which must hold.
    pub metadata: Vec<MetadataFilter>,
    /// `q=`: text the message must contain, ignoring case.
    pub text: Option<String>,
    /// [`QueryLimits::max_sorted_rows`], which the store checks against the range's
    /// count through [`EventQuery::check_sort_cost`].
    pub max_sorted_rows: u64,
}

/// Metadata must hold `value` at `path` (`metadata.user.id=42` → `{"user": {"id": …}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFilter {
    pub path: Vec<String>,
    pub value: String,
}

impl MetadataFilter {
    /// The objects metadata may contain to match: the value as a string, and also as the
    /// number, boolean or null it spells, so `status=500` matches `{"status": 500}` too.
    pub fn candidates(&self) -> Vec<Value> {
        let mut values = vec![Value::String(self.value.clone())];
        if let Ok(scalar @ (Value::Number(_) | Value::Bool(_) | Value::Null)) = serde_json::from_str(&self.value) {
            values.push(scalar);
        }
        values
            .into_iter()
            .map(|value| self.path.iter().rev().fold(value, |inner, key| serde_json::json!({ key: inner })))
            .collect()
    }
}

/// Filters on one query at most, and their sizes.
const MAX_METADATA_FILTERS: usize = 10;
const MAX_FILTER_DEPTH: usize = 5;
const MAX_FILTER_CHARS: usize = 256;

impl EventQuery {
    /// Whether filters beyond service and time apply (the hourly counts cannot total them).
    pub fn is_filtered(&self) -> bool {
        !self.metadata.is_empty() || self.text.is_some()
    }

    /// A cursor just before the first row of a timestamp-sorted query, so a walk from it
    /// reads keyset pages only (no count, no offset). `None` for other sort fields.
    pub fn cursor_before_first(&self) -> Option<Cursor> {
        let key = match (self.sort_field, self.sort_order) {
            (SortField::Timestamp, SortOrder::Asc) => self.from - Duration::microseconds(1),
            (SortField::Timestamp, SortOrder::Desc) => self.to + Duration::microseconds(1),
            _ => return None,
        };
        Some(Cursor {
            sort_field: self.sort_field,
            sort_order: self.sort_order,
            key: CursorKey::Time(key),
            id: Uuid::nil(),
            query: self.digest(),
        })
    }

    /// Names what the query selects (service, range, filters), so a cursor issued for one
    /// query is refused by another instead of silently skipping rows.
    pub fn digest(&self) -> String {
        let filters: Vec<(&[String], &str)> =
            self.metadata.iter().map(|filter| (filter.path.as_slice(), filter.value.as_str())).collect();
        let selection = (&self.service, self.from.timestamp_micros(), self.to.timestamp_micros(), filters, &self.text);
        // Serialising plain data to JSON cannot fail.
        let canonical = serde_json::to_vec(&selection).unwrap_or_default();
        Uuid::new_v5(&QUERY_DIGEST_NAMESPACE, &canonical).simple().to_string()[..16].to_owned()
    }

    /// Refuses a sort other than `timestamp` over a range holding more than
    /// `max_sorted_rows` events (`range_events`, counted without the filters: a bound on
    /// the rows the sort reads). A timestamp sort walks the index and is never refused.
    pub fn check_sort_cost(&self, range_events: u64) -> Result<(), QueryError> {
        if self.sort_field == SortField::Timestamp || range_events <= self.max_sorted_rows {
            return Ok(());
        }
        Err(QueryError::TooManyToSort { sort_field: self.sort_field, limit: self.max_sorted_rows })
    }

    /// Rows to skip for page-numbered access (0 with a cursor).
    pub fn offset(&self) -> u64 {
        if self.cursor.is_some() { 0 } else { u64::from(self.page - 1) * u64::from(self.page_size) }
    }

    /// Parses decoded query-string pairs. Unknown and repeated parameters are errors, as
    /// are missing bounds, ranges over the limit and malformed cursors. `service`, `q` and
    /// metadata values go through `markup` as ingest's text did, so they find what was sent.
    pub fn parse(pairs: &[(String, String)], limits: &QueryLimits, markup: Markup) -> Result<Self, Vec<FieldError>> {
        const KNOWN: [&str; 9] = ["service", "from", "to", "page", "pageSize", "sortField", "sortOrder", "cursor", "q"];
        let mut errors = unknown_parameters(pairs, &KNOWN);
        let service = service_parameter(single(pairs, "service", &mut errors), limits, markup, &mut errors);
        let from = bound("from", single(pairs, "from", &mut errors), &mut errors);
        let to = bound("to", single(pairs, "to", &mut errors), &mut errors);
        check_range(from, to, limits, &mut errors);
        let page = integer("page", single(pairs, "page", &mut errors), 1, limits.max_page, 1, &mut errors);
        let page_size = integer(
            "pageSize",
            single(pairs, "pageSize", &mut errors),
            1,
            limits.max_page_size,
            limits.default_page_size,
            &mut errors,
        );
        let sort_field = match single(pairs, "sortField", &mut errors) {
            None => Some(SortField::Timestamp),
            Some(text) => SortField::parse(text).or_else(|| {
                errors.push(FieldError::new(
                    "sortField",
                    "isIn",
                    "sortField must be one of: timestamp, service, message, ingestedAt, createdAt",
                ));
                None
            }),
        };
        let sort_order = match single(pairs, "sortOrder", &mut errors) {
            None => Some(SortOrder::Desc),
            Some(text) if text.eq_ignore_ascii_case("asc") => Some(SortOrder::Asc),
            Some(text) if text.eq_ignore_ascii_case("desc") => Some(SortOrder::Desc),
            Some(_) => {
                errors.push(FieldError::new(
                    "sortOrder",
                    "isIn",
                    "sortOrder must be either ASC or DESC (case insensitive)",
                ));
                None
            }
        };
        let cursor = match single(pairs, "cursor", &mut errors) {
            None => Some(None),
            Some(text) => match Cursor::decode(text) {
                None => {
                    errors.push(FieldError::new(
                        "cursor",
                        "isCursor",
                        "cursor must be a next_cursor value returned by this API",
                    ));
                    None
                }
                Some(cursor) if Some(cursor.sort_field) != sort_field || Some(cursor.sort_order) != sort_order => {
                    errors.push(FieldError::new(
                        "cursor",
                        "matchesSort",
                        "cursor was issued for another sortField or sortOrder; repeat the original ones",
                    ));
                    None
                }
                Some(cursor) => Some(Some(cursor)),
            },
        };

        let metadata = metadata_filters(pairs, markup, &mut errors);
        let text = text_parameter(single(pairs, "q", &mut errors), markup, &mut errors);

        match (service, from, to, page, page_size, sort_field, sort_order, cursor) {
            (
                Some(service),
                Some(from),
                Some(to),
                Some(page),
                Some(page_size),
                Some(sort_field),
                Some(sort_order),
                Some(cursor),
            ) if errors.is_empty() => {
                let query = Self {
                    service,
                    from,
                    to,
                    page,
                    page_size,
                    sort_field,
                    sort_order,
                    cursor,
                    metadata,
                    text,
                    max_sorted_rows: limits.max_sorted_rows,
                };
                if query.offset() > limits.max_offset_rows {
                    return Err(vec![FieldError::new(
                        "page",
                        "maxOffset",
                        format!(
                            "page × pageSize must not skip more than {} rows; follow next_cursor for deeper pages",
                            limits.max_offset_rows
                        ),
                    )]);
                }
                match &query.cursor {
                    Some(cursor) if cursor.query != query.digest() => Err(vec![FieldError::new(
                        "cursor",
                        "matchesQuery",
                        "cursor was issued for another service, range or filter; repeat the original query or start without a cursor",
                    )]),
                    _ => Ok(query),
                }
            }
            _ => Err(errors),
        }
    }
}

impl crate::tail::TailFilter {
    /// Parses `GET /events/tail` parameters: `service` (required), `metadata.<path>` and `q`,
    /// with `markup` applied as in [`EventQuery::parse`].
    pub fn parse(pairs: &[(String, String)], limits: &QueryLimits, markup: Markup) -> Result<Self, Vec<FieldError>> {
        let mut errors = unknown_parameters(pairs, &["service", "q"]);
        let service = service_parameter(single(pairs, "service", &mut errors), limits, markup, &mut errors);
        let text = text_parameter(single(pairs, "q", &mut errors), markup, &mut errors).map(|text| text.to_lowercase());
        let metadata = metadata_filters(pairs, markup, &mut errors);
        match service {
            Some(service) if errors.is_empty() => Ok(Self { service: Some(service), metadata, text }),
            _ => Err(errors),
        }
    }
}

/// Parameters neither in `known` nor a metadata filter.
pub(crate) fn unknown_parameters(pairs: &[(String, String)], known: &[&str]) -> Vec<FieldError> {
    pairs
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()) && !name.starts_with(METADATA_PREFIX))
        .map(|(name, _)| {
            FieldError::new(name.as_str(), "whitelistValidation", format!("property {name} should not exist"))
        })
        .collect()
}

/// A parameter given at most once.
pub(crate) fn single<'a>(
    pairs: &'a [(String, String)],
    name: &'static str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let mut values = pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let first = values.next();
    if values.next().is_some() {
        errors.push(FieldError::new(name, "isString", format!("{name} must be given once")));
        return None;
    }
    first
}

/// Lengths are checked on what the client sent, as ingest checks them, before `markup`.
pub(crate) fn service_parameter(
    value: Option<&str>,
    limits: &QueryLimits,
    markup: Markup,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        None | Some("") => {
            errors.push(FieldError::new("service", "isNotEmpty", "service should not be empty"));
            None
        }
        Some(service) if service.chars().count() > limits.max_service_chars => {
            errors.push(FieldError::new(
                "service",
                "maxLength",
                format!("service name must be at most {} characters", limits.max_service_chars),
            ));
            None
        }
        Some(service) => Some(markup.clean(service).into_owned()),
    }
}

fn text_parameter(value: Option<&str>, markup: Markup, errors: &mut Vec<FieldError>) -> Option<String> {
    match value {
        None | Some("") => None,
        Some(text) if text.chars().count() > MAX_FILTER_CHARS => {
            errors.push(FieldError::new("q", "maxLength", format!("q must be at most {MAX_FILTER_CHARS} characters")));
            None
        }
        Some(text) => Some(markup.clean(text).into_owned()),
    }
}

pub(crate) const METADATA_PREFIX: &str = "metadata.";

fn metadata_filters(pairs: &[(String, String)], markup: Markup, errors: &mut Vec<FieldError>) -> Vec<MetadataFilter> {
    let mut filters = Vec::new();
    for (name, value) in pairs {
        let Some(path) = name.strip_prefix(METADATA_PREFIX) else {
            continue;
        };
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) || path.len() > MAX_FILTER_DEPTH {
            errors.push(FieldError::new(
                name.as_str(),
                "isMetadataPath",
                format!("{name} must name a key path of 1 to {MAX_FILTER_DEPTH} non-empty keys, e.g. metadata.user.id"),
            ));
        } else if value.chars().count() > MAX_FILTER_CHARS || name.chars().count() > MAX_FILTER_CHARS {
            errors.push(FieldError::new(
                name.as_str(),
                "maxLength",
                format!("{name} and its value must be at most {MAX_FILTER_CHARS} characters"),
            ));
        } else {
            filters.push(MetadataFilter { path, value: markup.clean(value).into_owned() });
        }
    }
    if filters.len() > MAX_METADATA_FILTERS {
        errors.push(FieldError::new(
            "metadata",
            "arrayMaxSize",
            format!("at most {MAX_METADATA_FILTERS} metadata filters per query"),
        ));
    }
    filters
}

/// `from` before `to`, at most `max_range_days` apart.
pub(crate) fn check_range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limits: &QueryLimits,
    errors: &mut Vec<FieldError>,
) {
    let (Some(from), Some(to)) = (from, to) else { return };
    if from >= to {
        errors.push(FieldError::new("to", "isValidTimeRange", "'from' timestamp must be before 'to' timestamp"));
    } else if to - from > Duration::days(limits.max_range_days) {
        errors.push(FieldError::new(
            "to",
            "isMaxTimeRange",
            format!("Time range between 'from' and 'to' must not exceed {} days", limits.max_range_days),
        ));
    }
}

pub(crate) fn bound(name: &'static str, value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    match value {
        None | Some("") => {
            errors.push(FieldError::new(name, "isNotEmpty", format!("{name} should not be empty")));
            None
        }
        Some(text) => match parse_timestamp(text) {
            Some(instant) if supported_instant(instant) => Some(instant),
            Some(_) => {
                errors.push(FieldError::new(name, "isInSupportedRange", format!("{name} must be {SUPPORTED_RANGE}")));
                None
            }
            None => {
                errors.push(FieldError::new(
                    name,
                    "isParseableTimestamp",
                    format!("{name} must be a parseable date (RFC 3339 / ISO 8601, or Unix epoch milliseconds)"),
                ));
                None
            }
        },
    }
}

fn integer(
    name: &'static str,
    value: Option<&str>,
    min: u32,
    max: u32,
    default: u32,
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    let Some(text) = value else {
        return Some(default);
    };
    let Ok(number) = text.parse::<i64>() else {
        errors.push(FieldError::new(name, "isInt", format!("{name} must be an integer number")));
        return None;
    };
    if number < i64::from(min) {
        errors.push(FieldError::new(name, "min", format!("{name} must not be less than {min}")));
        None
    } else if number > i64::from(max) {
        errors.push(FieldError::new(name, "max", format!("{name} must not exceed {max}")));
        None
    } else {
        u32::try_from(number).ok()
    }
}

/// An event as read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: Event,
    /// When the store committed the row.
    pub created_at: DateTime<Utc>,
}

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// Every event matching the filter, across all pages. Not counted for cursor pages:
    /// a count costs as much as reading every match, which is what cursors avoid.
    pub total: Option<u64>,
    pub has_more: bool,
}

impl EventPage {
    /// The cursor that continues after this page, when there is more.
    pub fn next_cursor(&self, query: &EventQuery) -> Option<Cursor> {
        let last = self.events.last().filter(|_| self.has_more)?;
        Some(Cursor {
            sort_field: query.sort_field,
            sort_order: query.sort_order,
            key: query.sort_field.key_of(last),
            id: *last.event.id.as_uuid(),
            query: query.digest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("service", "auth"), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")]
    }

    fn fields(result: Result<EventQuery, Vec<FieldError>>) -> Vec<(String, &'static str)> {
        result
            .expect_err("query should be invalid")
            .into_iter()
            .flat_map(|e| e.constraints.keys().map(|rule| (e.field.clone(), *rule)).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn applies_defaults() {
        let query = EventQuery::parse(&pairs(&base()), &QueryLimits::default(), Markup::Strip).unwrap();
        assert_eq!((query.page, query.page_size), (1, 100));
        assert_eq!((query.sort_field, query.sort_order), (SortField::Timestamp, SortOrder::Desc));
        assert_eq!(query.offset(), 0);
    }

    #[test]
    fn compares_bounds_as_instants() {
        let mut list = base();
        list[1] = ("from", "2024-01-15T02:00:00+02:00");
        let query = EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip).unwrap();
        assert_eq!(query.from.to_rfc3339(), "2024-01-15T00:00:00+00:00");
    }

    #[test]
    fn rejects_bad_ranges_and_limits_by_name() {
        let limits = QueryLimits::default();
        let mut list = base();
        list[2] = ("to", "2024-01-15T00:00:00Z");
        assert_eq!(
            fields(EventQuery::parse(&pairs(&list), &limits, Markup::Strip)),
            [("to".into(), "isValidTimeRange")]
        );
        list[2] = ("to", "2024-02-15T00:00:00Z");
        assert_eq!(fields(EventQuery::parse(&pairs(&list), &limits, Markup::Strip)), [("to".into(), "isMaxTimeRange")]);

        let mut list = base();
        list.extend([("pageSize", "1001"), ("page", "0"), ("sortOrder", "up"), ("sortField", "id"), ("limit", "5")]);
        let mut found = fields(EventQuery::parse(&pairs(&list), &limits, Markup::Strip));
        found.sort();
        assert_eq!(
            found,
            [
                ("limit".into(), "whitelistValidation"),
                ("page".into(), "min"),
                ("pageSize".into(), "max"),
                ("sortField".into(), "isIn"),
                ("sortOrder".into(), "isIn"),
            ]
        );
    }

    #[test]
    fn requires_service_and_bounds() {
        let mut found = fields(EventQuery::parse(&[], &QueryLimits::default(), Markup::Strip));
        found.sort();
        assert_eq!(
            found,
            [("from".into(), "isNotEmpty"), ("service".into(), "isNotEmpty"), ("to".into(), "isNotEmpty")]
        );
    }

    #[test]
    fn cursor_round_trips_and_must_match_the_sort() {
        let for_base = EventQuery::parse(&pairs(&base()), &QueryLimits::default(), Markup::Strip).unwrap().digest();
        let cursor = Cursor {
            sort_field: SortField::Message,
            sort_order: SortOrder::Asc,
            key: CursorKey::Row(Utc::now()),
            id: Uuid::now_v7(),
            query: for_base,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));

        let mut list = base();
        let encoded = cursor.encode();
        list.push(("cursor", &encoded));
        assert_eq!(
            fields(EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip)),
            [("cursor".into(), "matchesSort")]
        );
        list.extend([("sortField", "message"), ("sortOrder", "asc")]);
        let query = EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip).unwrap();
        assert_eq!(query.cursor, Some(cursor));

        // The same cursor with another service, range or filter would skip rows: refused.
        for (name, value) in [("service", "other"), ("from", "2024-01-15T00:00:01Z"), ("q", "x"), ("metadata.a", "b")] {
            let mut other: Vec<(&str, &str)> = list.iter().filter(|(key, _)| *key != name).copied().collect();
            other.push((name, value));
            assert_eq!(
                fields(EventQuery::parse(&pairs(&other), &QueryLimits::default(), Markup::Strip)),
                [("cursor".into(), "matchesQuery")],
                "{name}"
            );
        }
    }

    #[test]
    fn only_a_timestamp_sort_may_read_a_range_over_the_sorted_rows_limit() {
        let limits = QueryLimits { max_sorted_rows: 500, ..QueryLimits::default() };
        let by_time = EventQuery::parse(&pairs(&base()), &limits, Markup::Strip).unwrap();
        assert!(by_time.check_sort_cost(1_000_000).is_ok(), "the index serves any depth");
        for field in ["message", "service", "ingestedAt", "createdAt"] {
            let mut list = base();
            list.push(("sortField", field));
            let query = EventQuery::parse(&pairs(&list), &limits, Markup::Strip).unwrap();
            assert!(query.check_sort_cost(500).is_ok(), "exactly the limit");
            match query.check_sort_cost(501) {
                Err(QueryError::TooManyToSort { sort_field, limit }) => {
                    assert_eq!((sort_field.name(), limit), (field, 500));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_page_number_may_not_skip_more_rows_than_the_limit() {
        let limits = QueryLimits { max_offset_rows: 1000, ..QueryLimits::default() };
        let mut list = base();
        list.extend([("page", "11"), ("pageSize", "100")]);
        assert!(EventQuery::parse(&pairs(&list), &limits, Markup::Strip).is_ok(), "exactly the limit");
        list[3] = ("page", "12");
        assert_eq!(fields(EventQuery::parse(&pairs(&list), &limits, Markup::Strip)), [("page".into(), "maxOffset")]);
        list.push(("cursor", "x"));
        assert_eq!(fields(EventQuery::parse(&pairs(&list), &limits, Markup::Strip)), [("cursor".into(), "isCursor")]);
    }

    #[test]
    fn instants_outside_the_supported_range_are_refused_by_name() {
        for (from, to) in [
            ("-5000-01-01", "-5000-01-02"),
            ("1969-12-31T23:59:59.999999Z", "1970-01-02T00:00:00Z"),
            ("9999-12-31T00:00:00Z", "253402300800000"),
            ("+262142-12-31T00:00:00", "+262142-12-31T23:59:59.999999"),
        ] {
            let mut list = base();
            list[1] = ("from", from);
            list[2] = ("to", to);
            let found = fields(EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip));
            assert!(found.iter().any(|(_, rule)| *rule == "isInSupportedRange"), "{from}..{to}: {found:?}");
        }
        let mut list = base();
        list[1] = ("from", "9999-12-31T00:00:00Z");
        list[2] = ("to", "9999-12-31T23:59:59.999999Z");
        let query = EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip).unwrap();
        let before_first = query.cursor_before_first().unwrap();
        assert_eq!(Cursor::decode(&before_first.encode()), Some(before_first), "the edge of the range pages");
    }

    #[test]
    fn rejects_forged_cursors() {
        let mut list = base();
        list.push(("cursor", "not-a-cursor"));
        assert_eq!(
            fields(EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip)),
            [("cursor".into(), "isCursor")]
        );
        let forged = |json: String| Cursor::decode(&URL_SAFE_NO_PAD.encode(json));
        let id = Uuid::nil();
        assert_eq!(
            forged(format!(r#"{{"f":"timestamp","o":"DESC","k":{{"r":"2024-01-15T00:00:00Z"}},"i":"{id}","q":""}}"#)),
            None
        );
        assert_eq!(
            forged(format!(r#"{{"f":"message","o":"DESC","k":{{"t":"2024-01-15T00:00:00Z"}},"i":"{id}","q":""}}"#)),
            None
        );
        assert_eq!(forged(format!(r#"{{"f":"message","o":"DESC","k":{{"s":"a\u0000b"}},"i":"{id}","q":""}}"#)), None);
        assert_eq!(
            forged(format!(
                r#"{{"f":"timestamp","o":"DESC","k":{{"t":"+262142-12-31T00:00:00Z"}},"i":"{id}","q":""}}"#
            )),
            None
        );
        assert_eq!(
            forged(format!(r#"{{"f":"timestamp","o":"DESC","k":{{"t":"-5000-01-01T00:00:00Z"}},"i":"{id}","q":""}}"#)),
            None
        );
        assert_eq!(
            forged(format!(r#"{{"f":"timestamp","o":"DESC","k":{{"t":"2024-01-15T00:00:00Z"}},"i":"{id}"}}"#)),
            None
        );
        let valid = format!(r#"{{"f":"timestamp","o":"DESC","k":{{"t":"2024-01-15T00:00:00Z"}},"i":"{id}","q":""}}"#);
        assert!(forged(valid).is_some());
    }

    #[test]
    fn metadata_filters_and_text_search_are_parsed_and_bounded() {
        let mut list = base();
        list.extend([("metadata.region", "eu"), ("metadata.user.id", "42"), ("q", "Time out")]);
        let query = EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip).unwrap();
        assert!(query.is_filtered());
        assert_eq!(query.text.as_deref(), Some("Time out"));
        assert_eq!(query.metadata[0].candidates(), [serde_json::json!({"region": "eu"})]);
        assert_eq!(
            query.metadata[1].candidates(),
            [serde_json::json!({"user": {"id": "42"}}), serde_json::json!({"user": {"id": 42}})],
            "a number matches as text and as a number"
        );

        let mut list = base();
        list.extend([("metadata.", "x"), ("metadata.a..b", "x"), ("metadata.a.b.c.d.e.f", "x")]);
        let errors = fields(EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip));
        assert_eq!(errors.iter().filter(|(_, rule)| *rule == "isMetadataPath").count(), 3, "{errors:?}");

        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        let mut list = base();
        list.push(("q", &long));
        assert_eq!(
            fields(EventQuery::parse(&pairs(&list), &QueryLimits::default(), Markup::Strip)),
            [("q".to_owned(), "maxLength")]
        );
        assert!(!EventQuery::parse(&pairs(&base()), &QueryLimits::default(), Markup::Strip).unwrap().is_filtered());
    }

    #[test]
    fn text_parameters_are_cleaned_as_ingest_cleaned_what_was_stored() {
        let sent = "R&D <b>x</b> < 5";
        let mut list = vec![("service", sent), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")];
        list.extend([("q", sent), ("metadata.team", sent)]);
        for markup in [Markup::Strip, Markup::Escape, Markup::Off] {
            let stored = markup.clean(sent).into_owned();
            let query = EventQuery::parse(&pairs(&list), &QueryLimits::default(), markup).unwrap();
            assert_eq!(
                (&query.service, query.text.as_ref(), &query.metadata[0].value),
                (&stored, Some(&stored), &stored)
            );
            let tail = crate::TailFilter::parse(&pairs(&[list[0], list[3], list[4]]), &QueryLimits::default(), markup)
                .unwrap();
            let text = stored.to_lowercase();
            assert_eq!(
                (tail.service.as_ref(), tail.text.as_ref(), &tail.metadata[0].value),
                (Some(&stored), Some(&text), &stored)
            );
        }
        assert_eq!(Markup::Strip.clean(sent), "R&D x < 5", "ordinary characters are left as typed");
    }
}
