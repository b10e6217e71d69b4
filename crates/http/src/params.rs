//! Every query string the API reads, read here: decoded once by [`query_pairs`] (which
//! refuses NUL characters), then each endpoint's parameters read into the domain's typed
//! values. Unknown and repeated parameters are refused by name; the domain's checks
//! (`aurore_domain::query`) rule on the values.

use crate::error::ApiError;
use actix_web::HttpRequest;
use actix_web::http::header;
use aurore_domain::filter::{Field, FieldTest, Filter, Test};
use aurore_domain::query::{
    METADATA_PREFIX, check_cursor_sort, check_filter_count, check_range, checked_filter, checked_query, checked_service,
};
use aurore_domain::validation::{SUPPORTED_RANGE, parse_timestamp, supported_instant};
use aurore_domain::{
    Cursor, DeadLetterFilter, Durability, Erasure, EventQuery, FieldError, HistogramQuery, Interval, Markup,
    MetadataFilter, Privacy, QueryLimits, SortField, SortOrder, TailFilter,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// Dead-letter pages: the default and the most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The decoded query string, in order, repeats kept. A NUL character (`%00`) is refused
/// here for every parameter: PostgreSQL can neither store nor compare one, so it would
/// otherwise come back from the store as a failure of the store.
pub(crate) fn query_pairs(request: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string()).map_err(|error| {
        ApiError::Invalid(vec![FieldError::new("query", "isQueryString", format!("malformed query string: {error}"))])
    })?;
    let with_nul: Vec<FieldError> = pairs
        .iter()
        .filter(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| {
            let name = name.replace('\0', "\\0");
            FieldError::new(name.clone(), "noNulCharacter", format!("{name} must not contain a NUL character (%00)"))
        })
        .collect();
    if with_nul.is_empty() { Ok(pairs) } else { Err(ApiError::Invalid(with_nul)) }
}

/// A request may ask for another durability than the server's default, with the query
/// parameter `durability=` or the header `Prefer: durability=` (`none`, `journal`, `stored`).
pub(crate) fn durability(request: &HttpRequest, default: Durability) -> Result<Durability, ApiError> {
    let from_query = query_pairs(request)?.into_iter().find(|(name, _)| name == "durability").map(|(_, value)| value);
    let from_header = request
        .headers()
        .get_all(header::HeaderName::from_static("prefer"))
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| preference.trim().strip_prefix("durability=").map(str::to_owned));
    match from_query.or(from_header) {
        None => Ok(default),
        Some(text) => serde_json::from_value(Value::String(text.trim().to_ascii_lowercase())).map_err(|_| {
            ApiError::Invalid(vec![FieldError::new(
                "durability",
                "isIn",
                "durability must be one of: none, journal, stored",
            )])
        }),
    }
}

/// `GET /dlq`: `service`, `reprocessed`, `limit` (1 to 1,000, default 100), `offset`.
pub(crate) fn dead_letter_filter(request: &HttpRequest) -> Result<DeadLetterFilter, ApiError> {
    let pairs = query_pairs(request)?;
    let mut filter = DeadLetterFilter { limit: DEFAULT_LIMIT, ..DeadLetterFilter::default() };
    let mut errors = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "service" => filter.service = Some(value),
            "reprocessed" => match value.as_str() {
                "true" => filter.reprocessed = Some(true),
                "false" => filter.reprocessed = Some(false),
                _ => errors.push(FieldError::new("reprocessed", "isBoolean", "reprocessed must be true or false")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => filter.limit = limit,
                _ => errors.push(FieldError::new(
                    "limit",
                    "max",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )),
            },
            "offset" => match value.parse::<u64>() {
                Ok(offset) => filter.offset = offset,
                Err(_) => errors.push(FieldError::new("offset", "min", "offset must be an integer of at least 0")),
            },
            other => {
                errors.push(FieldError::new(other, "whitelistValidation", format!("property {other} should not exist")))
            }
        }
    }
    if errors.is_empty() { Ok(filter) } else { Err(ApiError::Invalid(errors)) }
}

/// `GET /events` (and the export's) parameters. Unknown and repeated parameters are
/// errors, as are missing bounds, ranges over the limit and malformed cursors. `service`, `q` and
/// metadata values go through `markup` as ingest's text did, so they find what was sent.
pub(crate) fn event_query(
    pairs: &[(String, String)],
    limits: &QueryLimits,
    markup: Markup,
    privacy: &Privacy,
) -> Result<EventQuery, Vec<FieldError>> {
    const KNOWN: [&str; 9] = ["service", "from", "to", "page", "pageSize", "sortField", "sortOrder", "cursor", "q"];
    let mut errors = unknown_parameters(pairs, &KNOWN);
    let service = checked_service(single(pairs, "service", &mut errors), limits, markup, &mut errors);
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
        Some(text) => SortField::from_name(text).or_else(|| {
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
            Some(cursor) if !check_cursor_sort(&cursor, sort_field, sort_order, &mut errors) => None,
            Some(cursor) => Some(Some(cursor)),
        },
    };

    let metadata = metadata_filters(pairs, markup, &mut errors);
    let filter = checked_query(single(pairs, "q", &mut errors), markup, &mut errors);

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
        ) if errors.is_empty() => EventQuery {
            metadata: metadata.into_iter().map(|filter| privacy.metadata_filter(&service, filter)).collect(),
            filter: filter.map(|filter| privacy.query_filter(filter, Some(&service))),
            service,
            from,
            to,
            page,
            page_size,
            sort_field,
            sort_order,
            cursor,
            max_sorted_rows: limits.max_sorted_rows,
        }
        .check(limits),
        _ => Err(errors),
    }
}

/// `GET /events/query/explain`: `q` alone, at most [`aurore_domain::query::MAX_QUERY_CHARS`].
pub(crate) fn explained_query(pairs: &[(String, String)]) -> Result<String, Vec<FieldError>> {
    let mut errors = unknown_parameters(pairs, &["q"]);
    let q = single(pairs, "q", &mut errors).unwrap_or_default().to_owned();
    errors.extend(aurore_domain::query::query_too_long(&q));
    if errors.is_empty() { Ok(q) } else { Err(errors) }
}

/// `POST /admin/erase`: `service`, `from` and `to` (each optional: every service, no
/// bound), `metadata.<path>=<value>` filters and `q`, at least one of the last two (service
/// and time alone would erase everything in them: retention removes whole ranges). Values go
/// through `markup` and `privacy` as a query's do, so raw values find their pseudonyms.
pub(crate) fn erasure(
    pairs: &[(String, String)],
    limits: &QueryLimits,
    markup: Markup,
    privacy: &Privacy,
) -> Result<Erasure, Vec<FieldError>> {
    let mut errors = unknown_parameters(pairs, &["service", "from", "to", "q"]);
    let service = single(pairs, "service", &mut errors)
        .and_then(|service| checked_service(Some(service), limits, markup, &mut errors));
    let from = single(pairs, "from", &mut errors).map(|text| bound("from", Some(text), &mut errors));
    let to = single(pairs, "to", &mut errors).map(|text| bound("to", Some(text), &mut errors));
    if let (Some(Some(from)), Some(Some(to))) = (from, to)
        && from >= to
    {
        errors.push(FieldError::new("to", "isValidTimeRange", "'from' timestamp must be before 'to' timestamp"));
    }
    let metadata = metadata_filters(pairs, markup, &mut errors);
    let query = checked_query(single(pairs, "q", &mut errors), markup, &mut errors);
    let mut terms: Vec<Filter> = metadata
        .into_iter()
        .map(|filter| {
            let test =
                Filter::Field(FieldTest { field: Field::Metadata(filter.path), test: Test::Equals(filter.value) });
            if filter.excluded { Filter::Not(Box::new(test)) } else { test }
        })
        .chain(query)
        .collect();
    if terms.is_empty() && errors.is_empty() {
        errors.push(FieldError::new(
            "q",
            "isNotEmpty",
            "an erasure needs metadata.<key>=<value> or q: service and time alone would erase everything in them",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let filter = if terms.len() == 1 { terms.remove(0) } else { Filter::And(terms) };
    Ok(Erasure {
        filter: privacy.query_filter(filter, service.as_deref()),
        service,
        from: from.flatten(),
        to: to.flatten(),
    })
}

/// Parses `GET /events/tail` parameters: `service` (required), `metadata.<path>` and `q`,
/// with `markup` applied as in [`event_query`].
pub(crate) fn tail_filter(
    pairs: &[(String, String)],
    limits: &QueryLimits,
    markup: Markup,
    privacy: &Privacy,
) -> Result<TailFilter, Vec<FieldError>> {
    let mut errors = unknown_parameters(pairs, &["service", "q"]);
    let service = checked_service(single(pairs, "service", &mut errors), limits, markup, &mut errors);
    let filter = checked_query(single(pairs, "q", &mut errors), markup, &mut errors);
    let metadata = metadata_filters(pairs, markup, &mut errors);
    match service {
        Some(service) if errors.is_empty() => Ok(TailFilter {
            metadata: metadata.into_iter().map(|filter| privacy.metadata_filter(&service, filter)).collect(),
            filter: filter.map(|filter| privacy.query_filter(filter, Some(&service))),
            service: Some(service),
        }),
        _ => Err(errors),
    }
}

/// Parses decoded query-string pairs: `service`, `from` and `to` as `GET /events` takes
/// them (with `markup` applied to `service`), and `interval`. Unknown and repeated
/// parameters are errors, filters included (the counts know only service and time).
pub(crate) fn histogram_query(
    pairs: &[(String, String)],
    limits: &QueryLimits,
    markup: Markup,
) -> Result<HistogramQuery, Vec<FieldError>> {
    let mut errors = unknown_parameters(pairs, &["service", "from", "to", "interval"]);
    errors.extend(pairs.iter().filter(|(name, _)| name.starts_with(METADATA_PREFIX)).map(|(name, _)| {
        FieldError::new(name.as_str(), "whitelistValidation", format!("property {name} should not exist"))
    }));
    let service = checked_service(single(pairs, "service", &mut errors), limits, markup, &mut errors);
    let from = bound("from", single(pairs, "from", &mut errors), &mut errors);
    let to = bound("to", single(pairs, "to", &mut errors), &mut errors);
    check_range(from, to, limits, &mut errors);
    let interval = match single(pairs, "interval", &mut errors) {
        None | Some("") => {
            errors.push(FieldError::new("interval", "isNotEmpty", "interval should not be empty"));
            None
        }
        Some(text) => match Interval::parse(text) {
            Some(interval) if interval.duration() <= Duration::days(limits.max_range_days) => Some(interval),
            Some(_) => {
                errors.push(FieldError::new(
                    "interval",
                    "max",
                    format!("interval must not exceed {} days", limits.max_range_days),
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    "interval",
                    "isInterval",
                    "interval must be whole minutes: 1m, 5m, 15m, 1h, 1d, or seconds divisible by 60",
                ));
                None
            }
        },
    };
    match (service, from, to, interval) {
        (Some(service), Some(from), Some(to), Some(interval)) if errors.is_empty() => {
            HistogramQuery { service, from, to, interval }.check()
        }
        _ => Err(errors),
    }
}

/// Parameters neither in `known` nor a metadata filter.
fn unknown_parameters(pairs: &[(String, String)], known: &[&str]) -> Vec<FieldError> {
    pairs
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()) && !name.starts_with(METADATA_PREFIX))
        .map(|(name, _)| {
            FieldError::new(name.as_str(), "whitelistValidation", format!("property {name} should not exist"))
        })
        .collect()
}

/// A parameter given at most once.
fn single<'a>(pairs: &'a [(String, String)], name: &'static str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
    let mut values = pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let first = values.next();
    if values.next().is_some() {
        errors.push(FieldError::new(name, "isString", format!("{name} must be given once")));
        return None;
    }
    first
}

/// Every `metadata.<path>=<value>` parameter, checked, and their number.
fn metadata_filters(pairs: &[(String, String)], markup: Markup, errors: &mut Vec<FieldError>) -> Vec<MetadataFilter> {
    let filters: Vec<MetadataFilter> =
        pairs.iter().filter_map(|(name, value)| checked_filter(name, value, markup, errors)).collect();
    check_filter_count(&filters, errors);
    filters
}

fn bound(name: &'static str, value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use aurore_domain::{CursorKey, QueryError};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use uuid::Uuid;

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
        let query = event_query(&pairs(&base()), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap();
        assert_eq!((query.page, query.page_size), (1, 100));
        assert_eq!((query.sort_field, query.sort_order), (SortField::Timestamp, SortOrder::Desc));
        assert_eq!(query.offset(), 0);
    }

    #[test]
    fn compares_bounds_as_instants() {
        let mut list = base();
        list[1] = ("from", "2024-01-15T02:00:00+02:00");
        let query = event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap();
        assert_eq!(query.from.to_rfc3339(), "2024-01-15T00:00:00+00:00");
    }

    #[test]
    fn rejects_bad_ranges_and_limits_by_name() {
        let limits = QueryLimits::default();
        let mut list = base();
        list[2] = ("to", "2024-01-15T00:00:00Z");
        assert_eq!(
            fields(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default())),
            [("to".into(), "isValidTimeRange")]
        );
        list[2] = ("to", "2024-02-15T00:00:00Z");
        assert_eq!(
            fields(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default())),
            [("to".into(), "isMaxTimeRange")]
        );

        let mut list = base();
        list.extend([("pageSize", "1001"), ("page", "0"), ("sortOrder", "up"), ("sortField", "id"), ("limit", "5")]);
        let mut found = fields(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default()));
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
        let mut found = fields(event_query(&[], &QueryLimits::default(), Markup::Strip, &Privacy::default()));
        found.sort();
        assert_eq!(
            found,
            [("from".into(), "isNotEmpty"), ("service".into(), "isNotEmpty"), ("to".into(), "isNotEmpty")]
        );
    }

    #[test]
    fn cursor_round_trips_and_must_match_the_sort() {
        let for_base =
            event_query(&pairs(&base()), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap().digest();
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
            fields(event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default())),
            [("cursor".into(), "matchesSort")]
        );
        list.extend([("sortField", "message"), ("sortOrder", "asc")]);
        let query = event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap();
        assert_eq!(query.cursor, Some(cursor));

        // The same cursor with another service, range or filter would skip rows: refused.
        for (name, value) in [("service", "other"), ("from", "2024-01-15T00:00:01Z"), ("q", "x"), ("metadata.a", "b")] {
            let mut other: Vec<(&str, &str)> = list.iter().filter(|(key, _)| *key != name).copied().collect();
            other.push((name, value));
            assert_eq!(
                fields(event_query(&pairs(&other), &QueryLimits::default(), Markup::Strip, &Privacy::default())),
                [("cursor".into(), "matchesQuery")],
                "{name}"
            );
        }
    }

    #[test]
    fn only_a_timestamp_sort_may_read_a_range_over_the_sorted_rows_limit() {
        let limits = QueryLimits { max_sorted_rows: 500, ..QueryLimits::default() };
        let by_time = event_query(&pairs(&base()), &limits, Markup::Strip, &Privacy::default()).unwrap();
        assert!(by_time.check_sort_cost(1_000_000).is_ok(), "the index serves any depth");
        for field in ["message", "service", "ingestedAt", "createdAt"] {
            let mut list = base();
            list.push(("sortField", field));
            let query = event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default()).unwrap();
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
        assert!(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default()).is_ok(), "exactly the limit");
        list[3] = ("page", "12");
        assert_eq!(
            fields(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default())),
            [("page".into(), "maxOffset")]
        );
        list.push(("cursor", "x"));
        assert_eq!(
            fields(event_query(&pairs(&list), &limits, Markup::Strip, &Privacy::default())),
            [("cursor".into(), "isCursor")]
        );
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
            let found = fields(event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()));
            assert!(found.iter().any(|(_, rule)| *rule == "isInSupportedRange"), "{from}..{to}: {found:?}");
        }
        let mut list = base();
        list[1] = ("from", "9999-12-31T00:00:00Z");
        list[2] = ("to", "9999-12-31T23:59:59.999999Z");
        let query = event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap();
        let before_first = query.cursor_before_first().unwrap();
        assert_eq!(Cursor::decode(&before_first.encode()), Some(before_first), "the edge of the range pages");
    }

    #[test]
    fn rejects_forged_cursors() {
        let mut list = base();
        list.push(("cursor", "not-a-cursor"));
        assert_eq!(
            fields(event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default())),
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
        let query = event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()).unwrap();
        assert!(query.is_filtered());
        assert_eq!(query.filter, aurore_domain::Filter::parse("Time AND out").unwrap(), "adjacent words mean AND");
        assert_eq!(query.metadata[0].candidates(), [serde_json::json!({"region": "eu"})]);
        assert_eq!(
            query.metadata[1].candidates(),
            [serde_json::json!({"user": {"id": "42"}}), serde_json::json!({"user": {"id": 42}})],
            "a number matches as text and as a number"
        );

        let mut list = base();
        list.extend([("metadata.", "x"), ("metadata.a..b", "x"), ("metadata.a.b.c.d.e.f", "x")]);
        let errors = fields(event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default()));
        assert_eq!(errors.iter().filter(|(_, rule)| *rule == "isMetadataPath").count(), 3, "{errors:?}");

        let long = "x".repeat(aurore_domain::query::MAX_QUERY_CHARS + 1);
        let mut list = base();
        list.push(("q", &long));
        assert_eq!(
            fields(event_query(&pairs(&list), &QueryLimits::default(), Markup::Strip, &Privacy::default())),
            [("q".to_owned(), "maxLength")]
        );
        assert!(
            !event_query(&pairs(&base()), &QueryLimits::default(), Markup::Strip, &Privacy::default())
                .unwrap()
                .is_filtered()
        );
    }

    #[test]
    fn text_parameters_are_cleaned_as_ingest_cleaned_what_was_stored() {
        let sent = "R&D <b>x</b> < 5";
        let mut list = vec![("service", sent), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")];
        let phrase = format!("\"{sent}\"");
        list.extend([("q", phrase.as_str()), ("metadata.team", sent)]);
        for markup in [Markup::Strip, Markup::Escape, Markup::Off] {
            let stored = markup.clean(sent).into_owned();
            let text = Some(aurore_domain::Filter::Text(stored.clone()));
            let query = event_query(&pairs(&list), &QueryLimits::default(), markup, &Privacy::default()).unwrap();
            assert_eq!((&query.service, &query.filter, &query.metadata[0].value), (&stored, &text, &stored));
            let tail =
                tail_filter(&pairs(&[list[0], list[3], list[4]]), &QueryLimits::default(), markup, &Privacy::default())
                    .unwrap();
            assert_eq!((tail.service.as_ref(), &tail.filter, &tail.metadata[0].value), (Some(&stored), &text, &stored));
        }
        assert_eq!(Markup::Strip.clean(sent), "R&D x < 5", "ordinary characters are left as typed");
    }

    fn histogram(list: &[(&str, &str)]) -> Result<HistogramQuery, Vec<FieldError>> {
        let pairs: Vec<(String, String)> = list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        histogram_query(&pairs, &QueryLimits::default(), Markup::Strip)
    }

    fn rules(result: Result<HistogramQuery, Vec<FieldError>>) -> Vec<(String, &'static str)> {
        let mut found: Vec<_> = result
            .expect_err("should be invalid")
            .into_iter()
            .flat_map(|e| e.constraints.keys().map(|rule| (e.field.clone(), *rule)).collect::<Vec<_>>())
            .collect();
        found.sort();
        found
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn buckets_align_on_the_interval_and_clip_to_the_range() {
        let query = histogram(&[
            ("service", "auth"),
            ("from", "2024-01-15T10:07:30Z"),
            ("to", "2024-01-15T12:00:00Z"),
            ("interval", "1h"),
        ])
        .unwrap();
        let buckets = query.buckets();
        let starts: Vec<_> = buckets.iter().map(|b| b.start).collect();
        assert_eq!(starts, [at("2024-01-15T10:00:00Z"), at("2024-01-15T11:00:00Z"), at("2024-01-15T12:00:00Z")]);
        assert_eq!(buckets[0].from, at("2024-01-15T10:07:30Z"), "the first counts from `from`");
        assert_eq!(buckets[1].until, at("2024-01-15T12:00:00Z"));
        assert_eq!(
            (buckets[2].from, buckets[2].until),
            (at("2024-01-15T12:00:00Z"), at("2024-01-15T12:00:00.000001Z")),
            "`to` is inclusive"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(
            rules(histogram(&[])),
            [
                ("from".into(), "isNotEmpty"),
                ("interval".into(), "isNotEmpty"),
                ("service".into(), "isNotEmpty"),
                ("to".into(), "isNotEmpty")
            ]
        );
        let base = [("service", "auth"), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut list = base.to_vec();
            list.extend_from_slice(extra);
            rules(histogram(&list))
        };
        assert_eq!(with(&[("interval", "30s")]), [("interval".into(), "isInterval")]);
        assert_eq!(with(&[("interval", "31d")]), [("interval".into(), "max")]);
        assert_eq!(with(&[("interval", "1m")]), [("interval".into(), "maxBuckets")], "1,441 buckets");
        assert_eq!(
            with(&[("interval", "5m"), ("page", "2"), ("metadata.a", "b")]),
            [("metadata.a".into(), "whitelistValidation"), ("page".into(), "whitelistValidation")]
        );
        let mut list = base.to_vec();
        list[2] = ("to", "2024-01-15T00:00:00Z");
        list.push(("interval", "1h"));
        assert_eq!(rules(histogram(&list)), [("to".into(), "isValidTimeRange")]);
        let most =
            [("service", "auth"), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-15T16:39:59Z"), ("interval", "1m")];
        assert_eq!(histogram(&most).unwrap().buckets().len(), 1000, "exactly the limit");
    }
}
