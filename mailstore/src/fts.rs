//! Keeping a user's full-text index ([`strata_fts::TextIndex`]) in step with the mail index,
//! off the request path, and answering SEARCH's questions from it.
//!
//! A task per user follows the index's commits: an appended message's content is queued, read
//! from its store (one covering range per message, all reads of a batch in flight together),
//! decoded and indexed in batches; a content whose last message is expunged is removed. At
//! start, and whenever it misses commits, the task compares the whole index with the full-text
//! index and queues the difference, so the full-text index is a cache that rebuilds itself.
//!
//! Correctness never depends on the task keeping up: SEARCH asks which messages the full-text
//! index holds, narrows only among those, and reads every other message from the store.
//! Only one user's batch is indexed at a time in the server, which bounds indexing memory.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use strata_fts::{Kept, Message, TextIndex};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use strata_index::{Change, Guid, Parts};

use crate::bodies::BodyRead;
use crate::searched::{header_forms, searched_slices, searched_span, searched_text, text_parts};
use crate::store::UserStore;

pub use strata_fts::{Scope as TextScope, StoredText};

/// The full-text index's settings.
#[derive(Clone, Debug)]
pub struct FtsOptions {
    /// Where each user's index goes (`<dir>/<user>`).
    pub dir: PathBuf,
    /// The indexing buffer of the one writer open at a time (tantivy needs at least 15 MB).
    pub writer_memory: usize,
}

/// At most this many contents wait to be indexed per user; past it the queue is dropped and
/// the next round compares the whole index instead.
const MAX_QUEUED: usize = 100_000;

/// Contents indexed per commit.
const BATCH: usize = 256;

/// Searched bytes (header and text parts) read per commit; a batch stops at the message that
/// crosses it. Each is held several times over while indexed (as read, decoded, folded).
const BATCH_BYTES: u64 = 4 << 20;

/// Body reads the indexer keeps in flight: fewer than a request's, so background work holds
/// few of the file threads and little memory.
const BACKGROUND_READS: usize = 8;

/// How long arrivals are gathered before a commit that is not full.
const GATHER: Duration = Duration::from_secs(1);

/// How far behind a user's full-text index is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FtsLag {
    /// Messages the full-text index holds.
    pub indexed: usize,
    /// Contents waiting to be indexed.
    pub queued: usize,
    /// How long the oldest of them has waited.
    pub oldest: Duration,
    /// Whether a full comparison with the index is pending (at start, after missed commits).
    pub resync: bool,
}

/// What the task shares with the store: the queue's figures, for [`UserStore::fts_lag`].
#[derive(Default)]
pub(crate) struct Gauge {
    queued: AtomicUsize,
    /// Milliseconds since `born` at which the oldest queued content arrived (0: none).
    oldest_ms: AtomicU64,
    resync: std::sync::atomic::AtomicBool,
    born: Mutex<Option<Instant>>,
}

impl Gauge {
    fn since_born(&self) -> u64 {
        let mut born = self.born.lock().unwrap_or_else(|p| p.into_inner());
        born.get_or_insert_with(Instant::now).elapsed().as_millis() as u64 + 1
    }
}

/// A user's full-text index and the task that keeps it.
pub(crate) struct Fts {
    pub(crate) text: Arc<TextIndex>,
    pub(crate) gauge: Arc<Gauge>,
    task: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl Fts {
    /// Opens `user`'s full-text index (replacing it if unreadable: it is a cache).
    pub(crate) fn open(opts: &FtsOptions, user: &str) -> Option<Fts> {
        let dir = opts.dir.join(user);
        match TextIndex::open(&dir, opts.writer_memory) {
            Ok((text, how)) => {
                if let strata_fts::Opened::Reset(why) = how {
                    tracing::warn!(user, error = %why, "full-text index unreadable; rebuilding it");
                }
                Some(Fts {
                    text: Arc::new(text),
                    gauge: Arc::new(Gauge::default()),
                    task: Mutex::new(None),
                })
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "full-text index unavailable; SEARCH reads bodies");
                None
            }
        }
    }

    /// Stops the task (what it had queued is found again by the next start's comparison).
    pub(crate) async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = task {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Starts `user`'s indexing task; `turn` lets one user index at a time.
pub(crate) fn spawn(user: &Arc<UserStore>, turn: Arc<Semaphore>) {
    let Some(fts) = user.fts.as_ref() else {
        return;
    };
    let mut events = user.index().subscribe();
    let weak: Weak<UserStore> = Arc::downgrade(user);
    let gate = user.background.clone();
    let gauge = fts.gauge.clone();
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut queue = Queue::default();
        gauge.resync.store(true, Ordering::Relaxed);
        let mut resync = true;
        let mut backoff = Duration::from_millis(200);
        loop {
            if !resync && queue.is_empty() {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    e = events.recv() => match e {
                        Ok(e) => queue.take(&e, &gauge),
                        Err(RecvError::Closed) => break,
                        Err(RecvError::Lagged(_)) => resync = true,
                    },
                }
            }
            // A commit costs the same for one message as for hundreds (a segment's files,
            // fsyncs, merges): more arrivals are gathered for a moment, and what arrives
            // meanwhile is read from the store by a search, so nothing waits on it.
            let gather = tokio::time::Instant::now() + GATHER;
            let mut quit = false;
            while !resync && queue.adds.len() < BATCH {
                tokio::select! {
                    biased;
                    _ = &mut stopped => {
                        quit = true;
                        break;
                    }
                    _ = tokio::time::sleep_until(gather) => break,
                    e = events.recv() => match e {
                        Ok(e) => queue.take(&e, &gauge),
                        Err(RecvError::Closed) => {
                            quit = true;
                            break;
                        }
                        Err(RecvError::Lagged(_)) => resync = true,
                    },
                }
            }
            if quit {
                break;
            }
            loop {
                match events.try_recv() {
                    Ok(e) => queue.take(&e, &gauge),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => resync = true,
                    Err(_) => break,
                }
            }
            if queue.adds.len() > MAX_QUEUED {
                resync = true;
            }
            if resync {
                queue = Queue::default();
                gauge.resync.store(true, Ordering::Relaxed);
            } else if queue.is_empty() {
                continue; // commits that added and removed nothing (flags, mailboxes)
            }
            let _held = tokio::select! {
                biased;
                _ = &mut stopped => break,
                g = gate.clone().read_owned() => g,
            };
            let _turn = tokio::select! {
                biased;
                _ = &mut stopped => break,
                t = turn.clone().acquire_owned() => t,
            };
            let Some(user) = weak.upgrade() else { break };
            let done = if resync {
                user.fts_compare(&mut queue).await.map(|()| {
                    resync = false;
                    gauge.resync.store(false, Ordering::Relaxed);
                })
            } else {
                user.fts_batch(&mut queue).await
            };
            gauge.queued.store(queue.adds.len(), Ordering::Relaxed);
            if queue.adds.is_empty() {
                gauge.oldest_ms.store(0, Ordering::Relaxed);
            }
            drop(user);
            match done {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "full-text indexing failed; retrying");
                    // A store that is down: wait before the next try, unless told to stop.
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    *fts.task.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, task));
}

/// Contents to add and to remove, in arrival order.
#[derive(Default)]
pub(crate) struct Queue {
    adds: VecDeque<Guid>,
    queued: HashSet<Guid>,
    removes: HashSet<Guid>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty()
    }

    fn add(&mut self, g: Guid) {
        self.removes.remove(&g);
        if self.queued.insert(g) {
            self.adds.push_back(g);
        }
    }

    fn take(&mut self, event: &strata_index::CommitEvent, gauge: &Gauge) {
        for c in &event.changes {
            match c {
                Change::Appended { guid, .. } => {
                    if self.adds.is_empty() {
                        gauge.oldest_ms.store(gauge.since_born(), Ordering::Relaxed);
                    }
                    self.add(*guid);
                }
                // Whether it was the content's last message is checked when the batch runs.
                Change::Expunged { guid, .. } => {
                    self.removes.insert(*guid);
                }
                _ => {}
            }
        }
        gauge.queued.store(self.adds.len(), Ordering::Relaxed);
    }
}

impl UserStore {
    /// Queues every difference between the index and the full-text index: contents it lacks,
    /// and documents whose content is gone.
    async fn fts_compare(&self, queue: &mut Queue) -> crate::Result<()> {
        let Some(fts) = &self.fts else {
            return Ok(());
        };
        let live = self.live_contents()?;
        let held: HashSet<Guid> = fts.text.guids().into_iter().map(Guid).collect();
        let stale: Vec<[u8; 16]> = held.difference(&live).map(|g| g.0).collect();
        for g in live.difference(&held) {
            queue.add(*g);
        }
        if !queue.adds.is_empty() {
            fts.gauge
                .oldest_ms
                .store(fts.gauge.since_born(), Ordering::Relaxed);
        }
        tracing::info!(
            user = self.name(),
            indexed = held.len(),
            missing = queue.adds.len(),
            stale = stale.len(),
            "full-text index compared with the index"
        );
        let text = fts.text.clone();
        run_blocking(move || text.apply(&[], &stale)).await
    }

    /// Indexes the next batch of queued contents and removes the ones that are gone.
    async fn fts_batch(&self, queue: &mut Queue) -> crate::Result<()> {
        let Some(fts) = &self.fts else {
            return Ok(());
        };
        let snap = self.snapshot()?;
        let mut removes = Vec::new();
        for g in std::mem::take(&mut queue.removes) {
            if snap.content_refs(&g)? == 0 {
                removes.push(g.0);
            }
        }
        let want = Parts {
            structure: true,
            ..Parts::default()
        };
        let mut batch: Vec<Guid> = Vec::new();
        let mut contents = Vec::new();
        let mut bytes = 0u64;
        for g in queue.adds.iter().take(BATCH) {
            // What a batch reads, decodes and folds is held at once: bounded by bytes too.
            if bytes >= BATCH_BYTES {
                break;
            }
            batch.push(*g);
            // A content never changes: one indexed already (a COPY's) is not read again.
            if fts.text.kept(&g.0).is_some() {
                continue;
            }
            if let Some(c) = snap.content_parts(g, want)? {
                bytes += searched_span(&c.parsed.structure).end;
                contents.push(c);
            }
        }
        drop(snap);
        let reads = contents
            .iter()
            .map(|c| {
                let span = searched_span(&c.parsed.structure);
                BodyRead {
                    guid: c.guid,
                    location: c.location.clone(),
                    size: span.end,
                    range: Some(span),
                }
            })
            .collect();
        let mut read: Vec<Bytes> = Vec::with_capacity(contents.len());
        let mut bodies = self.bodies_at_most(reads, BACKGROUND_READS);
        let mut skipped = Vec::new();
        for c in &contents {
            match bodies.next().await {
                Some(Ok(b)) => read.push(b),
                // Expunged and deleted since: nothing to index.
                Some(Err(crate::StoreError::Backend(e)))
                    if e.kind == strata_backend_api::ErrorKind::NotFound =>
                {
                    skipped.push(c.guid);
                    read.push(Bytes::new());
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        drop(bodies);
        let text = fts.text.clone();
        let skip: HashSet<Guid> = skipped.into_iter().collect();
        run_blocking(move || {
            let prepared: Vec<_> = contents
                .iter()
                .zip(&read)
                .filter(|(c, _)| !skip.contains(&c.guid))
                .map(|(c, bytes)| {
                    let root = &c.parsed.structure;
                    let (header, parts) = searched_slices(root, bytes);
                    let decoded = searched_text(&parts, &text_parts(root));
                    let fields = header_forms(&header);
                    (c.guid.0, header, parts, decoded, fields)
                })
                .collect();
            let messages: Vec<Message<'_>> = prepared
                .iter()
                .map(|(g, header, parts, decoded, fields)| Message {
                    guid: *g,
                    header,
                    parts: parts.iter().map(|p| p.as_ref()).collect(),
                    text: decoded,
                    fields,
                })
                .collect();
            text.apply(&messages, &removes)
        })
        .await?;
        for g in &batch {
            queue.queued.remove(g);
        }
        queue.adds.drain(..batch.len());
        if !queue.adds.is_empty() {
            fts.gauge
                .oldest_ms
                .store(fts.gauge.since_born(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// How far behind the user's full-text index is, if there is one.
    pub fn fts_lag(&self) -> Option<FtsLag> {
        let fts = self.fts.as_ref()?;
        let g = &fts.gauge;
        let oldest = g.oldest_ms.load(Ordering::Relaxed);
        Some(FtsLag {
            indexed: fts.text.len(),
            queued: g.queued.load(Ordering::Relaxed),
            oldest: if oldest == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(g.since_born().saturating_sub(oldest))
            },
            resync: g.resync.load(Ordering::Relaxed),
        })
    }

    /// How many of the user's contents the full-text index does not hold yet (`None` when it
    /// is off): zero once it has caught up.
    pub fn fts_unindexed(&self) -> crate::Result<Option<usize>> {
        let Some(fts) = &self.fts else {
            return Ok(None);
        };
        let live = self.live_contents()?;
        Ok(Some(
            live.iter()
                .filter(|g| fts.text.kept(&g.0).is_none())
                .count(),
        ))
    }

    /// Every content a message of the user's mailboxes holds now.
    fn live_contents(&self) -> crate::Result<HashSet<Guid>> {
        let snap = self.snapshot()?;
        let mut live = HashSet::new();
        for m in snap.mailboxes()? {
            snap.for_each_message(m.id, strata_index::Uid(0), |msg| {
                live.insert(msg.guid);
                std::ops::ControlFlow::Continue(())
            })?;
        }
        Ok(live)
    }

    /// Whether the full-text index holds `guid`'s searchable text (so SEARCH need not read it).
    pub fn fts_holds(&self, guid: &Guid) -> bool {
        self.fts
            .as_ref()
            .is_some_and(|f| f.text.kept(&guid.0) == Some(Kept::Text))
    }

    /// The contents the full-text index holds that may contain `needle` in `scope`; `None`
    /// when it cannot narrow (no index, a needle under three characters, an index error):
    /// then every message is a candidate. Contents it does not hold are never in the set.
    pub async fn fts_candidates(&self, needle: &[u8], scope: TextScope) -> Option<HashSet<Guid>> {
        let text = self.fts.as_ref()?.text.clone();
        let needle = needle.to_vec();
        match tokio::task::spawn_blocking(move || text.candidates(&needle, scope)).await {
            Ok(Ok(found)) => Some(found?.into_iter().map(Guid).collect()),
            Ok(Err(e)) => {
                tracing::warn!(user = self.name(), error = %e, "full-text search failed; reading bodies");
                None
            }
            Err(_) => None,
        }
    }

    /// The searchable bytes of each of `guids` that the full-text index holds (`None` for the
    /// others, which the caller reads from the store).
    pub async fn fts_texts(&self, guids: Vec<Guid>) -> Vec<Option<StoredText>> {
        let Some(fts) = self.fts.as_ref() else {
            return vec![None; guids.len()];
        };
        let text = fts.text.clone();
        let n = guids.len();
        let raw: Vec<[u8; 16]> = guids.iter().map(|g| g.0).collect();
        match tokio::task::spawn_blocking(move || text.texts(&raw)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(user = self.name(), error = %e, "full-text index unreadable; reading bodies");
                vec![None; n]
            }
            Err(_) => vec![None; n],
        }
    }

    /// Empties the user's full-text index and indexes every message again (`strata fts
    /// rebuild`); returns how many messages it then holds.
    pub async fn fts_rebuild(&self) -> crate::Result<usize> {
        let Some(fts) = &self.fts else {
            return Err(crate::StoreError::FullText(
                "it is turned off in the configuration".into(),
            ));
        };
        let text = fts.text.clone();
        run_blocking(move || text.clear()).await?;
        let mut queue = Queue::default();
        self.fts_compare(&mut queue).await?;
        while !queue.adds.is_empty() {
            self.fts_batch(&mut queue).await?;
        }
        Ok(fts.text.len())
    }
}

/// The nice value indexing runs at: requests always come first, and an idle core indexes.
const INDEXING_NICE: i32 = 19;

/// Runs an indexing step on the server's indexing thread, which runs at [`INDEXING_NICE`]. On
/// Linux the nice value is per thread and inherited by the threads tantivy starts from it, so
/// a commit's tokenizing and merging yield the cores to commands rather than share them. One
/// long-lived thread, not one per batch: a thread's allocator heap is reused from batch to
/// batch instead of being left behind for others to reclaim.
async fn run_blocking(
    f: impl FnOnce() -> Result<(), strata_fts::FtsError> + Send + 'static,
) -> crate::Result<()> {
    let (tx, rx) = oneshot::channel();
    let job: IndexingJob = Box::new(move || {
        let _ = tx.send(f());
    });
    indexing_thread()
        .map_err(|e| crate::StoreError::FullText(format!("no indexing thread: {e}")))?
        .send(job)
        .map_err(|_| crate::StoreError::FullText("the indexing thread is gone".into()))?;
    rx.await
        .map_err(|_| crate::StoreError::FullText("indexing step failed".into()))?
        .map_err(|e| crate::StoreError::FullText(e.to_string()))
}

type IndexingJob = Box<dyn FnOnce() + Send>;

/// The indexing thread's queue, started on first use.
fn indexing_thread() -> std::io::Result<&'static std::sync::mpsc::Sender<IndexingJob>> {
    static JOBS: std::sync::OnceLock<std::sync::mpsc::Sender<IndexingJob>> =
        std::sync::OnceLock::new();
    if let Some(jobs) = JOBS.get() {
        return Ok(jobs);
    }
    let (tx, rx) = std::sync::mpsc::channel::<IndexingJob>();
    std::thread::Builder::new()
        .name("strata-fts".into())
        .spawn(move || {
            lower_priority();
            for job in rx {
                // A panicking step drops its result sender: its caller sees the failure, and
                // the thread goes on with the next step.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
    // Two first uses at once start two threads; the loser's queue closes and its thread ends.
    Ok(JOBS.get_or_init(|| tx))
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // `None` is the calling thread on Linux (elsewhere it would be the whole process).
    if let Err(e) = rustix::process::setpriority_process(None, INDEXING_NICE) {
        tracing::debug!(error = %e, "full-text indexing at normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
