//! The backend trait: batched transactional writes, ranged and concurrent reads.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::batch::Batch;
use crate::error::BackendError;
use crate::key::Key;
use crate::label::Label;
use crate::meta::BodyMeta;
use crate::receipt::Receipt;

/// What a backend can do natively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// A batch commits atomically in the store itself (not only through a local journal).
    pub atomic_batch: bool,
    /// Range reads fetch only the range (otherwise the whole object is read and sliced).
    pub range_reads: bool,
    /// Copies happen in the store without moving the data through Strata.
    pub server_side_copy: bool,
    /// Soft-done and acked can be different moments (a slow store behind a local journal).
    pub deferred_ack: bool,
    /// Keeps [`Label`]s where other mail programs read them ([`Backend::set_labels`]).
    pub labels: bool,
    /// Keeps [`BodyMeta`] beside objects ([`Op::Meta`](crate::Op::Meta), [`Backend::meta`]).
    pub metadata: bool,
    /// Objects are local files: [`Backend::get_many`] reads several in one blocking task, so a
    /// caller gains by handing it a run of reads at once rather than each on its own.
    pub local_reads: bool,
}

/// One stored object, as [`Backend::list`] names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: Key,
    /// Its size in octets.
    pub size: u64,
}

/// One read of [`Backend::get_many`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The key.
    pub key: Key,
    /// The byte range, or the whole object.
    pub range: Option<Range<u64>>,
}

impl Read {
    /// A read of a whole object.
    pub fn whole(key: Key) -> Self {
        Read { key, range: None }
    }
}

/// A store of message bodies (and, later, parts and attachments).
///
/// Writes are batches that commit as one; `commit` returns at soft-done and the receipt
/// resolves at acked. Reads of many objects run concurrently and answer in request order.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, for errors and logs.
    fn name(&self) -> &str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Commits a batch: all of it or none of it. Returns once the batch is soft-done.
    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError>;

    /// Waits until every batch up to `seq` is acked.
    async fn flush(&self, seq: u64) -> Result<(), BackendError>;

    /// Reads an object, or a byte range of it (clamped to its end).
    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError>;

    /// An object's size.
    async fn size(&self, key: &Key) -> Result<u64, BackendError>;

    /// Every stored object whose key starts with `prefix` (all of them for `""`), as the
    /// committed batches left them, in no particular order. For reconciling the store with
    /// the index (bodies no index entry names), not for the request path.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError>;

    /// The backend this one holds, for a layer that keeps its keys as they are (compression,
    /// encryption, a cache, a journal): what the layer does not define itself (listing what
    /// is stored, cleaning partial writes, metadata, labels) passes to it. `None` for a store,
    /// and for a layer that renames keys, which must define each of those itself.
    fn below(&self) -> Option<&dyn Backend> {
        None
    }

    /// As [`Backend::list`], but each object as the bottom store keeps it: a layer that
    /// rewrites objects (compression, encryption, single-instance parts) lists what it wrote,
    /// its own objects included, with their stored sizes, and reads nothing to do so. For
    /// accounting and collection.
    async fn list_stored(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        match self.below() {
            Some(b) => b.list_stored(prefix).await,
            None => self.list(prefix).await,
        }
    }

    /// Removes what an interrupted write left behind (a Maildir's `tmp/` files) if it is older
    /// than `older_than`; returns how many. Stores whose writes leave nothing behind have
    /// nothing to remove.
    async fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        match self.below() {
            Some(b) => b.clean_partial(older_than).await,
            None => Ok(0),
        }
    }

    /// The metadata recorded beside an object ([`crate::Op::Meta`]), `None` if it has none or
    /// the store keeps none; `NotFound` if the object is not stored.
    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        if let Some(b) = self.below() {
            return b.meta(key).await;
        }
        self.size(key).await?;
        Ok(None)
    }

    /// Sets the labels of stored objects, for a store that keeps them
    /// ([`Capabilities::labels`]); others ignore them. A key that is not (or no longer) stored
    /// is skipped: labels follow the index, never the other way round.
    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        match self.below() {
            Some(b) => b.set_labels(labels).await,
            None => Ok(()),
        }
    }

    /// Reads many objects with at most `concurrency` reads in flight, yielding the answers in
    /// request order, so that a FETCH of many bodies costs a few round trips, not one each.
    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        stream::iter(reads)
            .map(move |r| async move { self.get(&r.key, r.range).await })
            .buffered(concurrency.max(1))
            .boxed()
    }
}

/// Slices `data` to `range`, clamped to its length (for backends without native range reads).
pub fn slice_range(data: Bytes, range: Option<Range<u64>>) -> Bytes {
    match range {
        None => data,
        Some(r) => {
            let len = data.len() as u64;
            let start = r.start.min(len) as usize;
            let end = r.end.clamp(r.start.min(len), len) as usize;
            data.slice(start..end)
        }
    }
}

/// A shared backend is a backend, so wrappers (delay, prefix) can hold one of any type.
#[async_trait]
impl<T: Backend + ?Sized> Backend for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn below(&self) -> Option<&dyn Backend> {
        (**self).below()
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        (**self).commit(batch).await
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        (**self).flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        (**self).get(key, range).await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        (**self).size(key).await
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        (**self).set_labels(labels).await
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        (**self).meta(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        (**self).list(prefix).await
    }

    async fn list_stored(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        (**self).list_stored(prefix).await
    }

    async fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        (**self).clean_partial(older_than).await
    }

    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        (**self).get_many(reads, concurrency)
    }
}
