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
//! It is not the chain's format (`strata_index::encode_diff` and friends) nor fencing between
//! nodes: a node that finds a chain it did not write takes it over under a new epoch, starting
//! with a base of its own index.

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
    /// Starts shipping `index` to `store`; `files` is the index file's path (the note and
    /// scratch files go beside it).
    pub fn start(
        user: &str,
        index: UserIndex,
        store: Arc<dyn Backend>,
        opts: ShipOptions,
    ) -> Shipper {
        let (tx, progress) = watch::channel(Progress::default());
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
            chain: None,
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
struct Known {
    status: ChainStatus,
    /// The MODSEQ the chain is at.
    modseq: Modseq,
    /// The next object must be a base.
    need_base: bool,
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
                    if since.is_some() || self.chain.is_none() {
                        match tokio::time::timeout(FINAL_SHIP, self.ship()).await {
                            Ok(Ok(())) => {}
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
                Err(e) => {
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
    async fn ship(&mut self) -> Result<(), ChainError> {
        let mut known = match self.chain {
            Some(k) => k,
            None => self.find().await?,
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
                Err(e) => return Err(e.into()),
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

    async fn put(&self, key: strata_backend_api::Key, data: Vec<u8>) -> Result<(), BackendError> {
        self.store
            .commit(Batch::new().put(key, data))
            .await?
            .acked()
            .await
    }

    async fn ship_diff(&self, known: &mut Known, d: &strata_index::Diff) -> Result<(), ChainError> {
        let seq = known.status.last + 1;
        let obj = strata_index::encode_diff(d, known.status.epoch, seq);
        let len = obj.len() as u64;
        self.barrier().await?;
        self.put(chain::object_key(seq), obj).await?;
        known.status.last = seq;
        known.status.diffs += 1;
        known.status.diff_bytes += len;
        known.status.shipped_bytes += len;
        known.modseq = d.to;
        Ok(())
    }

    async fn ship_base(&self, known: &mut Known) -> Result<(), ChainError> {
        let seq = known.status.last + 1;
        let (modseq, obj) =
            strata_index::encode_base(&self.index, &self.scratch, known.status.epoch, seq).await?;
        let len = obj.len() as u64;
        self.barrier().await?;
        self.put(chain::object_key(seq), obj).await?;
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
        self.put(chain::head_key(), head.encode()).await?;
        known.status.base = seq;
        known.status.last = seq;
        known.status.base_bytes = len;
        known.status.diffs = 0;
        known.status.diff_bytes = 0;
        known.status.shipped_bytes += len;
        known.modseq = modseq;
        known.need_base = false;
        self.collect(head).await?;
        Ok(())
    }

    /// Deletes what a new base superseded (once it and the head naming it are acked), then
    /// records in the head that nothing before the base is left.
    async fn collect(&self, head: Head) -> Result<(), BackendError> {
        if head.previous >= head.base {
            return Ok(());
        }
        let mut batch = Batch::new();
        for seq in head.previous..head.base {
            batch = batch.delete(chain::object_key(seq));
        }
        self.store.commit(batch).await?.acked().await?;
        let done = Head {
            previous: head.base,
            ..head
        };
        self.put(chain::head_key(), done.encode()).await
    }

    /// Finds the chain in the store and how it relates to this node's index.
    async fn find(&self) -> Result<Known, ChainError> {
        let note = local::read(&self.note);
        let local_modseq = self.index.snapshot()?.modseq();
        let Some(head) = chain::read_head(&*self.store).await? else {
            // No chain yet: this node starts one.
            return Ok(Known {
                status: ChainStatus {
                    epoch: note.map_or(1, |n| n.epoch + 1),
                    ..ChainStatus::default()
                },
                modseq: Modseq(0),
                need_base: true,
            });
        };
        // A compaction interrupted after the head was acked: finish it.
        self.collect(head).await?;
        let sizes = chain::probe(&*self.store, head.base).await?;
        let last = head.base + (sizes.len() as u64).saturating_sub(1);
        let mut status = ChainStatus {
            epoch: head.epoch,
            base: head.base,
            last,
            base_bytes: sizes.first().copied().unwrap_or(0),
            diffs: (sizes.len() as u64).saturating_sub(1),
            diff_bytes: sizes.iter().skip(1).sum(),
            shipped_bytes: 0,
        };
        let ours = note.filter(|n| n.epoch == head.epoch && n.last <= last);
        let modseq = match ours {
            Some(n) if n.last == last => Some(n.modseq),
            Some(_) => {
                let raw = self.store.get(&chain::object_key(last), None).await?;
                let h = strata_index::decode_header(&raw).map_err(|why| ChainError::Bad {
                    key: chain::object_key(last).to_string(),
                    why,
                })?;
                Some(h.to)
            }
            None => None,
        };
        match modseq {
            Some(m) if m <= local_modseq => Ok(Known {
                status,
                modseq: m,
                need_base: sizes.is_empty(),
            }),
            _ => {
                // Not this node's chain (or ahead of its index): this node's index takes over
                // under a new epoch, starting with a base.
                tracing::warn!(
                    user = %self.user,
                    epoch = head.epoch,
                    "the store holds a shipped index this node did not write; shipping a new base under a new epoch"
                );
                status.epoch = head.epoch + 1;
                Ok(Known {
                    status,
                    modseq: Modseq(0),
                    need_base: true,
                })
            }
        }
    }
}

/// Whether a store error means the chain could not be reached (as opposed to damaged).
pub fn is_unavailable(e: &ChainError) -> bool {
    matches!(e, ChainError::Backend(b) if b.kind != ErrorKind::NotFound)
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
