//! # strata-server
//!
//! The server side of Strata that is not the IMAP protocol itself: the account database
//! ([`users`], argon2id hashes), TLS ([`tls`]: configured files or a self-signed certificate
//! made once and reused), password checks with per-address limits ([`auth`]), the wiring of
//! configured stores to the mail store ([`backends`]), the IMAP service ([`serve`]:
//! listeners, connection limits, graceful shutdown) and its reload on SIGHUP ([`reload`]), LMTP delivery's listeners ([`lmtp`]), the local delivery agent `strata deliver` ([`lda`]), the admin control socket ([`control`]),
//! migration of bodies between stores ([`migrate`]), Maildir import and index rebuild
//! ([`maildir_scan`], [`import`]), quota limits from the accounts ([`quota`]), the shipped index from the command line ([`index_admin`]),
//! and the reconciler that deletes bodies a crash left
//! ([`reconciler`]). The only crate that opens sockets.

pub mod accounts;
pub mod auth;
pub mod backends;
pub mod control;
pub mod fill;
pub mod fts_admin;
pub mod import;
pub mod index_admin;
pub mod lda;
pub mod lmtp;
pub mod login_cache;
pub mod mailbox_admin;
pub mod maildir_scan;
pub mod metered;
pub mod migrate;
pub mod monitor;
pub mod parts;
pub mod quota;
pub mod reconciler;
pub mod reload;
pub mod serve;
pub mod store_scan;
pub mod tiering;
pub mod tls;
pub mod users;

use std::path::{Path, PathBuf};

/// Writes a line to standard error for whoever started the server; a closed or broken stderr
/// (a supervisor that stopped reading) is ignored, where `eprintln!` would panic.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Where a user's mail index lives under the data directory.
pub fn index_path(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("index").join(format!("{user}.redb"))
}

/// Refuses a user with no mail index in `store` (a name mistyped) rather than making one;
/// `why` says what there would be nothing of.
pub(crate) fn require_index(
    store: &strata_mailstore::Mailstore,
    user: &str,
    why: &str,
) -> anyhow::Result<()> {
    if !store.index_path(user).exists() {
        anyhow::bail!("{user} has no mail index here (nothing to {why})");
    }
    Ok(())
}
