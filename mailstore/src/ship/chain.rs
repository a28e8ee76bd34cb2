//! Where a user's shipped index lives in their main store, and reading it back.
//!
//! ```text
//! strata-index/epoch.00000000000000000007   epoch 7's head: the position of the current base
//! strata-index/head                         a hint: a recent epoch's head
//! strata-index/00000000000000000001         the object at position 1 (a base or a diff)
//! strata-index/00000000000000000002         ...
//! ```
//!
//! A node that opens a user for writing claims the next epoch by creating its head, which the
//! store allows only once; a node that finds a later epoch than its own stops writing. The
//! current head is the newest epoch's. Positions only grow, and each object is created only if
//! absent, so two writers never interleave: of two writes at one position, the store keeps one.
//! The chain is the head's base and every object after it, up to the first position not in the
//! store. A base found after the head's (a compaction interrupted before the head moved) is
//! itself a valid start. The reconciler never deletes these keys: they are not body keys.

use std::path::Path;

use futures::stream::{self, StreamExt};
use strata_backend_api::{Backend, BackendError, Batch, ErrorKind, Key};
use strata_index::{ChainObject, IndexError, Modseq};

/// The prefix of every shipped-index key.
pub const PREFIX: &str = "strata-index/";
const HEAD_MAGIC: &[u8; 18] = b"STRATA-INDEX-HEAD\0";
const HEAD_FORMAT: u32 = 1;
const HEAD_LEN: usize = 18 + 4 + 8 * 3 + 4;
/// Positions probed at once when looking for the end of a chain.
const PROBE: u64 = 16;

/// What the head says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The writer's epoch.
    pub epoch: u64,
    /// The position of the current base.
    pub base: u64,
    /// The position of the base before it: objects from there up to `base` are superseded.
    pub previous: u64,
}

/// The key of the object at `seq`.
pub fn object_key(seq: u64) -> Key {
    Key::new(format!("{PREFIX}{seq:020}")).expect("a valid key")
}

/// The head's key.
pub fn head_key() -> Key {
    Key::new(format!("{PREFIX}head")).expect("a valid key")
}

/// Whether a store key belongs to a shipped index.
pub fn is_index_key(key: &str) -> bool {
    key.starts_with(PREFIX)
}

impl Head {
    /// The head's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(HEAD_MAGIC);
        out.extend_from_slice(&HEAD_FORMAT.to_le_bytes());
        for n in [self.epoch, self.base, self.previous] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a head, checking every byte.
    pub fn decode(raw: &[u8]) -> std::result::Result<Head, String> {
        if raw.len() != HEAD_LEN || &raw[..18] != HEAD_MAGIC {
            return Err("not a Strata index head".into());
        }
        let (body, crc) = raw.split_at(HEAD_LEN - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let format = u32::from_le_bytes(raw[18..22].try_into().expect("4 bytes"));
        if format != HEAD_FORMAT {
            return Err(format!(
                "head format {format}; this build reads {HEAD_FORMAT}"
            ));
        }
        let n = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let head = Head {
            epoch: n(22),
            base: n(30),
            previous: n(38),
        };
        if head.previous > head.base {
            return Err(format!("positions out of order: {head:?}"));
        }
        Ok(head)
    }
}

/// Why a chain could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An object is damaged or does not fit the chain; the message names it.
    #[error("shipped index {key}: {why}")]
    Bad {
        /// The object's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// Building the index from the chain failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn bad(key: &Key, why: impl Into<String>) -> ChainError {
    ChainError::Bad {
        key: key.to_string(),
        why: why.into(),
    }
}

/// The key of epoch `e`'s own head: created (only if absent) by the node that claims the
/// epoch, then rewritten only by it.
pub fn epoch_key(e: u64) -> Key {
    Key::new(format!("{PREFIX}epoch.{e:020}")).expect("a valid key")
}

async fn get_head(store: &dyn Backend, key: &Key) -> Result<Option<Head>, ChainError> {
    match store.get(key, None).await {
        Ok(raw) => Head::decode(&raw).map(Some).map_err(|w| bad(key, w)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The current head: that of the newest epoch that names a base (a node that claimed an epoch
/// and died before its first object leaves a head naming none). `strata-index/head` is a hint
/// naming a recent epoch; epochs after it are found by asking for each next one.
pub async fn read_head(store: &dyn Backend) -> Result<Option<Head>, ChainError> {
    Ok(heads(store).await?.0)
}

/// The current head, and the newest epoch claimed (0 if none), whether or not its head names a
/// base yet.
pub async fn heads(store: &dyn Backend) -> Result<(Option<Head>, u64), ChainError> {
    let hint = get_head(store, &head_key()).await?;
    let mut e = hint.map_or(1, |h| h.epoch.max(1));
    let mut newest = hint.map_or(0, |h| h.epoch);
    let mut found = None;
    while let Some(h) = get_head(store, &epoch_key(e)).await? {
        if h.epoch != e {
            return Err(bad(&epoch_key(e), format!("says it is epoch {}", h.epoch)));
        }
        if h.base > 0 {
            found = Some(h);
        }
        newest = newest.max(e);
        e += 1;
    }
    Ok((found.or(hint.filter(|h| h.base > 0)), newest))
}

/// Takes the first epoch after `after` no other node has taken (the store refuses a second
/// claim of one epoch), its head naming `base`; returns it.
pub async fn claim(store: &dyn Backend, after: u64, base: u64) -> Result<u64, ChainError> {
    let mut e = after;
    for _ in 0..64 {
        e += 1;
        let head = Head {
            epoch: e,
            base,
            previous: base,
        };
        let key = epoch_key(e);
        let batch = Batch::new()
            .require_absent(key.clone())
            .put(key, head.encode());
        match store.commit(batch).await {
            Ok(r) => {
                r.acked().await?;
                store
                    .commit(Batch::new().put(head_key(), head.encode()))
                    .await?
                    .acked()
                    .await?;
                return Ok(e);
            }
            Err(c) if c.kind == ErrorKind::Conflict => continue,
            Err(c) => return Err(c.into()),
        }
    }
    Err(bad(
        &epoch_key(e),
        "64 epochs in a row were taken while claiming one",
    ))
}

/// Writes `head` as its epoch's head and as the hint.
pub async fn write_head(store: &dyn Backend, head: &Head) -> Result<(), BackendError> {
    store
        .commit(
            Batch::new()
                .put(epoch_key(head.epoch), head.encode())
                .put(head_key(), head.encode()),
        )
        .await?
        .acked()
        .await
}

/// Whether a node has claimed an epoch after `e`.
pub async fn superseded(store: &dyn Backend, e: u64) -> Result<bool, BackendError> {
    match store.size(&epoch_key(e + 1)).await {
        Ok(_) => Ok(true),
        Err(x) if x.kind == ErrorKind::NotFound => Ok(false),
        Err(x) => Err(x),
    }
}

/// The sizes of the objects at `from`, `from + 1`, ... up to the first missing position.
/// Objects after a missing one (a gap) are an error naming the first of them.
pub async fn probe(store: &dyn Backend, from: u64) -> Result<Vec<u64>, ChainError> {
    let mut sizes = Vec::new();
    let mut next = from;
    loop {
        let found: Vec<Option<u64>> = stream::iter(next..next + PROBE)
            .map(|seq| async move {
                match store.size(&object_key(seq)).await {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(PROBE as usize)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let end = found.iter().position(Option::is_none);
        match end {
            None => {
                sizes.extend(found.into_iter().flatten());
                next += PROBE;
            }
            Some(i) => {
                if let Some(j) = found[i..].iter().position(Option::is_some) {
                    let after = next + (i + j) as u64;
                    return Err(bad(
                        &object_key(next + i as u64),
                        format!("is missing, but position {after} after it is there (a gap)"),
                    ));
                }
                sizes.extend(found.into_iter().take(i).flatten());
                return Ok(sizes);
            }
        }
    }
}

/// The header of the object at `seq`, read from its first bytes (unchecked: see
/// `strata_index::peek_header`).
pub async fn peek(store: &dyn Backend, seq: u64) -> Result<strata_index::ObjectHeader, ChainError> {
    let key = object_key(seq);
    let raw = store
        .get(&key, Some(0..strata_index::HEADER_BYTES as u64))
        .await?;
    strata_index::peek_header(&raw).map_err(|w| bad(&key, w))
}

/// The object at `seq` as stored; missing, it is a gap.
async fn get_object(store: &dyn Backend, seq: u64) -> Result<(Key, bytes::Bytes), ChainError> {
    let key = object_key(seq);
    match store.get(&key, None).await {
        Ok(raw) => Ok((key, raw)),
        Err(e) if e.kind == ErrorKind::NotFound => {
            Err(bad(&key, "is missing (a gap in the chain)"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads the objects at `from..to` as stored, concurrently, in order, each checked.
pub async fn fetch_raw(
    store: &dyn Backend,
    from: u64,
    to: u64,
    concurrency: usize,
) -> Result<Vec<(Key, bytes::Bytes)>, ChainError> {
    stream::iter(from..to)
        .map(|seq| async move {
            let (key, raw) = get_object(store, seq).await?;
            let h = strata_index::decode_header(&raw).map_err(|w| bad(&key, w))?;
            if h.seq != seq {
                return Err(bad(&key, format!("says it is at position {}", h.seq)));
            }
            Ok((key, raw))
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Reads and checks the objects at `from..to`, concurrently, in order.
pub async fn fetch(
    store: &dyn Backend,
    from: u64,
    to: u64,
    concurrency: usize,
) -> Result<Vec<(String, ChainObject)>, ChainError> {
    stream::iter(from..to)
        .map(|seq| async move {
            let (key, raw) = get_object(store, seq).await?;
            // Decoding a base decompresses megabytes: off the async threads.
            let decoded = tokio::task::spawn_blocking(move || strata_index::decode_object(&raw))
                .await
                .map_err(|e| bad(&key, format!("decoding failed: {e}")))?
                .map_err(|w| bad(&key, w))?;
            if decoded.header.seq != seq {
                return Err(bad(
                    &key,
                    format!("says it is at position {}", decoded.header.seq),
                ));
            }
            Ok((key.to_string(), decoded))
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// What a restore found and built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The head it started from.
    pub head: Head,
    /// The last position read.
    pub last: u64,
    /// The MODSEQ the index is at.
    pub modseq: Modseq,
    /// Objects read.
    pub objects: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// Builds the index of the chain in `store` at `dest` (which must not exist), checking every
/// object; `None` if the store has no shipped index.
pub async fn restore(
    store: &dyn Backend,
    dest: &Path,
    concurrency: usize,
) -> Result<Option<Restored>, ChainError> {
    let Some(head) = read_head(store).await? else {
        return Ok(None);
    };
    let sizes = probe(store, head.base).await?;
    if sizes.is_empty() {
        return Err(bad(
            &object_key(head.base),
            "the base the head names is missing",
        ));
    }
    let end = head.base + sizes.len() as u64;
    let objects = fetch(store, head.base, end, concurrency).await?;
    let bytes = objects.iter().map(|(_, o)| o.bytes).sum();
    let count = objects.len() as u64;
    let dest = dest.to_path_buf();
    let modseq = tokio::task::spawn_blocking(move || strata_index::restore_chain(objects, &dest))
        .await
        .map_err(|e| ChainError::Bad {
            key: PREFIX.into(),
            why: format!("restore failed: {e}"),
        })??;
    Ok(Some(Restored {
        head,
        last: end - 1,
        modseq,
        objects: count,
        bytes,
    }))
}
