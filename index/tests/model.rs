//! Property test: random sequences of operations (mailbox create/rename/delete, append, flags,
//! expunge, copy, move, nested transactions that commit or roll back, reopen, repack) run
//! against the index and against a plain in-memory model, compared after every step.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use strata_index::*;

const NAMES: [&str; 4] = ["INBOX", "a", "b", "Trash"];
const KEYWORDS: [&str; 3] = ["$label1", "work", "$junk"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        parent: Option<u8>,
        name: u8,
    },
    Rename {
        mb: u8,
        parent: Option<u8>,
        name: u8,
    },
    Delete {
        mb: u8,
    },
    Append {
        mb: u8,
        contents: Vec<u8>,
        seen: bool,
    },
    Store {
        mb: u8,
        uids: Vec<u8>,
        op: u8,
        system: u8,
        keyword: Option<u8>,
    },
    Expunge {
        mb: u8,
        uids: Vec<u8>,
    },
    Copy {
        from: u8,
        uids: Vec<u8>,
        to: u8,
    },
    Move {
        from: u8,
        uids: Vec<u8>,
        to: u8,
    },
    ClaimRecent {
        mb: u8,
        // Claims below this UID (255: all).
        below: u8,
    },
    Group {
        ops: Vec<Op>,
        fail: bool,
    },
    Reopen,
    Repack,
}

fn leaf_op() -> impl Strategy<Value = Op> {
    let uids = prop::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        2 => (prop::option::of(any::<u8>()), 0..NAMES.len() as u8)
            .prop_map(|(parent, name)| Op::Create { parent, name }),
        1 => (any::<u8>(), prop::option::of(any::<u8>()), 0..NAMES.len() as u8)
            .prop_map(|(mb, parent, name)| Op::Rename { mb, parent, name }),
        1 => any::<u8>().prop_map(|mb| Op::Delete { mb }),
        4 => (any::<u8>(), prop::collection::vec(0u8..12, 1..4), any::<bool>())
            .prop_map(|(mb, contents, seen)| Op::Append { mb, contents, seen }),
        3 => (any::<u8>(), uids.clone(), 0u8..3, 0u8..32, prop::option::of(0..KEYWORDS.len() as u8))
            .prop_map(|(mb, uids, op, system, keyword)| Op::Store { mb, uids, op, system, keyword }),
        2 => (any::<u8>(), uids.clone()).prop_map(|(mb, uids)| Op::Expunge { mb, uids }),
        2 => (any::<u8>(), uids.clone(), any::<u8>()).prop_map(|(from, uids, to)| Op::Copy { from, uids, to }),
        2 => (any::<u8>(), uids, any::<u8>()).prop_map(|(from, uids, to)| Op::Move { from, uids, to }),
        1 => (any::<u8>(), prop_oneof![0u8..16, Just(255)])
            .prop_map(|(mb, below)| Op::ClaimRecent { mb, below }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => leaf_op(),
        3 => (prop::collection::vec(leaf_op(), 1..5), any::<bool>())
            .prop_map(|(ops, fail)| Op::Group { ops, fail }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Repack),
    ]
}

// ----- the reference model -----

#[derive(Clone, Debug, PartialEq, Eq)]
struct MMsg {
    content: u64,
    system: u8,
    keywords: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct MMailbox {
    parent: Option<u32>,
    name: String,
    uid_next: u32,
    first_recent: u32,
    msgs: BTreeMap<u32, MMsg>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    mailboxes: BTreeMap<u32, MMailbox>,
    next_id: u32,
}

/// A resolved operation: mailbox and UID picks turned into ids, so the index and the model run
/// exactly the same thing.
#[derive(Clone, Debug)]
enum Resolved {
    Create(Option<u32>, String),
    Rename(u32, Option<u32>, String),
    Delete(u32),
    Append(u32, Vec<u64>, bool),
    Store(u32, Vec<u32>, StoreOp, u8, Option<String>),
    Expunge(u32, Vec<u32>),
    Copy(u32, Vec<u32>, u32),
    Move(u32, Vec<u32>, u32),
    ClaimRecent(u32, u32),
}

impl Model {
    fn pick_mailbox(&self, p: u8) -> u32 {
        // One pick in eight names a mailbox that does not exist.
        if p % 8 == 7 || self.mailboxes.is_empty() {
            return 9999;
        }
        let ids: Vec<u32> = self.mailboxes.keys().copied().collect();
        ids[p as usize % ids.len()]
    }

    fn pick_uids(&self, mb: u32, picks: &[u8]) -> Vec<u32> {
        let uids: Vec<u32> = self
            .mailboxes
            .get(&mb)
            .map(|m| m.msgs.keys().copied().collect())
            .unwrap_or_default();
        picks
            .iter()
            .map(|&p| {
                if p % 10 == 9 || uids.is_empty() {
                    500 + p as u32
                } else {
                    uids[p as usize % uids.len()]
                }
            })
            .collect()
    }

    fn resolve(&self, op: &Op) -> Resolved {
        match op {
            Op::Create { parent, name } => Resolved::Create(
                parent.map(|p| self.pick_mailbox(p)),
                NAMES[*name as usize].to_string(),
            ),
            Op::Rename { mb, parent, name } => Resolved::Rename(
                self.pick_mailbox(*mb),
                parent.map(|p| self.pick_mailbox(p)),
                NAMES[*name as usize].to_string(),
            ),
            Op::Delete { mb } => Resolved::Delete(self.pick_mailbox(*mb)),
            Op::Append { mb, contents, seen } => Resolved::Append(
                self.pick_mailbox(*mb),
                contents.iter().map(|&c| u64::from(c)).collect(),
                *seen,
            ),
            Op::Store {
                mb,
                uids,
                op,
                system,
                keyword,
            } => {
                let m = self.pick_mailbox(*mb);
                let op = [StoreOp::Replace, StoreOp::Add, StoreOp::Remove][*op as usize];
                Resolved::Store(
                    m,
                    self.pick_uids(m, uids),
                    op,
                    *system,
                    keyword.map(|k| KEYWORDS[k as usize].to_string()),
                )
            }
            Op::Expunge { mb, uids } => {
                let m = self.pick_mailbox(*mb);
                Resolved::Expunge(m, self.pick_uids(m, uids))
            }
            Op::Copy { from, uids, to } => {
                let f = self.pick_mailbox(*from);
                Resolved::Copy(f, self.pick_uids(f, uids), self.pick_mailbox(*to))
            }
            Op::Move { from, uids, to } => {
                let f = self.pick_mailbox(*from);
                Resolved::Move(f, self.pick_uids(f, uids), self.pick_mailbox(*to))
            }
            Op::ClaimRecent { mb, below } => Resolved::ClaimRecent(
                self.pick_mailbox(*mb),
                if *below == 255 {
                    u32::MAX
                } else {
                    u32::from(*below)
                },
            ),
            Op::Group { .. } | Op::Reopen | Op::Repack => unreachable!("resolved by the driver"),
        }
    }

    fn exists(&self, id: Option<u32>) -> bool {
        id.is_none_or(|i| self.mailboxes.contains_key(&i))
    }

    fn find(&self, parent: Option<u32>, name: &str) -> Option<u32> {
        self.mailboxes
            .iter()
            .find(|(_, m)| m.parent == parent && m.name == name)
            .map(|(id, _)| *id)
    }

    /// Applies an operation; returns whether it succeeds (a failed one changes nothing).
    fn apply(&mut self, r: &Resolved) -> bool {
        match r {
            Resolved::Create(parent, name) => {
                if !self.exists(*parent) || self.find(*parent, name).is_some() {
                    return false;
                }
                self.next_id += 1;
                self.mailboxes.insert(
                    self.next_id,
                    MMailbox {
                        parent: *parent,
                        name: name.clone(),
                        uid_next: 1,
                        first_recent: 1,
                        msgs: BTreeMap::new(),
                    },
                );
                true
            }
            Resolved::Rename(id, parent, name) => {
                if !self.mailboxes.contains_key(id) {
                    return false;
                }
                let mut up = *parent;
                while let Some(p) = up {
                    if p == *id {
                        return false;
                    }
                    match self.mailboxes.get(&p) {
                        Some(m) => up = m.parent,
                        None => return false,
                    }
                }
                match self.find(*parent, name) {
                    Some(other) if other == *id => true,
                    Some(_) => false,
                    None => {
                        let m = self.mailboxes.get_mut(id).unwrap();
                        m.parent = *parent;
                        m.name = name.clone();
                        true
                    }
                }
            }
            Resolved::Delete(id) => {
                if !self.mailboxes.contains_key(id)
                    || self.mailboxes.values().any(|m| m.parent == Some(*id))
                {
                    return false;
                }
                self.mailboxes.remove(id);
                true
            }
            Resolved::Append(mb, contents, seen) => {
                let Some(m) = self.mailboxes.get_mut(mb) else {
                    return false;
                };
                for &c in contents {
                    m.msgs.insert(
                        m.uid_next,
                        MMsg {
                            content: c,
                            system: if *seen { 1 } else { 0 },
                            keywords: BTreeSet::new(),
                        },
                    );
                    m.uid_next += 1;
                }
                true
            }
            Resolved::Store(mb, uids, op, system, keyword) => {
                let Some(m) = self.mailboxes.get_mut(mb) else {
                    return false;
                };
                for uid in uids {
                    if let Some(msg) = m.msgs.get_mut(uid) {
                        let kw: BTreeSet<String> = keyword.iter().cloned().collect();
                        match op {
                            StoreOp::Replace => {
                                msg.system = *system;
                                msg.keywords = kw;
                            }
                            StoreOp::Add => {
                                msg.system |= system;
                                msg.keywords.extend(kw);
                            }
                            StoreOp::Remove => {
                                msg.system &= !system;
                                msg.keywords.retain(|k| !kw.contains(k));
                            }
                        }
                    }
                }
                true
            }
            Resolved::Expunge(mb, uids) => {
                let Some(m) = self.mailboxes.get_mut(mb) else {
                    return false;
                };
                for uid in uids {
                    m.msgs.remove(uid);
                }
                true
            }
            Resolved::Copy(from, uids, to) | Resolved::Move(from, uids, to) => {
                if !self.mailboxes.contains_key(from) || !self.mailboxes.contains_key(to) {
                    return false;
                }
                let src = self.mailboxes[from].msgs.clone();
                let sorted: BTreeSet<u32> = uids.iter().copied().collect();
                let mut moved = Vec::new();
                let dest = self.mailboxes.get_mut(to).unwrap();
                for uid in sorted {
                    if let Some(msg) = src.get(&uid) {
                        dest.msgs.insert(dest.uid_next, msg.clone());
                        dest.uid_next += 1;
                        moved.push(uid);
                    }
                }
                if matches!(r, Resolved::Move(..)) {
                    let f = self.mailboxes.get_mut(from).unwrap();
                    for uid in moved {
                        f.msgs.remove(&uid);
                    }
                }
                true
            }
            Resolved::ClaimRecent(mb, below) => {
                let Some(m) = self.mailboxes.get_mut(mb) else {
                    return false;
                };
                m.first_recent = m.first_recent.max((*below).min(m.uid_next));
                true
            }
        }
    }
}

/// Runs a resolved operation inside a transaction.
fn run(t: &mut Txn<'_, '_>, r: &Resolved) -> Result<()> {
    match r {
        Resolved::Create(parent, name) => t
            .create_mailbox(NewMailbox {
                parent: parent.map(MailboxId),
                name: name.clone(),
                special_use: None,
            })
            .map(drop),
        Resolved::Rename(id, parent, name) => t
            .rename_mailbox(MailboxId(*id), parent.map(MailboxId), name)
            .map(drop),
        Resolved::Delete(id) => t.delete_mailbox(MailboxId(*id)).map(drop),
        Resolved::Append(mb, contents, seen) => t.nested(|t| {
            for &c in contents {
                let flags = if *seen {
                    SystemFlags::SEEN
                } else {
                    SystemFlags::empty()
                };
                t.append(MailboxId(*mb), common::message(c, flags))?;
            }
            Ok(())
        }),
        Resolved::Store(mb, uids, op, system, keyword) => {
            let mut flags = Flags::system(SystemFlags::from_bits_truncate(*system));
            if let Some(k) = keyword {
                flags.keywords.push(t.intern_keyword(k)?);
            }
            let uids: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
            t.store(MailboxId(*mb), &uids, *op, &flags, None).map(drop)
        }
        Resolved::Expunge(mb, uids) => {
            let uids: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
            t.expunge(MailboxId(*mb), &uids).map(drop)
        }
        Resolved::Copy(from, uids, to) => {
            let uids: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
            t.copy(MailboxId(*from), &uids, MailboxId(*to)).map(drop)
        }
        Resolved::Move(from, uids, to) => {
            let uids: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
            t.move_messages(MailboxId(*from), &uids, MailboxId(*to))
                .map(drop)
        }
        Resolved::ClaimRecent(mb, below) => t.claim_recent(MailboxId(*mb), Uid(*below)).map(drop),
    }
}

/// Compares the index with the model, and the index with itself (check and views).
fn compare(
    index: &UserIndex,
    model: &Model,
    views: &BTreeMap<u32, Arc<MailboxView>>,
    floor: &mut (Modseq, BTreeMap<u32, u32>),
) -> std::result::Result<(), TestCaseError> {
    let snap = index.snapshot().unwrap();
    strata_index::verify(&snap).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let names: BTreeMap<KeywordId, String> = snap.keywords().unwrap().into_iter().collect();
    let mboxes = snap.mailboxes().unwrap();
    prop_assert_eq!(
        mboxes.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        model.mailboxes.keys().copied().collect::<Vec<_>>()
    );
    prop_assert!(snap.modseq() >= floor.0, "MODSEQ went backwards");
    floor.0 = snap.modseq();
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    for rec in &mboxes {
        let m = &model.mailboxes[&rec.id.0];
        prop_assert_eq!(rec.parent.map(|p| p.0), m.parent);
        prop_assert_eq!(&rec.name, &m.name);
        prop_assert_eq!(rec.uid_next.0, m.uid_next);
        prop_assert_eq!(rec.first_recent_uid.0, m.first_recent);
        let prev = floor.1.insert(rec.id.0, rec.uid_next.0).unwrap_or(0);
        prop_assert!(rec.uid_next.0 >= prev, "UIDNEXT went backwards");
        prop_assert_eq!(rec.messages as usize, m.msgs.len());
        prop_assert_eq!(
            rec.unseen as usize,
            m.msgs.values().filter(|x| x.system & 1 == 0).count()
        );
        prop_assert_eq!(
            rec.recent as usize,
            m.msgs.keys().filter(|&&u| u >= m.first_recent).count()
        );
        let msgs = snap.messages(rec.id).unwrap();
        let got: Vec<(u32, u64, u8, BTreeSet<String>)> = msgs
            .iter()
            .map(|x| {
                let c = u64::from_be_bytes(x.guid.0[..8].try_into().unwrap());
                let kws = x.flags.keywords.iter().map(|k| names[k].clone()).collect();
                (x.uid.0, c, x.flags.system.bits(), kws)
            })
            .collect();
        let want: Vec<(u32, u64, u8, BTreeSet<String>)> = m
            .msgs
            .iter()
            .map(|(u, x)| (*u, x.content, x.system, x.keywords.clone()))
            .collect();
        prop_assert_eq!(got, want);
        for x in m.msgs.values() {
            *refs.entry(x.content).or_default() += 1;
        }
        if let Some(view) = views.get(&rec.id.0) {
            let ventries: Vec<(Uid, Flags, Modseq)> = view
                .entries()
                .into_iter()
                .map(|e| (e.uid, e.flags, e.modseq))
                .collect();
            let sentries: Vec<(Uid, Flags, Modseq)> = msgs
                .iter()
                .map(|x| (x.uid, x.flags.clone(), x.modseq))
                .collect();
            prop_assert_eq!(ventries, sentries, "view of mailbox {} differs", rec.id);
        }
    }
    for (c, n) in refs {
        let got = snap.content_refs(&common::content(c).guid).unwrap();
        prop_assert_eq!(got, n, "references to content {}", c);
    }
    Ok(())
}

fn run_case(ops: Vec<Op>) -> std::result::Result<(), TestCaseError> {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user.redb");
    rt.block_on(async {
        let (mut index, _) = UserIndex::open(&path, IndexOptions::default())
            .await
            .unwrap();
        let mut model = Model::default();
        let mut views: BTreeMap<u32, Arc<MailboxView>> = BTreeMap::new();
        let mut floor = (Modseq(0), BTreeMap::new());
        for op in ops {
            match op {
                Op::Reopen => {
                    views.clear();
                    index.close().await;
                    index = UserIndex::open(&path, IndexOptions::default())
                        .await
                        .unwrap()
                        .0;
                }
                Op::Repack => {
                    repack(&index, None).await.unwrap();
                }
                Op::Group { ops, fail } => {
                    let resolved: Vec<Resolved> = {
                        // Resolve against the model as it evolves inside the group.
                        let mut m = model.clone();
                        ops.iter()
                            .map(|o| {
                                let r = m.resolve(o);
                                m.apply(&r);
                                r
                            })
                            .collect()
                    };
                    let rs = resolved.clone();
                    let got = index
                        .write(Durability::Immediate, move |t| {
                            for r in &rs {
                                let _ = t.nested(|t| run(t, r));
                            }
                            if fail {
                                Err(IndexError::Closed)
                            } else {
                                Ok(())
                            }
                        })
                        .await;
                    prop_assert_eq!(got.is_ok(), !fail);
                    if !fail {
                        for r in &resolved {
                            model.apply(r);
                        }
                    }
                }
                leaf => {
                    let r = model.resolve(&leaf);
                    let expect = model.apply(&r);
                    let rr = r.clone();
                    let got = index.write(Durability::Grouped, move |t| run(t, &rr)).await;
                    prop_assert_eq!(got.is_ok(), expect, "{:?}: {:?}", r, got.err());
                }
            }
            // Keep a view on the first mailbox, as a session with it selected would.
            if let Some(&first) = model.mailboxes.keys().next()
                && !views.contains_key(&first)
            {
                views.clear();
                views.insert(first, index.view(MailboxId(first)).await.unwrap());
            }
            compare(&index, &model, &views, &mut floor)?;
        }
        index.close().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run_case(ops)?;
    }
}
