//! Tiering on this node (`[storage.tiering]`): every `interval`, each user with an index here
//! (with indexes shipped to a shared store, each user this node serves now) has the bodies the
//! rules make cold moved from the main store to the cold one
//! (`UserStore::tier`, on the relocation path), all users sharing one pace. `strata tier run`
//! asks for a run now and `strata tier status` shows what each store holds of a user, through
//! the control socket when a server runs, else with the stores opened here.

use std::sync::Arc;

use strata_config::Config;
use strata_mailstore::{
    Mailstore, Pace, RelocateOptions, RelocateReport, StoreUsage, TierDate, TierPolicy, TierRule,
};
use tokio::sync::watch;

use crate::backends::Backends;
use crate::migrate::{Users, progress_line};

/// What tiering moves and how fast; one per server.
pub struct Tierer {
    /// The cold store's name.
    pub to: String,
    policy: TierPolicy,
    opts: RelocateOptions,
    interval: std::time::Duration,
    /// One run at a time: the periodic one or one asked for.
    running: tokio::sync::Mutex<()>,
    /// Runs completed.
    runs: watch::Sender<u64>,
}

impl Tierer {
    /// The tiering the configuration asks for, if any, with the cold store's id from
    /// `backends`.
    pub fn new(cfg: &strata_config::Storage, backends: &Backends) -> Option<Tierer> {
        let t = cfg.tiering.as_ref()?;
        let to = backends.store_id(&t.to)?;
        Some(Tierer {
            to: t.to.clone(),
            policy: TierPolicy {
                to,
                date: match t.date {
                    strata_config::TierDate::Saved => TierDate::Saved,
                    strata_config::TierDate::Internal => TierDate::Internal,
                },
                rules: t
                    .rules
                    .iter()
                    .map(|r| TierRule {
                        older_than: r.older_than,
                        mailboxes: r.mailboxes.clone(),
                        larger_than: r.larger_than,
                    })
                    .collect(),
            },
            opts: RelocateOptions {
                pace: t.rate.map(|r| Arc::new(Pace::new(r))),
                // A batch is at most a second's worth at the configured rate (and one body at
                // least), so the index switches as bodies arrive, not all at the end.
                batch_bytes: t.rate.map_or(32 << 20, |r| r.min(32 << 20)),
                ..RelocateOptions::default()
            },
            interval: t.interval,
            running: tokio::sync::Mutex::new(()),
            runs: watch::Sender::new(0),
        })
    }

    /// The number of runs completed, which changes after each (for a caller waiting for one).
    pub fn runs(&self) -> watch::Receiver<u64> {
        self.runs.subscribe()
    }

    /// One run over `users`; `out` gets a line per user that had anything cold and says
    /// whether to go on. A user another move holds (a migration) is skipped this time.
    pub async fn run(
        &self,
        store: &Mailstore,
        users: Users,
        out: &mut (dyn FnMut(String) -> bool + Send),
    ) -> anyhow::Result<RelocateReport> {
        let _one = self.running.lock().await;
        let result = self.run_alone(store, users, out).await;
        self.runs.send_modify(|n| *n += 1);
        result
    }

    async fn run_alone(
        &self,
        store: &Mailstore,
        users: Users,
        out: &mut (dyn FnMut(String) -> bool + Send),
    ) -> anyhow::Result<RelocateReport> {
        let names = match users {
            // With indexes shipped, a user is served by whichever node opened them last: this
            // node tiers the users it serves now, and opens no other (which would take them).
            Users::All if store.options().ship.is_some() => {
                let mut open: Vec<String> = store
                    .open_users()
                    .iter()
                    .map(|u| u.name().to_string())
                    .collect();
                open.sort();
                open
            }
            Users::All => crate::reconciler::users(&store.options().index_dir),
            Users::One(u) => {
                crate::require_index(store, &u, "tier")?;
                vec![u]
            }
        };
        let mut total = RelocateReport::default();
        let mut go_on = true;
        for name in names {
            if !go_on {
                break;
            }
            let user = store
                .user(&name)
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let report = match user.tier(&self.policy, &self.opts, &mut |_| go_on).await {
                Ok(r) => r,
                Err(strata_mailstore::StoreError::Migration(why)) => {
                    tracing::info!(user = name, why, "tiering skipped the user this time");
                    continue;
                }
                Err(e) => return Err(anyhow::anyhow!("{name}: {e}")),
            };
            strata_metrics::metrics().tiered(report.moved, report.bytes);
            if report.total > 0 {
                tracing::info!(
                    user = name,
                    to = self.to,
                    moved = report.moved,
                    bytes = report.bytes,
                    skipped = report.skipped,
                    damaged = report.damaged,
                    "cold bodies moved"
                );
                go_on = out(progress_line(&name, &report));
            }
            total.add(&report);
        }
        Ok(total)
    }
}

/// Starts the periodic run, when tiering is configured; the first run is one interval after
/// start, so a restart loop does not walk every user each time.
pub fn spawn(
    store: Arc<Mailstore>,
    backends: &Arc<Backends>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let tierer = backends.tierer()?;
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tierer.interval) => {}
                _ = stop.changed() => return,
            }
            let halt = stop.clone();
            let mut out = move |_: String| !*halt.borrow();
            let run = tokio::select! {
                run = tierer.run(&store, Users::All, &mut out) => run,
                _ = stop.changed() => return,
            };
            if let Err(e) = run {
                tracing::warn!(error = %e, "tiering failed; it runs again later");
            }
        }
    }))
}

/// Lines that say what each store holds of `user`, and what the read cache holds.
pub async fn status(
    store: &Mailstore,
    backends: &Backends,
    user: &str,
) -> anyhow::Result<Vec<String>> {
    crate::require_index(store, user, "show")?;
    let u = store
        .user(user)
        .await
        .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
    let usage = u
        .store_usage()
        .await
        .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
    let mut lines = vec![format!(
        "{:<12} {:>9} {:>12} {:>9} {:>12} {:>13}",
        "store", "messages", "bytes", "objects", "stored", "index stored"
    )];
    for StoreUsage {
        store,
        bodies,
        bytes,
        objects,
        stored_bytes,
        index_bytes,
        ..
    } in usage
    {
        let name = backends
            .store_name(store)
            .unwrap_or_else(|| format!("#{}", store.0));
        lines.push(format!(
            "{name:<12} {bodies:>9} {bytes:>12} {objects:>9} {stored_bytes:>12} {index_bytes:>13}"
        ));
    }
    for (name, c, max_bytes) in backends.caches() {
        lines.push(format!(
            "cache of {name} (this node, every user): {} objects, {} of {max_bytes} bytes, {} hits, {} misses",
            c.objects, c.bytes, c.hits, c.misses
        ));
    }
    Ok(lines)
}

/// What `strata tier status --user U` prints: asked of the running server, else read here.
pub async fn status_cli(cfg: &Config, user: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    if crate::control::request(&cfg.data_dir, &format!("tier-status {user}"), &mut |l| {
        lines.push(l.to_string())
    })
    .await?
    .is_some()
    {
        return Ok(lines);
    }
    let (store, backends) = crate::serve::mailstore(cfg).await?;
    let lines = status(&store, &backends, user).await;
    store.close_idle().await;
    lines
}

/// What `strata tier run [--user U]` does: a run now, in the running server or here; returns
/// the last line to print.
pub async fn run_cli(
    cfg: &Config,
    users: Users,
    out: &mut (dyn FnMut(String) -> bool + Send),
) -> anyhow::Result<String> {
    let request = format!(
        "tier-run {}",
        match &users {
            Users::All => "*",
            Users::One(u) => u.as_str(),
        }
    );
    if let Some(done) = crate::control::request(&cfg.data_dir, &request, &mut |l| {
        out(l.to_string());
    })
    .await?
    {
        return Ok(done);
    }
    let (store, backends) = crate::serve::mailstore(cfg).await?;
    let Some(tierer) = backends.tierer() else {
        anyhow::bail!("tiering is not configured ([storage.tiering])");
    };
    let result = tierer.run(&store, users, out).await;
    let flush = async {
        for user in store.open_users() {
            if let Err(e) = user.flush().await {
                tracing::warn!(user = user.name(), error = %e, "flush failed");
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), flush).await;
    store.close_idle().await;
    Ok(progress_line("total", &result?))
}
