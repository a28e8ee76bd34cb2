//! Tiering: which of a user's bodies go from the main store to a colder one, by rules on age,
//! mailbox and size, moved on the relocation path (copied, acked there, switched in the index,
//! then deleted), so reads stay transparent while it runs. A body shared by several messages
//! (a COPY) goes only when every message holding it is cold by some rule.
//!
//! It moves bodies one way, from the main store: a message that warms up again (moved out of
//! Trash) stays where it is, and reads of it go through the cold store's cache.

use std::time::Duration;

use strata_index::{Parts, Snapshot, StoreId, Timestamp};

use crate::error::Result;
use crate::relocate::{Move, RelocateOptions, RelocateReport};
use crate::store::UserStore;

/// The date a rule's age is counted from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TierDate {
    /// When the message was saved in its mailbox (SAVEDATE, RFC 8514).
    #[default]
    Saved,
    /// Its INTERNALDATE (when it was received, or the date an APPEND gave it).
    Internal,
}

/// One rule: a message is cold when it meets every condition the rule sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierRule {
    /// At least this old.
    pub older_than: Option<Duration>,
    /// Filed in one of these mailboxes or below one (`Archive` takes `Archive/2024`); `INBOX`
    /// in any case.
    pub mailboxes: Vec<String>,
    /// At least this many bytes.
    pub larger_than: Option<u64>,
}

/// Where cold bodies go, and which are cold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierPolicy {
    /// The cold store.
    pub to: StoreId,
    /// A message is cold when any rule says so.
    pub rules: Vec<TierRule>,
    /// The date ages are counted from.
    pub date: TierDate,
}

impl TierRule {
    fn holds(&self, mailbox: &str, date: Timestamp, size: u64, now: i64) -> bool {
        let old = self
            .older_than
            .is_none_or(|age| now.saturating_sub(date.unix) >= age.as_secs() as i64);
        let large = self.larger_than.is_none_or(|n| size >= n);
        let filed = self.mailboxes.is_empty() || self.mailboxes.iter().any(|m| within(mailbox, m));
        old && large && filed
    }
}

/// Whether `name` is `top` or below it (INBOX in any case).
fn within(name: &str, top: &str) -> bool {
    let same = |a: &str, b: &str| {
        a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
    };
    match name.split_at_checked(top.len()) {
        Some((head, rest)) => same(head, top) && (rest.is_empty() || rest.starts_with('/')),
        None => false,
    }
}

impl TierPolicy {
    /// The bodies in the main store `main` that every message holding them makes cold at
    /// `now` (Unix seconds), in key order.
    pub(crate) fn select(&self, snap: &Snapshot, main: StoreId, now: i64) -> Result<Vec<Move>> {
        // Per content: whether all its messages are cold so far, and one of them.
        let mut seen: std::collections::HashMap<strata_index::Guid, (bool, Move)> =
            Default::default();
        for mb in snap.mailboxes()? {
            let name = UserStore::meta_name(snap, mb.id)?;
            for m in snap.messages(mb.id)? {
                let date = match self.date {
                    TierDate::Saved => m.save_date,
                    TierDate::Internal => m.internal_date,
                };
                let cold = self.rules.iter().any(|r| r.holds(&name, date, m.size, now));
                match seen.get_mut(&m.guid) {
                    Some((all, _)) => *all &= cold,
                    None => {
                        let Some(c) = snap.content_parts(&m.guid, Parts::default())? else {
                            continue;
                        };
                        // Only bodies in the main store move.
                        let movable = c.location.store == main && main != self.to;
                        seen.insert(
                            m.guid,
                            (
                                cold && movable,
                                Move {
                                    guid: m.guid,
                                    from: c.location,
                                    size: c.size,
                                    mailbox: m.mailbox,
                                    internal_date: m.internal_date,
                                },
                            ),
                        );
                    }
                }
            }
        }
        let mut out: Vec<Move> = seen
            .into_values()
            .filter_map(|(cold, m)| cold.then_some(m))
            .collect();
        out.sort_by(|a, b| a.from.key.cmp(&b.from.key));
        Ok(out)
    }
}

/// What one of a user's stores holds of theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUsage {
    /// The store.
    pub store: StoreId,
    /// Bodies the index places there (one per content, however many messages hold it).
    pub bodies: u64,
    /// Their sizes, as the messages' RFC822.SIZE.
    pub bytes: u64,
    /// Objects of the user's the store lists (bodies, skeletons of bodies whose parts are
    /// stored once, anything not yet collected), without their shipped index.
    pub objects: u64,
    /// The bytes those objects take as stored (compressed, sealed; parts stored once, which
    /// every holder shares, are not counted).
    pub stored_bytes: u64,
    /// Objects of their shipped index there, and their bytes.
    pub index_objects: u64,
    /// Their bytes.
    pub index_bytes: u64,
}

impl UserStore {
    /// What each of this user's stores holds of theirs, by the index and by the store's own
    /// listing, in the order of [`crate::BodyStores::all`]. Lists every store: for an
    /// administrator, not for the request path.
    pub async fn store_usage(&self) -> Result<Vec<StoreUsage>> {
        let mut usage: Vec<StoreUsage> = self
            .stores
            .all()
            .map(|(id, _)| StoreUsage {
                store: id,
                bodies: 0,
                bytes: 0,
                objects: 0,
                stored_bytes: 0,
                index_objects: 0,
                index_bytes: 0,
            })
            .collect();
        {
            let snap = self.snapshot()?;
            let mut seen = std::collections::HashSet::new();
            for mb in snap.mailboxes()? {
                for m in snap.messages(mb.id)? {
                    if !seen.insert(m.guid) {
                        continue;
                    }
                    let Some(c) = snap.content_parts(&m.guid, Parts::default())? else {
                        continue;
                    };
                    if let Some(u) = usage.iter_mut().find(|u| u.store == c.location.store) {
                        u.bodies += 1;
                        u.bytes += c.size;
                    }
                }
            }
        }
        for (u, (_, backend)) in usage.iter_mut().zip(self.stores.all()) {
            for o in backend.list_stored("").await? {
                if crate::ship::chain::is_index_key(o.key.as_str()) {
                    u.index_objects += 1;
                    u.index_bytes += o.size;
                } else {
                    u.objects += 1;
                    u.stored_bytes += o.size;
                }
            }
        }
        Ok(usage)
    }

    /// Moves this user's bodies that `policy` makes cold now from the main store to the cold
    /// one; `progress` sees the report after each batch and stops the move by returning false.
    /// Safe to interrupt and to run again, and beside sessions reading the bodies it moves.
    pub async fn tier(
        &self,
        policy: &TierPolicy,
        opts: &RelocateOptions,
        progress: &mut (dyn FnMut(&RelocateReport) -> bool + Send),
    ) -> Result<RelocateReport> {
        let main = self.stores.main_id();
        let now = Timestamp::now().unix;
        self.relocate_selected(
            policy.to,
            &|snap| policy.select(snap, main, now),
            opts,
            progress,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_rule_takes_the_mailbox_and_those_below_it() {
        assert!(within("Archive", "Archive"));
        assert!(within("Archive/2024", "Archive"));
        assert!(!within("Archived", "Archive"));
        assert!(!within("Arch", "Archive"));
        assert!(within("inbox/old", "INBOX"));
        assert!(!within("archive", "Archive"));
    }

    #[test]
    fn a_rule_holds_when_every_condition_it_sets_holds() {
        let day = 86_400;
        let at = |unix| Timestamp {
            unix,
            offset_minutes: 0,
        };
        let r = TierRule {
            older_than: Some(Duration::from_secs(30 * day as u64)),
            mailboxes: vec!["Trash".into()],
            larger_than: Some(1000),
        };
        let now = 100 * day;
        assert!(r.holds("Trash", at(now - 30 * day), 1000, now));
        assert!(!r.holds("Trash", at(now - 29 * day), 1000, now));
        assert!(!r.holds("Trash", at(now - 31 * day), 999, now));
        assert!(!r.holds("INBOX", at(now - 31 * day), 5000, now));
        let any_old = TierRule {
            older_than: Some(Duration::from_secs(day as u64)),
            ..TierRule::default()
        };
        assert!(any_old.holds("INBOX", at(now - day), 1, now));
    }
}
