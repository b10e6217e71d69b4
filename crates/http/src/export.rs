//! `GET /events/export`: every event a query selects, as NDJSON, streamed a keyset page
//! at a time, so memory stays flat whatever the range. Compressed (zstd, gzip, brotli) when
//! the client accepts it.

use crate::AppState;
use crate::body::EventView;
use crate::error::ApiError;
use crate::params::{self, query_pairs};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{EventQuery, EventReader, FieldError, Privacy, QueryError, QueryLimits};
use std::sync::Arc;

/// Events read from the store per page of the walk.
const EXPORT_PAGE: u32 = 1000;

#[utoipa::path(get, path = "/events/export", tag = "query", params(crate::openapi::RangeParams, crate::openapi::EventsParams, crate::openapi::FilterParams, crate::openapi::ExportParams),
    responses(
        (status = 200, description = "Every matching event, one JSON object a line; compressed for `Accept-Encoding: zstd|gzip|br`", content_type = "application/x-ndjson"),
        (status = 400, description = "An invalid parameter, named", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn export(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (profile, pairs): (Vec<_>, Vec<_>) =
        query_pairs(&request)?.into_iter().partition(|(name, _)| name == "profile");
    let privacy = state.ingest.privacy().clone();
    let profile = export_profile(&privacy, profile)?;
    let paging: Vec<FieldError> = pairs
        .iter()
        .filter(|(name, _)| ["page", "pageSize", "cursor"].contains(&name.as_str()))
        .map(|(name, _)| {
            FieldError::new(
                name.as_str(),
                "whitelistValidation",
                format!("export takes no {name}: it returns every event"),
            )
        })
        .collect();
    if !paging.is_empty() {
        return Err(ApiError::Invalid(paging));
    }
    // Any range within retention, not just the page API's window.
    let limits = QueryLimits {
        max_range_days: i64::from(state.retention.policy.event_days),
        max_page_size: EXPORT_PAGE,
        ..state.query_limits.clone()
    };
    let mut query = params::event_query(&pairs, &limits, state.ingest.markup(), state.ingest.privacy())
        .map_err(ApiError::Invalid)?;
    query.page_size = EXPORT_PAGE;
    query.cursor = Some(query.cursor_before_first().ok_or_else(|| {
        ApiError::Invalid(vec![FieldError::new("sortField", "isIn", "export sorts by timestamp only")])
    })?);
    let store = state.reader.clone();
    let pages = futures_util::stream::try_unfold(Some(query), move |next| {
        next_page(store.clone(), next, privacy.clone(), profile.clone())
    });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(pages))
}

/// One page as NDJSON lines, and the query for the page after it.
async fn next_page(
    store: Arc<dyn EventReader>,
    query: Option<EventQuery>,
    privacy: Arc<Privacy>,
    profile: Option<String>,
) -> Result<Option<(Bytes, Option<EventQuery>)>, QueryError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut page = store.query(&query).await?;
    let mut lines = BytesMut::with_capacity(page.events.len() * 256);
    for stored in &mut page.events {
        if let Some(profile) = &profile {
            privacy.export(profile, &mut stored.event);
        }
        // Serialising plain data cannot fail.
        if let Ok(line) = serde_json::to_vec(&EventView::from(&*stored)) {
            lines.extend_from_slice(&line);
            lines.extend_from_slice(b"\n");
        }
    }
    // The cursor is the stored row's: profiles change no sort key (timestamp and id).
    let next = page.next_cursor(&query).map(|cursor| EventQuery { cursor: Some(cursor), ..query });
    Ok(Some((lines.freeze(), next)))
}

/// `profile=`: at most once, one of the configured export profiles, and required when
/// `privacy.export_requires_profile` is set.
fn export_profile(privacy: &Privacy, given: Vec<(String, String)>) -> Result<Option<String>, ApiError> {
    let known = || privacy.profiles().collect::<Vec<_>>().join(", ");
    let refuse =
        |rule: &'static str, message: String| Err(ApiError::Invalid(vec![FieldError::new("profile", rule, message)]));
    match given.as_slice() {
        [] if privacy.export_requires_profile() => {
            refuse("isNotEmpty", format!("profile is required (privacy.export_requires_profile); one of: {}", known()))
        }
        [] => Ok(None),
        [(_, name)] if privacy.has_profile(name) => Ok(Some(name.clone())),
        [(_, name)] => refuse("isIn", format!("profile {name:?} is not configured; one of: {}", known())),
        _ => refuse("isString", "profile must be given once".to_owned()),
    }
}
