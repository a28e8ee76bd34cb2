//! `strata fts rebuild | status`: a user's full-text index emptied and rebuilt from the index
//! and the stores, or how far each open user's index is behind. Through the running server's
//! control socket when there is one (the user keeps working), else in this process.

use strata_mailstore::Mailstore;

/// Rebuilds `user`'s full-text index in `store` (the server's, or one this process opened);
/// returns how many messages it holds.
pub async fn rebuild_in(store: &Mailstore, user: &str) -> anyhow::Result<usize> {
    crate::users::check_name(user)?;
    crate::require_index(store, user, "index")?;
    let u = store.user(user).await?;
    Ok(u.fts_rebuild().await?)
}

/// What `strata fts rebuild` does; returns the line to print.
pub async fn rebuild(cfg: &strata_config::Config, user: &str) -> anyhow::Result<String> {
    crate::users::check_name(user)?;
    if let Some(done) =
        crate::control::request(&cfg.data_dir, &format!("fts-rebuild {user}"), &mut |_| {}).await?
    {
        return Ok(done);
    }
    if !cfg.index.fts.enabled {
        anyhow::bail!("[index.fts] enabled = false: there is no full-text index to rebuild");
    }
    // No server: this process takes the user's index lock for the while.
    let (store, _backends) = crate::serve::mailstore(cfg).await?;
    let result = rebuild_in(&store, user).await;
    store.close_idle().await;
    Ok(format!("{user}: {} messages indexed", result?))
}

/// What `strata fts status` prints: one line per open user of the running server.
pub async fn status(
    cfg: &strata_config::Config,
    user: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let ask = match user {
        Some(u) => format!("fts-status {u}"),
        None => "fts-status".to_string(),
    };
    let mut lines = Vec::new();
    match crate::control::request(&cfg.data_dir, &ask, &mut |l| lines.push(l.to_string())).await? {
        Some(_) => Ok(lines),
        None => anyhow::bail!(
            "no server is running on {}: only a running server indexes",
            cfg.data_dir.display()
        ),
    }
}
