//! Writes as data: a batch of operations that commits as one, with preconditions.

use bytes::Bytes;

use crate::error::{BackendError, ErrorKind};
use crate::key::Key;
use crate::meta::BodyMeta;

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store `data` under `key`, replacing what was there.
    Put {
        /// Where.
        key: Key,
        /// What.
        data: Bytes,
    },
    /// Remove `key` (removing a missing key is not an error).
    Delete {
        /// What.
        key: Key,
    },
    /// Store a copy of `from` under `to` (server-side where the backend can).
    Copy {
        /// Source; it must exist when the batch commits.
        from: Key,
        /// Destination.
        to: Key,
    },
    /// Record `meta` beside the object at `key` (put earlier in the batch, or already stored),
    /// in a store that keeps metadata ([`crate::Capabilities::metadata`]); others ignore it. A
    /// key that is not stored is skipped: metadata follows the index, never the other way round.
    Meta {
        /// Which object.
        key: Key,
        /// What it records.
        meta: Box<BodyMeta>,
    },
}

/// A condition the whole batch depends on; if one fails, nothing is written (`Conflict`).
///
/// A store shared by several nodes holds `Absent` against all of them: of two batches that
/// put one key required absent, at most one commits, however close in time (S3
/// `If-None-Match: *`, an SQL insert on the key). This is what fencing between nodes rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The key must not exist.
    Absent(Key),
    /// The key must exist.
    Exists(Key),
}

impl Precondition {
    /// The key it is about.
    pub fn key(&self) -> &Key {
        match self {
            Precondition::Absent(k) | Precondition::Exists(k) => k,
        }
    }

    /// Whether it holds, given whether its key exists.
    pub fn holds(&self, exists: bool) -> bool {
        exists == matches!(self, Precondition::Exists(_))
    }

    /// The `Conflict` error of `backend` when it does not hold.
    pub fn failed(&self, backend: &str) -> BackendError {
        let why = match self {
            Precondition::Absent(_) => "exists",
            Precondition::Exists(_) => "is missing",
        };
        BackendError::new(
            backend,
            ErrorKind::Conflict,
            format!("precondition failed on {}: it {why}", self.key()),
        )
    }
}

/// Operations applied in order and committed as one, also across a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Conditions checked before anything is written.
    pub preconditions: Vec<Precondition>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(mut self, key: Key, data: impl Into<Bytes>) -> Self {
        self.ops.push(Op::Put {
            key,
            data: data.into(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, key: Key) -> Self {
        self.ops.push(Op::Delete { key });
        self
    }

    /// Adds a copy.
    pub fn copy(mut self, from: Key, to: Key) -> Self {
        self.ops.push(Op::Copy { from, to });
        self
    }

    /// Adds metadata for `key`.
    pub fn meta(mut self, key: Key, meta: BodyMeta) -> Self {
        self.ops.push(Op::Meta {
            key,
            meta: Box::new(meta),
        });
        self
    }

    /// Requires `key` to be absent.
    pub fn require_absent(mut self, key: Key) -> Self {
        self.preconditions.push(Precondition::Absent(key));
        self
    }

    /// Requires `key` to exist.
    pub fn require_exists(mut self, key: Key) -> Self {
        self.preconditions.push(Precondition::Exists(key));
        self
    }

    /// The copy sources the batch reads from the store, in order: those no earlier operation of
    /// the batch writes. `Err` names a source an earlier operation deletes (a copy that cannot
    /// run). For a store that checks them before writing anything.
    pub fn stored_copy_sources(&self) -> Result<Vec<&Key>, &Key> {
        let mut written: std::collections::HashMap<&Key, bool> = Default::default();
        let mut stored = Vec::new();
        for op in &self.ops {
            match op {
                Op::Put { key, .. } => {
                    written.insert(key, true);
                }
                Op::Delete { key } => {
                    written.insert(key, false);
                }
                Op::Meta { .. } => {}
                Op::Copy { from, to } => {
                    match written.get(from) {
                        Some(false) => return Err(from),
                        Some(true) => {}
                        None => stored.push(from),
                    }
                    written.insert(to, true);
                }
            }
        }
        Ok(stored)
    }

    /// Bytes of data the batch writes.
    pub fn data_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }
}
