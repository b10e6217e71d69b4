//! What every request passes before a handler sees it, cheapest check first: the size of
//! its query string and headers (before routing), then, around the route that matched,
//! its client's rate limit and its API key. Rate limiting comes before the key check so
//! guessing keys is throttled like anything else.

use crate::error::ApiError;
use crate::rate_limit::{Allowance, ClientKey, RateLimiter, Refusal, client_address};
use crate::routes::{Endpoint, RouteGroup};
use crate::{AppState, auth};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, web};
use std::net::{IpAddr, Ipv4Addr};

/// The rate-limit state of a request: which bucket it drew from and what is left.
#[derive(Debug, Clone, Copy)]
struct Metered {
    group: RouteGroup,
    client: ClientKey,
    allowance: Allowance,
}

/// App-wide, before routing: the sizes of the query string and headers, checked for every
/// request, including those no route will take.
pub(crate) async fn limits(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request.error_response(ApiError::NotReady("no server state")).map_into_right_body());
    };
    let limits = &state.request_limits;
    let refusal = if request.query_string().len() > limits.max_query_string_bytes {
        Some(ApiError::QueryStringTooLong { limit: limits.max_query_string_bytes })
    } else {
        let header_bytes: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        (header_bytes > limits.max_header_bytes).then_some(ApiError::HeadersTooLarge { limit: limits.max_header_bytes })
    };
    match refusal {
        Some(error) => Ok(request.error_response(error).map_into_right_body()),
        None => Ok(next.call(request).await?.map_into_left_body()),
    }
}

/// Around each route of the table, after routing has matched it: the client's rate limit
/// and its key, for the endpoint that will actually run. Routes are registered only
/// wrapped in this (see [`routes::configure`]), so no handler runs without it, however
/// the path was spelled.
pub(crate) async fn access(
    endpoint: &'static Endpoint,
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request.error_response(ApiError::NotReady("no server state")));
    };
    // A refusal still says which bucket was charged and what is left in it.
    let mut response = match admit(endpoint, &request, &state) {
        Ok(()) => next.call(request).await?,
        // OTLP clients read every refusal as a `google.rpc.Status`.
        Err(error) if endpoint.path == crate::protocols::otlp::PATH => {
            let refusal = crate::protocols::otlp::refused(&error, request.request());
            request.into_response(refusal)
        }
        Err(error) => request.error_response(error),
    };
    let metered = response.request().extensions().get::<Metered>().copied();
    if let Some(metered) = metered {
        insert_allowance_headers(response.headers_mut(), &metered.allowance);
    }
    Ok(response)
}

fn admit(endpoint: &Endpoint, request: &ServiceRequest, state: &AppState) -> Result<(), ApiError> {
    let edge = &state.edge;
    let client = ClientKey::of(client_ip(request.request(), edge));
    if let Some(decision) = edge.rate_limiter.check(endpoint.group, client, 1) {
        let allowance = decision.map_err(|refusal| refused(endpoint.group, refusal))?;
        request.extensions_mut().insert(Metered { group: endpoint.group, client, allowance });
    }
    edge.api_keys.authorize(endpoint.group.access(), request.headers()).map_err(|denied| match denied {
        auth::Denied::Unauthenticated => ApiError::Unauthenticated,
        auth::Denied::Forbidden => ApiError::Forbidden,
    })
}

fn client_ip(request: &HttpRequest, edge: &crate::Edge) -> IpAddr {
    let peer = request.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |address| address.ip());
    if edge.trusted_proxies.is_empty() {
        return peer;
    }
    // Proxies may append their own header line instead of extending the first: every line,
    // in order, is one list. A line that is not text ends the chain at it.
    let lines: Vec<&str> =
        request.headers().get_all("x-forwarded-for").map(|value| value.to_str().unwrap_or("unreadable")).collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    client_address(peer, forwarded.as_deref(), &edge.trusted_proxies)
}

fn refused(group: RouteGroup, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Exceeded { limit, retry_after } => {
            aurore_telemetry::metrics::record_rate_limited(group.name());
            ApiError::RateLimited { group: group.name(), limit, retry_after }
        }
        Refusal::LargerThanBurst { burst } => ApiError::TooManyEvents { limit: burst as usize },
    }
}

/// Takes `more` tokens beyond the one the request already paid: a batch of n events costs
/// n. Nothing to do when the request's group is not limited.
pub(crate) fn charge(request: &HttpRequest, limiter: &RateLimiter, more: u32) -> Result<(), ApiError> {
    let Some(metered) = request.extensions().get::<Metered>().copied() else { return Ok(()) };
    let limit = metered.allowance.limit;
    if more >= limit {
        return Err(ApiError::TooManyEvents { limit: limit as usize });
    }
    let Some(decision) = limiter.check(metered.group, metered.client, more) else { return Ok(()) };
    let allowance = decision.map_err(|refusal| refused(metered.group, refusal))?;
    request.extensions_mut().insert(Metered { allowance, ..metered });
    Ok(())
}

/// The IETF `RateLimit-*` fields and the `X-RateLimit-*` ones the original's clients read.
pub(crate) fn insert_allowance_headers(headers: &mut HeaderMap, allowance: &Allowance) {
    let reset = allowance.reset.as_secs_f64().ceil() as u64;
    for (names, value) in [
        (["ratelimit-limit", "x-ratelimit-limit"], u64::from(allowance.limit)),
        (["ratelimit-remaining", "x-ratelimit-remaining"], u64::from(allowance.remaining)),
        (["ratelimit-reset", "x-ratelimit-reset"], reset),
    ] {
        for name in names {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}
