//! # strata-lmtp
//!
//! Delivery into Strata by LMTP (RFC 2033), the protocol Postfix and Exim hand local mail
//! over with: [`run`] serves one connection over any byte stream, with PIPELINING,
//! ENHANCEDSTATUSCODES, 8BITMIME, SIZE and CHUNKING (BDAT); the commands and the dot-stuffed
//! message are read by smtp-proto, the rest (recipients, limits, delivery) is Strata's.
//! Recipients are found through a [`Directory`]; a message for several recipients is parsed
//! once and filed into each one's INBOX (or the mailbox a `+detail` names).
//!
//! It is not a server: no sockets and no accounts. The server crate listens (TCP and Unix
//! sockets) and supplies the [`Directory`].

mod address;
mod deliver;
mod session;

pub use address::AddressRules;
pub use deliver::deliver_into;
pub use session::{Directory, Options, run};
