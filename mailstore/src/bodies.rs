//! The stores one user's bodies live in: the one new bodies go to, and every other store the
//! index may name by id (bodies not yet migrated, or moved to a cheaper tier). It is not a
//! backend itself: it only routes by [`StoreId`].

use std::ops::Range;
use std::sync::Arc;

use strata_backend_api::{Backend, BackendError, ErrorKind, Prefixed};
use strata_index::{BodyLocation, Guid, StoreId};

/// One user's body stores, by id.
#[derive(Clone)]
pub struct BodyStores {
    main: StoreId,
    // A handful at most, so a list beats a map.
    stores: Vec<(StoreId, Arc<dyn Backend>)>,
    /// Where the index is shipped, when not to the main store (`[index.ship] dir`).
    index: Option<Arc<dyn Backend>>,
    /// The main store as this user's view of a store every user shares, when it is one.
    shared: Option<Arc<Prefixed>>,
}

impl BodyStores {
    /// New bodies go to `backend`, recorded as store `main`.
    pub fn new(main: StoreId, backend: Arc<dyn Backend>) -> Self {
        BodyStores {
            main,
            stores: vec![(main, backend)],
            index: None,
            shared: None,
        }
    }

    /// New bodies go to `view`, this user's part of a store every user shares (a database, a
    /// bucket, a tree of Maildirs), recorded as store `main`. A delivery to many users of the
    /// same shared store puts the message there once and copies it.
    pub fn shared(main: StoreId, view: Arc<Prefixed>) -> Self {
        let mut stores = BodyStores::new(main, view.clone());
        stores.shared = Some(view);
        stores
    }

    /// The main store's shared view, when it is one.
    pub(crate) fn shared_main(&self) -> Option<&Arc<Prefixed>> {
        self.shared.as_ref()
    }

    /// Ships the index to `backend` instead of the main store.
    pub fn with_index_store(mut self, backend: Arc<dyn Backend>) -> Self {
        self.index = Some(backend);
        self
    }

    /// Where the index is shipped: its own store if one is set, else the main store.
    pub fn index_store(&self) -> &Arc<dyn Backend> {
        self.index.as_ref().unwrap_or_else(|| self.main())
    }

    /// Adds a store that holds bodies under `id` (replacing one with the same id).
    pub fn with(mut self, id: StoreId, backend: Arc<dyn Backend>) -> Self {
        if id == self.main {
            self.shared = None;
        }
        self.stores.retain(|(i, _)| *i != id);
        self.stores.push((id, backend));
        self
    }

    /// The id new bodies are recorded under.
    pub fn main_id(&self) -> StoreId {
        self.main
    }

    /// The store new bodies go to.
    pub fn main(&self) -> &Arc<dyn Backend> {
        &self.stores[0].1
    }

    /// The store with id `id`: an error naming the id when the configuration has no such store
    /// (the index refers to a store that was removed from the configuration too early).
    pub fn get(&self, id: StoreId) -> Result<&Arc<dyn Backend>, BackendError> {
        self.stores
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b)
            .ok_or_else(|| {
                BackendError::new(
                    "server",
                    ErrorKind::Unavailable,
                    format!(
                        "a body is in store id {}, which the configuration does not name",
                        id.0
                    ),
                )
            })
    }

    /// Every store with its id, the main one first.
    pub fn all(&self) -> impl Iterator<Item = (StoreId, &Arc<dyn Backend>)> {
        self.stores.iter().map(|(i, b)| (*i, b))
    }
}

/// One body read: which content (to follow it if a migration moves it meanwhile), where it was
/// when the caller looked, and the byte range (or all of it).
#[derive(Clone, Debug)]
pub struct BodyRead {
    /// The content.
    pub guid: Guid,
    /// Its location in the caller's snapshot.
    pub location: BodyLocation,
    /// The bytes wanted, or the whole body.
    pub range: Option<Range<u64>>,
    /// How many bytes it returns (the range's length, or the body's size): what it holds in
    /// memory until the caller takes it.
    pub size: u64,
}
