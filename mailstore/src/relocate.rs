//! Moving one user's bodies to another store (`strata migrate`) while the user's sessions go
//! on. Bodies are read from where they are (concurrently), written to the target in batches
//! that must be acked there, switched in the index, and only then deleted from the source.
//!
//! Before a batch touches anything, an intent file (`<index_dir>/<user>.moving`) lists both
//! locations of each of its bodies. At any moment the index refers to exactly one of the two
//! (or neither, once expunged), so after an interruption the other one is garbage: the next
//! run deletes every listed location the index does not refer to, then starts over. Nothing
//! the index refers to is ever deleted, and nothing is left behind.

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_backend_api::{Batch, ErrorKind, Key};
use strata_index::{
    BodyLocation, Durability, Guid, MailboxId, Parts, Snapshot, StoreId, Timestamp,
};

use crate::bodies::BodyRead;
use crate::error::{Result, StoreError};
use crate::store::UserStore;

/// How a migration batches its work.
#[derive(Clone, Debug)]
pub struct RelocateOptions {
    /// Bodies per batch.
    pub batch: usize,
    /// Bytes per batch (a batch holds at least one body).
    pub batch_bytes: u64,
    /// The pace bodies are moved at, shared by every move that takes from it.
    pub pace: Option<std::sync::Arc<Pace>>,
}

/// A rate in bytes per second that moves share: each batch waits for its turn.
#[derive(Debug)]
pub struct Pace {
    bytes_per_sec: u64,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pace {
    /// At most `bytes_per_sec` (at least 1) on average.
    pub fn new(bytes_per_sec: u64) -> Self {
        Pace {
            bytes_per_sec: bytes_per_sec.max(1),
            next: std::sync::Mutex::new(None),
        }
    }

    /// Waits until `bytes` more may be moved.
    pub async fn take(&self, bytes: u64) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

impl Default for RelocateOptions {
    fn default() -> Self {
        RelocateOptions {
            batch: 128,
            batch_bytes: 32 << 20,
            pace: None,
        }
    }
}

/// How far a migration has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelocateReport {
    /// Bodies that were elsewhere when it started.
    pub total: u64,
    /// Bodies moved.
    pub moved: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bodies expunged (or moved by someone else) while it ran.
    pub skipped: u64,
    /// Bodies left where they are because their size is not what the index recorded (each is
    /// logged with its key).
    pub damaged: u64,
    /// Leftovers of an interrupted run, deleted first.
    pub cleaned: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl RelocateReport {
    /// Adds `other`'s counts and time to these (a total over users).
    pub fn add(&mut self, other: &RelocateReport) {
        self.total += other.total;
        self.moved += other.moved;
        self.bytes += other.bytes;
        self.skipped += other.skipped;
        self.damaged += other.damaged;
        self.cleaned += other.cleaned;
        self.elapsed += other.elapsed;
    }
}

/// One body to move.
pub(crate) struct Move {
    pub(crate) guid: Guid,
    pub(crate) from: BodyLocation,
    pub(crate) size: u64,
    /// A mailbox it is filed in and its INTERNALDATE, for the body's metadata.
    pub(crate) mailbox: MailboxId,
    pub(crate) internal_date: Timestamp,
}

impl UserStore {
    /// Moves every body of this user that is not in store `to` there; `progress` sees the
    /// report after each batch and stops the move by returning false. Safe to interrupt at any
    /// point (a crash included) and to run again.
    pub async fn relocate(
        &self,
        to: StoreId,
        opts: &RelocateOptions,
        progress: &mut (dyn FnMut(&RelocateReport) -> bool + Send),
    ) -> Result<RelocateReport> {
        self.relocate_selected(to, &|snap| elsewhere(snap, to), opts, progress)
            .await
    }

    /// Moves the bodies `select` picks from a snapshot (none already in `to`) to store `to`,
    /// as [`UserStore::relocate`] does.
    pub(crate) async fn relocate_selected(
        &self,
        to: StoreId,
        select: &(dyn Fn(&Snapshot) -> Result<Vec<Move>> + Send + Sync),
        opts: &RelocateOptions,
        progress: &mut (dyn FnMut(&RelocateReport) -> bool + Send),
    ) -> Result<RelocateReport> {
        let started = Instant::now();
        let Ok(_one) = self.migration.try_lock() else {
            return Err(StoreError::Migration(format!(
                "a migration of {} is already running",
                self.name()
            )));
        };
        let target = self.stores.get(to)?.clone();
        let mut report = RelocateReport {
            cleaned: self.finish_interrupted().await?,
            ..RelocateReport::default()
        };
        let todo = select(&self.snapshot()?)?;
        report.total = todo.len() as u64;
        let mut rest = todo.as_slice();
        while !rest.is_empty() && progress(&report) {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < opts.batch.max(1) && (n == 0 || bytes < opts.batch_bytes) {
                bytes += rest[n].size;
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            if let Some(pace) = &opts.pace {
                pace.take(bytes).await;
            }
            let intents: Vec<(Guid, BodyLocation)> = chunk
                .iter()
                .flat_map(|m| {
                    [
                        (m.guid, m.from.clone()),
                        (
                            m.guid,
                            BodyLocation {
                                store: to,
                                key: m.from.key.clone(),
                            },
                        ),
                    ]
                })
                .collect();
            crate::intents::write(&self.moves, &intents)?;

            let reads = chunk
                .iter()
                .map(|m| BodyRead {
                    guid: m.guid,
                    location: m.from.clone(),
                    range: None,
                    size: m.size,
                })
                .collect();
            let read: Vec<Result<bytes::Bytes>> = self.bodies(reads).collect().await;
            let mut batch = Batch::new();
            let mut copied = Vec::with_capacity(chunk.len());
            let snap = self.snapshot()?;
            let mut names: std::collections::HashMap<MailboxId, String> = Default::default();
            for (m, body) in chunk.iter().zip(read) {
                match body {
                    Ok(b) if b.len() as u64 == m.size => {
                        let key = Key::new(m.from.key.clone())?;
                        batch = batch.put(key.clone(), b);
                        if target.capabilities().metadata {
                            let name = match names.get(&m.mailbox) {
                                Some(n) => n.clone(),
                                None => {
                                    let n = Self::meta_name(&snap, m.mailbox)?;
                                    names.insert(m.mailbox, n.clone());
                                    n
                                }
                            };
                            let meta =
                                self.body_meta(m.mailbox, &name, &m.guid, m.internal_date, m.size);
                            batch = batch.meta(key, meta);
                        }
                        copied.push(m);
                    }
                    Ok(b) => {
                        tracing::warn!(
                            user = self.name(),
                            key = m.from.key,
                            store = m.from.store.0,
                            actual = b.len(),
                            expected = m.size,
                            "body not migrated: its size is not what the index recorded"
                        );
                        report.damaged += 1;
                    }
                    Err(StoreError::Backend(e)) if e.kind == ErrorKind::NotFound => {
                        if self.snapshot()?.content_refs(&m.guid)? == 0 {
                            // Expunged since the plan was made.
                            report.skipped += 1;
                        } else {
                            tracing::warn!(
                                user = self.name(),
                                key = m.from.key,
                                store = m.from.store.0,
                                "body not migrated: its store does not have it"
                            );
                            report.damaged += 1;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            drop(snap);
            if !copied.is_empty() {
                target.commit(batch).await?.acked().await?;
            }
            let switches: Vec<(Guid, BodyLocation, BodyLocation)> = copied
                .iter()
                .map(|m| {
                    let new = BodyLocation {
                        store: to,
                        key: m.from.key.clone(),
                    };
                    (m.guid, m.from.clone(), new)
                })
                .collect();
            let switched = self.switch_bodies(switches).await?;
            for (m, ok) in copied.iter().zip(switched) {
                if ok {
                    report.moved += 1;
                    report.bytes += m.size;
                } else {
                    report.skipped += 1;
                }
            }
            self.collect(&intents).await?;
            crate::intents::clear(&self.moves)?;
            report.elapsed = started.elapsed();
        }
        report.elapsed = started.elapsed();
        progress(&report);
        Ok(report)
    }

    /// Points each content at its body's new location, if it is still at the old one, with
    /// expunges held off; returns which were switched.
    pub(crate) async fn switch_bodies(
        &self,
        switches: Vec<(Guid, BodyLocation, BodyLocation)>,
    ) -> Result<Vec<bool>> {
        let _exclusive = self.relocating.write().await;
        Ok(self
            .index()
            .write(Durability::Immediate, move |t| {
                switches
                    .into_iter()
                    .map(|(g, from, to)| t.relocate_body(g, &from, to))
                    .collect::<strata_index::Result<Vec<bool>>>()
            })
            .await?)
    }

    /// Deletes what an interrupted migration left behind; returns how many locations it
    /// deleted.
    pub(crate) async fn finish_interrupted(&self) -> Result<u64> {
        let intents = crate::intents::read(&self.moves)?;
        if intents.is_empty() {
            return Ok(0);
        }
        let n = self.collect(&intents).await?;
        crate::intents::clear(&self.moves)?;
        tracing::info!(
            user = self.name(),
            deleted = n,
            "cleaned up after an interrupted migration"
        );
        Ok(n)
    }

    /// Deletes every listed location the index does not refer to; returns how many.
    pub(crate) async fn collect(&self, intents: &[(Guid, BodyLocation)]) -> Result<u64> {
        // Shared: an expunge between this snapshot and the deletes would delete one copy and
        // leave the other.
        let _moving = self.relocating.read().await;
        let snap = self.snapshot()?;
        let mut garbage = Vec::new();
        for (guid, loc) in intents {
            let live = snap.content_parts(guid, Parts::default())?;
            // An expunged message a session may still read keeps the copy it names.
            if live.is_none_or(|c| c.location != *loc) && !self.graves.holds(loc) {
                garbage.push(loc.clone());
            }
        }
        let n = garbage.len() as u64;
        self.delete_bodies(garbage).await?;
        Ok(n)
    }
}

/// Every content whose body is not in `to`, in key order (bodies of one folder together).
fn elsewhere(snap: &Snapshot, to: StoreId) -> Result<Vec<Move>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for mb in snap.mailboxes()? {
        for m in snap.messages(mb.id)? {
            if !seen.insert(m.guid) {
                continue;
            }
            if let Some(c) = snap.content_parts(&m.guid, Parts::default())?
                && c.location.store != to
            {
                out.push(Move {
                    guid: m.guid,
                    from: c.location,
                    size: c.size,
                    mailbox: m.mailbox,
                    internal_date: m.internal_date,
                });
            }
        }
    }
    out.sort_by(|a, b| a.from.key.cmp(&b.from.key));
    Ok(out)
}
