//! # strata-server
//!
//! The server side of Strata that is not the IMAP protocol itself: the account database
//! ([`users`], argon2id hashes) and TLS ([`tls`]: configured files or a self-signed certificate
//! made once and reused). The listeners, limits and shutdown join it here.

pub mod tls;
pub mod users;
