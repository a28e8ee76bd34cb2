//! # strata-mailstore
//!
//! Mail semantics over Strata's index and backends. Today it holds the part that runs once per
//! message, at APPEND: [`parse`], which turns a raw message into the [`strata_index::ParsedMessage`]
//! the index keeps, so that ENVELOPE, BODYSTRUCTURE, header fetches and part ranges never read
//! the body again.
//!
//! It is not an IMAP implementation (no wire types) and not a store (no files).

mod parse;

pub use parse::{PREVIEW_CHARS, SYNCED_HEADERS, parse};
