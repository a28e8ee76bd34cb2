//! Collection: deleting parts no message refers to, safely against commits on any node.
//!
//! A run lists the store once (its start is the run's time, `T`). A part with no reference and
//! no mark gets a mark holding `T`. A marked part that has a reference loses its mark. A marked
//! part without a reference whose mark was set at least the grace before `T` is deleted, and
//! then its mark. A reference whose message is not stored in two runs at least the grace apart
//! (a batch a crash cut short) is deleted.
//!
//! Why a part in use is never deleted: a commit writes its references first, then reads the
//! mark. If it finds none, any deletion has finished (the part goes before its mark), so it
//! checks the part and puts it again if it is gone. If it finds a mark set less than half the
//! grace ago, the run that could delete the part lists the store at least half the grace
//! after the commit wrote its references, sees them and keeps the part. An older mark makes
//! the commit wait until the mark is gone. So the grace must exceed any commit's duration and
//! the difference between the nodes' clocks.
//!
//! Runs on several nodes at once are safe: each deletion follows the same rule.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_backend_api::{Backend, BackendError, Batch, ErrorKind, Key};

use crate::skeleton::{self, Hash};
use crate::{MARKS, NAMESPACE, PARTS, REFS, SisBackend, mark_key, part_key};

/// What a run found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collection {
    /// Parts stored.
    pub parts: u64,
    /// Their bytes, as the store keeps them.
    pub part_bytes: u64,
    /// References to them.
    pub references: u64,
    /// Parts marked by this run.
    pub marked: u64,
    /// Marks taken off parts that are referred to again.
    pub unmarked: u64,
    /// Parts deleted.
    pub deleted: u64,
    /// Their bytes, as the store kept them.
    pub deleted_bytes: u64,
    /// References to messages no longer stored, deleted.
    pub stale_references: u64,
}

/// What a node remembers between runs: references whose message it did not find, since when.
#[derive(Default)]
pub struct Memory {
    dangling: HashMap<Key, SystemTime>,
}

/// A mark's time, if it reads as one.
pub fn read_mark(data: &[u8]) -> Option<SystemTime> {
    let millis = u64::from_be_bytes(data.try_into().ok()?);
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

fn mark(at: SystemTime) -> Bytes {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Bytes::copy_from_slice(&millis.to_be_bytes())
}

impl SisBackend {
    /// One collection run (one at a time per layer; see the module docs).
    pub async fn collect(&self) -> Result<Collection, BackendError> {
        let mut memory = self.collector.lock().await;
        let start = self.now();
        let grace = self.opts.grace;
        let listed = self.inner.list_stored("").await?;
        let mut parts: HashMap<Hash, u64> = HashMap::new();
        let mut marks: Vec<Hash> = Vec::new();
        let mut refs: Vec<(Hash, Key, Key)> = Vec::new();
        let mut messages: HashSet<Key> = HashSet::new();
        for l in listed {
            let name = l.key.as_str();
            if let Some(h) = name.strip_prefix(PARTS).and_then(skeleton::unhex) {
                parts.insert(h, l.size);
            } else if let Some(h) = name.strip_prefix(MARKS).and_then(skeleton::unhex) {
                marks.push(h);
            } else if let Some(rest) = name.strip_prefix(REFS) {
                let Some((h, of)) = rest.split_once('/') else {
                    continue;
                };
                if let (Some(h), Ok(of)) = (skeleton::unhex(h), Key::new(of)) {
                    refs.push((h, of, l.key));
                }
            } else if !name.starts_with(NAMESPACE) {
                messages.insert(l.key);
            }
        }
        let mut out = Collection {
            parts: parts.len() as u64,
            part_bytes: parts.values().sum(),
            references: refs.len() as u64,
            ..Collection::default()
        };

        // References whose message is gone for a whole grace period go; until then they hold.
        let mut referred: HashSet<Hash> = HashSet::new();
        let mut stale = Batch::new();
        let mut dangling = HashMap::new();
        for (h, of, key) in refs {
            if messages.contains(&of) {
                referred.insert(h);
                continue;
            }
            let since = memory.dangling.get(&key).copied().unwrap_or(start);
            if elapsed(since, start) >= grace {
                stale = stale.delete(key);
                out.stale_references += 1;
            } else {
                referred.insert(h);
                dangling.insert(key, since);
            }
        }
        memory.dangling = dangling;
        if !stale.ops.is_empty() {
            self.inner.commit(stale).await?.acked().await?;
        }

        let marked: HashSet<Hash> = marks.iter().copied().collect();
        let mut doomed: Vec<Hash> = Vec::new();
        let mut unmark = Batch::new();
        let mut remark = Batch::new();
        for h in marks {
            if referred.contains(&h) || !parts.contains_key(&h) {
                out.unmarked += u64::from(parts.contains_key(&h));
                unmark = unmark.delete(mark_key(&h));
                continue;
            }
            let set = match self.inner.get(&mark_key(&h), None).await {
                Ok(data) => read_mark(&data),
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match set {
                Some(set) if elapsed(set, start) >= grace => doomed.push(h),
                Some(_) => {}
                None => remark = remark.put(mark_key(&h), mark(start)),
            }
        }
        for (h, _) in parts
            .iter()
            .filter(|(h, _)| !referred.contains(*h) && !marked.contains(*h))
        {
            remark = remark.put(mark_key(h), mark(start));
            out.marked += 1;
        }
        if !doomed.is_empty() {
            // The parts first: a commit that finds no mark must find no part either.
            let gone = doomed
                .iter()
                .fold(Batch::new(), |b, h| b.delete(part_key(h)));
            self.inner.commit(gone).await?.acked().await?;
            out.deleted = doomed.len() as u64;
            out.deleted_bytes = doomed.iter().map(|h| parts[h]).sum();
            unmark = doomed.iter().fold(unmark, |b, h| b.delete(mark_key(h)));
        }
        for batch in [unmark, remark] {
            if !batch.ops.is_empty() {
                self.inner.commit(batch).await?.acked().await?;
            }
        }
        Ok(out)
    }
}

/// How long after `since` `now` is (nothing if before).
fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}
