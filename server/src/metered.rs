//! A backend layer that counts and times every operation of the store it holds, by store name,
//! into the process's metrics (`strata_store_operations_total`, `..._seconds`). It changes no
//! answer; it is wrapped around each configured store, delay included, so what it measures is
//! what the mail store waits for.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use strata_backend_api::{
    Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Label, Listed, Read,
    Receipt,
};

/// `inner`, measured under the store name `store`.
pub struct Metered {
    inner: Arc<dyn Backend>,
    store: String,
}

impl Metered {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Backend>, store: &str) -> Arc<dyn Backend> {
        Arc::new(Metered {
            inner,
            store: store.to_string(),
        })
    }

    fn record<T>(&self, op: &'static str, since: Instant, r: &Result<T, BackendError>) {
        record(
            &self.store,
            op,
            since.elapsed(),
            r.as_ref().err().map(|e| e.kind),
        );
    }
}

fn record(store: &str, op: &'static str, took: Duration, error: Option<ErrorKind>) {
    let result = match error {
        None => "ok",
        Some(ErrorKind::NotFound) => "not_found",
        Some(ErrorKind::Conflict) => "conflict",
        Some(ErrorKind::Unavailable) => "unavailable",
        Some(ErrorKind::Corrupt) => "corrupt",
        Some(ErrorKind::Poisoned) => "poisoned",
        Some(ErrorKind::Io) => "io",
        Some(ErrorKind::InvalidKey) => "invalid_key",
        Some(ErrorKind::Unsupported) => "unsupported",
    };
    strata_metrics::metrics().store_op(store, op, result, took);
}

#[async_trait]
impl Backend for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn below(&self) -> Option<&dyn Backend> {
        Some(&*self.inner)
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let t = Instant::now();
        let r = self.inner.commit(batch).await;
        self.record("commit", t, &r);
        r
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        let t = Instant::now();
        let r = self.inner.flush(seq).await;
        self.record("flush", t, &r);
        r
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let t = Instant::now();
        let r = self.inner.get(key, range).await;
        self.record("get", t, &r);
        r
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let t = Instant::now();
        let r = self.inner.size(key).await;
        self.record("size", t, &r);
        r
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let t = Instant::now();
        let r = self.inner.list(prefix).await;
        self.record("list", t, &r);
        r
    }

    async fn clean_partial(&self, older_than: Duration) -> Result<u64, BackendError> {
        let t = Instant::now();
        let r = self.inner.clean_partial(older_than).await;
        self.record("clean_partial", t, &r);
        r
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        let t = Instant::now();
        let r = self.inner.meta(key).await;
        self.record("meta", t, &r);
        r
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        let t = Instant::now();
        let r = self.inner.set_labels(labels).await;
        self.record("set_labels", t, &r);
        r
    }

    /// Each read of the batch counted as a `get`, timed from when the caller could first have
    /// had it (the stream's start, or the previous answer): what a FETCH waits per body.
    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        let mut last = Instant::now();
        self.inner
            .get_many(reads, concurrency)
            .map(move |r| {
                let now = Instant::now();
                record(
                    &self.store,
                    "get",
                    now - last,
                    r.as_ref().err().map(|e| e.kind),
                );
                last = now;
                r
            })
            .boxed()
    }
}

/// The index's commits and repacks, into the process's metrics.
pub struct IndexMetrics;

impl strata_index::Observer for IndexMetrics {
    fn committed(&self, durable: bool, took: Duration) {
        strata_metrics::metrics().index_commit(durable, took);
    }

    fn repacked(&self) {
        strata_metrics::metrics().repacked();
    }
}
