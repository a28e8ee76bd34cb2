//! A backend that watches what reaches the store it holds, for tests that assert how a layer
//! or the mail store uses a store: bytes read, single reads and `get_many` groups, and the
//! operations committed. It can also stand for a store with few connections, each read holding
//! one for a while. It changes no answer and is not a production layer.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::backend::{Backend, Capabilities, Listed, Read};
use crate::batch::{Batch, Op};
use crate::error::BackendError;
use crate::key::Key;
use crate::receipt::Receipt;

/// Operations committed through an [`Observed`] store, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Batches.
    pub batches: u64,
    /// Puts.
    pub puts: u64,
    /// Bytes those puts carried.
    pub put_bytes: u64,
    /// Copies.
    pub copies: u64,
    /// Deletes.
    pub deletes: u64,
}

/// `inner`, watched.
pub struct Observed {
    inner: Arc<dyn Backend>,
    read_bytes: AtomicU64,
    singles: AtomicU64,
    groups: Mutex<Vec<Vec<Read>>>,
    committed: Mutex<Committed>,
    connections: Option<(tokio::sync::Semaphore, Duration)>,
}

impl Observed {
    /// Watches `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Observed {
        Observed {
            inner,
            read_bytes: AtomicU64::new(0),
            singles: AtomicU64::new(0),
            groups: Mutex::new(Vec::new()),
            committed: Mutex::new(Committed::default()),
            connections: None,
        }
    }

    /// A store of `connections` connections: each read waits for one and holds it for `hold`
    /// (a query's time; on tokio's paused clock in a test, so nothing really waits).
    pub fn with_connections(mut self, connections: usize, hold: Duration) -> Observed {
        self.connections = Some((tokio::sync::Semaphore::new(connections), hold));
        self
    }

    /// The store watched.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// Bytes read since the last [`Observed::reset`].
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::Relaxed)
    }

    /// Operations committed since the last reset.
    pub fn committed(&self) -> Committed {
        *self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reads of each `get_many` call and the number of single gets since the last call
    /// (or reset), then forgets them.
    pub fn take_reads(&self) -> (Vec<Vec<Read>>, usize) {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap_or_else(|p| p.into_inner()));
        (groups, self.singles.swap(0, Ordering::Relaxed) as usize)
    }

    /// Forgets everything seen so far.
    pub fn reset(&self) {
        self.read_bytes.store(0, Ordering::Relaxed);
        self.take_reads();
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Committed::default();
    }

    async fn connection(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let (pool, hold) = self.connections.as_ref()?;
        let permit = pool.acquire().await.ok()?;
        tokio::time::sleep(*hold).await;
        Some(permit)
    }
}

#[async_trait]
impl Backend for Observed {
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
        {
            let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
            c.batches += 1;
            for op in &batch.ops {
                match op {
                    Op::Put { data, .. } => {
                        c.puts += 1;
                        c.put_bytes += data.len() as u64;
                    }
                    Op::Copy { .. } => c.copies += 1,
                    Op::Delete { .. } => c.deletes += 1,
                    Op::Meta { .. } => {}
                }
            }
        }
        self.inner.commit(batch).await
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.inner.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        self.singles.fetch_add(1, Ordering::Relaxed);
        let _connection = self.connection().await;
        let b = self.inner.get(key, range).await?;
        self.read_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        self.inner.size(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        self.inner.list(prefix).await
    }

    /// Recorded as one group, then read by the store watched (whose own grouping is what a
    /// test of grouping asserts), counting bytes as they come.
    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reads.clone());
        if self.connections.is_some() {
            // Each read takes a connection of its own, as a pool's reads do.
            return futures::stream::iter(reads)
                .map(move |r| async move {
                    let _connection = self.connection().await;
                    let b = self.inner.get(&r.key, r.range).await?;
                    self.read_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                    Ok(b)
                })
                .buffered(concurrency.max(1))
                .boxed();
        }
        self.inner
            .get_many(reads, concurrency)
            .map(move |r| {
                if let Ok(b) = &r {
                    self.read_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                r
            })
            .boxed()
    }
}
