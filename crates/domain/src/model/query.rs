//! `GET /events`: the checked [`EventQuery`] the HTTP layer builds from its parameters, and the opaque keyset
//! [`Cursor`] that makes deep pages as cheap as the first.

use crate::event::Event;
use crate::filter::Filter;
use crate::markup::Markup;
use crate::ports::QueryError;
use crate::validation::{FieldError, supported_instant};
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

    /// The field by its wire name (`ingestedAt`), exactly.
    pub fn from_name(text: &str) -> Option<Self> {
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
    /// `q=`: the filter language's query (a plain word: text the message contains,
    /// ignoring case).
    pub filter: Option<Filter>,
    /// [`QueryLimits::max_sorted_rows`], which the store checks against the range's
    /// count through [`EventQuery::check_sort_cost`].
    pub max_sorted_rows: u64,
}

/// Metadata must hold `value` at `path` (`metadata.user.id=42` → `{"user": {"id": …}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFilter {
    pub path: Vec<String>,
    pub value: String,
    /// Spelled `metadata.<path>!=<value>`: leaves out what the filter matches, keeping
    /// events that lack the key.
    pub excluded: bool,
}

impl MetadataFilter {
    /// The objects metadata may contain to match: the value as a string, and also as the
    /// number, boolean or null it spells, so `status=500` matches `{"status": 500}` too.
    pub fn candidates(&self) -> Vec<Value> {
        let mut values = vec![Value::String(self.value.clone())];
        match serde_json::from_str(&self.value) {
            // A number the store could not hold matches no stored number.
            Ok(Value::Number(number)) if !crate::validation::is_storable_number(&number) => {}
            Ok(scalar @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => values.push(scalar),
            _ => {}
        }
        values
            .into_iter()
            .map(|value| self.path.iter().rev().fold(value, |inner, key| serde_json::json!({ key: inner })))
            .collect()
    }
}

/// The value at `path` in `metadata`, if there is one.
pub(crate) fn value_at<'a>(metadata: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    metadata.and_then(|metadata| path.iter().try_fold(metadata, |value, key| value.get(key)))
}

/// Whether a stored `found` is what a filter's `value` spells, as the store's containment
/// of [`MetadataFilter::candidates`] decides: that string, or the number, boolean or null
/// it spells.
pub(crate) fn spells(found: &Value, value: &str) -> bool {
    match found {
        Value::String(text) => text == value,
        Value::Number(_) | Value::Bool(_) | Value::Null => {
            serde_json::from_str::<Value>(value).is_ok_and(|wanted| wanted == *found)
        }
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Filters on one query at most, and their sizes.
pub const MAX_METADATA_FILTERS: usize = 10;
pub const MAX_FILTER_DEPTH: usize = 5;
pub const MAX_FILTER_CHARS: usize = 256;

impl EventQuery {
    /// Whether filters beyond service and time apply (the hourly counts cannot total them).
    pub fn is_filtered(&self) -> bool {
        !self.metadata.is_empty() || self.filter.is_some()
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
        let filters: Vec<(&[String], &str, bool)> = self
            .metadata
            .iter()
            .map(|filter| (filter.path.as_slice(), filter.value.as_str(), filter.excluded))
            .collect();
        let query = self.filter.as_ref().map(ToString::to_string);
        let selection = (&self.service, self.from.timestamp_micros(), self.to.timestamp_micros(), filters, query);
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
}

/// The checks on a query's values once the HTTP layer has read them, shared by
/// `GET /events`, the export, the histogram and the live tail. Each pushes what it
/// refuses onto `errors`, so a client hears of every bad value at once.
///
/// `service`: present, at most `max_service_chars` as sent (lengths are checked on what
/// the client sent, as ingest checks them), then cleaned by `markup` as ingest cleaned
/// what was stored.
pub fn checked_service(
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

/// `q`: at most [`MAX_QUERY_CHARS`], parsed by the filter language (a parse error names
/// the byte and what was expected there), each value in it cleaned by `markup` as ingest
/// cleaned what was stored; blank means no filter.
pub fn checked_query(value: Option<&str>, markup: Markup, errors: &mut Vec<FieldError>) -> Option<Filter> {
    let text = value?;
    if let Some(error) = query_too_long(text) {
        errors.push(error);
        return None;
    }
    parse_query(text, markup).unwrap_or_else(|error| {
        errors.push(FieldError::new("q", "isQuery", format!("q does not parse {error}")));
        None
    })
}

/// `q` longer than [`MAX_QUERY_CHARS`], named.
pub fn query_too_long(text: &str) -> Option<FieldError> {
    (text.chars().count() > MAX_QUERY_CHARS)
        .then(|| FieldError::new("q", "maxLength", format!("q must be at most {MAX_QUERY_CHARS} characters")))
}

/// `q` parsed, each value in it cleaned by `markup` as ingest cleaned what was stored.
pub fn parse_query(text: &str, markup: Markup) -> Result<Option<Filter>, crate::filter::FilterError> {
    let mut filter = Filter::parse(text)?;
    if let Some(filter) = &mut filter {
        filter.map_values(&|value| markup.clean(value).into_owned());
    }
    Ok(filter)
}

/// The longest `q=`.
pub const MAX_QUERY_CHARS: usize = 1024;

/// The parameters `metadata.<path>=<value>` are named with.
pub const METADATA_PREFIX: &str = "metadata.";

/// One `metadata.<path>=<value>` filter, or `metadata.<path>!=<value>` (`name` with its
/// prefix, and its `!`): 1 to
/// [`MAX_FILTER_DEPTH`] non-empty keys, name and value at most [`MAX_FILTER_CHARS`], the
/// value cleaned by `markup`.
pub fn checked_filter(name: &str, value: &str, markup: Markup, errors: &mut Vec<FieldError>) -> Option<MetadataFilter> {
    let (keys, excluded) = name.strip_suffix('!').map_or((name, false), |keys| (keys, true));
    let path: Vec<String> = keys.strip_prefix(METADATA_PREFIX)?.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) || path.len() > MAX_FILTER_DEPTH {
        errors.push(FieldError::new(
            name,
            "isMetadataPath",
            format!("{name} must name a key path of 1 to {MAX_FILTER_DEPTH} non-empty keys, e.g. metadata.user.id"),
        ));
        None
    } else if value.chars().count() > MAX_FILTER_CHARS || name.chars().count() > MAX_FILTER_CHARS {
        errors.push(FieldError::new(
            name,
            "maxLength",
            format!("{name} and its value must be at most {MAX_FILTER_CHARS} characters"),
        ));
        None
    } else {
        Some(MetadataFilter { path, value: markup.clean(value).into_owned(), excluded })
    }
}

/// At most [`MAX_METADATA_FILTERS`] filters on one query.
pub fn check_filter_count(filters: &[MetadataFilter], errors: &mut Vec<FieldError>) {
    if filters.len() > MAX_METADATA_FILTERS {
        errors.push(FieldError::new(
            "metadata",
            "arrayMaxSize",
            format!("at most {MAX_METADATA_FILTERS} metadata filters per query"),
        ));
    }
}

/// `from` before `to`, at most `max_range_days` apart.
pub fn check_range(
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

/// A cursor is only good for the sort it was issued for.
pub fn check_cursor_sort(
    cursor: &Cursor,
    sort_field: Option<SortField>,
    sort_order: Option<SortOrder>,
    errors: &mut Vec<FieldError>,
) -> bool {
    let matches = Some(cursor.sort_field) == sort_field && Some(cursor.sort_order) == sort_order;
    if !matches {
        errors.push(FieldError::new(
            "cursor",
            "matchesSort",
            "cursor was issued for another sortField or sortOrder; repeat the original ones",
        ));
    }
    matches
}

impl EventQuery {
    /// The checks that need the whole query: a page number may not skip more than
    /// `max_offset_rows`, and a cursor must have been issued for this very query.
    pub fn check(self, limits: &QueryLimits) -> Result<Self, Vec<FieldError>> {
        if self.offset() > limits.max_offset_rows {
            return Err(vec![FieldError::new(
                "page",
                "maxOffset",
                format!(
                    "page × pageSize must not skip more than {} rows; follow next_cursor for deeper pages",
                    limits.max_offset_rows
                ),
            )]);
        }
        match &self.cursor {
            Some(cursor) if cursor.query != self.digest() => Err(vec![FieldError::new(
                "cursor",
                "matchesQuery",
                "cursor was issued for another service, range or filter; repeat the original query or start without a cursor",
            )]),
            _ => Ok(self),
        }
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
