//! How the S3 backend is set up: endpoint, bucket, prefix, credentials, region, limits.

use std::time::Duration;

/// Settings of an S3 backend. Fields left `None` come from the standard AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, profiles, instance roles...).
#[derive(Clone)]
pub struct S3Options {
    /// The endpoint URL (`https://s3.example.com`, `http://127.0.0.1:9000`); `None`: AWS.
    pub endpoint: Option<String>,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Prepended to every object key (`strata/`), so one bucket can hold other things.
    pub prefix: String,
    /// The region; `None`: from the environment, else `us-east-1`.
    pub region: Option<String>,
    /// Access key id; with `secret_key`, used instead of the environment's credentials.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), which most self-hosted stores need.
    pub path_style: bool,
    /// Requests in flight at once.
    pub max_requests: usize,
    /// Attempts per request (the SDK retries 5xx, throttling and timeouts with backoff).
    pub attempts: u32,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for one attempt of one request.
    pub request_timeout: Duration,
}

impl S3Options {
    /// Options for `bucket` with Strata's defaults.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            endpoint: None,
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            access_key: None,
            secret_key: None,
            path_style: true,
            max_requests: 64,
            attempts: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "(hidden)"))
            .field("path_style", &self.path_style)
            .field("max_requests", &self.max_requests)
            .finish_non_exhaustive()
    }
}
