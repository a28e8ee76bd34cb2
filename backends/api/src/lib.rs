//! # strata-backend-api
//!
//! The backend FS API of Strata: where message bodies are stored. Writes are batches that commit
//! as one ([`Batch`]); [`Backend::commit`] returns at *soft-done* (durable locally, readable
//! through the backend) with a [`Receipt`] that resolves at *acked* (the authoritative store
//! has it). Reads of many objects run concurrently and answer in request order
//! ([`Backend::get_many`]). Errors say what kind of failure happened and whether a retry can
//! help ([`BackendError`]).
//!
//! This crate depends on no backend and no driver. It holds the trait, the types, an in-memory
//! backend ([`MemoryBackend`]), the [`conformance`] suite every backend runs, and a store that
//! watches what reaches it, for tests ([`Observed`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), strata_backend_api::BackendError> {
//! use futures::StreamExt;
//! use strata_backend_api::*;
//!
//! let store = MemoryBackend::new();
//! let receipt = store
//!     .commit(Batch::new().put(Key::new("u/1")?, "From: a\r\n\r\nhi").put(Key::new("u/2")?, "b"))
//!     .await?;
//! receipt.acked().await?;
//! let bodies: Vec<_> = store
//!     .get_many(vec![Read::whole(Key::new("u/2")?), Read::whole(Key::new("u/1")?)], 16)
//!     .collect()
//!     .await;
//! assert_eq!(bodies[0].as_ref().unwrap().as_ref(), b"b");
//! # Ok(()) }
//! ```

mod backend;
mod batch;
pub mod conformance;
mod error;
mod key;
mod label;
mod memory;
mod meta;
mod observed;
mod pool;
mod prefixed;
mod receipt;
pub mod rewriting;

pub use backend::{Backend, Capabilities, Listed, Read, slice_range};
pub use batch::{Batch, Op, Precondition};
pub use error::{BackendError, ErrorKind, Retry};
pub use key::{Key, MAX_KEY_BYTES};
pub use label::Label;
pub use memory::MemoryBackend;
pub use meta::{BodyMeta, PAIR_NAMES};
pub use observed::{Committed, Observed};
pub use pool::{BufferPool, READ_BUFFERS_MAX, read_buffers};
pub use prefixed::Prefixed;
pub use receipt::{AckTracker, Receipt};
