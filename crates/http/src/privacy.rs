//! Privacy's routes: the active rules (`GET /privacy`), erasing a person's events
//! (`POST /admin/erase`) and the erasures' audit trail (`GET /admin/erasures`).

use crate::AppState;
use crate::auth::key_digest;
use crate::body::{DecryptedBody, ErasureBody, ErasureList, PrivacyBody};
use crate::error::ApiError;
use crate::params::{self, query_pairs};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use aurore_domain::FieldError;
use serde_json::Value;

/// Most erasures one `GET /admin/erasures` lists, and how many by default.
const MAX_LISTED: u32 = 1000;
const DEFAULT_LISTED: u32 = 100;

#[utoipa::path(get, path = "/privacy", tag = "privacy",
    responses((status = 200, description = "The active rules, detectors and export profiles, with values transformed per rule; no secret", body = PrivacyBody)))]
pub(crate) async fn rules(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(PrivacyBody::from(state.ingest.privacy().report()))
}

/// The parameters of `GET /events` (`service`, `from`, `to`, `metadata.<key>`, `q`; here
/// `service` and the bounds are optional), from the query string or, under the same
/// names, a JSON object body.
#[utoipa::path(post, path = "/admin/erase", tag = "privacy", params(crate::openapi::ErasureParams),
    request_body(content = Option<crate::openapi::ErasureRequest>, description = "The same names as the query string's, e.g. `{\"metadata.user_id\": \"12345\"}`", content_type = "application/json"),
    responses(
        (status = 200, description = "What was erased, as the audit trail records it", body = ErasureBody),
        (status = 400, description = "An invalid parameter, or no filter at all", body = crate::body::ErrorBody),
        (status = 503, description = "Storage unavailable; the erasure may be recorded without its deletion: repeat it", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn erase(
    request: HttpRequest,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut pairs = query_pairs(&request)?;
    pairs.extend(body_pairs(&body)?);
    let erasure = params::erasure(&pairs, &state.query_limits, state.ingest.markup(), state.ingest.privacy())
        .map_err(ApiError::Invalid)?;
    let record = state.erasures.erase(&erasure, chrono::Utc::now(), &key_digest(request.headers())).await?;
    tracing::info!(id = record.id, events = record.events, dead_letters = record.dead_letters, "erasure completed");
    Ok(HttpResponse::Ok().json(ErasureBody::from(record)))
}

#[utoipa::path(get, path = "/admin/erasures", tag = "privacy", params(crate::openapi::ErasuresParams),
    responses((status = 200, description = "The audit trail, newest first", body = ErasureList), (status = 400, description = "An invalid parameter, named", body = crate::body::ErrorBody)))]
pub(crate) async fn erasures(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let refuse = |message: String| ApiError::Invalid(vec![FieldError::new("limit", "isInt", message)]);
    let mut limit = DEFAULT_LISTED;
    for (name, value) in &pairs {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LISTED).contains(limit))
                    .ok_or_else(|| refuse(format!("limit must be an integer from 1 to {MAX_LISTED}")))?;
            }
            other => {
                return Err(ApiError::Invalid(vec![FieldError::new(
                    other,
                    "whitelistValidation",
                    format!("property {other} should not exist"),
                )]));
            }
        }
    }
    let records = state.erasures.erasures(limit).await?;
    Ok(HttpResponse::Ok().json(ErasureList { erasures: records.into_iter().map(ErasureBody::from).collect() }))
}

/// Opens a value an `encrypt` rule sealed. Admin-keyed, and logged (which key asked,
/// never the value).
#[utoipa::path(post, path = "/admin/decrypt", tag = "privacy",
    request_body(content = crate::openapi::DecryptRequest, description = "A stored `enc:<key id>:…` value", content_type = "application/json"),
    responses(
        (status = 200, description = "The value as it was sent", body = DecryptedBody),
        (status = 400, description = "Not an encrypted value, an unknown key id, or altered", body = crate::body::ErrorBody),
    ))]
pub(crate) async fn decrypt(
    request: HttpRequest,
    body: Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let refuse = |rule: &'static str, message: String| ApiError::Invalid(vec![FieldError::new("value", rule, message)]);
    let sealed = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut members)) => match members.remove("value") {
            Some(Value::String(sealed)) => sealed,
            _ => {
                return Err(refuse(
                    "isString",
                    "value must be the encrypted string, e.g. {\"value\": \"enc:k1:…\"}".into(),
                ));
            }
        },
        _ => return Err(refuse("isObject", "the body must be a JSON object: {\"value\": \"enc:k1:…\"}".into())),
    };
    let value = state.ingest.privacy().decrypt(&sealed).map_err(|error| refuse("isEncrypted", error.to_string()))?;
    tracing::info!(key = %key_digest(request.headers()), "a value was decrypted");
    Ok(HttpResponse::Ok().json(DecryptedBody { value }))
}

/// A JSON object body's members as parameters: strings as they are, numbers and booleans
/// as they are spelled; anything else is refused, naming the member.
fn body_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let refuse = |field: &str, message: &str| ApiError::Invalid(vec![FieldError::new(field, "isObject", message)]);
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(body) else {
        return Err(refuse(
            "body",
            "the body must be a JSON object of parameters, e.g. {\"metadata.user_id\": \"12345\"}",
        ));
    };
    members
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            Value::Number(_) | Value::Bool(_) => Ok((name, value.to_string())),
            _ => Err(refuse(&name, "each member must be a string, a number or a boolean")),
        })
        .collect()
}
