//! What layers that rewrite every object share (compression, encryption): a listing whose sizes
//! are the originals', read from each object's header, and reads of whole objects through the
//! store's own batched reads, each one decoded as it arrives, several at once.
//!
//! It is not a layer itself: each layer says how its header gives a size and how it decodes.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::future::Future;

use crate::backend::{Backend, Listed, Read};
use crate::batch::{Batch, Op};
use crate::error::{BackendError, ErrorKind};
use crate::key::Key;

/// `batch` with the data of every put passed through `rewrite` (which may keep it, `None`); on
/// a blocking thread when the batch carries more than `blocking_above` bytes. `backend` names
/// the store in an error.
pub async fn rewrite_puts<F>(
    batch: Batch,
    backend: &str,
    blocking_above: u64,
    rewrite: F,
) -> Result<Batch, BackendError>
where
    F: Fn(&[u8]) -> Option<Bytes> + Send + 'static,
{
    let all = move |mut batch: Batch| {
        for op in &mut batch.ops {
            if let Op::Put { data, .. } = op
                && let Some(new) = rewrite(data)
            {
                *data = new;
            }
        }
        batch
    };
    if batch.data_bytes() > blocking_above {
        tokio::task::spawn_blocking(move || all(batch))
            .await
            .map_err(|e| BackendError::new(backend, ErrorKind::Io, e.to_string()))
    } else {
        Ok(all(batch))
    }
}

/// `inner`'s listing under `prefix`, each size replaced by what `size_of` finds in the object's
/// first `head` bytes (`None`: the listed size stands); objects deleted since they were listed
/// are left out.
pub async fn list_original_sizes(
    inner: &dyn Backend,
    prefix: &str,
    head: u64,
    size_of: impl Fn(&Key, &[u8]) -> Result<Option<u64>, BackendError>,
) -> Result<Vec<Listed>, BackendError> {
    let listed = inner.list(prefix).await?;
    original_sizes(inner, listed, head, size_of).await
}

/// `listed` (objects of `inner`) with each size replaced as [`list_original_sizes`] does.
pub async fn original_sizes(
    inner: &dyn Backend,
    listed: Vec<Listed>,
    head: u64,
    size_of: impl Fn(&Key, &[u8]) -> Result<Option<u64>, BackendError>,
) -> Result<Vec<Listed>, BackendError> {
    let reads = listed
        .iter()
        .map(|l| Read {
            key: l.key.clone(),
            range: Some(0..head),
        })
        .collect();
    let heads: Vec<Result<Bytes, BackendError>> = inner.get_many(reads, 16).collect().await;
    let mut out = Vec::with_capacity(listed.len());
    for (l, head) in listed.into_iter().zip(heads) {
        let size = match head {
            Ok(head) => size_of(&l.key, &head)?.unwrap_or(l.size),
            Err(e) if e.kind == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push(Listed { key: l.key, size });
    }
    Ok(out)
}

/// `reads` answered in order: when all are of whole objects, through `inner`'s batched reads with
/// each object passed to `decode`; otherwise each through `get`. At most `concurrency` at once.
pub fn get_many_decoded<'a, D, DF, G, GF>(
    inner: &'a dyn Backend,
    reads: Vec<Read>,
    concurrency: usize,
    decode: D,
    get: G,
) -> BoxStream<'a, Result<Bytes, BackendError>>
where
    D: Fn(Key, Bytes) -> DF + Send + 'a,
    DF: Future<Output = Result<Bytes, BackendError>> + Send + 'a,
    G: Fn(Read) -> GF + Send + 'a,
    GF: Future<Output = Result<Bytes, BackendError>> + Send + 'a,
{
    let concurrency = concurrency.max(1);
    if reads.iter().all(|r| r.range.is_none()) {
        let keys: Vec<Key> = reads.iter().map(|r| r.key.clone()).collect();
        return inner
            .get_many(reads, concurrency)
            .zip(futures::stream::iter(keys))
            .map(move |(object, key)| {
                let decoded = object.map(|o| decode(key, o));
                async move { decoded?.await }
            })
            .buffered(concurrency)
            .boxed();
    }
    futures::stream::iter(reads)
        .map(get)
        .buffered(concurrency)
        .boxed()
}
