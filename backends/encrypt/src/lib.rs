//! # strata-backend-encrypt
//!
//! A backend that holds another and keeps what it stores sealed ([`sealed`]): ChaCha20-Poly1305
//! under a key derived per object from a keyring key, in frames at fixed places, so a range read
//! fetches the header and the frames it needs (at once, one round trip). Every object names the
//! key it was sealed with: adding a key to the keyring rotates (new objects use it, old ones
//! still open), and an object whose key is gone, or that fails authentication, is an error of
//! kind `Corrupt` naming the object and the key, never mail. An object that is not sealed is
//! refused the same way: turn encryption on for a new store and `strata migrate` into it.
//!
//! It is not compression (which goes in front of it, since sealed bytes do not compress) and
//! keeps no state: copies, deletes, metadata and labels go to the store unchanged.

pub mod sealed;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use strata_backend_api::{
    Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Listed, Read, Receipt, rewriting,
    slice_range,
};

pub use sealed::Keyring;
use sealed::{HEADER, Header, OpenError};

/// Original bytes per frame: the least a range read opens (a tag of 16 bytes each, 0.4%).
pub const FRAME: u32 = 4 << 10;
/// Sealing or opening above this many bytes leaves the async workers.
const BLOCKING_BYTES: usize = 64 << 10;

/// The layer.
pub struct EncryptBackend {
    inner: Arc<dyn Backend>,
    keys: Arc<Keyring>,
}

impl EncryptBackend {
    /// Seals what goes into `inner` with `keys`.
    pub fn new(inner: Arc<dyn Backend>, keys: Keyring) -> Self {
        EncryptBackend {
            inner,
            keys: Arc::new(keys),
        }
    }

    fn corrupt(&self, key: &Key, why: OpenError) -> BackendError {
        BackendError::new(
            self.inner.name(),
            ErrorKind::Corrupt,
            format!("{key}: encrypted object cannot be opened: {why}"),
        )
    }

    async fn open(&self, key: &Key, object: Bytes) -> Result<Bytes, BackendError> {
        let keys = self.keys.clone();
        let opened = if object.len() > BLOCKING_BYTES {
            tokio::task::spawn_blocking(move || sealed::open_whole(&keys, &object))
                .await
                .map_err(|e| BackendError::new(self.inner.name(), ErrorKind::Io, e.to_string()))?
        } else {
            sealed::open_whole(&keys, &object)
        };
        opened.map(Bytes::from).map_err(|e| self.corrupt(key, e))
    }

    /// `range` of `key`'s content: the header and the frames, read together.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes, BackendError> {
        // Where the frames are depends only on the frame size, which every object here shares
        // unless it was sealed with another; the header read confirms it.
        let guess = Header::for_range(FRAME, &range);
        let (head, frames) = futures::join!(
            self.inner.get(key, Some(0..HEADER as u64)),
            self.inner.get(key, Some(guess.1.clone()))
        );
        let h = Header::parse(&head?).map_err(|e| self.corrupt(key, e))?;
        let (wanted, at) = h.frames_for(&range);
        if wanted.is_empty() {
            return Ok(Bytes::new());
        }
        let need = (at.end - at.start) as usize;
        let stored = match frames {
            // The guess assumed whole frames: it holds the ones wanted, or more.
            Ok(f) if h.frame_size == FRAME && at.start == guess.1.start && f.len() >= need => {
                f.slice(..need)
            }
            _ => self.inner.get(key, Some(at.clone())).await?,
        };
        let first = wanted.start * h.frame_size as u64;
        let opened = h
            .open(&self.keys, wanted, &stored)
            .map_err(|e| self.corrupt(key, e))?;
        let end = range.end.min(h.length);
        let start = range.start.min(end);
        Ok(Bytes::from(opened).slice((start - first) as usize..(end - first) as usize))
    }

    /// The batch as the store keeps it: every put sealed.
    async fn sealed(&self, batch: Batch) -> Result<Batch, BackendError> {
        let keys = self.keys.clone();
        let name = self.inner.name();
        rewriting::rewrite_puts(batch, name, BLOCKING_BYTES as u64, move |data| {
            Some(Bytes::from(sealed::seal(&keys, data, FRAME)))
        })
        .await
    }
}

#[async_trait]
impl Backend for EncryptBackend {
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
        let batch = self.sealed(batch).await?;
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
                Ok(slice_range(self.open(key, whole).await?, range))
            }
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let head = self.inner.get(key, Some(0..HEADER as u64)).await?;
        Ok(Header::parse(&head)
            .map_err(|e| self.corrupt(key, e))?
            .length)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        rewriting::list_original_sizes(&*self.inner, prefix, HEADER as u64, |key, head| {
            Header::parse(head)
                .map(|h| Some(h.length))
                .map_err(|e| self.corrupt(key, e))
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
            move |key, object| async move { self.open(&key, object).await },
            move |r| async move { self.get(&r.key, r.range).await },
        )
    }
}
