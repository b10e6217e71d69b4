//! Driver errors become domain errors here: the pipeline retries `Unavailable` and gives
//! up on `Rejected`, so the split decides whether data is retried or set aside.

use aurore_domain::{StoreError, error_chain};
use tokio_postgres::error::SqlState;

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] tokio_postgres::Error),
    #[error("invalid sslmode {0:?}: expected disable, prefer, require, verify-ca or verify-full")]
    InvalidSslMode(String),
    #[error("cannot read the root certificates in {path}")]
    RootCert {
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("a root certificate in {path} is not usable")]
    InvalidRootCert {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoRootCert(std::path::PathBuf),
    #[error("cannot configure TLS")]
    Tls(#[source] rustls::Error),
    #[error("cannot verify servers with these root certificates")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
    #[error("cannot build the connection pool")]
    Pool(#[source] aurore_domain::Cause),
    #[error("cannot apply migrations")]
    Migration(#[source] aurore_domain::Cause),
}

/// Data errors (SQLSTATE class 22, e.g. a NUL byte in text; class 23, constraint
/// violations; class 54, values over a program limit) are the data's fault; everything
/// else (lost connections, timeouts, restarts, missing tables during a migration) may pass.
/// A check violation is the exception: `events` has no CHECK of its own, so it can only be
/// a partition bound hit while a partition was being attached, which a retry resolves.
fn is_data_error(state: &SqlState) -> bool {
    let code = state.code();
    *state != SqlState::CHECK_VIOLATION && (code.starts_with("22") || code.starts_with("23") || code.starts_with("54"))
}

/// Conflicts that end when the other transaction does: a lock wait past `lock_timeout`, a
/// serialization failure or deadlock, and a partition bound hit by a row a writer committed
/// into the default partition while the day was being attached.
pub(crate) fn is_transient_conflict(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|state| {
        [
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::CHECK_VIOLATION,
        ]
        .contains(state)
    })
}

/// The server's own words, not tokio-postgres's bare "db error".
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error_chain(error),
    }
}

pub(crate) fn from_postgres(error: tokio_postgres::Error) -> StoreError {
    let reason = describe(&error);
    match error.code() {
        Some(state) if is_data_error(state) => StoreError::rejected(reason, Some(error.into())),
        _ => StoreError::unavailable(reason, Some(error.into())),
    }
}

/// No connection could be had: the pool is exhausted, or connecting failed.
pub(crate) fn from_pool<E: std::error::Error + Send + Sync + 'static>(error: E) -> StoreError {
    StoreError::unavailable(error_chain(&error), Some(error.into()))
}

pub(crate) fn from_diesel(error: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &error {
        Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation,
            _,
        )
        | Error::SerializationError(_)
        | Error::DeserializationError(_) => StoreError::rejected(error.to_string(), Some(error.into())),
        _ => StoreError::unavailable(error.to_string(), Some(error.into())),
    }
}
