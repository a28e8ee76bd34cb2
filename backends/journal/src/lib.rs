//! # strata-backend-journal
//!
//! The staging journal: a local, append-only journal in front of a slow store (SQL, S3). A
//! commit appends its batch to the journal and fsyncs it, one fsync for every commit waiting
//! (group commit); the receipt returns then, at *soft-done*, and reads of those keys are served
//! from the journal. An uploader pushes the batches to the store in order, several at once
//! when they touch different keys, retrying with backoff, and the receipts resolve at *acked*.
//! Acked batches leave the journal; a restart uploads again every batch not known to be acked
//! (puts and deletes are idempotent, and a suffix replayed in order ends in the same state).
//!
//! The journal is bounded: when the store stays down and the journal reaches its bound,
//! commits wait (back-pressure, logged) instead of queueing without end. After a failed write
//! or fsync it refuses writes (poisoned) rather than answer for data it may not have.
//!
//! A batch with preconditions is not journaled: it waits for every earlier batch to be acked
//! and goes straight to the store, which alone can hold a condition against other writers.
//!
//! It is not a cache: keys leave it once acked, and reads of other keys go to the store.
//! Copies are resolved to puts when journaled, so the store never needs the source later.

mod format;
mod replay;
mod state;
mod upload;
mod writer;

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use strata_backend_api::{
    Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Label, Listed, Op,
    Receipt,
};
use tokio::sync::{Mutex, oneshot};

pub use state::JournalStats;
use state::{Blob, Entry, Pending, Segment, Shared, State, Write};
use writer::{Job, Msg};

/// How a journal is set up.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Its directory (created if missing); one process at a time may use it.
    pub dir: PathBuf,
    /// Data bytes soft-done but not yet acked beyond which commits wait.
    pub max_bytes: u64,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// Batches uploaded at once.
    pub uploads: usize,
}

impl JournalOptions {
    /// Defaults for `dir`: 1 GiB bound, 64 MiB segments, 32 uploads at once.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalOptions {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            uploads: 32,
        }
    }
}

/// A store behind the staging journal.
pub struct Journal {
    shared: Arc<Shared>,
    inner: Arc<dyn Backend>,
    /// Held while a commit checks, numbers and queues its batch, so journal order is commit order.
    order: Mutex<u64>,
    writer: mpsc::Sender<Msg>,
    max_bytes: u64,
    waiting: AtomicBool,
    /// Holds the directory's lock for as long as the journal is open.
    _lock: File,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// A batch with preconditions goes straight to the store, once every batch before it is
    /// acked: only the store can hold a condition against every writer (other nodes too), and
    /// the journal's own view would check it against this node alone. Its receipt is the
    /// store's, acked when this returns.
    async fn commit_conditional(&self, batch: Batch) -> Result<Receipt, BackendError> {
        self.shared.acks.flush(u64::MAX).await?;
        self.poisoned()?;
        let receipt = self.inner.commit(batch).await?;
        receipt.acked().await?;
        Ok(receipt)
    }

    /// Opens (or creates) the journal in `opts.dir` in front of `inner`, and starts uploading
    /// every batch it finds not yet acked. Must be called inside a Tokio runtime.
    pub async fn open(
        inner: Arc<dyn Backend>,
        opts: JournalOptions,
    ) -> Result<Journal, BackendError> {
        let name = format!("journal({})", inner.name());
        let dir = opts.dir.clone();
        let io = |what: &str, e: std::io::Error| {
            BackendError::new(
                name.clone(),
                ErrorKind::Io,
                format!("{what} {}: {e}", dir.display()),
            )
            .with_source(e)
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|e| io("cannot open the lock of", e))?;
        if lock.try_lock().is_err() {
            return Err(BackendError::new(
                name,
                ErrorKind::Unavailable,
                format!(
                    "journal {} is in use by another Strata process",
                    dir.display()
                ),
            ));
        }
        let (found, active) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                let found = replay::scan(&dir)?;
                let active = writer::create_segment(&dir, found.next_segment);
                Ok::<_, BackendError>((found, active))
            })
            .await
            .map_err(|e| BackendError::new(name.clone(), ErrorKind::Io, e.to_string()))??
        };
        let active = active.map_err(|e| io("cannot start a segment in", e))?;
        let mut state = State {
            acked_jseq: found.acked,
            ..State::default()
        };
        for (path, max_jseq) in found.segments {
            state.segments.push_back(Segment { path, max_jseq });
        }
        state.segments.push_back(Segment {
            path: writer::segment_path(&dir, found.next_segment),
            max_jseq: 0,
        });
        let replayed = found.batches.len() as u64;
        let shared = Arc::new(Shared::new(
            name.clone(),
            dir.clone(),
            State::default(),
            replayed,
        ));
        for (jseq, (ops, metas)) in found.batches {
            let bytes = ops.iter().map(|(_, w)| w.bytes()).sum();
            for (key, w) in &ops {
                state.overlay.insert(
                    key.clone(),
                    Entry {
                        jseq,
                        blob: w.blob().cloned(),
                    },
                );
            }
            state.pending_bytes += bytes;
            state.queue.insert(
                jseq,
                Pending {
                    receipt: shared.acks.issue().seq(),
                    ops,
                    metas,
                    bytes,
                    since: Instant::now(),
                    durable: true,
                    uploading: false,
                    done: false,
                },
            );
        }
        if replayed > 0 {
            tracing::info!(
                journal = %dir.display(),
                batches = replayed,
                bytes = state.pending_bytes,
                "journal: uploading batches not yet acked by {} before the restart",
                inner.name()
            );
        }
        *shared.lock() = state;
        shared.trim();
        let (tx, rx) = mpsc::channel();
        {
            let shared = shared.clone();
            let (next, seg) = (found.next_segment + 1, opts.segment_bytes.max(4096));
            std::thread::Builder::new()
                .name("strata-journal".into())
                .spawn(move || writer::run(shared, rx, active, next, seg))
                .map_err(|e| io("cannot start the writer thread of", e))?;
        }
        tokio::spawn(upload::run(
            shared.clone(),
            inner.clone(),
            opts.uploads.max(1),
            tx.clone(),
        ));
        Ok(Journal {
            shared,
            inner,
            order: Mutex::new(found.max_jseq.max(found.acked) + 1),
            writer: tx,
            max_bytes: opts.max_bytes,
            waiting: AtomicBool::new(false),
            _lock: lock,
        })
    }

    /// The lag and totals now.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            full: self.waiting.load(Ordering::Relaxed),
            ..self.shared.stats()
        }
    }

    /// The store behind the journal.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn poisoned(&self) -> Result<(), BackendError> {
        match &self.shared.lock().poisoned {
            Some(why) => Err(self.shared.err(ErrorKind::Poisoned, why.clone())),
            None => Ok(()),
        }
    }

    /// What the journal says of `key`: `Some(None)` deleted, `Some(Some(blob))` written,
    /// `None` not in it (ask the store).
    fn lookup(&self, key: &Key) -> Option<Option<Blob>> {
        self.shared.lock().overlay.get(key).map(|e| e.blob.clone())
    }

    fn not_found(&self, key: &Key) -> BackendError {
        self.shared
            .err(ErrorKind::NotFound, format!("{key} does not exist"))
    }

    async fn exists(&self, key: &Key) -> Result<bool, BackendError> {
        match self.lookup(key) {
            Some(b) => Ok(b.is_some()),
            None => match self.inner.size(key).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Records metadata of keys a batch did not put: those still in the journal once their
    /// data is uploaded (the uploader does it before it acks), the others straight in the store.
    async fn record_later(&self, metas: Vec<(Key, BodyMeta)>) -> Result<(), BackendError> {
        if metas.is_empty() {
            return Ok(());
        }
        let direct: Vec<(Key, BodyMeta)> = {
            let mut st = self.shared.lock();
            metas
                .into_iter()
                .filter_map(|(k, m)| match st.overlay.get(&k) {
                    Some(e) if e.blob.is_some() => {
                        st.metas.insert(k, m);
                        None
                    }
                    Some(_) => None,
                    None => Some((k, m)),
                })
                .collect()
        };
        if direct.is_empty() || !self.inner.capabilities().metadata {
            return Ok(());
        }
        let batch = direct
            .into_iter()
            .fold(Batch::new(), |b, (k, m)| b.meta(k, m));
        self.inner.commit(batch).await?.acked().await
    }

    /// What each of a batch's operations (puts, deletes and copies of keys the batch writes)
    /// leaves its key holding, the data still in memory.
    fn writes(&self, ops: &[Op]) -> Result<state::Ops, BackendError> {
        let mut out: state::Ops = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op {
                Op::Put { key, data } => (key.clone(), Write::Put(Blob::Mem(data.clone()))),
                Op::Copy { from, to } => {
                    let blob = out
                        .iter()
                        .rev()
                        .find(|(k, _)| k == from)
                        .and_then(|(_, w)| w.blob().cloned())
                        .ok_or_else(|| self.not_found(from))?;
                    let from = from.clone();
                    (to.clone(), Write::Copy { from, blob })
                }
                Op::Delete { key } => (key.clone(), Write::Delete),
                // Taken out of the batch before it is journaled.
                Op::Meta { .. } => continue,
            });
        }
        Ok(out)
    }

    /// Waits while the journal holds more than its bound (and something is there to drain).
    async fn wait_for_room(&self, bytes: u64) -> Result<(), BackendError> {
        loop {
            let room = self.shared.space.notified();
            {
                let st = self.shared.lock();
                if st.queue.is_empty() || st.pending_bytes + bytes <= self.max_bytes {
                    if self.waiting.swap(false, Ordering::Relaxed) {
                        tracing::info!(journal = %self.shared.dir.display(), "journal below its bound again: commits go on");
                    }
                    return Ok(());
                }
                if !self.waiting.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        journal = %self.shared.dir.display(),
                        batches = st.queue.len(),
                        bytes = st.pending_bytes,
                        bound = self.max_bytes,
                        "journal full: {} has not acked enough; commits wait until it does",
                        self.inner.name()
                    );
                }
            }
            self.poisoned()?;
            room.await;
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.work.notify_one();
    }
}

#[async_trait]
impl Backend for Journal {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_batch: true,
            range_reads: true,
            server_side_copy: false,
            deferred_ack: true,
            labels: self.inner.capabilities().labels,
            metadata: self.inner.capabilities().metadata,
            local_reads: false,
        }
    }

    fn below(&self) -> Option<&dyn Backend> {
        Some(&*self.inner)
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        self.poisoned()?;
        if !batch.preconditions.is_empty() {
            return self.commit_conditional(batch).await;
        }
        let mut next = self.order.lock().await;
        for p in &batch.preconditions {
            if !p.holds(self.exists(p.key()).await?) {
                return Err(p.failed(self.name()));
            }
        }
        // A copy of what the batch itself writes stays a copy, so the store copies (one
        // message to many users is uploaded once); a copy of a stored key becomes a put of
        // what is read. Metadata goes with the put or copy of its key in this batch; metadata
        // of a stored key is recorded once the batch is in.
        let keeps_meta = self.inner.capabilities().metadata;
        let mut ops: Vec<Op> = Vec::with_capacity(batch.ops.len());
        let mut metas: Vec<Option<String>> = Vec::new();
        let mut put_metas: Vec<(Key, BodyMeta)> = Vec::new();
        let mut later: Vec<(Key, BodyMeta)> = Vec::new();
        for op in batch.ops {
            if let Op::Meta { key, meta } = op {
                // A store that keeps none gets none (a Maildir's names are its record).
                if !keeps_meta {
                    continue;
                }
                let last = ops.iter().rposition(|o| match o {
                    Op::Put { key: k, .. } | Op::Delete { key: k } | Op::Copy { to: k, .. } => {
                        *k == key
                    }
                    Op::Meta { .. } => false,
                });
                match last {
                    Some(i) if matches!(ops[i], Op::Put { .. } | Op::Copy { .. }) => {
                        metas.resize(ops.len(), None);
                        metas[i] = Some(meta.encode());
                        put_metas.retain(|(k, _)| *k != key);
                        put_metas.push((key, *meta));
                    }
                    Some(_) => {}
                    None => {
                        later.retain(|(k, _)| *k != key);
                        later.push((key, *meta));
                    }
                }
                continue;
            }
            // A copy carries its source's metadata (until the batch gives its own).
            let carried = match &op {
                Op::Copy { from, .. } => put_metas
                    .iter()
                    .rev()
                    .find(|(k, _)| k == from)
                    .map(|(_, m)| m.clone()),
                _ => None,
            };
            if let Op::Put { key, .. } | Op::Delete { key } | Op::Copy { to: key, .. } = &op {
                // A later write replaces the object, and with it any metadata given before.
                later.retain(|(k, _)| k != key);
                put_metas.retain(|(k, _)| k != key);
            }
            let Op::Copy { from, to } = op else {
                ops.push(op);
                continue;
            };
            let earlier = ops.iter().rev().find_map(|o| match o {
                Op::Put { key, .. } | Op::Copy { to: key, .. } if *key == from => Some(true),
                Op::Delete { key } if *key == from => Some(false),
                _ => None,
            });
            match earlier {
                Some(true) => {
                    if let Some(m) = carried {
                        metas.resize(ops.len() + 1, None);
                        metas[ops.len()] = Some(m.encode());
                        put_metas.push((to.clone(), m));
                    }
                    ops.push(Op::Copy { from, to });
                }
                Some(false) => return Err(self.not_found(&from)),
                None => {
                    let data = self.get(&from, None).await?;
                    ops.push(Op::Put { key: to, data });
                }
            }
        }
        let ops = Batch {
            ops,
            preconditions: Vec::new(),
        };
        let bytes = ops.data_bytes();
        let ops = ops.ops;
        let writes = self.writes(&ops)?;
        self.wait_for_room(bytes).await?;
        self.poisoned()?;
        let jseq = *next;
        *next += 1;
        let (record, places) = format::encode_batch(jseq, &ops, &metas);
        let receipt = self.shared.acks.issue();
        let puts: Vec<(Key, Range<u64>)> = writes
            .iter()
            .zip(places)
            .filter(|((_, w), _)| matches!(w, Write::Put(_)))
            .map(|((k, _), place)| (k.clone(), place.unwrap_or_default()))
            .collect();
        {
            let mut st = self.shared.lock();
            for (key, write) in &writes {
                // Metadata recorded for the object this write replaces goes with it.
                st.metas.remove(key);
                st.overlay.insert(
                    key.clone(),
                    Entry {
                        jseq,
                        blob: write.blob().cloned(),
                    },
                );
            }
            st.pending_bytes += bytes;
            st.queue.insert(
                jseq,
                Pending {
                    receipt: receipt.seq(),
                    ops: writes,
                    metas: put_metas,
                    bytes,
                    since: Instant::now(),
                    durable: false,
                    uploading: false,
                    done: false,
                },
            );
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            jseq,
            record,
            puts,
            reply,
        };
        if self.writer.send(Msg::Append(job)).is_err() {
            return Err(self
                .shared
                .err(ErrorKind::Unavailable, "the journal's writer has stopped"));
        }
        drop(next);
        match answer.await {
            Ok(Ok(())) => {
                self.record_later(later).await?;
                Ok(receipt)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self
                .shared
                .err(ErrorKind::Unavailable, "the journal's writer has stopped")),
        }
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.shared.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        match self.lookup(key) {
            Some(Some(blob)) => blob.read(range).await.map_err(|e| {
                self.shared.err(
                    ErrorKind::Io,
                    format!("cannot read {key} from the journal: {e}"),
                )
            }),
            Some(None) => Err(self.not_found(key)),
            None => self.inner.get(key, range).await,
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        match self.lookup(key) {
            Some(Some(blob)) => Ok(blob.len()),
            Some(None) => Err(self.not_found(key)),
            None => self.inner.size(key).await,
        }
    }

    /// The store's objects as the journal's own batches leave them: keys written but not yet
    /// acked are listed, keys deleted but not yet acked are not.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        // The journal's view first: a key acked while the store is listed is in one or the
        // other, never in neither.
        let pending: Vec<(Key, Option<u64>)> = {
            let st = self.shared.lock();
            st.overlay
                .iter()
                .filter(|(k, _)| k.as_str().starts_with(prefix))
                .map(|(k, e)| (k.clone(), e.blob.as_ref().map(|b| b.len())))
                .collect()
        };
        let mut listed: std::collections::BTreeMap<Key, u64> = self
            .inner
            .list(prefix)
            .await?
            .into_iter()
            .map(|l| (l.key, l.size))
            .collect();
        for (key, size) in pending {
            match size {
                Some(size) => {
                    listed.insert(key, size);
                }
                None => {
                    listed.remove(&key);
                }
            }
        }
        Ok(listed
            .into_iter()
            .map(|(key, size)| Listed { key, size })
            .collect())
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        if !self.inner.capabilities().metadata {
            self.size(key).await?;
            return Ok(None);
        }
        let pending = {
            let st = self.shared.lock();
            match (st.overlay.get(key), st.metas.get(key)) {
                (Some(Entry { blob: None, .. }), _) => return Err(self.not_found(key)),
                // Recorded later, and not yet in the store.
                (_, Some(m)) => Some(Some(m.clone())),
                (Some(Entry { jseq, .. }), None) => Some(st.queue.get(jseq).and_then(|p| {
                    p.metas
                        .iter()
                        .rev()
                        .find(|(k, _)| k == key)
                        .map(|(_, m)| m.clone())
                })),
                (None, None) => None,
            }
        };
        match pending {
            Some(m) => Ok(m),
            None => self.inner.meta(key).await,
        }
    }

    /// Labels of keys the store has go straight to it; those of keys still in the journal wait
    /// until their data is uploaded (the uploader sets them before it acks).
    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        let direct: Vec<(Key, Label)> = {
            let mut st = self.shared.lock();
            labels
                .into_iter()
                .filter_map(|(k, l)| {
                    if st.overlay.get(&k).is_some_and(|e| e.blob.is_some()) {
                        st.labels.insert(k, l);
                        None
                    } else {
                        Some((k, l))
                    }
                })
                .collect()
        };
        if direct.is_empty() {
            return Ok(());
        }
        self.inner.set_labels(direct).await
    }
}
