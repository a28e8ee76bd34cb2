//! # strata-backend-compress
//!
//! A backend that holds another and keeps what it stores zstd-compressed, in frames that decode
//! on their own ([`frames`]), so a range read fetches the header and the frames it needs, not
//! the whole object. Reads, sizes and listings are of the original bytes; an object stored
//! before the layer was put in front of the store is read as it is, so compression can be
//! turned on for a store that already holds mail, and an object that compression would not
//! shrink is stored as it is. Damage (a bad header, a frame that does not
//! decode or fails its checksum) is an error of kind `Corrupt` naming the key, never mail.
//!
//! It is not a cache, and holds nothing of its own: copies, deletes, metadata and labels go to
//! the store unchanged (a copied object is still a valid compressed object).

pub mod frames;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use strata_backend_api::{
    Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Listed, Read, Receipt, rewriting,
    slice_range,
};

use frames::{Header, Parsed};

/// How objects are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressOptions {
    /// zstd level, 1 (fast) to 19 (small).
    pub level: i32,
    /// Original bytes per frame: what a range read decodes at least.
    pub frame_size: u32,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            level: 3,
            frame_size: 64 << 10,
        }
    }
}

/// How much of an object a range read or a size asks for first: the header of an object of up
/// to ~64 MiB in 64 KiB frames, in one round trip.
const PROBE: u64 = 4096;
/// Compression above this many bytes leaves the async workers.
const BLOCKING_BYTES: usize = 256 << 10;
/// Decoding above this many stored bytes leaves them too: the bodies of one FETCH then decode
/// on several cores at once, rather than one after another on the session's task.
const BLOCKING_DECODE_BYTES: usize = 16 << 10;

/// The layer.
pub struct CompressBackend {
    inner: Arc<dyn Backend>,
    opts: CompressOptions,
}

impl CompressBackend {
    /// Compresses what goes into `inner`.
    pub fn new(inner: Arc<dyn Backend>, opts: CompressOptions) -> Self {
        CompressBackend { inner, opts }
    }

    fn corrupt(&self, key: &Key, why: String) -> BackendError {
        BackendError::new(
            self.inner.name(),
            ErrorKind::Corrupt,
            format!("{key}: compressed object is damaged: {why}"),
        )
    }

    /// A whole stored object's content.
    async fn decode(&self, key: &Key, object: Bytes) -> Result<Bytes, BackendError> {
        if !object.starts_with(frames::MAGIC) {
            return Ok(object);
        }
        let decoded = if object.len() > BLOCKING_DECODE_BYTES {
            tokio::task::spawn_blocking(move || frames::decode_whole(&object))
                .await
                .map_err(|e| self.corrupt(key, e.to_string()))?
        } else {
            frames::decode_whole(&object)
        };
        decoded
            .map(Bytes::from)
            .map_err(|why| self.corrupt(key, why))
    }

    /// The header of `key`, reading past `head` (its first bytes) if it is longer; `None` for
    /// an object stored plain.
    async fn header(&self, key: &Key, head: &Bytes) -> Result<Option<Header>, BackendError> {
        match Header::parse(head).map_err(|why| self.corrupt(key, why))? {
            Parsed::Plain => Ok(None),
            Parsed::Header(h) => Ok(Some(h)),
            Parsed::Need(n) => {
                let more = self.inner.get(key, Some(0..n as u64)).await?;
                match Header::parse(&more).map_err(|why| self.corrupt(key, why))? {
                    Parsed::Header(h) => Ok(Some(h)),
                    _ => Err(self.corrupt(key, format!("header cut short at {}", more.len()))),
                }
            }
        }
    }

    /// `range` of `key`'s content with the store's range reads: the header, then the frames.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes, BackendError> {
        let head = self.inner.get(key, Some(0..PROBE)).await?;
        let Some(h) = self.header(key, &head).await? else {
            // Plain: what was read answers when it covers the range or is the whole object.
            if (head.len() as u64) < PROBE || range.end <= head.len() as u64 {
                return Ok(slice_range(head, Some(range)));
            }
            return self.inner.get(key, Some(range)).await;
        };
        let (frames, at) = h.frames_for(&range);
        if frames.is_empty() {
            return Ok(Bytes::new());
        }
        let stored = if at.end <= head.len() as u64 {
            head.slice(at.start as usize..at.end as usize)
        } else {
            self.inner.get(key, Some(at.clone())).await?
        };
        if stored.len() as u64 != at.end - at.start {
            return Err(self.corrupt(key, "frames cut short".into()));
        }
        let first = frames.start as u64 * h.frame_size as u64;
        let decoded = h
            .decode(frames, &stored)
            .map_err(|why| self.corrupt(key, why))?;
        let end = range.end.min(h.length);
        let start = range.start.min(end);
        Ok(Bytes::from(decoded).slice((start - first) as usize..(end - first) as usize))
    }

    /// The batch as the store keeps it: every put compressed.
    async fn compressed(&self, batch: Batch) -> Result<Batch, BackendError> {
        let opts = self.opts;
        let name = self.inner.name();
        rewriting::rewrite_puts(batch, name, BLOCKING_BYTES as u64, move |data| {
            let encoded = frames::encode(data, opts.level, opts.frame_size);
            // What does not shrink is kept as it is, read as an object from before the layer,
            // unless it could be taken for a compressed one.
            (encoded.len() < data.len() || data.starts_with(frames::MAGIC))
                .then(|| Bytes::from(encoded))
        })
        .await
    }
}

#[async_trait]
impl Backend for CompressBackend {
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
        let batch = self.compressed(batch).await?;
        self.inner.commit(batch).await
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.inner.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        match range {
            Some(r) if self.inner.capabilities().range_reads => self.get_range(key, r).await,
            range => {
                let whole = self.inner.get(key, None).await?;
                Ok(slice_range(self.decode(key, whole).await?, range))
            }
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let head = self.inner.get(key, Some(0..frames::FIXED as u64)).await?;
        match frames::original_length(&head).map_err(|why| self.corrupt(key, why))? {
            Some(length) => Ok(length),
            None if head.len() < frames::FIXED => Ok(head.len() as u64),
            None => self.inner.size(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        // The original sizes, from the headers: a listing is not on the request path.
        rewriting::list_original_sizes(&*self.inner, prefix, frames::FIXED as u64, |key, head| {
            frames::original_length(head).map_err(|why| self.corrupt(key, why))
        })
        .await
    }

    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        rewriting::get_many_decoded(
            &*self.inner,
            reads,
            concurrency,
            move |key, object| async move { self.decode(&key, object).await },
            move |r| async move { self.get(&r.key, r.range).await },
        )
    }
}
