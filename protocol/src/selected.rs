//! The selected mailbox as one session sees it: its own sequence-number mapping over the shared
//! view, the messages that are `\Recent` for it, and what it has already told the client.
//!
//! Other sessions' changes reach the client only at [`Selected::sync`], which the handlers call
//! at the points RFC 3501 allows: with EXPUNGE after most commands, without it after FETCH,
//! STORE and SEARCH (RFC 3501 7.4.1), whose sequence numbers must stay valid.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use strata_mailstore::Watch;
use strata_mailstore::model::{
    Guid, KeywordId, MailboxId, MailboxView, Modseq, Timestamp, Uid, ViewEntry,
};

use crate::encode::SYSTEM_FLAGS;
use crate::grammar::{Day, Resolve, SearchKeyExt};
use crate::respond::Responder;
use crate::session::Enabled;
use crate::uidset::UidSet;

/// A session's selected mailbox.
pub struct Selected {
    /// The mailbox.
    pub id: MailboxId,
    /// EXAMINE, or a SELECT that could not get write access.
    pub read_only: bool,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    pub(crate) view: Arc<MailboxView>,
    /// Sequence number `n` is `uids[n - 1]`.
    pub(crate) uids: Vec<Uid>,
    /// Messages `\Recent` for this session.
    pub(crate) recent: BTreeSet<Uid>,
    /// The view MODSEQ last reported.
    synced: Modseq,
    /// The mailbox's HIGHESTMODSEQ as of `synced`.
    pub(crate) highest: Modseq,
    /// The view MODSEQ of the last sync that reported expunges: everything up to it has been
    /// told, expunges included.
    told_all: Modseq,
    /// Flag changes this session already reported itself (its own STORE), by UID.
    reported: HashMap<Uid, Modseq>,
    /// Keyword names by id, for the flags the client sees.
    pub(crate) keywords: HashMap<KeywordId, String>,
    /// Keeps what others expunge readable until this session has told its client.
    watch: Watch,
    /// The last `SEARCH RETURN (SAVE)` result, ascending (RFC 5182); empty until one.
    pub(crate) saved: Vec<Uid>,
}

impl Selected {
    /// A session's state for a freshly selected mailbox: the view's messages up to (not
    /// including) `upto`, those in the `recent` range being `\Recent` for it. `watch` was
    /// started before the view was taken.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: MailboxId,
        read_only: bool,
        uid_validity: u32,
        view: Arc<MailboxView>,
        upto: Option<Uid>,
        recent: (Uid, Uid),
        keywords: HashMap<KeywordId, String>,
        watch: Watch,
    ) -> Self {
        let below = |u: Uid| upto.is_none_or(|limit| u < limit);
        let (uids, recent, synced, highest) = view.with_entries_at(|e, synced, highest| {
            let uids: Vec<Uid> = e.iter().map(|e| e.uid).filter(|u| below(*u)).collect();
            let recent = uids
                .iter()
                .copied()
                .filter(|u| *u >= recent.0 && *u < recent.1)
                .collect();
            (uids, recent, synced, highest)
        });
        // Its numbering is as of `synced`: nothing expunged before then is in it.
        watch.told(synced);
        Selected {
            id,
            read_only,
            uid_validity,
            view,
            uids,
            recent,
            synced,
            highest,
            told_all: synced,
            reported: HashMap::new(),
            keywords,
            watch,
            saved: Vec::new(),
        }
    }

    /// The saved search result as a set (RFC 5182's `$`): UIDs for a UID command, else the
    /// sequence numbers of those still numbered; `None` when none is.
    fn saved_set(&self, uid: bool) -> Option<String> {
        let present: Vec<(u32, Uid)> = self
            .saved
            .iter()
            .filter_map(|u| self.seq_of(*u).map(|s| (s, *u)))
            .collect();
        if present.is_empty() {
            return None;
        }
        let as_uids: Vec<Uid> = if uid {
            present.iter().map(|p| p.1).collect()
        } else {
            present.iter().map(|p| Uid(p.0)).collect()
        };
        Some(UidSet::from_sorted(&as_uids).to_string())
    }

    /// The FLAGS and PERMANENTFLAGS responses: the system flags and the user's keywords.
    pub(crate) fn write_flag_lists(&self, r: &mut Responder<'_>) {
        let mut names: Vec<&str> = SYSTEM_FLAGS.iter().map(|(_, n)| *n).collect();
        let mut kw: Vec<&String> = self.keywords.values().collect();
        kw.sort();
        names.extend(kw.iter().map(|k| k.as_str()));
        r.untagged(&format!("FLAGS ({})", names.join(" ")));
        if self.read_only {
            r.untagged("OK [PERMANENTFLAGS ()] read-only mailbox");
        } else {
            r.untagged(&format!(
                "OK [PERMANENTFLAGS ({} \\*)] flags permitted",
                names.join(" ")
            ));
        }
    }

    /// Takes the user's keyword names as they are now; when one is new, tells the client the
    /// flags it may now see (RFC 3501 7.2.6) before anything that shows it.
    pub(crate) fn set_keywords(
        &mut self,
        keywords: HashMap<KeywordId, String>,
        r: &mut Responder<'_>,
    ) {
        let new = keywords.keys().any(|k| !self.keywords.contains_key(k));
        self.keywords = keywords;
        if new {
            self.write_flag_lists(r);
        }
    }

    /// Messages in the session's numbering.
    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    /// The UID at a sequence number.
    pub fn uid_at(&self, seq: u32) -> Option<Uid> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    /// The sequence number of a UID.
    pub fn seq_of(&self, uid: Uid) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The shared view's entry for a UID (absent if expunged since).
    pub fn entry(&self, uid: Uid) -> Option<ViewEntry> {
        self.view.get(uid)
    }

    /// The entries of `uids`, in their order (`None` for those expunged meanwhile), found in
    /// one pass when the UIDs ascend.
    pub fn entries(&self, uids: &[Uid]) -> Vec<Option<ViewEntry>> {
        self.view.get_many(uids)
    }

    /// The shared view.
    pub fn view(&self) -> &Arc<MailboxView> {
        &self.view
    }

    /// The (seq, UID) pairs a sequence set names: message numbers, or UIDs with `uid`. UIDs not
    /// in the mailbox are skipped; `*` is the last message.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, Uid)>, String> {
        let ranges = ranges(
            set,
            if uid {
                self.uids.last().map_or(0, |u| u.0)
            } else {
                self.exists()
            },
        );
        let mut out = Vec::new();
        if uid {
            for (i, u) in self.uids.iter().enumerate() {
                if ranges.iter().any(|&(a, b)| a <= u.0 && u.0 <= b) {
                    out.push((i as u32 + 1, *u));
                }
            }
        } else {
            let n = self.exists();
            for &(a, b) in &ranges {
                if b > n || a == 0 {
                    return Err(format!("message {b} does not exist (mailbox has {n})"));
                }
            }
            let mut seqs: Vec<u32> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
            seqs.sort_unstable();
            seqs.dedup();
            out = seqs
                .into_iter()
                .map(|s| (s, self.uids[s as usize - 1]))
                .collect();
        }
        Ok(out)
    }

    /// The untagged FETCH that reports a message's flags: every flag change (another session's,
    /// STORE's, an implicit `\Seen`) is told in this one form, with UID and, once CONDSTORE is
    /// on, MODSEQ (RFC 7162 3.1).
    pub(crate) fn flags_fetch(
        &self,
        r: &mut Responder<'_>,
        seq: u32,
        e: &ViewEntry,
        uid: bool,
        modseq: bool,
    ) {
        let recent = self.recent.contains(&e.uid);
        r.out.raw(format!("* {seq} FETCH ("));
        if uid || modseq {
            r.out.raw(format!("UID {} ", e.uid));
        }
        r.out.raw("FLAGS ");
        let kw = &self.keywords;
        r.out.flags(&e.flags, &|k| kw.get(&k).cloned(), recent);
        if modseq {
            r.out.raw(format!(" MODSEQ ({})", e.modseq.0));
        }
        r.out.raw(")").crlf();
    }

    /// Remembers that the session itself reported a message's flags at `modseq`.
    pub(crate) fn reported(&mut self, uid: Uid, modseq: Modseq) {
        self.reported.insert(uid, modseq);
    }

    /// Tells the client what changed since the last sync: new messages (EXISTS, RECENT), flag
    /// changes (FETCH FLAGS) and, if `expunges`, removed messages (EXPUNGE). Returns the UIDs
    /// that arrived, so a read-write session can claim them as `\Recent`.
    pub fn sync(&mut self, r: &mut Responder<'_>, expunges: bool, enabled: Enabled) -> Vec<Uid> {
        let deleted = self.view.is_deleted();
        let mut flag_lines = Vec::new();
        let mut arrived = Vec::new();
        let mut expunged_seqs = Vec::new();
        let mut vanished = Vec::new();
        let mut withheld = false;
        let view = self.view.clone();
        let (modseq, highest) = view.with_entries_at(|cur, modseq, highest| {
            let cur: &[ViewEntry] = if deleted { &[] } else { cur };
            if expunges {
                let mut keep = Vec::with_capacity(self.uids.len());
                for (i, uid) in self.uids.iter().enumerate() {
                    if cur.binary_search_by_key(uid, |e| e.uid).is_ok() {
                        keep.push(*uid);
                    } else {
                        // Each EXPUNGE renumbers the rest: report against the shrinking list.
                        expunged_seqs.push(i as u32 + 1 - expunged_seqs.len() as u32);
                        vanished.push(*uid);
                        self.recent.remove(uid);
                    }
                }
                self.uids = keep;
            }
            let last = self.uids.last().copied().unwrap_or(Uid(0));
            if modseq > self.synced {
                for e in cur {
                    if e.uid > last || e.modseq <= self.synced {
                        continue;
                    }
                    if self.reported.get(&e.uid) == Some(&e.modseq) {
                        continue;
                    }
                    if let Some(seq) = self.seq_of(e.uid) {
                        flag_lines.push((seq, e.clone()));
                    }
                }
            }
            let start = cur.partition_point(|e| e.uid <= last);
            arrived.extend(cur[start..].iter().map(|e| e.uid));
            // Every present message at or below `last` is in the numbering; fewer means some
            // expunge is being held back.
            withheld = start < self.uids.len();
            (modseq, highest)
        });
        if enabled.qresync {
            // RFC 7162 3.2.10: VANISHED, by UID, instead of EXPUNGE.
            if !vanished.is_empty() {
                r.untagged(&format!("VANISHED {}", UidSet::from_sorted(&vanished)));
            }
        } else {
            for seq in expunged_seqs {
                r.untagged(&format!("{seq} EXPUNGE"));
            }
        }
        if withheld && enabled.condstore && !flag_lines.is_empty() {
            // The MODSEQs about to be told are above an expunge not yet told: a client must
            // not take them as how far it is in sync (RFC 7162 3.2).
            r.untagged(&format!(
                "OK [HIGHESTMODSEQ {}] expunges pending",
                self.told_all.0.max(1)
            ));
        }
        for (seq, e) in flag_lines {
            self.flags_fetch(r, seq, &e, true, enabled.condstore);
        }
        if !arrived.is_empty() {
            self.uids.extend(arrived.iter().copied());
            r.untagged(&format!("{} EXISTS", self.uids.len()));
        }
        self.synced = self.synced.max(modseq);
        self.highest = self.highest.max(highest);
        self.reported.clear();
        if expunges {
            self.watch.told(modseq);
            self.told_all = modseq;
        }
        arrived
    }

    /// Adds newly arrived UIDs claimed as recent, and reports the RECENT count.
    pub fn add_recent(&mut self, r: &mut Responder<'_>, uids: impl IntoIterator<Item = Uid>) {
        self.recent.extend(uids);
        r.untagged(&format!("{} RECENT", self.recent.len()));
    }
}

/// A sequence set as inclusive ranges, `*` being `largest`.
pub fn ranges(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let val = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => (val(v), val(v)),
            Sequence::Range(a, b) => {
                let (a, b) = (val(a), val(b));
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

/// The selected mailbox with its user's index, as the grammar resolves `$` and the search keys
/// imap-codec lacks (THREADID needs the index).
pub(crate) struct InView<'a> {
    pub(crate) sel: &'a Selected,
    pub(crate) user: &'a strata_mailstore::UserStore,
}

impl Resolve for InView<'_> {
    fn saved(&self, uid: bool) -> Option<String> {
        self.sel.saved_set(uid)
    }

    fn matching(&self, key: SearchKeyExt) -> Option<String> {
        let hits: Vec<Uid> = match key {
            SearchKeyExt::SaveDate(..) | SearchKeyExt::EmailId(_) => {
                return self.sel.matching_entries(key);
            }
            SearchKeyExt::ThreadId(None) => return None,
            SearchKeyExt::ThreadId(Some(thread)) => {
                let snap = self.user.snapshot().ok()?;
                let guids: Vec<(Uid, Guid)> = self
                    .sel
                    .view
                    .with_entries(|entries| entries.iter().map(|e| (e.uid, e.guid)).collect());
                guids
                    .into_iter()
                    .filter(|(_, g)| snap.thread(g).ok().flatten() == Some(Guid(thread)))
                    .map(|(u, _)| u)
                    .collect()
            }
        };
        (!hits.is_empty()).then(|| UidSet::from_sorted(&hits).to_string())
    }
}

impl Selected {
    /// The UIDs a key answered from the view alone matches, as a set.
    fn matching_entries(&self, key: SearchKeyExt) -> Option<String> {
        // The save date's own day, its time and zone disregarded (RFC 8514 4.2).
        let day = |t: Timestamp| {
            chrono::DateTime::from_timestamp(t.unix + i64::from(t.offset_minutes) * 60, 0)
                .unwrap_or_default()
                .date_naive()
        };
        let hits: Vec<Uid> = self.view.with_entries(|entries| {
            entries
                .iter()
                .filter(|e| match key {
                    SearchKeyExt::SaveDate(Day::Before, d) => day(e.save_date) < d,
                    SearchKeyExt::SaveDate(Day::On, d) => day(e.save_date) == d,
                    SearchKeyExt::SaveDate(Day::Since, d) => day(e.save_date) >= d,
                    SearchKeyExt::EmailId(id) => id == Some(e.guid.0),
                    SearchKeyExt::ThreadId(_) => false,
                })
                .map(|e| e.uid)
                .collect()
        });
        (!hits.is_empty()).then(|| UidSet::from_sorted(&hits).to_string())
    }
}
