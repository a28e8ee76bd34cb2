//! # strata-backend-sis
//!
//! Single-instance storage: a backend that holds another and stores the large parts of each
//! message once per store, under the blake3 hash of their raw bytes, however many messages and
//! users hold them. The message's own key keeps a [`skeleton`]: a table of its parts and the
//! rest of its bytes (headers, boundaries, small parts), so a read of a header or of a small
//! part fetches only the skeleton, and a read of one large part fetches only that part, by
//! range. Reads, sizes and listings are of the messages as they were put; an object stored
//! before the layer was there is read as it is.
//!
//! Which byte ranges are parts is not decided here: the layer is given a [`Splitter`] (the
//! server's is a MIME walk that names each leaf's body) and keeps those of at least
//! [`SisOptions::min_part`] bytes. A message is put back byte for byte whatever the ranges.
//!
//! Each reference is an empty object `.sis/r/HASH/KEY` written and deleted in the same batch as
//! the skeleton at `KEY`; parts are `.sis/p/HASH`. Parts nothing refers to are collected by
//! [`SisBackend::collect`] in two runs at least [`SisOptions::grace`] apart, with a mark
//! (`.sis/t/HASH`, the time it was set) between them; a commit that refers to a part checks
//! for the mark after its references are written, which is what makes collection safe
//! against concurrent APPEND, COPY and expunge on any node (see `collect.rs`).
//!
//! It is not a cache and not a compressor: it goes above compression and encryption, which
//! then work on skeletons and parts alike. Maildir stores keep whole files for other mail
//! programs and are not put behind it.

pub mod collect;
pub mod skeleton;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use strata_backend_api::{
    Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Listed, Op, Precondition,
    Read, Receipt, rewriting, slice_range,
};

use skeleton::{Hash, Parsed, Piece, Table};

/// Names the byte ranges of the object put at a key that may be stored apart (any ranges: the
/// layer keeps those in bounds, large enough and not overlapping); none for an object that is
/// not a message.
pub type Splitter = Arc<dyn Fn(&Key, &[u8]) -> Vec<Range<usize>> + Send + Sync>;

/// The time, for the collection's marks (tests move it).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How parts are chosen and collected.
#[derive(Clone)]
pub struct SisOptions {
    /// Ranges shorter than this stay in the skeleton.
    pub min_part: usize,
    /// How long a part nothing refers to is kept: at least this long passes between the
    /// collection run that marks it and the one that deletes it. It must be longer than any
    /// commit takes and than the clocks of the nodes differ.
    pub grace: Duration,
    /// Now.
    pub clock: Clock,
}

impl SisOptions {
    /// `min_part` and `grace` on the system clock.
    pub fn new(min_part: usize, grace: Duration) -> Self {
        SisOptions {
            min_part,
            grace,
            clock: Arc::new(SystemTime::now),
        }
    }
}

/// The namespace of the layer's own objects; no user's key starts with a dot.
pub const NAMESPACE: &str = ".sis/";
const PARTS: &str = ".sis/p/";
const REFS: &str = ".sis/r/";
const MARKS: &str = ".sis/t/";

/// How much of an object a read asks for first: the table of a skeleton with up to 85 parts
/// and, usually, the message's header.
const PROBE: u64 = 4096;
/// Splitting and hashing above this many bytes leaves the async workers.
const BLOCKING_BYTES: u64 = 256 << 10;
/// Reads of parts in flight for one message.
const PART_READS: usize = 4;
/// Reads of parts in flight for the whole layer: a batch of many messages would otherwise
/// start one message's part reads per message read, beyond what the store's connections
/// serve before they time out.
const LAYER_PART_READS: usize = 32;
/// How long a commit waits for a collection that is deleting a part it refers to.
const MARK_WAIT: Duration = Duration::from_secs(60);

fn part_key(h: &Hash) -> Key {
    Key::new(format!("{PARTS}{}", skeleton::hex(h))).expect("a hex name is a valid key")
}

fn mark_key(h: &Hash) -> Key {
    Key::new(format!("{MARKS}{}", skeleton::hex(h))).expect("a hex name is a valid key")
}

fn ref_key(h: &Hash, of: &Key) -> Result<Key, BackendError> {
    Key::new(format!("{REFS}{}/{of}", skeleton::hex(h)))
}

/// A put, once split.
struct Split {
    key: Key,
    stored: Bytes,
    /// The parts stored apart with their bytes; empty for a message stored whole.
    parts: Vec<(Hash, Bytes)>,
}

/// A batch's operation, puts split.
enum Step {
    Put(Split),
    Delete(Key),
    Copy(Key, Key),
    Meta(Key, Box<BodyMeta>),
}

/// The layer.
pub struct SisBackend {
    inner: Arc<dyn Backend>,
    split: Splitter,
    opts: SisOptions,
    /// A lock per part being committed, so concurrent deliveries of one part upload it once.
    committing: Mutex<HashMap<Hash, Arc<tokio::sync::Mutex<()>>>>,
    /// Collection's memory between runs (see `collect.rs`).
    collector: tokio::sync::Mutex<collect::Memory>,
    /// Bounds the part reads in flight ([`LAYER_PART_READS`]).
    part_reads: Arc<tokio::sync::Semaphore>,
}

impl SisBackend {
    /// Stores the large parts of what goes into `inner` once.
    pub fn new(inner: Arc<dyn Backend>, split: Splitter, opts: SisOptions) -> Self {
        SisBackend {
            inner,
            split,
            opts,
            committing: Mutex::new(HashMap::new()),
            collector: tokio::sync::Mutex::new(collect::Memory::default()),
            part_reads: Arc::new(tokio::sync::Semaphore::new(LAYER_PART_READS)),
        }
    }

    fn corrupt(&self, key: &Key, why: impl std::fmt::Display) -> BackendError {
        BackendError::new(
            self.inner.name(),
            ErrorKind::Corrupt,
            format!("{key}: stored message is damaged: {why}"),
        )
    }

    fn now(&self) -> SystemTime {
        (self.opts.clock)()
    }

    /// The table of `key` given its first bytes, reading more if the table is longer; `None`
    /// for a message stored whole.
    async fn table(&self, key: &Key, head: &Bytes) -> Result<Option<Table>, BackendError> {
        match skeleton::parse(head).map_err(|why| self.corrupt(key, why))? {
            Parsed::Plain => Ok(None),
            Parsed::Table(t) => Ok(Some(t)),
            Parsed::Need(n) => {
                let more = self.inner.get(key, Some(0..n as u64)).await?;
                match skeleton::parse(&more).map_err(|why| self.corrupt(key, why))? {
                    Parsed::Table(t) => Ok(Some(t)),
                    _ => Err(self.corrupt(key, format!("table cut short at {}", more.len()))),
                }
            }
        }
    }

    /// The parts `key` refers to now (none if it is not stored).
    async fn refs_of(&self, key: &Key) -> Result<Vec<Hash>, BackendError> {
        let head = match self.inner.get(key, Some(0..PROBE)).await {
            Ok(head) => head,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(self
            .table(key, &head)
            .await?
            .map(|t| t.parts.into_iter().map(|p| p.hash).collect())
            .unwrap_or_default())
    }

    /// A whole stored object, put back together.
    async fn assemble(&self, key: &Key, object: Bytes) -> Result<Bytes, BackendError> {
        let table = match skeleton::parse(&object).map_err(|why| self.corrupt(key, why))? {
            Parsed::Plain => return Ok(object),
            Parsed::Need(_) => return Err(self.corrupt(key, "shorter than its table")),
            Parsed::Table(t) => t,
        };
        let reads = table
            .parts
            .iter()
            .map(|p| Read::whole(part_key(&p.hash)))
            .collect();
        let parts = self.read_parts(key, reads).await?;
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        skeleton::assemble(&table, &object, &refs)
            .map(Bytes::from)
            .map_err(|why| self.corrupt(key, why))
    }

    /// Reads of parts (or skeleton bytes) for `key`'s message; a missing part is damage.
    async fn read_parts(&self, key: &Key, reads: Vec<Read>) -> Result<Vec<Bytes>, BackendError> {
        let names: Vec<Key> = reads.iter().map(|r| r.key.clone()).collect();
        let got: Vec<Result<Bytes, BackendError>> = futures::stream::iter(reads)
            .map(|r| async move {
                let _permit = self.part_reads.acquire().await.expect("never closed");
                self.inner.get(&r.key, r.range).await
            })
            .buffered(PART_READS)
            .collect()
            .await;
        got.into_iter()
            .zip(names)
            .map(|(r, name)| match r {
                Err(e) if e.kind == ErrorKind::NotFound => {
                    Err(self.corrupt(key, format!("{name} is missing")))
                }
                r => r,
            })
            .collect()
    }

    /// `range` of `key`'s message: its first bytes (and the range itself, at once, when it
    /// lies beyond them), then the pieces they do not hold.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Bytes, BackendError> {
        let (head, beyond) = if range.start < PROBE {
            let head = self.inner.get(key, Some(0..PROBE.max(range.end))).await?;
            (head, None)
        } else {
            let (head, beyond) = futures::join!(
                self.inner.get(key, Some(0..PROBE)),
                self.inner.get(key, Some(range.clone()))
            );
            (head?, Some(beyond))
        };
        let Some(table) = self.table(key, &head).await? else {
            return match beyond {
                Some(b) => b,
                None => Ok(slice_range(head, Some(range))),
            };
        };
        let pieces = table.pieces(range);
        let mut reads = Vec::new();
        for p in &pieces {
            match p {
                Piece::Inline(r) if r.end <= head.len() as u64 => {}
                Piece::Inline(r) => reads.push(Read {
                    key: key.clone(),
                    range: Some(r.clone()),
                }),
                Piece::Part(i, r) => reads.push(Read {
                    key: part_key(&table.parts[*i].hash),
                    range: Some(r.clone()),
                }),
            }
        }
        let mut fetched = self.read_parts(key, reads).await?.into_iter();
        let mut out = Vec::new();
        for p in pieces {
            let (bytes, want) = match p {
                Piece::Inline(r) if r.end <= head.len() as u64 => {
                    out.extend_from_slice(&head[r.start as usize..r.end as usize]);
                    continue;
                }
                Piece::Inline(r) | Piece::Part(_, r) => (fetched.next(), r.end - r.start),
            };
            let bytes = bytes.ok_or_else(|| self.corrupt(key, "a read went unanswered"))?;
            if bytes.len() as u64 != want {
                return Err(self.corrupt(key, "a piece was cut short"));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(Bytes::from(out))
    }

    /// Each put's large parts cut out.
    async fn split_all(&self, ops: Vec<Op>) -> Result<Vec<Step>, BackendError> {
        let split = self.split.clone();
        let min = self.opts.min_part;
        let all = move |ops: Vec<Op>| -> Vec<Step> {
            ops.into_iter()
                .map(|op| match op {
                    Op::Put { key, data } => Step::Put(split_one(&split, min, key, data)),
                    Op::Delete { key } => Step::Delete(key),
                    Op::Copy { from, to } => Step::Copy(from, to),
                    Op::Meta { key, meta } => Step::Meta(key, meta),
                })
                .collect()
        };
        let bytes: u64 = ops
            .iter()
            .map(|o| match o {
                Op::Put { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum();
        if bytes > BLOCKING_BYTES {
            tokio::task::spawn_blocking(move || all(ops))
                .await
                .map_err(|e| BackendError::new(self.inner.name(), ErrorKind::Io, e.to_string()))
        } else {
            Ok(all(ops))
        }
    }

    /// The locks of `hashes`, taken in order (so two commits cannot wait on each other).
    async fn lock(&self, mut hashes: Vec<Hash>) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        hashes.sort_unstable();
        hashes.dedup();
        let locks: Vec<_> = {
            let mut map = self.committing.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, l| Arc::strong_count(l) > 1);
            hashes
                .iter()
                .map(|h| map.entry(*h).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for l in locks {
            guards.push(l.lock_owned().await);
        }
        guards
    }

    /// After a commit that refers to `hash`: waits out a collection deleting it, then puts it
    /// again if it is gone (`data`), or reports it lost (a copy, which has no bytes).
    async fn ensure(&self, hash: Hash, data: Option<Bytes>) -> Result<(), BackendError> {
        let mark = mark_key(&hash);
        let deadline = tokio::time::Instant::now() + MARK_WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            let set = match self.inner.get(&mark, None).await {
                Ok(at) => collect::read_mark(&at),
                Err(e) if e.kind == ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            };
            // A mark younger than half the grace cannot be acted on before the references
            // just written are seen by the run that would act on it; nor can one set in the
            // future by a clock ahead, or one unreadable, which collection sets again.
            let age = set.and_then(|set| self.now().duration_since(set).ok());
            if age.is_none_or(|age| age < self.opts.grace / 2) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::new(
                    self.inner.name(),
                    ErrorKind::Unavailable,
                    format!(
                        "part {} is being collected; try again",
                        skeleton::hex(&hash)
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let key = part_key(&hash);
        match self.inner.size(&key).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => match data {
                Some(data) => {
                    self.inner
                        .commit(Batch::new().put(key, data))
                        .await?
                        .acked()
                        .await
                }
                None => Err(BackendError::new(
                    self.inner.name(),
                    ErrorKind::Corrupt,
                    format!("{key} was collected while a copy referred to it"),
                )),
            },
            Err(e) => Err(e),
        }
    }
}

/// `data` at `key` with the parts `split` names (at least `min` bytes) cut out, if any.
fn split_one(split: &Splitter, min: usize, key: Key, data: Bytes) -> Split {
    let escape = data.starts_with(skeleton::MAGIC);
    let cuts = if data.len() >= min {
        skeleton::cuts(&data, split(&key, &data), min)
    } else {
        Vec::new()
    };
    if cuts.is_empty() && !escape {
        return Split {
            key,
            stored: data,
            parts: Vec::new(),
        };
    }
    let (stored, table) = skeleton::encode(&data, &cuts);
    let parts = table
        .parts
        .iter()
        .zip(&cuts)
        .map(|(p, c)| (p.hash, data.slice(c.clone())))
        .collect();
    Split {
        key,
        stored: Bytes::from(stored),
        parts,
    }
}

#[async_trait]
impl Backend for SisBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            labels: false,
            ..self.inner.capabilities()
        }
    }

    fn below(&self) -> Option<&dyn Backend> {
        Some(&*self.inner)
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let Batch { ops, preconditions } = batch;
        let steps = self.split_all(ops).await?;
        // The keys whose current references the batch changes, unless they must be absent.
        let fresh: HashSet<&Key> = preconditions
            .iter()
            .filter_map(|p| match p {
                Precondition::Absent(k) => Some(k),
                Precondition::Exists(_) => None,
            })
            .collect();
        let mut touched: Vec<Key> = Vec::new();
        for s in &steps {
            let keys: &[&Key] = match s {
                Step::Put(p) => &[&p.key],
                Step::Delete(k) => &[k],
                Step::Copy(from, to) => &[from, to],
                Step::Meta(..) => &[],
            };
            for k in keys {
                if !fresh.contains(k) && !touched.contains(k) {
                    touched.push((*k).clone());
                }
            }
        }
        let new_parts: Vec<Hash> = steps
            .iter()
            .flat_map(|s| match s {
                Step::Put(p) => p.parts.iter().map(|(h, _)| *h).collect(),
                _ => Vec::new(),
            })
            .collect();
        let _locks = self.lock(new_parts.clone()).await;
        let (current, stored) = futures::join!(
            futures::future::try_join_all(touched.iter().map(|k| self.refs_of(k))),
            futures::future::try_join_all(new_parts.iter().map(|h| async move {
                match self.inner.size(&part_key(h)).await {
                    Ok(_) => Ok((*h, true)),
                    Err(e) if e.kind == ErrorKind::NotFound => Ok((*h, false)),
                    Err(e) => Err(e),
                }
            }))
        );
        let mut refs: HashMap<Key, Vec<Hash>> = touched.into_iter().zip(current?).collect();
        let mut have: HashMap<Hash, bool> = stored?.into_iter().collect();
        let mut out = Batch {
            ops: Vec::new(),
            preconditions,
        };
        let mut referred: HashMap<Hash, Option<Bytes>> = HashMap::new();
        for step in steps {
            match step {
                Step::Put(p) => {
                    for (h, data) in &p.parts {
                        if !have.insert(*h, true).unwrap_or(false) {
                            out.ops.push(Op::Put {
                                key: part_key(h),
                                data: data.clone(),
                            });
                        }
                        referred.insert(*h, Some(data.clone()));
                    }
                    out.ops.push(Op::Put {
                        key: p.key.clone(),
                        data: p.stored,
                    });
                    rerefer(
                        &mut refs,
                        &mut out,
                        &p.key,
                        p.parts.iter().map(|(h, _)| *h).collect(),
                    )?;
                }
                Step::Delete(key) => {
                    rerefer(&mut refs, &mut out, &key, Vec::new())?;
                    out.ops.push(Op::Delete { key });
                }
                Step::Copy(from, to) => {
                    let hs = refs_now(&refs, &from);
                    for h in &hs {
                        referred.entry(*h).or_insert(None);
                    }
                    out.ops.push(Op::Copy {
                        from,
                        to: to.clone(),
                    });
                    rerefer(&mut refs, &mut out, &to, hs)?;
                }
                Step::Meta(key, meta) => out.ops.push(Op::Meta { key, meta }),
            }
        }
        let receipt = self.inner.commit(out).await?;
        futures::future::try_join_all(referred.into_iter().map(|(h, d)| self.ensure(h, d))).await?;
        Ok(receipt)
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.inner.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        match range {
            Some(r) if self.inner.capabilities().range_reads => self.get_range(key, r).await,
            range => {
                let whole = self.inner.get(key, None).await?;
                Ok(slice_range(self.assemble(key, whole).await?, range))
            }
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let head = self.inner.get(key, Some(0..skeleton::FIXED as u64)).await?;
        match skeleton::length(&head) {
            Some(length) => Ok(length),
            None if head.len() < skeleton::FIXED => Ok(head.len() as u64),
            None => self.inner.size(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        if prefix.starts_with(NAMESPACE) {
            return self.inner.list(prefix).await;
        }
        let listed = self
            .inner
            .list_stored(prefix)
            .await?
            .into_iter()
            .filter(|l| !l.key.as_str().starts_with(NAMESPACE))
            .collect();
        rewriting::original_sizes(&*self.inner, listed, skeleton::FIXED as u64, |_, head| {
            Ok(skeleton::length(head))
        })
        .await
    }

    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        // Each message read whole within one future, skeleton and parts: a skeleton read of
        // the store's own batched stream would sit unpolled, holding a connection, while the
        // parts of earlier messages wait for one.
        futures::stream::iter(reads)
            .map(move |r| async move { self.get(&r.key, r.range).await })
            .buffered(concurrency.max(1))
            .boxed()
    }
}

/// The references of `key` as the batch has left them so far.
fn refs_now(refs: &HashMap<Key, Vec<Hash>>, key: &Key) -> Vec<Hash> {
    refs.get(key).cloned().unwrap_or_default()
}

/// Makes `new` the parts `key` refers to: the references it loses deleted, those it gains put.
fn rerefer(
    refs: &mut HashMap<Key, Vec<Hash>>,
    out: &mut Batch,
    key: &Key,
    new: Vec<Hash>,
) -> Result<(), BackendError> {
    let old = refs.insert(key.clone(), new.clone()).unwrap_or_default();
    for h in old.iter().filter(|h| !new.contains(h)) {
        out.ops.push(Op::Delete {
            key: ref_key(h, key)?,
        });
    }
    for h in new.iter().filter(|h| !old.contains(h)) {
        out.ops.push(Op::Put {
            key: ref_key(h, key)?,
            data: Bytes::new(),
        });
    }
    Ok(())
}
