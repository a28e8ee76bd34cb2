//! A backend in memory: the reference for the conformance suite and a stand-in in tests of the
//! layers above. Soft-done and acked are the same moment. It keeps nothing across a restart.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, Capabilities, Listed, slice_range};
use crate::batch::{Batch, Op};
use crate::error::{BackendError, ErrorKind};
use crate::key::Key;
use crate::meta::BodyMeta;
use crate::receipt::{AckTracker, Receipt};

/// An object: its bytes and the metadata recorded beside it.
type Object = (Bytes, Option<BodyMeta>);

/// Objects in a map.
#[derive(Debug)]
pub struct MemoryBackend {
    objects: RwLock<BTreeMap<Key, Object>>,
    acks: AckTracker,
    reads: AtomicU64,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            objects: RwLock::new(BTreeMap::new()),
            acks: AckTracker::new("memory"),
            reads: AtomicU64::new(0),
        }
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many reads it has served.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The keys it holds, in order.
    pub fn keys(&self) -> Vec<Key> {
        let objects = self.objects.read().unwrap_or_else(|p| p.into_inner());
        objects.keys().cloned().collect()
    }

    fn err(&self, kind: ErrorKind, message: String) -> BackendError {
        BackendError::new("memory", kind, message)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_batch: true,
            range_reads: true,
            server_side_copy: true,
            deferred_ack: false,
            labels: false,
            metadata: true,
            local_reads: false,
        }
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        for p in &batch.preconditions {
            if !p.holds(objects.contains_key(p.key())) {
                return Err(p.failed("memory"));
            }
        }
        // Ops are applied to an overlay first, so a failing op leaves nothing behind.
        let mut overlay: HashMap<Key, Option<Object>> = HashMap::new();
        for op in batch.ops {
            match op {
                Op::Put { key, data } => {
                    overlay.insert(key, Some((data, None)));
                }
                Op::Delete { key } => {
                    overlay.insert(key, None);
                }
                Op::Meta { key, meta } => {
                    let current = match overlay.get(&key) {
                        Some(v) => v.clone(),
                        None => objects.get(&key).cloned(),
                    };
                    if let Some((data, _)) = current {
                        overlay.insert(key, Some((data, Some(*meta))));
                    }
                }
                Op::Copy { from, to } => {
                    let data = match overlay.get(&from) {
                        Some(v) => v.clone(),
                        None => objects.get(&from).cloned(),
                    }
                    .ok_or_else(|| {
                        self.err(
                            ErrorKind::NotFound,
                            format!("copy source {from} does not exist"),
                        )
                    })?;
                    overlay.insert(to, Some(data));
                }
            }
        }
        for (k, v) in overlay {
            match v {
                Some(data) => objects.insert(k, data),
                None => objects.remove(&k),
            };
        }
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let data = self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))?;
        Ok(slice_range(data, range))
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|(d, _)| d.len() as u64)
            .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|(_, m)| m.clone())
            .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        Ok(self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, (d, _))| Listed {
                key: k.clone(),
                size: d.len() as u64,
            })
            .collect())
    }
}
