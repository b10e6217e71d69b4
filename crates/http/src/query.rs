//! `GET /events`: the README's response shape, the running original's top-level fields,
//! and `next_cursor` for keyset paging. `GET /events/histogram`: counts per time bucket.
//! `GET /services`: the services there are events of.

use crate::AppState;
use crate::body::{EventPage, EventView, Histogram, HistogramBucket, Pagination, ServiceEntry, ServiceList, iso};
use crate::error::ApiError;
use crate::params;
use actix_web::{HttpRequest, HttpResponse, web};

#[utoipa::path(get, path = "/events", tag = "query", params(crate::openapi::RangeParams, crate::openapi::EventsParams, crate::openapi::FilterParams),
    responses(
        (status = 200, description = "A page of events, newest first by default", body = crate::body::EventPage),
        (status = 400, description = "An invalid or unknown parameter, named", body = crate::body::ErrorBody),
        (status = 503, description = "Storage unavailable; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn get_events(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = params::query_pairs(&request)?;
    let query = params::event_query(&pairs, &state.query_limits, state.ingest.markup(), state.ingest.privacy())
        .map_err(ApiError::Invalid)?;
    let page = state.reader.query(&query).await?;
    Ok(HttpResponse::Ok().json(EventPage {
        events: page.events.iter().map(EventView::from).collect(),
        pagination: Pagination {
            total: page.total,
            limit: query.page_size,
            // With a cursor the position is not counted (that is the point).
            offset: query.cursor.is_none().then(|| query.offset()),
            has_more: page.has_more,
        },
        page: query.page,
        page_size: query.page_size,
        sort_field: query.sort_field.name(),
        sort_order: query.sort_order.name(),
        total: page.total,
        next_cursor: page.next_cursor(&query).map(|cursor| cursor.encode()),
    }))
}

#[utoipa::path(get, path = "/events/query/explain", tag = "query",
    params(("q" = Option<String>, Query, description = "A query in the filter language, as `GET /events` takes it")),
    responses(
        (status = 200, description = "The parsed query, with values cleaned as ingest cleans them", body = crate::body::QueryExplanation),
        (status = 400, description = "The query does not parse: `position` (a byte offset) and `expected` say where and what", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn explain_query(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = params::query_pairs(&request)?;
    let q = params::explained_query(&pairs).map_err(ApiError::Invalid)?;
    let filter = aurore_domain::query::parse_query(&q, state.ingest.markup()).map_err(ApiError::BadQuery)?;
    Ok(HttpResponse::Ok().json(crate::body::QueryExplanation {
        q,
        canonical: filter.as_ref().map(ToString::to_string),
        filter: filter.map(|filter| serde_json::to_value(filter).unwrap_or_default()),
    }))
}

#[utoipa::path(get, path = "/events/histogram", tag = "query", params(crate::openapi::RangeParams, crate::openapi::HistogramParams),
    responses(
        (status = 200, description = "Events per bucket, empty buckets included", body = crate::body::Histogram),
        (status = 400, description = "An invalid or unknown parameter, named; or too many buckets", body = crate::body::ErrorBody),
        (status = 503, description = "Storage unavailable; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn get_histogram(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = params::query_pairs(&request)?;
    let query =
        params::histogram_query(&pairs, &state.query_limits, state.ingest.markup()).map_err(ApiError::Invalid)?;
    let histogram = state.reader.histogram(&query).await?;
    Ok(HttpResponse::Ok().json(Histogram {
        buckets: histogram
            .buckets
            .iter()
            .map(|bucket| HistogramBucket { start: iso(&bucket.start), count: bucket.count })
            .collect(),
        total: histogram.total,
        from: iso(&query.from),
        to: iso(&query.to),
        interval: query.interval.name(),
        service: query.service,
    }))
}

#[utoipa::path(get, path = "/services", tag = "query",
    responses(
        (status = 200, description = "Every service with stored events, by name, counted from the hourly rollups", body = crate::body::ServiceList),
        (status = 503, description = "Storage unavailable; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn get_services(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let services = state.reader.services().await?;
    Ok(HttpResponse::Ok().json(ServiceList {
        services: services
            .into_iter()
            .map(|summary| ServiceEntry {
                latest_hour: iso(&summary.latest_hour),
                service: summary.service,
                events: summary.events,
            })
            .collect(),
    }))
}
