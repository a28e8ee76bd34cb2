//! # strata-server
//!
//! The server side of Strata that is not the IMAP protocol itself. Today: the account database
//! ([`users`]), with argon2id password hashes. The listeners, TLS, limits, shutdown and the
//! `strata` binary join it here.

pub mod users;
