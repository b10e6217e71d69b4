//! Optional API keys. Only SHA-256 digests of the configured keys are kept; a presented key
//! is hashed and compared with every digest in constant time, so neither the comparison nor
//! the position of a match tells an attacker how close a guess came.

use crate::routes::Access;
use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderName};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Digests of a set of keys; the keys themselves are not kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyDigests(Vec<KeyDigest>);

impl KeyDigests {
    /// Blank entries (a trailing comma) are ignored.
    pub fn of<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        Self(
            keys.into_iter()
                .filter_map(|key| {
                    let key = key.as_ref().trim();
                    (!key.is_empty()).then(|| digest(key))
                })
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with every digest, whatever matched first.
    fn contains(&self, presented: &KeyDigest) -> bool {
        self.0.iter().fold(0u8, |found, key| found | key.ct_eq(presented).unwrap_u8()) == 1
    }
}

impl std::fmt::Debug for KeyDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} keys>", self.0.len())
    }
}

/// The keys that open ingest and query routes, and the keys that open admin routes too.
/// With no keys of a kind configured, what they would guard is open.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    api: KeyDigests,
    admin: KeyDigests,
}

/// Why a request may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No key, or a key that is none of ours.
    Unauthenticated,
    /// A valid key without the scope the route needs.
    Forbidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Anonymous,
    Unknown,
    Api,
    Admin,
}

impl ApiKeys {
    pub fn new(api: KeyDigests, admin: KeyDigests) -> Self {
        Self { api, admin }
    }

    pub fn is_empty(&self) -> bool {
        self.api.is_empty() && self.admin.is_empty()
    }

    /// Decides whether a request with these headers may use a route needing `access`.
    /// Admin routes need an admin key when admin keys are configured, else an API key when
    /// those are; an admin key also opens ingest and query routes.
    pub fn authorize(&self, access: Access, headers: &HeaderMap) -> Result<(), Denied> {
        let admin_guarded = !self.admin.is_empty();
        let accepted: &[Holder] = match access {
            Access::Public => return Ok(()),
            Access::Client | Access::Admin if self.is_empty() => return Ok(()),
            Access::Client if self.api.is_empty() => return Ok(()),
            Access::Client => &[Holder::Api, Holder::Admin],
            Access::Admin if admin_guarded => &[Holder::Admin],
            Access::Admin => &[Holder::Api],
        };
        match self.holder(headers) {
            holder if accepted.contains(&holder) => Ok(()),
            Holder::Anonymous | Holder::Unknown => Err(Denied::Unauthenticated),
            Holder::Api | Holder::Admin => Err(Denied::Forbidden),
        }
    }

    fn holder(&self, headers: &HeaderMap) -> Holder {
        let Some(presented) = presented_key(headers) else { return Holder::Anonymous };
        let presented = digest(&presented);
        match (self.admin.contains(&presented), self.api.contains(&presented)) {
            (true, _) => Holder::Admin,
            (_, true) => Holder::Api,
            _ => Holder::Unknown,
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>`; `Basic` with the key as
/// the password (what Fluent Bit, rsyslog and Loki clients send); Elasticsearch's
/// `ApiKey base64(id:key)` as its clients build from an id and a key, or `ApiKey <key>`
/// when the token is not such a pair; else `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let authorization = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Cow::Borrowed(token))
        } else if scheme.eq_ignore_ascii_case("basic") {
            secret_after_colon(token)
        } else if scheme.eq_ignore_ascii_case("apikey") {
            Some(secret_after_colon(token).unwrap_or(Cow::Borrowed(token)))
        } else {
            None
        }
    });
    authorization
        .or_else(|| headers.get(X_API_KEY).and_then(|value| value.to_str().ok()).map(|key| Cow::Borrowed(key.trim())))
}

/// The part after the first colon of a base64 `id:secret` pair, if `token` is one.
fn secret_after_colon(token: &str) -> Option<Cow<'static, str>> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, secret) = decoded.split_once(':')?;
    Some(Cow::Owned(secret.to_owned()))
}

/// Who presented a request, for audit records: the first 16 hex digits of the SHA-256 of
/// the key it presents, or `anonymous`.
pub(crate) fn key_digest(headers: &HeaderMap) -> String {
    presented_key(headers).map_or_else(|| "anonymous".to_owned(), |key| hex::encode(&digest(&key)[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn keys_open_their_scopes_only() {
        let keys = ApiKeys::new(KeyDigests::of(["client-1", "client-2"]), KeyDigests::of(["root"]));
        let client = headers(&[("authorization", "Bearer client-2")]);
        let admin = headers(&[("x-api-key", "root")]);
        assert_eq!(keys.authorize(Access::Client, &client), Ok(()));
        assert_eq!(keys.authorize(Access::Client, &admin), Ok(()));
        assert_eq!(keys.authorize(Access::Admin, &admin), Ok(()));
        assert_eq!(keys.authorize(Access::Admin, &client), Err(Denied::Forbidden));
        assert_eq!(keys.authorize(Access::Client, &headers(&[])), Err(Denied::Unauthenticated));
        assert_eq!(
            keys.authorize(Access::Client, &headers(&[("x-api-key", "client-3")])),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            keys.authorize(Access::Client, &headers(&[("authorization", "Basic client-1")])),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(keys.authorize(Access::Public, &headers(&[])), Ok(()));
    }

    #[test]
    fn shippers_present_the_key_as_a_basic_password_or_an_elasticsearch_api_key() {
        let keys = ApiKeys::new(KeyDigests::of(["client-1"]), KeyDigests::of(["root"]));
        let encoded = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
        let with = |value: String| keys.authorize(Access::Client, &headers(&[("authorization", &value)]));
        assert_eq!(with(format!("Basic {}", encoded("fluent-bit:client-1"))), Ok(()));
        assert_eq!(with(format!("basic {}", encoded(":client-1"))), Ok(()));
        assert_eq!(with(format!("ApiKey {}", encoded("any-id:client-1"))), Ok(()));
        assert_eq!(with("ApiKey client-1".to_owned()), Ok(()));
        assert_eq!(
            keys.authorize(Access::Admin, &headers(&[("authorization", &format!("Basic {}", encoded("u:root")))])),
            Ok(())
        );
        for refused in [
            format!("Basic {}", encoded("client-1:")),
            format!("Basic {}", encoded("client-1")),
            format!("Basic {}", encoded("u:client-1 ")),
            format!("Basic {}", encoded("u:client-")),
            "Basic ".to_owned(),
            "Basic !!!".to_owned(),
            format!("Digest {}", encoded("u:client-1")),
            format!("ApiKey {}", encoded("client-1:x")),
        ] {
            assert_eq!(with(refused.clone()), Err(Denied::Unauthenticated), "{refused}");
        }
    }

    #[test]
    fn without_keys_of_a_kind_their_routes_are_open_or_fall_back() {
        let none: [&str; 0] = [];
        let open = ApiKeys::new(KeyDigests::of(none), KeyDigests::of(none));
        assert!(open.is_empty());
        assert_eq!(open.authorize(Access::Admin, &headers(&[])), Ok(()));
        let api_only = ApiKeys::new(KeyDigests::of(["k", " "]), KeyDigests::of(none));
        assert_eq!(api_only.authorize(Access::Admin, &headers(&[("x-api-key", "k")])), Ok(()));
        assert_eq!(api_only.authorize(Access::Admin, &headers(&[])), Err(Denied::Unauthenticated));
        let admin_only = ApiKeys::new(KeyDigests::of(none), KeyDigests::of(["root"]));
        assert_eq!(admin_only.authorize(Access::Client, &headers(&[])), Ok(()));
        assert_eq!(admin_only.authorize(Access::Admin, &headers(&[])), Err(Denied::Unauthenticated));
    }

    #[test]
    fn keys_never_print() {
        let keys = ApiKeys::new(KeyDigests::of(["hunter2"]), KeyDigests::default());
        assert!(!format!("{keys:?}").contains("hunter2"));
    }
}
