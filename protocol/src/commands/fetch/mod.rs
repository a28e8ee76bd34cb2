//! FETCH and UID FETCH (RFC 3501 6.4.5), with CONDSTORE's MODSEQ and CHANGEDSINCE and QRESYNC's
//! VANISHED (RFC 7162).
//! Everything but body content comes from the index (the shared view for flags, sizes, dates
//! and MODSEQ; the content record for ENVELOPE and BODYSTRUCTURE). Body sections are read from
//! the backend: one read per message covering only the bytes its sections need, all messages'
//! reads in flight together (bounded), answered in order.
//!
//! A FETCH runs in four steps: decode the request ([`items`]), set `\Seen` for non-peek body
//! items ([`mark_seen`]), plan each message's read ([`plan`]), then read and write each
//! message's answer ([`render`]) as its bytes arrive.

mod items;
mod render;

use std::collections::HashSet;
use std::ops::Range;

use futures::StreamExt;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::sequence::SequenceSet;
use strata_mailstore::model::{ContentRecord, Flags, HeaderField, StoreOp, SystemFlags, Uid};
use strata_mailstore::{BodyRead, StoreError};

use super::{InMailbox, R};
use crate::grammar::Extras;
use crate::respond::Responder;
use crate::session::Step;
use crate::uidset::UidSet;
use items::{Item, Request};

/// Why a FETCH is answered NO.
enum Refused {
    Store(StoreError),
    /// BINARY names a part whose transfer encoding is unknown (RFC 3516 4.3).
    UnknownCte,
}

/// What one message's answer needs.
struct Planned {
    seq: u32,
    uid: Uid,
    /// Boxed: a record is large, and a FETCH of many messages plans each without one.
    content: Option<Box<ContentRecord>>,
    /// The byte range to read, if any section needs bytes.
    read: Option<Range<u64>>,
}

/// What a FETCH asked for: its items (imap-codec's, and those it lacks, in `extras`) and
/// modifiers.
pub(super) struct Asked<'a> {
    pub(super) names: MacroOrMessageDataItemNames<'a>,
    pub(super) uid: bool,
    pub(super) modifiers: Vec<FetchModifier>,
    pub(super) extras: &'a Extras,
}

pub(super) async fn fetch(
    m: &mut InMailbox<'_>,
    tag: &str,
    set: &SequenceSet,
    asked: Asked<'_>,
    r: &mut Responder<'_>,
) -> R {
    let Asked {
        names,
        uid,
        modifiers,
        extras,
    } = asked;
    let (ext, stand_in) = (&extras.fetch, extras.fetch_stand_in);
    let req = match Request::new(names, uid, modifiers, *m.enabled, ext, stand_in) {
        Ok(req) => req,
        Err(why) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Step::CONTINUE);
        }
    };
    let Some(mut targets) = super::targets(m.sel, set, uid, false, tag, r) else {
        return Ok(Step::CONTINUE);
    };
    if req.condstore {
        m.enabled.condstore();
    }
    if let (true, Some(since)) = (req.vanished, req.changed_since) {
        let largest = m.sel.uids.last().map_or(0, |u| u.0);
        let asked = UidSet::from_sequence_set(set, largest);
        match super::select::vanished(&m.user, m.sel, since, &asked) {
            Ok(gone) if !gone.is_empty() => r.untagged(&format!("VANISHED (EARLIER) {gone}")),
            Ok(_) => {}
            Err(e) => {
                super::store_error(r, tag, &e);
                return Ok(Step::CONTINUE);
            }
        }
    }
    if let Some(since) = req.changed_since {
        // Messages expunged meanwhile are not "changed since": they are left out.
        targets.retain(|(_, u)| m.sel.entry(*u).is_some_and(|e| e.modseq > since));
    }
    let seen_now = match mark_seen(m, &req.items, &targets).await {
        Ok(s) => s,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let missing = match answer(m, &req.items, targets, &seen_now, r).await? {
        Ok(missing) => missing,
        Err(Refused::Store(e)) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
        Err(Refused::UnknownCte) => {
            r.tagged_no(
                tag,
                Some("UNKNOWN-CTE"),
                "a part's transfer encoding cannot be decoded for BINARY",
            );
            return Ok(Step::CONTINUE);
        }
    };
    let text = if missing {
        "FETCH completed; some messages were expunged by another session"
    } else {
        "FETCH completed"
    };
    m.finish(tag, None, text, false, r).await;
    Ok(Step::CONTINUE)
}

/// Sets `\Seen` on the unseen targets when a non-peek body item asks for it, first, so the
/// FLAGS reported are the new ones; returns the messages it changed.
async fn mark_seen(
    m: &mut InMailbox<'_>,
    items: &[Item],
    targets: &[(u32, Uid)],
) -> Result<HashSet<Uid>, StoreError> {
    let mut seen_now = HashSet::new();
    if m.sel.read_only || !items.iter().any(Item::sets_seen) {
        return Ok(seen_now);
    }
    let unseen: Vec<Uid> = targets
        .iter()
        .filter(|(_, u)| m.sel.entry(*u).is_some_and(|e| !e.flags.is_seen()))
        .map(|t| t.1)
        .collect();
    if unseen.is_empty() {
        return Ok(seen_now);
    }
    let seen = Flags::system(SystemFlags::SEEN);
    let outcome = m
        .user
        .store_flags(m.sel.id, unseen, StoreOp::Add, seen, None)
        .await?;
    for (u, _, modseq) in outcome.changed {
        m.sel.reported(u, modseq);
        seen_now.insert(u);
    }
    Ok(seen_now)
}

/// Plans, reads and writes every message's answer. The outer error is the connection's; the
/// inner one a store failure to answer NO with; `Ok(true)` when some messages were expunged
/// by another session meanwhile.
async fn answer(
    m: &mut InMailbox<'_>,
    items: &[Item],
    targets: Vec<(u32, Uid)>,
    seen_now: &HashSet<Uid>,
    r: &mut Responder<'_>,
) -> std::io::Result<Result<bool, Refused>> {
    let user = m.user.clone();
    let sel = &*m.sel;
    let condstore = m.enabled.condstore;
    let snap = match user.snapshot() {
        Ok(s) => s,
        Err(e) => return Ok(Err(Refused::Store(e))),
    };
    let want = render::parts_of(items);
    let wants_thread = items.iter().any(|i| matches!(i, Item::ThreadId));
    let needs_content = items.iter().any(render::needs_record);
    let from_fields = items.iter().any(render::answered_from_fields);
    // Only when bodies are read is every record needed up front (to plan the reads); otherwise
    // each is decoded as its answer is written and freed at once.
    let plan_content = items.iter().any(render::reads_body);
    let mailbox = sel.id;
    let content_of = |uid: Uid, entry: Option<&strata_mailstore::model::ViewEntry>| match entry {
        Some(e) => snap
            .content_parts(&e.guid, want)
            .ok()
            .flatten()
            .map(Box::new),
        // A message another session expunged is still this session's to read until it has
        // been told (RFC 2180 4.1).
        None => user.expunged(mailbox, uid).map(|(_, c)| Box::new(c)),
    };
    let (mut plan, mut missing) = plan(&targets, items, needs_content && plan_content, |u| {
        content_of(u, sel.entry(u).as_ref())
    });
    if plan.iter().any(|p| {
        p.content
            .as_ref()
            .is_some_and(|c| render::unknown_cte(c, items))
    }) {
        return Ok(Err(Refused::UnknownCte));
    }
    let reads: Vec<_> = plan
        .iter()
        .filter_map(|p| {
            let c = p.content.as_ref()?;
            let range = p.read.clone()?;
            let whole = range.start == 0 && range.end >= c.size;
            Some(BodyRead {
                guid: c.guid,
                location: c.location.clone(),
                size: if whole {
                    c.size
                } else {
                    range.end - range.start
                },
                range: if whole { None } else { Some(range) },
            })
        })
        .collect();
    let mut bodies = user.bodies(reads);
    let no_bytes = bytes::Bytes::new();
    let kw = sel.keywords.clone();
    let names = |k| kw.get(&k).cloned();
    let uids: Vec<Uid> = plan.iter().map(|p| p.uid).collect();
    for (p, entry) in plan.iter_mut().zip(sel.entries(&uids)) {
        let mut buried = false;
        let entry = match entry {
            Some(e) => e,
            None => match user.expunged(mailbox, p.uid) {
                Some((e, c)) => {
                    p.content.get_or_insert_with(|| Box::new(c));
                    buried = true;
                    e
                }
                None => {
                    missing = true;
                    continue;
                }
            },
        };
        if needs_content && p.content.is_none() {
            p.content = content_of(p.uid, Some(&entry));
            if p.content.is_none() {
                missing = true;
                continue;
            }
        }
        let bytes = if p.read.is_some() {
            match bodies.next().await {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => {
                    drop(bodies);
                    r.flush().await?;
                    return Ok(Err(Refused::Store(e)));
                }
                None => None,
            }
        } else {
            None
        };
        // Header fields the index keeps are read borrowed from its record, not decoded whole.
        let index_sections = match (p.content.as_ref().filter(|_| buried), from_fields) {
            (_, false) => Vec::new(),
            (Some(c), true) => {
                let fields: Vec<_> = c.parsed.headers.iter().map(HeaderField::borrowed).collect();
                render::index_sections(items, &fields)
            }
            (None, true) => {
                match snap.with_header_fields(&entry.guid, |f| render::index_sections(items, f)) {
                    Ok(Some(s)) => s,
                    _ => {
                        missing = true;
                        continue;
                    }
                }
            }
        };
        let msg = render::Message {
            seq: p.seq,
            uid: p.uid,
            entry: &entry,
            recent: sel.recent.contains(&p.uid),
            content: p.content.as_deref(),
            bytes: bytes.as_ref().unwrap_or(&no_bytes),
            base: p.read.as_ref().map_or(0, |r| r.start),
            seen_now: seen_now.contains(&p.uid),
            condstore,
            index_sections: &index_sections,
            thread: if wants_thread {
                snap.thread(&entry.guid).ok().flatten()
            } else {
                None
            },
        };
        render::message(&mut r.out, items, &msg, &names);
        if !plan_content {
            p.content = None;
        }
        r.flush_if_big().await?;
    }
    Ok(Ok(missing))
}

/// Each target's plan; with `with_content`, its content record and the byte range its
/// sections need, read up front. Returns whether some target was already gone.
fn plan(
    targets: &[(u32, Uid)],
    items: &[Item],
    with_content: bool,
    content: impl Fn(Uid) -> Option<Box<ContentRecord>>,
) -> (Vec<Planned>, bool) {
    let mut out = Vec::with_capacity(targets.len());
    let mut missing = false;
    for &(seq, uid) in targets {
        let mut planned = Planned {
            seq,
            uid,
            content: None,
            read: None,
        };
        if with_content {
            let Some(c) = content(uid) else {
                // Expunged by another session; its number stays valid until we may say so.
                missing = true;
                continue;
            };
            planned.read = render::covering_range(&c, items);
            planned.content = Some(c);
        }
        out.push(planned);
    }
    (out, missing)
}
