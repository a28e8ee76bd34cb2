//! # strata-protocol
//!
//! The IMAP side of Strata: one [`Session`] per connection, driven by [`run`] over any byte
//! stream. Commands are split into lines and literals by Strata's own framing (with a size
//! bound, so oversize input is discarded without being buffered whole) and decoded by imap-codec;
//! each command goes to its handler in `commands/`, allowed or refused by one table of states;
//! the selected mailbox's per-session numbering lives in [`Selected`].
//!
//! It is not a server: no sockets, no TLS, no accounts. The server crate accepts connections,
//! upgrades STARTTLS when [`run`] returns [`Exit::StartTls`], and supplies an [`Authenticator`].

mod commands;
mod compress;
mod connection;
pub mod encode;
mod fragments;
mod framing;
mod grammar;
mod objectid;
mod respond;
pub mod scram;
mod selected;
mod session;
pub mod structure;
mod uidset;

pub use connection::{Exit, LITERAL_BYTES_PER_SECOND, Limits, greeting, run};
pub use respond::Responder;
pub use selected::Selected;
pub use session::{Authenticator, LoginAttempt, Next, Session, SessionOptions, State};
