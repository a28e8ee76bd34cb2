//! Reconciling a user's stores with their index: bodies no index entry names are deleted.
//! They are what a crash leaves: the body of an APPEND that never got its OK (written, not yet
//! recorded), and the body of an expunge that was recorded but not yet deleted.
//!
//! The stores are listed first, then, with expunges and migration switches held off, the index
//! is read: a body written after the listing is not listed, one recorded in between is named by
//! the index, one still between its write and its record is named by the APPEND in flight. So
//! nothing live is ever deleted, whatever the timing; no grace period is guessed. Bodies an
//! expunged message in a session's view still names (graves) and both copies of a migration in
//! progress are kept.
//!
//! The shipped index's objects (`strata-index/...`) are not bodies and are never listed here.
//!
//! Only bodies Strata named itself (see [`is_strata_key`]) or an expunge gave up are deleted: a
//! file another program delivered into a user's Maildir is counted as foreign and kept (an
//! `index rebuild` adopts it).

use std::collections::HashSet;

use strata_index::{BodyLocation, Parts, StoreId};

use crate::error::Result;
use crate::store::UserStore;

/// What one reconciliation found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Bodies listed in the stores.
    pub listed: u64,
    /// Bodies no index entry named, deleted.
    pub removed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bodies no index entry named that Strata did not write (another Maildir tool's), kept.
    pub foreign: u64,
}

/// Whether `key` is a name Strata gives a new body: `[folder/]<seconds>.G<guid>.strata`.
pub fn is_strata_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    let Some(rest) = name.strip_suffix(".strata") else {
        return false;
    };
    let Some((secs, guid)) = rest.split_once(".G") else {
        return false;
    };
    !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && !guid.is_empty()
        && guid.bytes().all(|b| b.is_ascii_hexdigit())
}

impl UserStore {
    /// Deletes the bodies in this user's stores that nothing names (see the module).
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        // A move a crash interrupted (no migration running now) leaves one copy too many.
        if let Ok(_one) = self.migration.try_lock() {
            self.finish_interrupted().await?;
        }
        let mut listed = Vec::new();
        for (id, store) in self.stores().all() {
            for l in store.list("").await? {
                // The shipped index lives beside the bodies; it is not a body.
                if !crate::ship::chain::is_index_key(l.key.as_str()) {
                    listed.push((id, l));
                }
            }
        }
        let mut report = ReconcileReport {
            listed: listed.len() as u64,
            ..ReconcileReport::default()
        };
        // Held off: expunges (from their snapshot to their burial) and migration switches.
        let _exclusive = self.relocating.write().await;
        let snap = self.snapshot()?;
        let mut live: HashSet<(StoreId, String)> = HashSet::new();
        let mut seen = HashSet::new();
        for mb in snap.mailboxes()? {
            for m in snap.messages(mb.id)? {
                if seen.insert(m.guid)
                    && let Some(c) = snap.content_parts(&m.guid, Parts::default())?
                {
                    live.insert((c.location.store, c.location.key));
                }
            }
        }
        for loc in self.graves.locations() {
            live.insert((loc.store, loc.key));
        }
        for (_, loc) in crate::intents::read(&self.moves)? {
            live.insert((loc.store, loc.key));
        }
        for (store, key) in self.in_flight() {
            live.insert((store, key));
        }
        let given_up: HashSet<BodyLocation> = self.given_up().into_iter().collect();
        let mut garbage = Vec::new();
        for (store, l) in listed {
            let key = l.key.as_str().to_string();
            if live.contains(&(store, key.clone())) {
                continue;
            }
            let loc = BodyLocation { store, key };
            if is_strata_key(&loc.key) || given_up.contains(&loc) {
                report.removed += 1;
                report.bytes += l.size;
                garbage.push(loc);
            } else {
                report.foreign += 1;
            }
        }
        self.delete_bodies(garbage).await?;
        // Whatever an interrupted expunge meant to delete is gone now; only the graves wait.
        self.deleted(None)?;
        self.give_up(self.graves.locations())?;
        Ok(report)
    }
}
