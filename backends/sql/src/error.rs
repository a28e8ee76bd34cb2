//! sqlx errors as backend errors: what cannot reach the database is `Unavailable` (retried with
//! backoff), anything else names the statement's purpose.

use strata_backend_api::{BackendError, ErrorKind};

pub(crate) fn sql_err(kind: ErrorKind, message: String) -> BackendError {
    BackendError::new("sql", kind, message)
}

pub(crate) fn db_err(backend: &str, what: &str, e: sqlx::Error) -> BackendError {
    let kind = match &e {
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorKind::Unavailable,
        sqlx::Error::Configuration(_) => ErrorKind::Unsupported,
        // A key created by another writer since this batch checked it was absent.
        sqlx::Error::Database(d) if d.is_unique_violation() => ErrorKind::Conflict,
        _ => ErrorKind::Io,
    };
    BackendError::new(backend.to_string(), kind, format!("{what}: {e}")).with_source(e)
}
