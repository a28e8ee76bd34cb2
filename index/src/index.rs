//! [`UserIndex`]: one user's open index, its writer task and its shared state.
//!
//! Reads take a [`Snapshot`] and never wait for the writer. Writes are closures sent to the one
//! writer task of the user, which runs every queued closure inside one engine transaction and
//! commits them with a single fsync (group commit); each closure runs under its own savepoint so
//! that one caller's failure undoes only its own work.

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::changes::{ChangeKind, CommitEvent, LogEntry};
use crate::error::{IndexError, Result};
use crate::model::{Flags, MailboxId, MailboxRecord, Modseq, NewMailbox, NewMessage, StoreOp, Uid};
use crate::open::{self, RecoveryReport};
use crate::repack::Maintenance;
use crate::schema::UserState;
use crate::snapshot::Snapshot;
use crate::store::guard;
use crate::txn::{StoreOutcome, Tables, Txn};
use crate::view::{MailboxView, ViewEntry};

/// How an index is opened and how its writer batches.
#[derive(Clone)]
pub struct IndexOptions {
    /// How long the writer may wait for more work, once its queue is empty, when everything
    /// queued is [`Durability::Grouped`] (flag changes). Zero by default: writes that arrive
    /// while a commit is in flight already share the next fsync, and waiting while every
    /// session is itself waiting on the writer only adds latency (measured: 2 ms halved the
    /// group-committed flag rate).
    pub group_commit_window: Duration,
    /// When set, [`Durability::Grouped`] writes (flag changes) are committed without an fsync,
    /// visible at once, and made durable by the next durable commit or after this long, whichever
    /// comes first; a crash loses at most this much of flag changes and never a message or a
    /// mailbox. `None` fsyncs them before they are answered.
    pub deferred_flags: Option<Duration>,
    /// Most write closures in one engine transaction.
    pub max_batch: usize,
    /// The engine's page cache for this user, in bytes.
    pub cache_bytes: usize,
    /// Commit events buffered per subscriber before it is told it lagged.
    pub event_capacity: usize,
    /// Writes that may wait for the writer before callers are held back.
    pub queue_capacity: usize,
    /// The server-wide maintenance worker that repacks this index when it grows sparse.
    pub maintenance: Option<Maintenance>,
    /// Told of every commit and repack (the server's metrics).
    pub observer: Option<Arc<dyn Observer>>,
}

/// What an index tells whoever watches it.
pub trait Observer: Send + Sync {
    /// A transaction committed after `took` (the engine's commit, for a durable one mostly its
    /// fsync).
    fn committed(&self, durable: bool, took: Duration);
    /// A repack completed.
    fn repacked(&self);
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            group_commit_window: Duration::ZERO,
            deferred_flags: None,
            max_batch: 4096,
            cache_bytes: 64 << 20,
            event_capacity: 4096,
            queue_capacity: 4096,
            maintenance: None,
            observer: None,
        }
    }
}

/// How soon a write must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Fsynced before the call returns, without waiting for company (APPEND, EXPUNGE, mailbox
    /// changes, UID assignment).
    Immediate,
    /// Fsynced before the call returns, but the writer may wait up to the group-commit window so
    /// that other sessions' changes share the fsync (flag changes); with
    /// [`IndexOptions::deferred_flags`], durable within that delay instead.
    Grouped,
}

pub(crate) type Completion = Box<dyn FnOnce(Option<&IndexError>) + Send>;
type Job = Box<dyn for<'a, 't> FnOnce(&mut Txn<'a, 't>) -> Completion + Send>;
pub(crate) type Exclusive = Box<dyn FnOnce(&Arc<Shared>, &mut UserState) + Send>;

enum Msg {
    Job {
        job: Job,
        grouped: bool,
    },
    RegisterView {
        view: Arc<MailboxView>,
        reply: oneshot::Sender<Result<Arc<MailboxView>>>,
    },
    Exclusive(Exclusive),
    Close(oneshot::Sender<()>),
}

/// Counters of the writer, for benchmarks and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Engine transactions committed.
    pub commits: u64,
    /// Of those, the durable ones (one fsync each); the rest were deferred flag changes.
    pub fsyncs: u64,
    /// Write closures run.
    pub jobs: u64,
    /// How long the last repack swap held the writer, in microseconds.
    pub last_swap_hold_us: u64,
    /// Repacks completed.
    pub repacks: u64,
}

/// State shared by the handles of one user's index and its writer.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// `None` once the writer has closed the index.
    db: RwLock<Option<Arc<redb::Database>>>,
    views: Mutex<HashMap<MailboxId, Weak<MailboxView>>>,
    events: broadcast::Sender<Arc<CommitEvent>>,
    poison: Mutex<Option<String>>,
    commits: AtomicU64,
    fsyncs: AtomicU64,
    jobs: AtomicU64,
    pub(crate) last_swap_hold_us: AtomicU64,
    pub(crate) repacks: AtomicU64,
    /// Set while a repack of this index runs (two would build the same copy file).
    pub(crate) repacking: AtomicBool,
    pub(crate) cache_bytes: usize,
    /// Opened with no other process allowed (see [`crate::open::builder`]).
    pub(crate) exclusive: bool,
    pub(crate) observer: Option<Arc<dyn Observer>>,
}

impl Shared {
    pub(crate) fn db(&self) -> Result<Arc<redb::Database>> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(IndexError::Closed)
    }

    pub(crate) fn replace_db(
        &self,
        db: Option<Arc<redb::Database>>,
    ) -> Option<Arc<redb::Database>> {
        std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), db)
    }

    pub(crate) fn poison(&self, detail: String) {
        tracing::error!(file = %self.path.display(), %detail, "index poisoned: refusing writes until reopened");
        let mut p = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        p.get_or_insert(detail);
    }

    fn poisoned(&self) -> Option<IndexError> {
        let p = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        p.as_ref().map(|detail| IndexError::Poisoned {
            path: self.path.clone(),
            detail: detail.clone(),
        })
    }

    /// The error a caller gets when its reply was dropped unanswered.
    fn abandoned(&self) -> IndexError {
        self.poisoned().unwrap_or(IndexError::Closed)
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::begin(&self.path, self.db()?)
    }

    pub(crate) fn commits_done(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn live_views(&self) -> Vec<Arc<MailboxView>> {
        let mut reg = self.views.lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        reg.values().filter_map(Weak::upgrade).collect()
    }
}

/// One user's open index. Cheap to clone; the writer stops when the last clone is dropped or
/// [`UserIndex::close`] is called.
#[derive(Clone)]
pub struct UserIndex {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
}

/// A handle that does not keep the index open (held by the maintenance worker).
#[derive(Clone)]
pub(crate) struct WeakIndex {
    shared: Weak<Shared>,
    tx: mpsc::WeakSender<Msg>,
}

impl WeakIndex {
    pub(crate) fn upgrade(&self) -> Option<UserIndex> {
        Some(UserIndex {
            shared: self.shared.upgrade()?,
            tx: self.tx.upgrade()?,
        })
    }
}

impl UserIndex {
    /// Opens (or creates) the index file at `path`, recovering it if the last writer crashed.
    /// Must be called inside a tokio runtime: it starts the user's writer task.
    pub async fn open(
        path: impl AsRef<Path>,
        opts: IndexOptions,
    ) -> Result<(UserIndex, RecoveryReport)> {
        let path = path.as_ref().to_path_buf();
        let cache = opts.cache_bytes;
        let exclusive = opts.deferred_flags.is_some();
        let p = path.clone();
        let (db, state, report) =
            tokio::task::spawn_blocking(move || open::open_writable(&p, cache, exclusive))
                .await
                .map_err(|e| IndexError::Engine {
                    path: path.clone(),
                    detail: format!("open task failed: {e}"),
                })??;
        tracing::info!(
            file = %path.display(),
            created = report.created,
            unclean = report.unclean_shutdown,
            repaired = report.repaired,
            micros = report.duration.as_micros() as u64,
            "index opened"
        );
        let (events, _) = broadcast::channel(opts.event_capacity.max(1));
        let shared = Arc::new(Shared {
            path,
            db: RwLock::new(Some(db)),
            views: Mutex::new(HashMap::new()),
            events,
            poison: Mutex::new(None),
            commits: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            last_swap_hold_us: AtomicU64::new(0),
            repacks: AtomicU64::new(0),
            repacking: AtomicBool::new(false),
            cache_bytes: opts.cache_bytes,
            exclusive,
            observer: opts.observer.clone(),
        });
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let index = UserIndex {
            shared: shared.clone(),
            tx: tx.clone(),
        };
        let weak = WeakIndex {
            shared: Arc::downgrade(&shared),
            tx: tx.downgrade(),
        };
        tokio::spawn(writer_loop(shared, rx, opts, state, weak));
        Ok((index, report))
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A consistent read-only view as of the latest commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.shared.snapshot()
    }

    /// Receives every commit's changes, in commit order. A receiver that falls more than the
    /// configured capacity behind is told it lagged and must re-read what it shows.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.shared.events.subscribe()
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            jobs: self.shared.jobs.load(Ordering::Relaxed),
            last_swap_hold_us: self.shared.last_swap_hold_us.load(Ordering::Relaxed),
            repacks: self.shared.repacks.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in the user's writer, inside a nested transaction, and returns once its changes
    /// are durable. If `f` fails, nothing it wrote is kept. `f` must not block: the writer is
    /// shared by all of the user's sessions.
    pub async fn write<R, F>(&self, durability: Durability, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: for<'a, 't> FnOnce(&mut Txn<'a, 't>) -> Result<R> + Send + 'static,
    {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |txn: &mut Txn<'_, '_>| {
            let result = txn.nested(f);
            Box::new(move |commit_err: Option<&IndexError>| {
                let out = match commit_err {
                    Some(e) => Err(IndexError::Poisoned {
                        path: PathBuf::new(),
                        detail: e.to_string(),
                    }),
                    None => result,
                };
                let _ = reply.send(out);
            }) as Completion
        });
        self.tx
            .send(Msg::Job {
                job,
                grouped: durability == Durability::Grouped,
            })
            .await
            .map_err(|_| self.shared.abandoned())?;
        match rx.await {
            Ok(Err(IndexError::Poisoned { detail, .. })) => Err(IndexError::Poisoned {
                path: self.shared.path.clone(),
                detail,
            }),
            Ok(r) => r,
            Err(_) => Err(self.shared.abandoned()),
        }
    }

    /// Runs `f` with the writer held and nothing else running (repack's final swap).
    pub(crate) async fn exclusive(&self, f: Exclusive) -> Result<()> {
        self.tx
            .send(Msg::Exclusive(f))
            .await
            .map_err(|_| self.shared.abandoned())
    }

    /// Stops the writer after the writes already queued, and releases the file's owner label.
    /// Snapshots still held keep reading.
    pub async fn close(self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The shared in-memory view of a mailbox, built on first use and kept current by the
    /// writer. Dropped when no one holds it.
    pub async fn view(&self, mailbox: MailboxId) -> Result<Arc<MailboxView>> {
        if let Some(v) = self
            .shared
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mailbox)
            .and_then(Weak::upgrade)
        {
            if v.is_deleted() {
                return Err(IndexError::NoSuchMailbox(mailbox));
            }
            return Ok(v);
        }
        let shared = self.shared.clone();
        let view = tokio::task::spawn_blocking(move || build_view(&shared, mailbox))
            .await
            .map_err(|e| IndexError::Engine {
                path: self.shared.path.clone(),
                detail: format!("view task failed: {e}"),
            })??;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::RegisterView { view, reply })
            .await
            .map_err(|_| self.shared.abandoned())?;
        rx.await.map_err(|_| self.shared.abandoned())?
    }

    // ----- the common operations, with their durability class -----

    /// Creates a mailbox (durable before return).
    pub async fn create_mailbox(&self, new: NewMailbox) -> Result<MailboxRecord> {
        self.write(Durability::Immediate, move |t| t.create_mailbox(new))
            .await
    }

    /// Renames or moves a mailbox (durable before return).
    pub async fn rename_mailbox(
        &self,
        id: MailboxId,
        new_parent: Option<MailboxId>,
        new_name: String,
    ) -> Result<MailboxRecord> {
        self.write(Durability::Immediate, move |t| {
            t.rename_mailbox(id, new_parent, &new_name)
        })
        .await
    }

    /// Deletes a mailbox without children (durable before return); returns the UIDs expunged.
    pub async fn delete_mailbox(&self, id: MailboxId) -> Result<Vec<Uid>> {
        self.write(Durability::Immediate, move |t| t.delete_mailbox(id))
            .await
    }

    /// Appends messages all-or-nothing (MULTIAPPEND) and returns their UIDs, durable before
    /// return.
    pub async fn append(&self, mailbox: MailboxId, messages: Vec<NewMessage>) -> Result<Vec<Uid>> {
        self.write(Durability::Immediate, move |t| {
            messages.into_iter().map(|m| t.append(mailbox, m)).collect()
        })
        .await
    }

    /// Changes flags (group-committed).
    pub async fn store(
        &self,
        mailbox: MailboxId,
        uids: Vec<Uid>,
        op: StoreOp,
        flags: Flags,
        unchanged_since: Option<Modseq>,
    ) -> Result<StoreOutcome> {
        self.write(Durability::Grouped, move |t| {
            t.store(mailbox, &uids, op, &flags, unchanged_since)
        })
        .await
    }

    /// Expunges messages (durable before return); returns the UIDs expunged.
    pub async fn expunge(&self, mailbox: MailboxId, uids: Vec<Uid>) -> Result<Vec<Uid>> {
        self.write(Durability::Immediate, move |t| t.expunge(mailbox, &uids))
            .await
    }

    /// Copies messages (durable before return); returns (source UID, new UID) pairs.
    pub async fn copy(
        &self,
        from: MailboxId,
        uids: Vec<Uid>,
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        self.write(Durability::Immediate, move |t| t.copy(from, &uids, to))
            .await
    }

    /// Moves messages (durable before return); returns (source UID, new UID) pairs.
    pub async fn move_messages(
        &self,
        from: MailboxId,
        uids: Vec<Uid>,
        to: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        self.write(Durability::Immediate, move |t| {
            t.move_messages(from, &uids, to)
        })
        .await
    }
}

fn build_view(shared: &Shared, mailbox: MailboxId) -> Result<Arc<MailboxView>> {
    let snap = shared.snapshot()?;
    let Some(rec) = snap.mailbox(mailbox)? else {
        return Err(IndexError::NoSuchMailbox(mailbox));
    };
    let mut entries = Vec::new();
    snap.for_each_message(mailbox, Uid(0), |m| {
        entries.push(ViewEntry::from(&m));
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(Arc::new(MailboxView::new(
        mailbox,
        entries,
        snap.modseq(),
        rec.highest_modseq,
    )))
}

/// Registers a freshly built view after folding in what was committed since it was built.
/// Runs between batches, so no commit can slip in between the catch-up and the registration.
fn register_view(shared: &Shared, view: Arc<MailboxView>) -> Result<Arc<MailboxView>> {
    let mut reg = shared.views.lock().unwrap_or_else(|p| p.into_inner());
    let mb = view.mailbox();
    if let Some(v) = reg
        .get(&mb)
        .and_then(Weak::upgrade)
        .filter(|v| !v.is_deleted())
    {
        return Ok(v);
    }
    let snap = shared.snapshot()?;
    let view = if snap.log_floor() > view.modseq() {
        // The log no longer reaches back to when the view was built: build it again.
        drop(reg);
        let fresh = build_view(shared, mb)?;
        reg = shared.views.lock().unwrap_or_else(|p| p.into_inner());
        fresh
    } else {
        let mut touched = BTreeSet::new();
        let mut deleted = false;
        for LogEntry {
            mailbox, uid, kind, ..
        } in snap.changes_since(view.modseq())?
        {
            if mailbox != mb {
                continue;
            }
            match kind {
                ChangeKind::MailboxDeleted => deleted = true,
                ChangeKind::Appended { .. }
                | ChangeKind::FlagsChanged
                | ChangeKind::Expunged { .. } => {
                    touched.insert(uid);
                }
                _ => {}
            }
        }
        for uid in touched {
            view.refresh(uid, snap.message(mb, uid)?.as_ref());
        }
        let highest = snap.mailbox(mb)?.map_or(Modseq(0), |m| m.highest_modseq);
        view.finish_catch_up(snap.modseq(), highest, deleted);
        view
    };
    reg.insert(mb, Arc::downgrade(&view));
    Ok(view)
}

async fn writer_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Msg>,
    opts: IndexOptions,
    mut state: UserState,
    weak: WeakIndex,
) {
    let mut pending: Option<Msg> = None;
    let mut close_reply = None;
    // When the oldest commit not yet fsynced was made (deferred flag changes).
    let mut undurable_since: Option<tokio::time::Instant> = None;
    loop {
        let msg = match pending.take() {
            Some(m) => m,
            None => {
                let flush_at = undurable_since.zip(opts.deferred_flags).map(|(t, d)| t + d);
                let next = match flush_at {
                    Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                        Ok(m) => m,
                        Err(_) => {
                            flush_durable(&shared).await;
                            undurable_since = None;
                            continue;
                        }
                    },
                    None => rx.recv().await,
                };
                match next {
                    Some(m) => m,
                    None => break,
                }
            }
        };
        match msg {
            Msg::Job { job, grouped } => {
                let mut jobs = vec![job];
                let mut all_grouped = grouped;
                let deadline = tokio::time::Instant::now() + opts.group_commit_window;
                while jobs.len() < opts.max_batch {
                    let next = match rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            if !all_grouped || opts.group_commit_window.is_zero() {
                                None
                            } else {
                                tokio::time::timeout_at(deadline, rx.recv())
                                    .await
                                    .ok()
                                    .flatten()
                            }
                        }
                    };
                    match next {
                        Some(Msg::Job { job, grouped }) => {
                            all_grouped &= grouped;
                            jobs.push(job);
                        }
                        Some(other) => {
                            pending = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let sh = shared.clone();
                let st = state.clone();
                let defer = all_grouped && opts.deferred_flags.is_some();
                match tokio::task::spawn_blocking(move || commit_batch(&sh, st, jobs, defer)).await
                {
                    Ok(Some(new_state)) => state = new_state,
                    Ok(None) => {}
                    Err(e) => shared.poison(format!("writer task failed: {e}")),
                }
                // A durable commit makes every earlier one durable too.
                undurable_since = if defer {
                    undurable_since.or_else(|| Some(tokio::time::Instant::now()))
                } else {
                    None
                };
                if let Some(m) = &opts.maintenance {
                    m.consider(&shared, &weak, state.live_bytes);
                }
            }
            Msg::RegisterView { view, reply } => {
                let sh = shared.clone();
                let r = tokio::task::spawn_blocking(move || register_view(&sh, view))
                    .await
                    .unwrap_or_else(|e| {
                        Err(IndexError::Engine {
                            path: shared.path.clone(),
                            detail: format!("view registration failed: {e}"),
                        })
                    });
                let _ = reply.send(r);
            }
            Msg::Exclusive(f) => {
                let sh = shared.clone();
                let mut st = state.clone();
                match tokio::task::spawn_blocking(move || {
                    f(&sh, &mut st);
                    st
                })
                .await
                {
                    Ok(st) => state = st,
                    Err(e) => shared.poison(format!("maintenance task failed: {e}")),
                }
            }
            Msg::Close(reply) => {
                close_reply = Some(reply);
                break;
            }
        }
    }
    if undurable_since.is_some() {
        flush_durable(&shared).await;
    }
    // Close the file now (snapshots still held keep their own handle), so that the index can be
    // opened again as soon as close() returns.
    let db = shared.replace_db(None);
    let _ = tokio::task::spawn_blocking(move || drop(db)).await;
    crate::owner::release(&shared.path);
    if let Some(r) = close_reply {
        let _ = r.send(());
    }
}

/// Makes every commit so far durable: an empty durable commit fsyncs the ones before it. A
/// failure poisons the index, as a failed commit does.
async fn flush_durable(shared: &Arc<Shared>) {
    let sh = shared.clone();
    let r = tokio::task::spawn_blocking(move || {
        let path = sh.path.as_path();
        let db = sh.db()?;
        guard(path, || {
            let mut wtxn = db.begin_write().map_err(|e| IndexError::engine(path, e))?;
            wtxn.set_quick_repair(true);
            let t = std::time::Instant::now();
            wtxn.commit().map_err(|e| IndexError::engine(path, e))?;
            if let Some(o) = &sh.observer {
                o.committed(true, t.elapsed());
            }
            Ok(())
        })
    })
    .await;
    match r {
        Ok(Ok(())) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => shared.poison(e.to_string()),
        Err(e) => shared.poison(format!("writer task failed: {e}")),
    }
}

/// Runs a batch of write closures in one engine transaction and commits it. Returns the new user
/// state, or `None` if the commit failed (the index is then poisoned).
fn commit_batch(
    shared: &Shared,
    state: UserState,
    jobs: Vec<Job>,
    defer: bool,
) -> Option<UserState> {
    let path = shared.path.as_path();
    let n_jobs = jobs.len() as u64;
    if let Some(e) = shared.poisoned() {
        // Dropping the jobs drops their replies; callers then see the poison.
        tracing::debug!(error = %e, "dropping writes to a poisoned index");
        return None;
    }
    let db = match shared.db() {
        Ok(db) => db,
        Err(_) => return None,
    };
    let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
    let outcome = guard(path, || {
        let mut wtxn = db.begin_write().map_err(|e| IndexError::engine(path, e))?;
        if defer {
            wtxn.set_durability(redb::Durability::None)
                .map_err(|e| IndexError::engine(path, e))?;
        } else {
            wtxn.set_quick_repair(true);
        }
        let (new_state, changes) = {
            let mut tables = Tables::open(path, &wtxn)?;
            let mut txn = Txn::new(path, &mut tables, state);
            for job in jobs {
                let sp = txn.savepoint();
                match catch_unwind(AssertUnwindSafe(|| job(&mut txn))) {
                    Ok(done) => {
                        txn.release(sp)?;
                        completions.push(done);
                    }
                    Err(_) => {
                        tracing::error!(file = %path.display(), "a write panicked; its changes were undone");
                        txn.rollback_to(sp)?;
                    }
                }
            }
            txn.flush_state()?;
            txn.into_parts()
        };
        let t = std::time::Instant::now();
        wtxn.commit().map_err(|e| IndexError::engine(path, e))?;
        if let Some(o) = &shared.observer {
            o.committed(!defer, t.elapsed());
        }
        Ok((new_state, changes))
    });
    match outcome {
        Ok((new_state, changes)) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            if !defer {
                shared.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            shared.jobs.fetch_add(n_jobs, Ordering::Relaxed);
            if !changes.is_empty() {
                let event = Arc::new(CommitEvent {
                    modseq: new_state.modseq,
                    changes,
                });
                for view in shared.live_views() {
                    view.apply(&event.changes, event.modseq);
                }
                let _ = shared.events.send(event);
            }
            for c in completions {
                c(None);
            }
            Some(new_state)
        }
        Err(e) => {
            shared.poison(e.to_string());
            for c in completions {
                c(Some(&e));
            }
            None
        }
    }
}
