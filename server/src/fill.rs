//! `strata import maildir` and `strata index rebuild` end to end, from the configuration: the
//! checks before anything is touched, the mail store opened as the server opens it, the fill
//! (see `import`), and the index left shipped and closed. The CLI adds a progress bar.

use std::path::Path;

use anyhow::bail;
use strata_config::Config;

use crate::import::{self, ImportReport};

/// What a fill did, for the operator.
#[derive(Debug, Default)]
pub struct FillReport {
    /// Messages and folders recorded.
    pub report: ImportReport,
    /// Objects of a shipped index deleted first (`--discard-shipped`).
    pub discarded: u64,
    /// Where the old index was put.
    pub aside: Option<std::path::PathBuf>,
}

/// Imports the Maildir at `from` into `user`'s mail, or (without `from`) rebuilds the user's
/// index from their store: a Maildir's files, or an SQL or S3 store's body metadata. A rebuild
/// where a shipped index exists is refused unless `discard_shipped`.
pub async fn fill(
    cfg: &Config,
    user: &str,
    from: Option<&Path>,
    discard_shipped: bool,
    progress: &dyn Fn(u64, u64),
) -> anyhow::Result<FillReport> {
    crate::users::check_name(user)?;
    let accounts = crate::accounts::Accounts::open_direct(cfg).await?;
    if accounts.hash_of(user).await?.is_none() {
        bail!("no account {user:?} (add it with: strata user add {user})");
    }
    std::fs::create_dir_all(cfg.data_dir.join("index"))?;
    let index = crate::index_path(&cfg.data_dir, user);
    let backend_root = match &cfg.storage.main.backend {
        strata_config::Backend::Maildir { root } => Some(root.join(user)),
        strata_config::Backend::Sql { .. } | strata_config::Backend::S3(_) => None,
    };
    let mut out = FillReport::default();
    if from.is_none() {
        // Before the store is touched: a server serving the user must not be fenced.
        import::ensure_unused(&index).await?;
        out.discarded = crate::index_admin::before_rebuild(cfg, user, discard_shipped).await?;
        out.aside = import::retire_index(&index, "rebuild").await?;
    }
    let (store, backends) = crate::serve::mailstore(cfg).await?;
    if from.is_none() {
        // A rebuild reads the store: first write out what a journal still holds.
        backends.drain_journals().await?;
    }
    let user_store = store.user(user).await?;
    out.report = match (from, &backend_root) {
        (Some(path), _) => import::import_maildir(&user_store, path, progress).await?,
        (None, Some(root)) => import::adopt_maildir(&user_store, root, progress).await?,
        (None, None) => import::adopt_store(&user_store, progress).await?,
    };
    user_store.flush().await?;
    // Shipped before the tool exits, where indexes are shipped.
    user_store.shipped().await?;
    drop(user_store);
    store.close_idle().await;
    Ok(out)
}
