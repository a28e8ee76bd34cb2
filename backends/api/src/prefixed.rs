//! One shared store seen by each user as a store of their own: every key is put under a fixed
//! prefix (`alice/…`). A database or a bucket holds all users' bodies; the mail store still
//! gets one backend per user.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::backend::{Backend, Capabilities, Listed, Read};
use crate::batch::{Batch, Op, Precondition};
use crate::error::BackendError;
use crate::key::Key;
use crate::label::Label;
use crate::meta::BodyMeta;
use crate::receipt::Receipt;

/// `inner` with every key under `prefix/`.
pub struct Prefixed {
    inner: Arc<dyn Backend>,
    prefix: String,
}

impl Prefixed {
    /// A view of `inner` under `prefix` (a valid key segment, such as a user name).
    pub fn new(inner: Arc<dyn Backend>, prefix: &str) -> Result<Prefixed, BackendError> {
        Key::new(prefix)?;
        Ok(Prefixed {
            inner,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, k: &Key) -> Result<Key, BackendError> {
        Key::new(format!("{}/{}", self.prefix, k.as_str()))
    }

    /// The store every view shares.
    pub fn shared(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// `prefix` of this view as the shared store names it, for a listing.
    fn listing(&self, prefix: &str) -> String {
        format!("{}/{prefix}", self.prefix)
    }

    /// A listing of the shared store as this view names it.
    fn unprefixed(&self, listed: Vec<Listed>) -> Result<Vec<Listed>, BackendError> {
        let mine = self.listing("");
        listed
            .into_iter()
            .filter_map(|l| {
                let key = l.key.as_str().strip_prefix(&mine)?.to_string();
                Some(Key::new(key).map(|key| Listed { key, size: l.size }))
            })
            .collect()
    }

    /// `k` of this view as the shared store names it, for a batch that spans views (one
    /// message delivered to many users, put once and copied).
    pub fn shared_key(&self, k: &Key) -> Result<Key, BackendError> {
        self.key(k)
    }
}

// No `below`: keys are renamed on the way, so every method is defined here.
#[async_trait]
impl Backend for Prefixed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let mut out = Batch::new();
        for p in batch.preconditions {
            out.preconditions.push(match p {
                Precondition::Absent(k) => Precondition::Absent(self.key(&k)?),
                Precondition::Exists(k) => Precondition::Exists(self.key(&k)?),
            });
        }
        for op in batch.ops {
            out.ops.push(match op {
                Op::Put { key, data } => Op::Put {
                    key: self.key(&key)?,
                    data,
                },
                Op::Delete { key } => Op::Delete {
                    key: self.key(&key)?,
                },
                Op::Copy { from, to } => Op::Copy {
                    from: self.key(&from)?,
                    to: self.key(&to)?,
                },
                Op::Meta { key, meta } => Op::Meta {
                    key: self.key(&key)?,
                    meta,
                },
            });
        }
        self.inner.commit(out).await
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.inner.flush(seq).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let listed = self.inner.list(&self.listing(prefix)).await?;
        self.unprefixed(listed)
    }

    async fn list_stored(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let listed = self.inner.list_stored(&self.listing(prefix)).await?;
        self.unprefixed(listed)
    }

    /// Nothing: partial writes belong to the shared store as a whole, cleaned once by whoever
    /// holds it, not once per user's view.
    async fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        let _ = older_than;
        Ok(0)
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        let labels = labels
            .into_iter()
            .map(|(k, l)| Ok((self.key(&k)?, l)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        self.inner.set_labels(labels).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        self.inner.get(&self.key(key)?, range).await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        self.inner.size(&self.key(key)?).await
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        self.inner.meta(&self.key(key)?).await
    }

    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        let mut mapped = Vec::with_capacity(reads.len());
        for r in reads {
            match self.key(&r.key) {
                Ok(key) => mapped.push(Read {
                    key,
                    range: r.range,
                }),
                Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
            }
        }
        self.inner.get_many(mapped, concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    #[tokio::test]
    async fn users_under_one_store_do_not_see_each_other() {
        let shared: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let alice = Prefixed::new(shared.clone(), "alice").unwrap();
        let bob = Prefixed::new(shared.clone(), "bob").unwrap();
        let k = Key::new(".INBOX/1").unwrap();
        alice
            .commit(Batch::new().put(k.clone(), "a"))
            .await
            .unwrap();
        bob.commit(Batch::new().put(k.clone(), "b")).await.unwrap();
        assert_eq!(alice.get(&k, None).await.unwrap(), "a");
        assert_eq!(bob.get(&k, None).await.unwrap(), "b");
        let full = Key::new("alice/.INBOX/1").unwrap();
        assert_eq!(shared.get(&full, None).await.unwrap(), "a");
        assert!(Prefixed::new(shared, "../x").is_err());
    }

    #[tokio::test]
    async fn a_prefixed_view_keeps_the_contract() {
        crate::conformance::run_all(|| async {
            let shared: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
            Arc::new(Prefixed::new(shared, "u").unwrap()) as Arc<dyn Backend>
        })
        .await;
    }
}
