//! S3 failures as backend errors: what went wrong, said plainly, and whether a retry helps.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use strata_backend_api::{BackendError, ErrorKind, Retry};

/// Maps an SDK error of `what` (an operation and key) to a backend error.
pub fn s3_err<E>(
    backend: &str,
    bucket: &str,
    what: &str,
    e: SdkError<E, HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    // HEAD answers carry no body, so their status stands in for the code.
    let code = match (e.code(), status) {
        (Some(c), _) => c.to_string(),
        (None, Some(404)) => "NotFound".into(),
        (None, Some(403)) => "Forbidden".into(),
        (None, Some(412)) => "PreconditionFailed".into(),
        (None, Some(s)) if s >= 500 => "InternalError".into(),
        _ => String::new(),
    };
    let detail = DisplayErrorContext(&e).to_string();
    let (kind, retry, message) = match &e {
        SdkError::TimeoutError(_) => (
            ErrorKind::Unavailable,
            Retry::Backoff,
            format!("{what}: timed out"),
        ),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Unavailable,
            Retry::Backoff,
            format!("{what}: cannot reach the store: {detail}"),
        ),
        SdkError::ServiceError(_) => match code.as_str() {
            "NoSuchKey" | "NotFound" => (
                ErrorKind::NotFound,
                Retry::Never,
                format!("{what}: no such object"),
            ),
            "PreconditionFailed" | "ConditionalRequestConflict" => (
                ErrorKind::Conflict,
                Retry::Never,
                format!("{what}: the object was written by another writer ({code})"),
            ),
            "NoSuchBucket" => (
                ErrorKind::Unavailable,
                Retry::Never,
                format!("{what}: bucket {bucket:?} does not exist"),
            ),
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden" => (
                ErrorKind::Unavailable,
                Retry::Never,
                format!("{what}: access denied ({code}): check the access key and secret"),
            ),
            "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout" => (
                ErrorKind::Unavailable,
                Retry::Backoff,
                format!("{what}: the store is busy or failing ({code})"),
            ),
            _ => (ErrorKind::Io, Retry::Backoff, format!("{what}: {detail}")),
        },
        _ => (ErrorKind::Io, Retry::Backoff, format!("{what}: {detail}")),
    };
    BackendError::new(backend, kind, message)
        .with_retry(retry)
        .with_source(e)
}
