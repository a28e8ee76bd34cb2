//! # strata-backend-s3
//!
//! Message bodies as objects in an S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage...),
//! through aws-sdk-s3. One object per body, under `prefix` and a 4-hex-digit hash of the key,
//! so that keys spread over the store's partitions. Range reads are ranged GETs; deletes go
//! out as DeleteObjects of up to 1000 keys; copies are server-side. Requests in flight are
//! bounded; the SDK retries 5xx, throttling and timeouts with backoff.
//!
//! S3 has no multi-object transaction: a batch is checked first (preconditions, copy sources)
//! and then applied in waves of independent operations, so a crash can leave part of it. The
//! server therefore always puts the staging journal (`strata-backend-journal`) in front of
//! this backend; the journal makes a batch all-or-nothing and replays it after a crash.

mod error;
mod options;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures::future::try_join_all;
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Listed, Op,
    Receipt, Retry,
};
use tokio::sync::Semaphore;

pub use options::S3Options;

use error::s3_err;

/// Body metadata as S3 user metadata (`x-amz-meta-strata-…`).
fn metadata_map(meta: &BodyMeta) -> HashMap<String, String> {
    meta.to_pairs()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}

/// Most keys one DeleteObjects request may name.
const DELETE_CHUNK: usize = 1000;

/// A bucket (and prefix) of an S3-compatible store.
pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    name: String,
    requests: Arc<Semaphore>,
    acks: AckTracker,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// Builds the client and checks that the bucket is there and the credentials open it:
    /// an unreachable endpoint, a missing bucket or wrong credentials are errors here.
    pub async fn connect(opts: &S3Options) -> Result<S3Backend, BackendError> {
        let name = format!(
            "s3({}/{})",
            opts.endpoint.as_deref().unwrap_or("aws"),
            opts.bucket
        );
        if opts.bucket.is_empty() {
            return Err(
                BackendError::new(name, ErrorKind::Unavailable, "no bucket named")
                    .with_retry(Retry::Never),
            );
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
        match (&opts.region, &opts.endpoint) {
            (Some(r), _) => loader = loader.region(Region::new(r.clone())),
            // An S3-compatible store of its own: no cloud instance to ask for a region.
            (None, Some(_)) => loader = loader.region(Region::new("us-east-1")),
            (None, None) => {}
        }
        if let (Some(ak), Some(sk)) = (&opts.access_key, &opts.secret_key) {
            loader =
                loader.credentials_provider(Credentials::new(ak, sk, None, None, "strata-config"));
        }
        if let Some(ep) = &opts.endpoint {
            loader = loader.endpoint_url(ep);
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(opts.path_style)
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(opts.attempts.max(1)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(opts.connect_timeout)
                    .operation_attempt_timeout(opts.request_timeout)
                    .build(),
            )
            // Many S3-compatible stores do not take the newer streaming checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        let client = Client::from_conf(conf.build());
        let backend = S3Backend {
            client,
            bucket: opts.bucket.clone(),
            prefix: opts.prefix.clone(),
            requests: Arc::new(Semaphore::new(opts.max_requests.max(1))),
            acks: AckTracker::new(name.clone()),
            name,
        };
        backend
            .client
            .head_bucket()
            .bucket(&backend.bucket)
            .send()
            .await
            .map_err(|e| {
                let mut err = s3_err(
                    &backend.name,
                    &backend.bucket,
                    &format!("bucket {}", backend.bucket),
                    e,
                );
                if err.kind == ErrorKind::NotFound {
                    err.kind = ErrorKind::Unavailable;
                    err.message = format!("bucket {:?} does not exist", backend.bucket);
                }
                err.with_retry(Retry::Never)
            })?;
        Ok(backend)
    }

    /// The object key of `key`: prefix, a hash of the key, the key.
    pub fn object_key(&self, key: &Key) -> String {
        let h = crc32fast::hash(key.as_str().as_bytes()) & 0xffff;
        format!("{}{h:04x}/{}", self.prefix, key.as_str())
    }

    fn err<E>(
        &self,
        what: String,
        e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> BackendError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        s3_err(&self.name, &self.bucket, &what, e)
    }

    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        // The semaphore is never closed.
        self.requests
            .acquire()
            .await
            .expect("request semaphore closed")
    }

    /// The object's size, or `None` when it does not exist.
    async fn head(&self, key: &Key) -> Result<Option<u64>, BackendError> {
        let _p = self.permit().await;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => {
                let e = self.err(format!("HEAD {key}"), e);
                if e.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Writes an object; with `create_only`, S3 itself refuses it if the object exists
    /// (`If-None-Match: *`), whoever wrote it and however close in time.
    async fn put(
        &self,
        key: &Key,
        data: Bytes,
        create_only: bool,
        meta: Option<&BodyMeta>,
    ) -> Result<(), BackendError> {
        let _p = self.permit().await;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .set_metadata(meta.map(metadata_map));
        if create_only {
            put = put.if_none_match("*");
        }
        put.send()
            .await
            .map_err(|e| self.err(format!("PUT {key}"), e))?;
        Ok(())
    }

    /// The copy source of `key`: a URL path, so what keys allow beyond it is escaped.
    fn copy_source(&self, key: &Key) -> String {
        // Keys are `[A-Za-z0-9._-+=,/]`.
        format!("{}/{}", self.bucket, self.object_key(key))
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_string(),
                '=' => "%3D".to_string(),
                ',' => "%2C".to_string(),
                c => c.to_string(),
            })
            .collect()
    }

    /// Copies an object in the store; its metadata goes with it.
    /// Copies `from` to `to` in the store; with `meta`, the copy carries it instead of the
    /// source's (one request, not a copy and then a metadata rewrite).
    async fn copy(
        &self,
        from: &Key,
        to: &Key,
        meta: Option<&BodyMeta>,
    ) -> Result<(), BackendError> {
        let _p = self.permit().await;
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.object_key(to))
            .copy_source(self.copy_source(from));
        if let Some(m) = meta {
            req = req
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .set_metadata(Some(metadata_map(m)));
        }
        req.send()
            .await
            .map_err(|e| self.err(format!("COPY {from} to {to}"), e))?;
        Ok(())
    }

    /// Replaces a stored object's metadata (a copy onto itself, in the store); a key that is
    /// not stored is skipped.
    async fn set_meta(&self, key: &Key, meta: &BodyMeta) -> Result<(), BackendError> {
        let _p = self.permit().await;
        let r = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .copy_source(self.copy_source(key))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .set_metadata(Some(metadata_map(meta)))
            .send()
            .await
            .map_err(|e| self.err(format!("COPY {key} onto itself (metadata)"), e));
        match r {
            Err(e) if e.kind != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<(), BackendError> {
        for chunk in keys.chunks(DELETE_CHUNK) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.object_key(k)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BackendError::new(&self.name, ErrorKind::InvalidKey, e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| BackendError::new(&self.name, ErrorKind::InvalidKey, e.to_string()))?;
            let _p = self.permit().await;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.err(format!("DELETE {} objects", chunk.len()), e))?;
            if let Some(first) = out.errors().first() {
                return Err(BackendError::new(
                    &self.name,
                    ErrorKind::Io,
                    format!(
                        "DELETE {}: {} ({}), and {} more",
                        first.key().unwrap_or_default(),
                        first.message().unwrap_or_default(),
                        first.code().unwrap_or_default(),
                        out.errors().len() - 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks a batch before anything is written: preconditions, and that every copy's source
    /// exists where the copy runs.
    async fn check(&self, batch: &Batch) -> Result<(), BackendError> {
        let heads = try_join_all(batch.preconditions.iter().map(|p| self.head(p.key()))).await?;
        for (p, size) in batch.preconditions.iter().zip(heads) {
            if !p.holds(size.is_some()) {
                return Err(p.failed(&self.name));
            }
        }
        let missing = |k: &Key| {
            BackendError::new(
                &self.name,
                ErrorKind::NotFound,
                format!("copy source {k} does not exist"),
            )
        };
        let sources = batch.stored_copy_sources().map_err(missing)?;
        let found = try_join_all(sources.iter().map(|k| self.head(k))).await?;
        if let Some((k, _)) = sources.iter().zip(found).find(|(_, f)| f.is_none()) {
            return Err(missing(k));
        }
        Ok(())
    }

    /// Applies operations that touch different keys, all at once; a put's metadata, if the
    /// batch gives it, goes in the same request.
    async fn wave(
        &self,
        ops: Vec<(Op, Option<Box<BodyMeta>>)>,
        absent: &HashSet<Key>,
    ) -> Result<(), BackendError> {
        let mut deletes = Vec::new();
        let mut writes = Vec::new();
        for (op, meta) in ops {
            match op {
                Op::Delete { key } => deletes.push(key),
                other => writes.push((other, meta)),
            }
        }
        let writes = try_join_all(writes.into_iter().map(|(op, meta)| async move {
            match op {
                Op::Put { key, data } => {
                    let create_only = absent.contains(&key);
                    self.put(&key, data, create_only, meta.as_deref()).await
                }
                // S3 refuses a copy onto itself that changes nothing; it holds itself already.
                Op::Copy { from, to } if from == to && meta.is_none() => Ok(()),
                Op::Copy { from, to } => self.copy(&from, &to, meta.as_deref()).await,
                Op::Meta { key, meta } => self.set_meta(&key, &meta).await,
                Op::Delete { .. } => Ok(()),
            }
        }));
        let (w, d) = tokio::join!(writes, self.delete_many(&deletes));
        w?;
        d
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_batch: false,
            range_reads: true,
            server_side_copy: true,
            deferred_ack: false,
            labels: false,
            metadata: true,
            local_reads: false,
        }
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        self.check(&batch).await?;
        // A key required absent is written create-only, so the store enforces the condition
        // against every writer, not only this check.
        let mut absent: HashSet<Key> = batch
            .preconditions
            .iter()
            .filter_map(|p| match p {
                strata_backend_api::Precondition::Absent(k) => Some(k.clone()),
                strata_backend_api::Precondition::Exists(_) => None,
            })
            .collect();
        // Metadata right after its key's put or copy travels with that request.
        let mut ops: Vec<(Op, Option<Box<BodyMeta>>)> = Vec::with_capacity(batch.ops.len());
        for op in batch.ops {
            if let Op::Meta { key, meta } = op {
                match ops.last_mut() {
                    Some((Op::Put { key: k, .. } | Op::Copy { to: k, .. }, m)) if *k == key => {
                        *m = Some(meta)
                    }
                    _ => ops.push((Op::Meta { key, meta }, None)),
                }
                continue;
            }
            ops.push((op, None));
        }
        // Operations run in waves, so order per key holds: a wave never writes a key it also
        // reads or writes elsewhere. Copies of one source read it together (one message
        // copied to many users is two waves, not one per copy).
        let mut wave = Vec::new();
        let mut written: HashSet<Key> = HashSet::new();
        let mut read: HashSet<Key> = HashSet::new();
        for (op, meta) in ops {
            let (writes, reads) = match &op {
                Op::Put { key, .. } | Op::Delete { key } | Op::Meta { key, .. } => (key, None),
                Op::Copy { from, to } => (to, Some(from)),
            };
            let clash = written.contains(writes)
                || read.contains(writes)
                || reads.is_some_and(|r| written.contains(r));
            if clash {
                self.wave(std::mem::take(&mut wave), &absent).await?;
                // Only the first write of a key is conditional.
                absent.retain(|k| !written.contains(k));
                written.clear();
                read.clear();
            }
            written.insert(writes.clone());
            read.extend(reads.cloned());
            wave.push((op, meta));
        }
        self.wave(wave, &absent).await?;
        // A PUT answered is durable in the store: soft-done and acked are one moment.
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let header = match &range {
            Some(r) if r.start >= r.end => {
                return match self.head(key).await? {
                    Some(_) => Ok(Bytes::new()),
                    None => Err(BackendError::new(
                        &self.name,
                        ErrorKind::NotFound,
                        format!("{key} does not exist"),
                    )),
                };
            }
            Some(r) => Some(format!("bytes={}-{}", r.start, r.end - 1)),
            None => None,
        };
        let _p = self.permit().await;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .set_range(header)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // A range past the end is empty, as the trait says, if the object exists.
                let past_end = e.code() == Some("InvalidRange")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 416);
                let e = self.err(format!("GET {key}"), e);
                if past_end {
                    drop(_p);
                    return match self.head(key).await? {
                        Some(_) => Ok(Bytes::new()),
                        None => Err(e),
                    };
                }
                return Err(e);
            }
        };
        let body = out.body.collect().await.map_err(|e| {
            BackendError::new(
                &self.name,
                ErrorKind::Unavailable,
                format!("GET {key}: {e}"),
            )
            .with_source(e)
        })?;
        Ok(body.into_bytes())
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        let out = {
            let _p = self.permit().await;
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(self.object_key(key))
                .send()
                .await
                .map_err(|e| self.err(format!("HEAD {key}"), e))?
        };
        let Some(pairs) = out.metadata() else {
            return Ok(None);
        };
        BodyMeta::from_pairs(|n| pairs.get(n).map(String::as_str)).map_err(|why| {
            BackendError::new(&self.name, ErrorKind::Corrupt, format!("{key}: {why}"))
        })
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        self.head(key).await?.ok_or_else(|| {
            BackendError::new(
                &self.name,
                ErrorKind::NotFound,
                format!("{key} does not exist"),
            )
        })
    }

    /// Every object under the configured prefix, a page at a time; the hash segment of each
    /// object name is taken off. Object names are spread by hash, so a key prefix cannot narrow
    /// the listing: it filters it.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = {
                let _p = self.permit().await;
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| self.err(format!("LIST {}", self.prefix), e))?
            };
            for o in page.contents() {
                let Some(name) = o.key() else { continue };
                let Some((_, key)) = name
                    .strip_prefix(&self.prefix)
                    .and_then(|rest| rest.split_once('/'))
                else {
                    continue;
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                // An object Strata could not have written is not its to list.
                let Ok(key) = Key::new(key) else { continue };
                out.push(Listed {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}
