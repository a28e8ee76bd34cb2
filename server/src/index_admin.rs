//! A user's shipped index from the command line: `strata index restore`, `status`, `export` and
//! `import`. Each opens the configured stores itself, so the server must not be serving the
//! user (a journal or an index the server holds is refused, naming its holder).
//!
//! An exported chain is a directory of the objects as the store holds them (`head`, then one
//! file per position); `import` checks every object and builds the index from them, and the
//! server ships it under a new epoch at its next open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_backend_api::Backend;
use strata_config::Config;
use strata_mailstore::ship::{self, chain};

use crate::backends::Backends;

/// What a restore did.
pub struct RestoreReport {
    /// Where the index set aside (the one that was there) is now.
    pub aside: Option<PathBuf>,
    /// What was read.
    pub restored: chain::Restored,
    /// How long it took.
    pub took: Duration,
}

/// The options of shipping (for their read concurrency), on or off in the configuration.
fn ship_options(cfg: &Config) -> ship::ShipOptions {
    crate::serve::ship_options(cfg).unwrap_or_else(|| ship::ShipOptions {
        read_concurrency: cfg.storage.read_concurrency as usize,
        ..ship::ShipOptions::default()
    })
}

/// Where the user's index is shipped (the main store, or `[index.ship] dir`), connected.
async fn main_store(cfg: &Config, user: &str) -> anyhow::Result<(Arc<Backends>, Arc<dyn Backend>)> {
    crate::users::check_name(user)?;
    let backends = Arc::new(Backends::connect_all(cfg).await?);
    let stores = backends.factory()(user)?;
    let main = stores.index_store().clone();
    Ok((backends, main))
}

/// Makes way for `strata index rebuild` of `user` where indexes are shipped: a rebuild from
/// the bodies must not be mixed with the shipped chain, which a fresh index is restored from at
/// open. With no chain there is nothing to do; a chain is refused unless `discard`, which
/// deletes it (returning how many objects went).
pub async fn before_rebuild(cfg: &Config, user: &str, discard: bool) -> anyhow::Result<u64> {
    if crate::serve::ship_options(cfg).is_none() {
        return Ok(0);
    }
    let (_backends, main) = main_store(cfg, user).await?;
    if chain::read_head(&*main).await?.is_none() {
        return Ok(0);
    }
    if !discard {
        bail!(
            "{}: holds a shipped index of {user:?}, which has its flags, UIDs and MODSEQs; \
             `strata index restore --user {user}` brings it back. A rebuild from the bodies \
             alone (new UIDs, no flags) replaces it only with --discard-shipped",
            main.name()
        );
    }
    Ok(ship::discard(&*main).await?)
}

/// Replaces `user`'s index with the one shipped to their main store; the old one is kept
/// beside it.
pub async fn restore(cfg: &Config, user: &str) -> anyhow::Result<RestoreReport> {
    let (_backends, main) = main_store(cfg, user).await?;
    let path = crate::index_path(&cfg.data_dir, user);
    std::fs::create_dir_all(path.parent().expect("index dir"))?;
    // Read first: a store without a chain leaves the local index alone.
    if chain::read_head(&*main).await?.is_none() {
        bail!(
            "{}: holds no shipped index for {user:?} (is [index.ship] enabled on the server that \
             serves it?)",
            main.name()
        );
    }
    let aside = crate::import::retire_index(&path, "restore").await?;
    let started = Instant::now();
    let restored = ship::restore_user(user, &path, &*main, &ship_options(cfg))
        .await?
        .context("the shipped index disappeared while it was read")?;
    Ok(RestoreReport {
        aside,
        restored,
        took: started.elapsed(),
    })
}

/// What the store holds of a user's shipped index.
pub struct Status {
    /// The user.
    pub user: String,
    /// The head, if there is a chain.
    pub head: Option<chain::Head>,
    /// Objects from the base on, and their bytes.
    pub objects: u64,
    /// Bytes of the base.
    pub base_bytes: u64,
    /// Bytes of the diffs after it.
    pub diff_bytes: u64,
    /// The MODSEQ the chain reaches.
    pub shipped: Option<u64>,
    /// The MODSEQ of the index on this node, when it has one and can read it.
    pub local: Option<u64>,
}

/// The status of `user` (or of every user with an index on this node).
pub async fn status(cfg: &Config, user: Option<&str>) -> anyhow::Result<Vec<Status>> {
    let users = match user {
        Some(u) => vec![u.to_string()],
        None => crate::reconciler::users(&cfg.data_dir.join("index")),
    };
    let mut out = Vec::new();
    let backends = Arc::new(Backends::connect_all(cfg).await?);
    for u in users {
        crate::users::check_name(&u)?;
        let main = backends.factory()(&u)?.index_store().clone();
        let head = chain::read_head(&*main).await?;
        let (mut objects, mut base_bytes, mut diff_bytes, mut shipped) = (0, 0, 0, None);
        if let Some(h) = head {
            let sizes = chain::probe(&*main, h.base).await?;
            objects = sizes.len() as u64;
            base_bytes = sizes.first().copied().unwrap_or(0);
            diff_bytes = sizes.iter().skip(1).sum();
            if objects > 0 {
                let last = chain::object_key(h.base + objects - 1);
                let raw = main.get(&last, None).await?;
                let hdr = strata_index::decode_header(&raw)
                    .map_err(|why| anyhow::anyhow!("shipped index {last}: {why}"))?;
                shipped = Some(hdr.to.0);
            }
        }
        let path = crate::index_path(&cfg.data_dir, &u);
        let local = strata_index::ReadOnlyIndex::open(&path)
            .ok()
            .and_then(|ix| ix.snapshot().ok().map(|s| s.modseq().0));
        out.push(Status {
            user: u,
            head,
            objects,
            base_bytes,
            diff_bytes,
            shipped,
            local,
        });
    }
    Ok(out)
}

/// Copies `user`'s shipped chain, every object checked, into `dir` (created; must be empty).
/// Returns the number of objects and bytes written.
pub async fn export(cfg: &Config, user: &str, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let (_backends, main) = main_store(cfg, user).await?;
    let Some(head) = chain::read_head(&*main).await? else {
        bail!("{}: holds no shipped index for {user:?}", main.name());
    };
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!("{}: not empty", dir.display());
    }
    let sizes = chain::probe(&*main, head.base).await?;
    let objects = chain::fetch_raw(
        &*main,
        head.base,
        head.base + sizes.len() as u64,
        ship_options(cfg).read_concurrency,
    )
    .await?;
    let mut bytes = 0;
    for (key, raw) in &objects {
        let name = key.as_str().trim_start_matches(chain::PREFIX);
        write_synced(&dir.join(name), raw)?;
        bytes += raw.len() as u64;
    }
    // The head last: a directory with a head holds the whole chain it names.
    let export_head = chain::Head {
        previous: head.base,
        ..head
    };
    write_synced(&dir.join("head"), &export_head.encode())?;
    Ok((objects.len() as u64, bytes))
}

fn write_synced(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| path.display().to_string())
}

/// Builds `user`'s index from a chain exported to `dir`, every object checked; the index that
/// was there is kept beside it. Returns the MODSEQ it is at.
pub async fn import(
    cfg: &Config,
    user: &str,
    dir: &Path,
) -> anyhow::Result<(u64, Option<PathBuf>)> {
    crate::users::check_name(user)?;
    let head_path = dir.join("head");
    let raw = std::fs::read(&head_path).with_context(|| head_path.display().to_string())?;
    let head = chain::Head::decode(&raw)
        .map_err(|why| anyhow::anyhow!("{}: {why}", head_path.display()))?;
    let mut objects = Vec::new();
    for seq in head.base.. {
        let key = chain::object_key(seq);
        let file = dir.join(key.as_str().trim_start_matches(chain::PREFIX));
        let raw = match std::fs::read(&file) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(anyhow::Error::new(e).context(file.display().to_string())),
        };
        let o = strata_index::decode_object(&raw)
            .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
        if o.header.seq != seq {
            bail!(
                "{}: says it is at position {}",
                file.display(),
                o.header.seq
            );
        }
        objects.push((file.display().to_string(), o));
    }
    if objects.is_empty() {
        bail!("{}: the base the head names is missing", dir.display());
    }
    let path = crate::index_path(&cfg.data_dir, user);
    std::fs::create_dir_all(path.parent().expect("index dir"))?;
    let aside = crate::import::retire_index(&path, "import").await?;
    let dest = path.clone();
    let modseq =
        tokio::task::spawn_blocking(move || strata_index::restore_chain(objects, &dest)).await??;
    Ok((modseq.0, aside))
}
