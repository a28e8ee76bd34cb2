//! `strata migrate`: moving users' bodies to another configured store, one user after another,
//! each through [`strata_mailstore::UserStore::relocate`]. It runs inside the server (through
//! the control socket) while users keep working, or on its own when the server is stopped.
//! It does not choose stores: the configuration names them.

use std::path::Path;

use strata_mailstore::{Mailstore, RelocateOptions, RelocateReport};

use crate::backends::Backends;

/// Which users to migrate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Users {
    /// One user.
    One(String),
    /// Every user with a mail index.
    All,
}

/// The users with a mail index under `index_dir`, sorted.
pub fn indexed_users(index_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(index_dir)? {
        let name = entry?.file_name();
        if let Some(user) = name.to_str().and_then(|n| n.strip_suffix(".redb"))
            && crate::users::check_name(user).is_ok()
        {
            out.push(user.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// One line of progress, as the control socket and the command line print it.
pub fn progress_line(user: &str, r: &RelocateReport) -> String {
    format!(
        "{user}: {}/{} moved ({} MB), {} skipped, {} damaged, {} cleaned up, {:.1} s",
        r.moved,
        r.total,
        r.bytes >> 20,
        r.skipped,
        r.damaged,
        r.cleaned,
        r.elapsed.as_secs_f64()
    )
}

/// Moves the bodies of `users` to the store called `to`; `out` gets progress lines and says
/// whether to go on (false stops after the batch in flight). Returns the totals, or the first
/// error (naming the user).
pub async fn migrate(
    store: &Mailstore,
    backends: &Backends,
    to: &str,
    users: Users,
    opts: &RelocateOptions,
    out: &mut (dyn FnMut(String) -> bool + Send),
) -> anyhow::Result<RelocateReport> {
    let Some(id) = backends.store_id(to) else {
        anyhow::bail!(
            "no store is named {to:?}; the configuration names {}",
            backends.store_names().join(", ")
        );
    };
    let index_dir = &store.options().index_dir;
    let users = match users {
        Users::All => indexed_users(index_dir)?,
        Users::One(u) => {
            crate::require_index(store, &u, "migrate")?;
            vec![u]
        }
    };
    let mut total = RelocateReport::default();
    let mut go_on = true;
    for user in users {
        if !go_on {
            break;
        }
        let u = store
            .user(&user)
            .await
            .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
        let mut last = std::time::Instant::now();
        let report = u
            .relocate(id, opts, &mut |r| {
                // A line a second at most, and the last one always.
                let done = r.moved + r.skipped + r.damaged >= r.total;
                if done || last.elapsed().as_secs() >= 1 {
                    last = std::time::Instant::now();
                    go_on = out(progress_line(&user, r));
                }
                go_on
            })
            .await
            .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
        tracing::info!(
            user,
            to,
            moved = report.moved,
            bytes = report.bytes,
            skipped = report.skipped,
            damaged = report.damaged,
            cleaned = report.cleaned,
            "migrated"
        );
        total.add(&report);
    }
    Ok(total)
}

/// What `strata migrate` does: asks the server running on the configuration's data directory
/// (through its control socket), or, when none runs, opens the stores and indexes itself.
/// Returns the last line to print.
pub async fn run(
    cfg: &strata_config::Config,
    to: &str,
    users: Users,
    opts: &RelocateOptions,
    out: &mut (dyn FnMut(String) -> bool + Send),
) -> anyhow::Result<String> {
    let request = format!(
        "migrate {to} {} {}",
        match &users {
            Users::All => "*",
            Users::One(u) => u.as_str(),
        },
        opts.batch
    );
    if let Some(done) = crate::control::request(&cfg.data_dir, &request, &mut |l| {
        out(l.to_string());
    })
    .await?
    {
        return Ok(done);
    }
    // No server: this process takes the journals' and indexes' locks for the while.
    let (store, backends) = crate::serve::mailstore(cfg).await?;
    let result = migrate(&store, &backends, to, users, opts, out).await;
    // Source deletes were soft-done; give the stores a moment to ack them (the journals keep
    // whatever they have not, for the server's next start).
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
