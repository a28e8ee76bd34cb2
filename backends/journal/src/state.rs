//! What the journal's parts share: the overlay of keys written but not yet acked (reads are
//! served from it), the queue of batches to upload, the segment files, and the figures.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_backend_api::{AckTracker, BackendError, BodyMeta, ErrorKind, Key, Label};
use tokio::sync::Notify;

/// Where a journaled put's data is.
#[derive(Clone, Debug)]
pub enum Blob {
    /// Not yet written to a segment (its batch is still being fsynced).
    Mem(Bytes),
    /// In a segment file.
    File {
        /// The segment, open (it stays readable after being trimmed).
        seg: Arc<File>,
        /// Where in it.
        at: u64,
        /// How long.
        len: u64,
    },
}

impl Blob {
    /// Its length.
    pub fn len(&self) -> u64 {
        match self {
            Blob::Mem(b) => b.len() as u64,
            Blob::File { len, .. } => *len,
        }
    }

    /// Reads `range` of it (clamped), on the blocking pool when it is in a file.
    pub async fn read(&self, range: Option<std::ops::Range<u64>>) -> std::io::Result<Bytes> {
        let len = self.len();
        let (start, end) = match range {
            None => (0, len),
            Some(r) => (r.start.min(len), r.end.clamp(r.start.min(len), len)),
        };
        match self {
            Blob::Mem(b) => Ok(b.slice(start as usize..end as usize)),
            Blob::File { seg, at, .. } => {
                let (seg, at) = (seg.clone(), *at);
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; (end - start) as usize];
                    seg.read_exact_at(&mut buf, at + start)?;
                    Ok(Bytes::from(buf))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }
}

/// A key's latest journaled state.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The batch that wrote it.
    pub jseq: u64,
    /// Its data, or `None` for a delete.
    pub blob: Option<Blob>,
}

/// What a batch does to one key.
#[derive(Clone, Debug)]
pub enum Write {
    /// Puts this data.
    Put(Blob),
    /// Copies what an earlier operation of the same batch wrote to `from` (that data, so it is
    /// read from the journal); the store is asked to copy, so the data is uploaded once.
    Copy {
        /// The source key.
        from: Key,
        /// The source's data.
        blob: Blob,
    },
    /// Deletes the key.
    Delete,
}

impl Write {
    /// The data the key holds afterwards; `None` for a delete.
    pub fn blob(&self) -> Option<&Blob> {
        match self {
            Write::Put(b) | Write::Copy { blob: b, .. } => Some(b),
            Write::Delete => None,
        }
    }

    /// Data bytes the batch carries for it (a copy carries none).
    pub fn bytes(&self) -> u64 {
        match self {
            Write::Put(b) => b.len(),
            Write::Copy { .. } | Write::Delete => 0,
        }
    }
}

/// A batch's operations, in order.
pub type Ops = Vec<(Key, Write)>;

/// Points each copy of `ops` at the data its source holds at that point of the batch (after
/// the puts' data moved from memory to a segment).
pub fn relink(ops: &mut Ops) {
    let mut latest: HashMap<Key, Blob> = HashMap::new();
    for (key, w) in ops.iter_mut() {
        match w {
            Write::Put(b) => {
                latest.insert(key.clone(), b.clone());
            }
            Write::Copy { from, blob } => {
                if let Some(b) = latest.get(from) {
                    *blob = b.clone();
                }
                latest.insert(key.clone(), blob.clone());
            }
            Write::Delete => {
                latest.remove(key);
            }
        }
    }
}

/// The body metadata a batch's puts record, by key.
pub type Metas = Vec<(Key, BodyMeta)>;

/// A batch between commit and ack.
#[derive(Debug)]
pub struct Pending {
    /// The receipt number handed to the committer.
    pub receipt: u64,
    /// Its operations.
    pub ops: Ops,
    /// Metadata recorded with its puts.
    pub metas: Metas,
    /// Data bytes.
    pub bytes: u64,
    /// When it was committed (or found at open).
    pub since: Instant,
    /// Fsynced into the journal.
    pub durable: bool,
    /// An upload is running.
    pub uploading: bool,
    /// The store acked it (it leaves the queue once every earlier batch has too).
    pub done: bool,
}

/// A segment file.
#[derive(Debug)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// The highest batch number it holds (0: none).
    pub max_jseq: u64,
}

/// The state under the lock.
#[derive(Debug, Default)]
pub struct State {
    /// Keys written by batches not yet acked.
    pub overlay: HashMap<Key, Entry>,
    /// Batches not yet acked, by journal number.
    pub queue: BTreeMap<u64, Pending>,
    /// Data bytes in `queue`.
    pub pending_bytes: u64,
    /// Every batch up to this is acked.
    pub acked_jseq: u64,
    /// Segment files, oldest first; the last is being written.
    pub segments: VecDeque<Segment>,
    /// Why the journal refuses writes, once it does.
    pub poisoned: Option<String>,
    /// Labels for keys still in the overlay, set in the store once their data is there.
    pub labels: HashMap<Key, Label>,
    /// Metadata recorded later for keys still in the overlay, set in the store likewise (and
    /// read from here until it is).
    pub metas: HashMap<Key, BodyMeta>,
}

/// Running totals, for operators and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Fsyncs of the journal.
    pub fsyncs: AtomicU64,
    /// Batches the store acked.
    pub uploaded: AtomicU64,
    /// Upload attempts that failed and were retried.
    pub retries: AtomicU64,
}

/// The journal's lag and totals at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Batches soft-done but not yet acked.
    pub pending_batches: u64,
    /// Their data bytes.
    pub pending_bytes: u64,
    /// How long the oldest of them has waited.
    pub oldest: Option<Duration>,
    /// Batches acked since open.
    pub uploaded: u64,
    /// Failed upload attempts since open.
    pub retries: u64,
    /// Fsyncs since open.
    pub fsyncs: u64,
    /// Batches found unacked at open and replayed.
    pub replayed: u64,
    /// Segment files on disk.
    pub segments: u64,
    /// Whether writes are refused after a failed write or fsync.
    pub poisoned: bool,
    /// Whether a commit is waiting for room (the journal is at its bound).
    pub full: bool,
}

/// What [`Shared::done`] hands the uploader.
#[derive(Debug, Default)]
pub struct Done {
    /// Labels to set in the store.
    pub labels: Vec<(Key, Label)>,
    /// Metadata to record in the store.
    pub metas: Metas,
    /// The receipt to ack once they are.
    pub receipt: Option<u64>,
}

/// Everything the committers, the writer thread and the uploader share.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Receipts, acked in commit order.
    pub acks: AckTracker,
    /// Woken when a batch becomes durable or the journal closes (the uploader waits on it).
    pub work: Notify,
    /// Woken when batches leave the queue (committers held back by the size bound wait on it).
    pub space: Notify,
    /// Set when the journal is dropped.
    pub closed: AtomicBool,
    /// Totals.
    pub counters: Counters,
    /// Batches replayed at open.
    pub replayed: u64,
    /// The directory, for messages.
    pub dir: PathBuf,
    /// The name in errors and logs.
    pub name: String,
}

impl Shared {
    pub fn new(name: String, dir: PathBuf, state: State, replayed: u64) -> Shared {
        Shared {
            acks: AckTracker::new(name.clone()),
            state: Mutex::new(state),
            work: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            replayed,
            dir,
            name,
        }
    }

    /// The state; a panic elsewhere while holding it leaves nothing half-done that matters
    /// more than serving on, so the lock is taken even if poisoned.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An error of this journal.
    pub fn err(&self, kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError::new(self.name.clone(), kind, message)
    }

    /// The figures now.
    pub fn stats(&self) -> JournalStats {
        let st = self.lock();
        JournalStats {
            pending_batches: st.queue.len() as u64,
            pending_bytes: st.pending_bytes,
            oldest: st.queue.values().next().map(|p| p.since.elapsed()),
            uploaded: self.counters.uploaded.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            replayed: self.replayed,
            segments: st.segments.len() as u64,
            poisoned: st.poisoned.is_some(),
            // Known to the journal itself, which fills it in.
            full: false,
        }
    }

    /// Marks batch `jseq` acked by the store: batches leave the queue (and their keys the
    /// overlay) in order. Returns the labels and metadata of keys that left the overlay, for
    /// the store, and the receipt [`Shared::release`] acks once they are set.
    pub fn done(&self, jseq: u64) -> Done {
        let mut st = self.lock();
        let Some(p) = st.queue.get_mut(&jseq) else {
            return Done::default();
        };
        p.done = true;
        p.uploading = false;
        self.counters.uploaded.fetch_add(1, Ordering::Relaxed);
        let mut last_receipt = None;
        let mut labels = Vec::new();
        let mut metas = Vec::new();
        while let Some(entry) = st.queue.first_entry() {
            if !entry.get().done {
                break;
            }
            let (seq, p) = entry.remove_entry();
            for (key, _) in &p.ops {
                if st.overlay.get(key).is_some_and(|e| e.jseq == seq) {
                    st.overlay.remove(key);
                    if let Some(l) = st.labels.remove(key) {
                        labels.push((key.clone(), l));
                    }
                    // Kept (and read from) until the store has it: see `Shared::recorded`.
                    if let Some(m) = st.metas.get(key) {
                        metas.push((key.clone(), m.clone()));
                    }
                }
            }
            st.pending_bytes -= p.bytes;
            st.acked_jseq = seq;
            last_receipt = Some(p.receipt);
        }
        Done {
            labels,
            metas,
            receipt: last_receipt,
        }
    }

    /// Forgets metadata the store now holds, unless it was recorded again meanwhile.
    pub fn recorded(&self, metas: &Metas) {
        let mut st = self.lock();
        for (k, m) in metas {
            if st.metas.get(k) == Some(m) {
                st.metas.remove(k);
            }
        }
    }

    /// Acks receipts up to `receipt` (from [`Shared::done`]); segments holding only acked
    /// batches are deleted.
    pub fn release(&self, receipt: Option<u64>) {
        if let Some(r) = receipt {
            self.acks.ack_upto(r);
        }
        self.trim();
        self.space.notify_waiters();
        self.work.notify_one();
    }

    /// Deletes the segments (but the one being written) that hold only acked batches.
    pub fn trim(&self) {
        let mut trimmed = Vec::new();
        {
            let mut st = self.lock();
            while st.segments.len() > 1 && st.segments[0].max_jseq <= st.acked_jseq {
                trimmed.extend(st.segments.pop_front().map(|s| s.path));
            }
        }
        for path in trimmed {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an acked journal segment");
            }
        }
    }
}
