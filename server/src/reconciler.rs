//! The server's reconciler: at start and then every `storage.reconcile_interval`, each user
//! that has an index has their stores reconciled with it (bodies nothing names are deleted:
//! `UserStore::reconcile` says why nothing live can be), and writes a crash interrupted are
//! removed once older than [`PARTIAL_AGE`]. Each run logs what it removed and adds it to
//! [`ReconcileTotals`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_mailstore::Mailstore;
use tokio::sync::watch;

use crate::backends::Backends;

/// How old a partial write must be to be removed: Maildir's own rule for `tmp/` (36 hours), so
/// that another program's delivery in progress is never taken.
pub const PARTIAL_AGE: Duration = Duration::from_secs(36 * 3600);

/// What the reconciler has done since the server started.
#[derive(Debug, Default)]
pub struct ReconcileTotals {
    /// Runs completed.
    pub runs: AtomicU64,
    /// Bodies nothing named, deleted.
    pub removed: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Partial writes removed.
    pub partial: AtomicU64,
    /// Users that could not be reconciled (logged).
    pub errors: AtomicU64,
}

/// The users with an index under `index_dir` (none if it cannot be read).
pub(crate) fn users(index_dir: &Path) -> Vec<String> {
    crate::migrate::indexed_users(index_dir).unwrap_or_default()
}

/// One run over every user.
pub async fn run_once(
    store: &Mailstore,
    backends: &Backends,
    index_dir: &Path,
    totals: &ReconcileTotals,
) {
    let mut partial = backends.clean_shared(PARTIAL_AGE).await;
    let (mut removed, mut bytes) = (0, 0);
    for name in users(index_dir) {
        let user = match store.user(&name).await {
            Ok(u) => u,
            Err(e) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user = name, error = %e, "reconciler: cannot open the user");
                continue;
            }
        };
        for (_, s) in user.stores().all() {
            partial += s.clean_partial(PARTIAL_AGE).await.unwrap_or(0);
        }
        match user.reconcile().await {
            Ok(r) => {
                if r.removed > 0 {
                    tracing::info!(
                        user = name,
                        removed = r.removed,
                        bytes = r.bytes,
                        listed = r.listed,
                        "reconciler: deleted bodies no index entry names"
                    );
                }
                if r.foreign > 0 {
                    tracing::info!(
                        user = name,
                        foreign = r.foreign,
                        "reconciler: kept files another program put in the user's store; \
                         `strata index rebuild` adopts them"
                    );
                }
                removed += r.removed;
                bytes += r.bytes;
            }
            Err(e) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user = name, error = %e, "reconciler: could not reconcile");
            }
        }
        // Let go of a user no session holds now, so a run over every user does not keep
        // every index open until the next idle sweep.
        drop(user);
        store.close_if_idle(&name).await;
    }
    totals.runs.fetch_add(1, Ordering::Relaxed);
    strata_metrics::metrics().reconciled(removed);
    totals.removed.fetch_add(removed, Ordering::Relaxed);
    totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    totals.partial.fetch_add(partial, Ordering::Relaxed);
    tracing::info!(removed, bytes, partial, "reconciler: run done");
}

/// Runs at once, then every `interval` (never again if it is zero), until shutdown.
pub fn spawn(
    store: Arc<Mailstore>,
    backends: Arc<Backends>,
    index_dir: PathBuf,
    interval: Duration,
    totals: Arc<ReconcileTotals>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = run_once(&store, &backends, &index_dir, &totals) => {}
                _ = stop.changed() => return,
            }
            if interval.is_zero() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
        }
    })
}
