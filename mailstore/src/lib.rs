//! # strata-mailstore
//!
//! Mail semantics over Strata's index and backends:
//!
//! - [`parse`] ([`mime`]) runs once per message, at APPEND, and turns a raw message into the
//!   [`strata_index::ParsedMessage`] the index keeps, so that ENVELOPE, BODYSTRUCTURE, header
//!   fetches and part ranges never read the body again; its limits bound what any message
//!   costs.
//! - [`Mailstore`] hands out one [`UserStore`] per user (shared by that user's sessions): mailbox
//!   create/delete/rename with RFC 3501's rules, APPEND (body to the backend, then the index, as
//!   the [`AckPolicy`] says), expunge (index, then bodies), concurrent ordered body reads from
//!   whichever store ([`BodyStores`]) holds each body, and migration of bodies between stores.
//! - [`quota`]: each user's limits (RFC 9208), checked where mail is added.
//! - [`names`] checks and splits mailbox names and matches LIST patterns.
//!
//! It is not an IMAP implementation (no wire types, no sessions) and not a body store.

mod bodies;
mod body_meta;
pub mod delivery;
mod error;
mod fts;
mod graves;
mod intents;
mod labels;
pub mod mime;
pub mod model;
pub mod mutf7;
pub mod names;
pub mod quota;
mod reads;
mod reconcile;
mod relocate;
pub mod searched;
mod session;
pub mod ship;
mod store;
mod text;
mod tiering;

pub use bodies::{BodyRead, BodyStores};
pub use error::{Result, StoreError};
pub use fts::{FtsLag, FtsOptions, StoredText, TextScope};
pub use mime::{PREVIEW_CHARS, SYNCED_HEADERS, parse};
pub use reads::READ_BUDGET;
pub use reconcile::{ReconcileReport, is_strata_key};
pub use relocate::{Pace, RelocateOptions, RelocateReport};
pub use session::Vanished;
pub use store::{
    AckPolicy, Adopted, Appended, BackendFactory, DEFAULT_MAILBOXES, MAX_GRAVES, Mailstore,
    MailstoreOptions, Prepared, UserStore, Watch,
};
pub use text::{decode_header, parse_date};
pub use tiering::{StoreUsage, TierDate, TierPolicy, TierRule};
