//! `GET /events/tail`: newly stored events as Server-Sent Events. A subscriber that reads
//! too slowly gets `event: missed` with how many events it lost, never a slower service.

use crate::AppState;
use crate::body::EventView;
use crate::error::ApiError;
use crate::params::{self, query_pairs};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::{StoredEvent, Subscription, Tailed};
use std::convert::Infallible;
use std::time::Duration;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/events/tail", tag = "query", params(crate::openapi::TailParams, crate::openapi::FilterParams),
    responses(
        (status = 200, description = "Server-Sent Events: each stored event as `data:`; `event: missed` when this subscriber fell behind", content_type = "text/event-stream"),
        (status = 400, description = "An invalid parameter, named", body = crate::body::ErrorBody),
        (status = 503, description = "`tail.max_subscribers` streams are open already; `Retry-After` set", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn tail(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let filter = params::tail_filter(
        &query_pairs(&request)?,
        &state.query_limits,
        state.ingest.markup(),
        state.ingest.privacy(),
    )
    .map_err(ApiError::Invalid)?;
    let subscription = state.tail.subscribe(filter).map_err(|full| ApiError::TailFull { limit: full.limit })?;
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let frames =
        futures_util::stream::unfold((subscription, keep_alive), |(mut subscription, mut keep_alive)| async move {
            let frame = next_frame(&mut subscription, &mut keep_alive).await?;
            Some((Ok::<_, Infallible>(frame), (subscription, keep_alive)))
        });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(frames))
}

async fn next_frame(subscription: &mut Subscription, keep_alive: &mut tokio::time::Interval) -> Option<Bytes> {
    tokio::select! {
        tailed = subscription.next() => match tailed? {
            Tailed::Event(event) => {
                let stored = StoredEvent { event: (*event).clone(), created_at: chrono::Utc::now() };
                let json = serde_json::to_string(&EventView::from(&stored)).ok()?;
                Some(Bytes::from(format!("event: event\ndata: {json}\n\n")))
            }
            Tailed::Missed(missed) => Some(Bytes::from(format!("event: missed\ndata: {{\"missed\":{missed}}}\n\n"))),
        },
        _ = keep_alive.tick() => Some(Bytes::from_static(b": keep-alive\n\n")),
    }
}
