//! Shipping a user's index to their main store, so that the store holds everything and a node's
//! disk only caches: a task per user follows the index's commits and writes them to the store as
//! a chain of objects (see `chain`): a base, then a diff at most every `max_lag` or
//! `max_changes`, and a new base when the diffs outgrow a share of it.
//!
//! Order is what makes the chain safe to restore anywhere:
//! - an object is written only after every body its state names is acked (a barrier: an empty
//!   batch committed after the state was read, acked in order after every earlier batch);
//! - the next object is written only after the one before it is acked, so the store never holds
//!   a later position without every earlier one;
//! - a superseded base and its diffs are deleted only after the new base and the head naming
//!   it are acked;
//! - a body is deleted only after the state that no longer names it is acked
//!   ([`Shipper::wait_acked`], called by the mail store before it deletes).
//!
//! Fencing: a node opening a user for writing claims a new epoch ([`open_for_writing`]), brings
//! its index up to the chain (restoring it unless the chain ends with this node's own last
//! object), and seals the takeover with an object at the chain's next position, created only
//! if absent. From then on, before each object it checks that no later epoch was claimed, and
//! each object is itself created only if absent: a node that finds a newer epoch, or its
//! position taken, stops writing for good ([`Progress::fenced`]) and its sessions end.
//!
//! It is not the chain's format (`strata_index::encode_diff` and friends).

pub mod chain;
pub mod local;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_backend_api::{Backend, BackendError, Batch, ErrorKind};
use strata_index::{IndexError, Modseq, UserIndex};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use chain::{ChainError, Head};

/// How shipping runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ShipOptions {
    /// The longest a committed change waits to be shipped.
    pub max_lag: Duration,
    /// Changes after which a diff is shipped at once.
    pub max_changes: u64,
    /// A new base when the diffs since the last exceed this fraction of its size.
    pub compact_ratio: f64,
    /// A new base after this many diffs in any case.
    pub max_diffs: u64,
    /// Objects read at once when restoring.
    pub read_concurrency: usize,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            max_lag: Duration::from_secs(1),
            max_changes: 256,
            compact_ratio: 0.5,
            max_diffs: 256,
            read_concurrency: 16,
        }
    }
}

/// How far shipping has got, as the task publishes it.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Every change up to this MODSEQ is acked in the store.
    pub acked: Modseq,
    /// Failed attempts so far.
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The chain as shipped so far (`None` until the task has found it).
    pub chain: Option<ChainStatus>,
    /// Changes committed and not yet acked in the store.
    pub pending_changes: u64,
    /// Another node has taken the user over: this node must not write it any more.
    pub fenced: Option<String>,
}

/// The shipped chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainStatus {
    /// The epoch this node writes under.
    pub epoch: u64,
    /// The position of the current base.
    pub base: u64,
    /// The last position written.
    pub last: u64,
    /// The base's size in bytes.
    pub base_bytes: u64,
    /// Diffs since the base.
    pub diffs: u64,
    /// Their bytes.
    pub diff_bytes: u64,
    /// Bytes shipped by this node since the user was opened.
    pub shipped_bytes: u64,
}

/// Why a wait for shipping ended without it.
#[derive(Debug, thiserror::Error)]
#[error("the index is not yet shipped to the store: {0}")]
pub struct NotShipped(pub String);

/// A user's running shipper.
pub struct Shipper {
    progress: watch::Receiver<Progress>,
    kick: Arc<Notify>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Shipper {
    /// Starts shipping `index` to `store` from where [`open_for_writing`] left the chain (the
    /// note and scratch files go beside the index).
    pub fn start(
        user: &str,
        index: UserIndex,
        store: Arc<dyn Backend>,
        opts: ShipOptions,
        taken: Taken,
    ) -> Shipper {
        let (tx, progress) = watch::channel(Progress {
            acked: taken.known.modseq,
            chain: Some(taken.known.status),
            ..Progress::default()
        });
        let kick = Arc::new(Notify::new());
        let (stop, stopped) = oneshot::channel();
        let task = Task {
            user: user.to_string(),
            note: sibling(index.path(), "ship"),
            scratch: sibling(index.path(), "shipbase"),
            index,
            store,
            opts,
            tx,
            kick: kick.clone(),
            chain: Some(taken.known),
        };
        Shipper {
            progress,
            kick,
            stop: std::sync::Mutex::new(Some(stop)),
            task: std::sync::Mutex::new(Some(tokio::spawn(task.run(stopped)))),
        }
    }

    /// Ships now and waits until every change up to `modseq` is acked in the store. Fails if
    /// an attempt fails meanwhile (the task keeps trying).
    pub async fn wait_acked(&self, modseq: Modseq) -> Result<(), NotShipped> {
        let mut rx = self.progress.clone();
        let failures = rx.borrow().failures;
        loop {
            {
                let p = rx.borrow_and_update();
                if p.acked >= modseq {
                    return Ok(());
                }
                if let Some(f) = &p.fenced {
                    return Err(NotShipped(f.clone()));
                }
                if p.failures > failures {
                    return Err(NotShipped(p.last_error.clone().unwrap_or_default()));
                }
            }
            self.kick.notify_one();
            if rx.changed().await.is_err() {
                return Err(NotShipped("shipping has stopped".into()));
            }
        }
    }

    /// The latest progress.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Follows the progress (to learn of fencing as it happens).
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Ships what is left (one attempt, bounded) and stops.
    pub async fn stop(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = stop {
            let _ = s.send(());
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn sibling(path: &std::path::Path, ext: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".");
    p.push(ext);
    PathBuf::from(p)
}

/// The chain as this node knows it.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    status: ChainStatus,
    /// The MODSEQ the chain is at.
    modseq: Modseq,
    /// The next object must be a base.
    need_base: bool,
}

/// A user taken over for writing by this node: its epoch and the chain as sealed.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    known: Known,
}

struct Task {
    user: String,
    note: PathBuf,
    scratch: PathBuf,
    index: UserIndex,
    store: Arc<dyn Backend>,
    opts: ShipOptions,
    tx: watch::Sender<Progress>,
    kick: Arc<Notify>,
    chain: Option<Known>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Heads of this many epochs before the current one are kept at a compaction.
const OLD_EPOCHS: u64 = 16;
/// How often an idle shipper checks whether another node took the user over.
const FENCE_CHECK: Duration = Duration::from_secs(5);
/// How long closing a user waits for the last changes to ship.
const FINAL_SHIP: Duration = Duration::from_secs(10);

impl Task {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let mut events = self.index.subscribe();
        // Changes not yet shipped, and since when.
        let mut pending: u64 = 0;
        let mut since: Option<Instant> = Some(Instant::now());
        let mut backoff = Duration::from_millis(100);
        let mut retry_at: Option<Instant> = None;
        // An idle node learns of a takeover too, so its sessions end instead of going stale.
        let mut fence_check = tokio::time::interval(FENCE_CHECK);
        fence_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        fence_check.reset();
        loop {
            let due = match (since, retry_at) {
                (_, Some(r)) => Some(r),
                (Some(s), None) if pending >= self.opts.max_changes => Some(s),
                (Some(s), None) => Some(s + self.opts.max_lag),
                (None, None) => None,
            };
            let sleep = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let mut now = false;
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    if since.is_some() {
                        match tokio::time::timeout(FINAL_SHIP, self.ship()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(ShipError::Fenced(why))) => {
                                tracing::error!(user = %self.user, "{why}; this node stops writing the user");
                                self.tx.send_modify(|p| p.fenced = Some(why));
                            }
                            Ok(Err(e)) => tracing::warn!(user = %self.user, error = %e, "could not ship the index's last changes before closing it"),
                            Err(_) => tracing::warn!(user = %self.user, "the store did not take the index's last changes in time; they are shipped at the next open"),
                        }
                    }
                    break;
                }
                () = self.kick.notified() => now = retry_at.is_none_or(|r| r <= Instant::now()),
                e = events.recv() => match e {
                    Ok(e) => {
                        pending += e.changes.len() as u64;
                        since.get_or_insert_with(Instant::now);
                    }
                    Err(_) => {
                        since.get_or_insert_with(Instant::now);
                    }
                },
                () = sleep => now = true,
                _ = fence_check.tick() => {
                    let epoch = self.chain.map_or(0, |k| k.status.epoch);
                    if chain::superseded(&*self.store, epoch).await.unwrap_or(false) {
                        let why = format!("another node claimed epoch {} of this user's index", epoch + 1);
                        tracing::error!(user = %self.user, epoch, "{why}; this node stops writing the user");
                        self.tx.send_modify(|p| p.fenced = Some(why));
                        break;
                    }
                    continue;
                }
            }
            loop {
                match events.try_recv() {
                    Ok(e) => {
                        pending += e.changes.len() as u64;
                        since.get_or_insert_with(Instant::now);
                    }
                    Err(TryRecvError::Lagged(_)) => {
                        since.get_or_insert_with(Instant::now);
                    }
                    Err(_) => break,
                }
            }
            self.tx.send_modify(|p| p.pending_changes = pending);
            if !now && pending < self.opts.max_changes {
                continue;
            }
            if since.is_none() && self.chain.is_some() {
                // Nothing new: a waiter is answered from the progress as it is.
                self.tx.send_modify(|_| {});
                continue;
            }
            match self.ship().await {
                Ok(()) => {
                    pending = 0;
                    since = None;
                    retry_at = None;
                    backoff = Duration::from_millis(100);
                    self.tx.send_modify(|p| p.pending_changes = 0);
                }
                Err(ShipError::Fenced(why)) => {
                    tracing::error!(user = %self.user, epoch = self.chain.map_or(0, |k| k.status.epoch), "{why}; this node stops writing the user");
                    self.tx.send_modify(|p| p.fenced = Some(why));
                    break;
                }
                Err(ShipError::Chain(e)) => {
                    let attempt = self.tx.borrow().failures + 1;
                    if attempt == 1 || attempt.is_multiple_of(20) {
                        tracing::warn!(user = %self.user, attempt, error = %e, "could not ship the index to the store; retrying");
                    }
                    self.tx.send_modify(|p| {
                        p.failures += 1;
                        p.last_error = Some(e.to_string());
                    });
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Brings the store's chain up to the index as of now.
    async fn ship(&mut self) -> Result<(), ShipError> {
        let Some(mut known) = self.chain else {
            return Err(ShipError::Fenced("shipping never started".into()));
        };
        let compact = known.status.diffs >= self.opts.max_diffs
            || known.status.diff_bytes as f64
                > known.status.base_bytes as f64 * self.opts.compact_ratio;
        if known.need_base || compact {
            self.ship_base(&mut known).await?;
        } else {
            match strata_index::diff_since(&self.index, known.modseq).await {
                Ok(d) if d.is_empty() => {}
                Ok(d) => self.ship_diff(&mut known, &d).await?,
                // The change log was trimmed past what was shipped: only a base will do.
                Err(IndexError::BackupMismatch(_)) => self.ship_base(&mut known).await?,
                Err(e) => return Err(ShipError::Chain(e.into())),
            }
        }
        self.chain = Some(known);
        let note = local::Note {
            epoch: known.status.epoch,
            last: known.status.last,
            modseq: known.modseq,
        };
        if let Err(e) = local::write(&self.note, &note) {
            tracing::debug!(user = %self.user, error = %e, "could not write the shipping note");
        }
        self.tx.send_modify(|p| {
            p.acked = known.modseq;
            p.chain = Some(known.status);
        });
        Ok(())
    }

    /// Every body the index names so far is acked: committed after the state was read, an
    /// empty batch is acked only after every batch before it.
    async fn barrier(&self) -> Result<(), BackendError> {
        self.store.commit(Batch::new()).await?.acked().await
    }

    /// Writes the object at `seq` once every body it names is acked (the barrier), only if no
    /// later epoch was claimed and the position is free. The barrier and the epoch check are
    /// independent, so they run together: one round trip of the two, not two.
    async fn create(&self, epoch: u64, seq: u64, data: Vec<u8>) -> Result<(), ShipError> {
        let (barrier, superseded) =
            tokio::join!(self.barrier(), chain::superseded(&*self.store, epoch));
        barrier.map_err(ChainError::from)?;
        if superseded.map_err(ChainError::from)? {
            return Err(ShipError::Fenced(format!(
                "another node claimed epoch {} of this user's index",
                epoch + 1
            )));
        }
        create_at(&*self.store, seq, data).await
    }

    async fn ship_diff(&self, known: &mut Known, d: &strata_index::Diff) -> Result<(), ShipError> {
        let seq = known.status.last + 1;
        let obj = strata_index::encode_diff(d, known.status.epoch, seq);
        let len = obj.len() as u64;
        self.create(known.status.epoch, seq, obj).await?;
        known.status.last = seq;
        known.status.diffs += 1;
        known.status.diff_bytes += len;
        known.status.shipped_bytes += len;
        known.modseq = d.to;
        Ok(())
    }

    async fn ship_base(&self, known: &mut Known) -> Result<(), ShipError> {
        let seq = known.status.last + 1;
        let (modseq, obj) =
            strata_index::encode_base(&self.index, &self.scratch, known.status.epoch, seq)
                .await
                .map_err(ChainError::from)?;
        let len = obj.len() as u64;
        self.create(known.status.epoch, seq, obj).await?;
        let previous = if known.need_base && known.status.base == 0 {
            seq
        } else {
            known.status.base
        };
        let head = Head {
            epoch: known.status.epoch,
            base: seq,
            previous,
        };
        chain::write_head(&*self.store, &head)
            .await
            .map_err(ChainError::from)?;
        known.status.base = seq;
        known.status.last = seq;
        known.status.base_bytes = len;
        known.status.diffs = 0;
        known.status.diff_bytes = 0;
        known.status.shipped_bytes += len;
        known.modseq = modseq;
        known.need_base = false;
        collect(&*self.store, head)
            .await
            .map_err(ChainError::from)?;
        Ok(())
    }
}

/// Why an attempt to ship stopped.
#[derive(Debug, thiserror::Error)]
enum ShipError {
    /// Another node writes the user now.
    #[error("{0}")]
    Fenced(String),
    /// The store or the index failed; the attempt is tried again.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Creates the object at `seq` only if the position is free. A position taken by the same bytes
/// is this node's own write that was answered late (a retry after a timeout); taken by other
/// bytes, it means another node writes the chain.
async fn create_at(store: &dyn Backend, seq: u64, data: Vec<u8>) -> Result<(), ShipError> {
    let key = chain::object_key(seq);
    let batch = Batch::new()
        .require_absent(key.clone())
        .put(key.clone(), data.clone());
    match store.commit(batch).await {
        Ok(r) => Ok(r.acked().await.map_err(ChainError::from)?),
        Err(e) if e.kind == ErrorKind::Conflict => match store.get(&key, None).await {
            Ok(there) if there == data => Ok(()),
            _ => Err(ShipError::Fenced(format!(
                "position {seq} of this user's index chain was written by another node"
            ))),
        },
        Err(e) => Err(ShipError::Chain(e.into())),
    }
}

/// Deletes what a new base superseded (once it and the head naming it are acked), then records
/// in the head that nothing before the base is left.
async fn collect(store: &dyn Backend, head: Head) -> Result<(), BackendError> {
    if head.previous >= head.base {
        return Ok(());
    }
    let mut batch = Batch::new();
    for seq in head.previous..head.base {
        batch = batch.delete(chain::object_key(seq));
    }
    // Heads of epochs long superseded: the hint names this epoch, so none is looked for.
    for e in
        head.epoch.saturating_sub(OLD_EPOCHS + 48).max(1)..head.epoch.saturating_sub(OLD_EPOCHS)
    {
        batch = batch.delete(chain::epoch_key(e));
    }
    store.commit(batch).await?.acked().await?;
    chain::write_head(
        store,
        &Head {
            previous: head.base,
            ..head
        },
    )
    .await
}

/// Deletes a user's shipped chain, for a rebuild from the bodies that replaces it: first a new
/// epoch is claimed with a head naming no base (so a node still writing the old chain is
/// fenced, and the next open finds no chain), then every object and older epoch head is
/// deleted. Returns how many objects went.
pub async fn discard(store: &dyn Backend) -> Result<u64, ChainError> {
    let (_, newest) = chain::heads(store).await?;
    let epoch = chain::claim(store, newest, 0).await?;
    let keep = [chain::epoch_key(epoch), chain::head_key()];
    let doomed: Vec<_> = store
        .list(chain::PREFIX)
        .await?
        .into_iter()
        .map(|l| l.key)
        .filter(|k| !keep.contains(k))
        .collect();
    let n = doomed.len() as u64;
    let batch = doomed.into_iter().fold(Batch::new(), |b, k| b.delete(k));
    store.commit(batch).await?.acked().await?;
    Ok(n)
}

/// Renames a damaged index file (and its shipping note) out of the way; returns the new name.
pub fn set_aside(path: &std::path::Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = sibling(path, &format!("damaged-{secs}"));
    std::fs::rename(path, &aside)?;
    let _ = std::fs::remove_file(sibling(path, "ship"));
    Ok(aside)
}

/// Restores `user`'s index at `path` (which must not exist) from the chain in `store`, and
/// notes the chain's end so this node continues it; `None` if the store has no chain.
pub async fn restore_user(
    user: &str,
    path: &std::path::Path,
    store: &dyn Backend,
    opts: &ShipOptions,
) -> Result<Option<chain::Restored>, ChainError> {
    let started = Instant::now();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let Some(r) = chain::restore(store, path, opts.read_concurrency).await? else {
        return Ok(None);
    };
    let note = local::Note {
        epoch: r.head.epoch,
        last: r.last,
        modseq: r.modseq,
    };
    if let Err(e) = local::write(&sibling(path, "ship"), &note) {
        tracing::debug!(user, error = %e, "could not write the shipping note");
    }
    tracing::debug!(user, ms = started.elapsed().as_millis() as u64, "restored");
    Ok(Some(r))
}

/// Opens `user`'s index at `path` for writing by this node: claims the next epoch, brings the
/// local index up to the store's chain (restoring it unless the chain ends with this node's own
/// last object; a local index that is not the chain's is set aside), opens it with `open`, and
/// seals the takeover with an object at the chain's next position. If another writer takes that
/// position first, the chain is read again and the takeover retried.
pub async fn open_for_writing<F, Fut>(
    user: &str,
    path: &std::path::Path,
    local_modseq: Option<Modseq>,
    store: &dyn Backend,
    opts: &ShipOptions,
    open: F,
) -> Result<(UserIndex, strata_index::RecoveryReport, Taken), crate::StoreError>
where
    F: Fn() -> Fut,
    Fut:
        std::future::Future<Output = Result<(UserIndex, strata_index::RecoveryReport), IndexError>>,
{
    let note_path = sibling(path, "ship");
    let scratch = sibling(path, "shipbase");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let (head, newest) = chain::heads(store).await?;
    let note = local::read(&note_path);
    let after = newest.max(note.map_or(0, |n| n.epoch));
    let epoch = chain::claim(store, after, head.map_or(0, |h| h.base)).await?;
    // Durably before anything is written under it: after a crash, objects of this epoch are
    // known as this node's own.
    let claimed = local::Note {
        epoch,
        ..note.unwrap_or_default()
    };
    local::write(&note_path, &claimed).map_err(|e| IndexError::Io {
        path: note_path.clone(),
        source: e,
    })?;
    let mut local_modseq = local_modseq;
    // The head read before the claim serves the first round: a writer that moved the chain
    // since takes the position the seal wants, and the next round reads the chain again.
    let mut head = head;
    for attempt in 0..8 {
        if attempt > 0 {
            head = chain::read_head(store).await?;
        }
        // The chain as it is now: its end, and who wrote its last object.
        let end = match head {
            None => None,
            Some(h) => {
                let sizes = chain::probe(store, h.base).await?;
                if sizes.is_empty() {
                    return Err(ChainError::Bad {
                        key: chain::object_key(h.base).to_string(),
                        why: "the base the head names is missing".into(),
                    }
                    .into());
                }
                let last = h.base + sizes.len() as u64 - 1;
                let hdr = chain::peek(store, last).await?;
                Some((h, sizes, last, hdr))
            }
        };
        // The chain ends with an object of an epoch this node claimed (its own note says so)
        // and the local index holds at least as much: the local index goes on. Otherwise the
        // store's chain wins.
        let mine = |e: u64| e == epoch || note.is_some_and(|n| n.epoch == e);
        let ours = match &end {
            Some((_, _, _, hdr)) => {
                path.exists() && mine(hdr.epoch) && local_modseq.is_some_and(|m| m >= hdr.to)
            }
            None => true,
        };
        if !ours && path.exists() {
            let aside = set_aside(path).map_err(|e| IndexError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
            tracing::warn!(user, aside = %aside.display(), "the store's index chain was written elsewhere since this node's index; restoring it from the store");
        }
        if !ours {
            restore_user(user, path, store, opts).await?;
            local_modseq = None;
        }
        let (index, report) = open().await?;
        let result = match end {
            Some((h, sizes, last, hdr)) => {
                seal_with_diff(&index, store, epoch, h, &sizes, last, hdr.to).await
            }
            None => {
                let start = note.map_or(1, |n| n.last + 1);
                seal_with_base(&index, store, epoch, start, &scratch).await
            }
        };
        match result {
            Ok(known) => {
                let n = local::Note {
                    epoch,
                    last: known.status.last,
                    modseq: known.modseq,
                };
                if let Err(e) = local::write(&note_path, &n) {
                    tracing::debug!(user, error = %e, "could not write the shipping note");
                }
                tracing::info!(
                    user,
                    epoch,
                    position = known.status.last,
                    "took the user's index for writing"
                );
                return Ok((index, report, Taken { known }));
            }
            Err(ShipError::Fenced(why)) => {
                tracing::info!(
                    user,
                    epoch,
                    "{why} while taking the user over; reading the chain again"
                );
                index.close().await;
                // Not this node's chain any more: the next round restores it.
                let _ = std::fs::remove_file(&note_path);
            }
            Err(ShipError::Chain(e)) => {
                index.close().await;
                return Err(e.into());
            }
        }
    }
    Err(NotShipped("another node keeps writing this user's index".into()).into())
}

/// Seals a takeover of a chain ending at `last` (MODSEQ `modseq`) with a diff of the local
/// index since then.
async fn seal_with_diff(
    index: &UserIndex,
    store: &dyn Backend,
    epoch: u64,
    head: Head,
    sizes: &[u64],
    last: u64,
    modseq: Modseq,
) -> Result<Known, ShipError> {
    let d = strata_index::diff_since(index, modseq)
        .await
        .map_err(ChainError::from)?;
    let seq = last + 1;
    let obj = strata_index::encode_diff(&d, epoch, seq);
    let len = obj.len() as u64;
    create_at(store, seq, obj).await?;
    Ok(Known {
        status: ChainStatus {
            epoch,
            base: head.base,
            last: seq,
            base_bytes: sizes.first().copied().unwrap_or(0),
            diffs: sizes.len() as u64,
            diff_bytes: sizes.iter().skip(1).sum::<u64>() + len,
            shipped_bytes: len,
        },
        modseq: d.to,
        need_base: false,
    })
}

/// Starts a chain at `seq` with a base of the local index.
async fn seal_with_base(
    index: &UserIndex,
    store: &dyn Backend,
    epoch: u64,
    seq: u64,
    scratch: &std::path::Path,
) -> Result<Known, ShipError> {
    let (modseq, obj) = strata_index::encode_base(index, scratch, epoch, seq)
        .await
        .map_err(ChainError::from)?;
    let len = obj.len() as u64;
    create_at(store, seq, obj).await?;
    let head = Head {
        epoch,
        base: seq,
        previous: seq,
    };
    chain::write_head(store, &head)
        .await
        .map_err(ChainError::from)?;
    Ok(Known {
        status: ChainStatus {
            epoch,
            base: seq,
            last: seq,
            base_bytes: len,
            diffs: 0,
            diff_bytes: 0,
            shipped_bytes: len,
        },
        modseq,
        need_base: false,
    })
}
