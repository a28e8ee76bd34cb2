//! # strata-server
//!
//! The server side of Strata that is not the IMAP protocol itself: the account database
//! ([`users`], argon2id hashes) and TLS ([`tls`]: configured files or a self-signed certificate
//! made once and reused). The listeners, limits and shutdown join it here.

pub mod tls;
pub mod users;

use std::path::{Path, PathBuf};

/// Where a user's mail index lives under the data directory.
pub fn index_path(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("index").join(format!("{user}.redb"))
}
