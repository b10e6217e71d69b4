//! `GET /events`: the README's response shape, the running original's top-level fields,
//! and `next_cursor` for keyset paging. `GET /events/histogram`: counts per time bucket.

use crate::AppState;
use crate::error::ApiError;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{EventQuery, FieldError, HistogramQuery, StoredEvent};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

/// Instants as the contract writes them: UTC, milliseconds, `Z`.
fn iso(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventView<'a> {
    id: String,
    event_id: String,
    timestamp: String,
    service: &'a str,
    message: &'a str,
    #[schema(value_type = Option<Object>)]
    metadata: &'a Option<Value>,
    ingested_at: String,
    created_at: String,
}

impl<'a> From<&'a StoredEvent> for EventView<'a> {
    fn from(stored: &'a StoredEvent) -> Self {
        let event = &stored.event;
        let id = event.id.to_string();
        Self {
            event_id: id.clone(),
            id,
            timestamp: iso(&event.timestamp),
            service: &event.service,
            message: &event.message,
            metadata: &event.metadata,
            ingested_at: iso(&event.ingested_at),
            created_at: iso(&stored.created_at),
        }
    }
}

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

#[utoipa::path(get, path = "/events", tag = "query", params(crate::openapi::EventsParams),
    responses(
        (status = 200, description = "A page of events, newest first by default", body = crate::openapi::EventPage),
        (status = 400, description = "An invalid or unknown parameter, named", body = crate::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable; `Retry-After` set", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn get_events(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let query = EventQuery::parse(&pairs, &state.query_limits, state.ingest.markup()).map_err(ApiError::Invalid)?;
    let page = state.reader.query(&query).await?;
    let events: Vec<EventView<'_>> = page.events.iter().map(EventView::from).collect();
    // With a cursor the position is not counted (that is the point), so offset is null.
    let offset = query.cursor.is_none().then(|| query.offset());
    let mut body = json!({
        "events": events,
        "pagination": {"total": page.total, "limit": query.page_size, "offset": offset, "has_more": page.has_more},
        "page": query.page,
        "pageSize": query.page_size,
        "sortField": query.sort_field.name(),
        "sortOrder": query.sort_order.name(),
        "total": page.total,
    });
    if let Some(cursor) = page.next_cursor(&query) {
        body["next_cursor"] = Value::String(cursor.encode());
    }
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(get, path = "/events/histogram", tag = "query", params(crate::openapi::HistogramParams),
    responses(
        (status = 200, description = "Events per bucket, empty buckets included", body = crate::openapi::Histogram),
        (status = 400, description = "An invalid or unknown parameter, named; or too many buckets", body = crate::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable; `Retry-After` set", body = crate::openapi::ErrorBody),
    ))]
pub(crate) async fn get_histogram(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let query = HistogramQuery::parse(&pairs, &state.query_limits, state.ingest.markup()).map_err(ApiError::Invalid)?;
    let histogram = state.reader.histogram(&query).await?;
    let buckets: Vec<Value> =
        histogram.buckets.iter().map(|bucket| json!({"start": iso(&bucket.start), "count": bucket.count})).collect();
    Ok(HttpResponse::Ok().json(json!({
        "service": query.service,
        "from": iso(&query.from),
        "to": iso(&query.to),
        "interval": query.interval.name(),
        "buckets": buckets,
        "total": histogram.total,
    })))
}
