//! STORE and UID STORE (RFC 3501 6.4.6): FLAGS, +FLAGS, -FLAGS, with .SILENT, system flags and
//! keywords; CONDSTORE's UNCHANGEDSINCE and `[MODIFIED]` (RFC 7162 3.1.3). Flag changes are
//! group-committed with other sessions' changes.

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use strata_mailstore::model::{Flags, Modseq, StoreOp, SystemFlags};
use strata_mailstore::{StoreError, UserStore};

use super::{InMailbox, R};
use crate::respond::Responder;
use crate::session::Step;

pub(super) enum FlagError {
    Bad(String),
    Store(StoreError),
}

/// Flags from the wire: system flags as bits, keywords interned in the user's dictionary.
pub(super) async fn flags_from(user: &UserStore, flags: &[Flag<'_>]) -> Result<Flags, FlagError> {
    let mut out = Flags::default();
    let mut names = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => out.system |= SystemFlags::SEEN,
            Flag::Answered => out.system |= SystemFlags::ANSWERED,
            Flag::Flagged => out.system |= SystemFlags::FLAGGED,
            Flag::Deleted => out.system |= SystemFlags::DELETED,
            Flag::Draft => out.system |= SystemFlags::DRAFT,
            Flag::Keyword(k) => names.push(k.as_ref().to_string()),
            Flag::Extension(_) => {
                return Err(FlagError::Bad(format!("{f} is not a flag that can be set")));
            }
        }
    }
    out.keywords = user.keywords(names).await.map_err(FlagError::Store)?;
    Ok(out.normalized())
}

/// A STORE as decoded.
pub(super) struct Request<'a> {
    pub(super) set: SequenceSet,
    pub(super) kind: StoreType,
    pub(super) response: StoreResponse,
    pub(super) flags: Vec<Flag<'a>>,
    pub(super) uid: bool,
    pub(super) modifiers: Vec<StoreModifier>,
}

pub(super) async fn store(
    m: &mut InMailbox<'_>,
    tag: &str,
    req: Request<'_>,
    r: &mut Responder<'_>,
) -> R {
    let mut unchanged_since = None;
    for modifier in &req.modifiers {
        match modifier {
            StoreModifier::UnchangedSince(n) => {
                if unchanged_since.replace(Modseq(*n)).is_some() {
                    r.tagged_bad(tag, None, "UNCHANGEDSINCE given twice");
                    return Ok(Step::CONTINUE);
                }
            }
        }
    }
    let user = m.user.clone();
    let Some(targets) = super::targets(m.sel, &req.set, req.uid, true, tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let mailbox = m.sel.id;
    let flags = match flags_from(&user, &req.flags).await {
        Ok(f) => f,
        Err(FlagError::Bad(why)) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Step::CONTINUE);
        }
        Err(FlagError::Store(e)) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    if unchanged_since.is_some() {
        // A CONDSTORE enabling command (RFC 7162 3.1).
        m.enabled.condstore();
    }
    let op = match req.kind {
        StoreType::Replace => StoreOp::Replace,
        StoreType::Add => StoreOp::Add,
        StoreType::Remove => StoreOp::Remove,
    };
    let uids = targets.iter().map(|t| t.1).collect();
    let outcome = match user
        .store_flags(mailbox, uids, op, flags, unchanged_since)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    // Keyword names may be new since SELECT.
    let keywords: std::collections::HashMap<_, _> = user
        .snapshot()
        .and_then(|snap| Ok(snap.keywords()?))
        .map(|k| k.into_iter().collect())
        .unwrap_or_default();
    let condstore = m.enabled.condstore;
    let sel = &mut *m.sel;
    sel.set_keywords(keywords, r);
    for (u, _, modseq) in &outcome.changed {
        sel.reported(*u, *modseq);
    }
    let changed: std::collections::HashSet<_> = outcome.changed.iter().map(|c| c.0).collect();
    for (seq, u) in &targets {
        if outcome.conflicts.contains(u) {
            continue;
        }
        // With CONDSTORE on, a change is told with its MODSEQ even when .SILENT asked for
        // nothing (RFC 7162 3.1.3), so the client's cache keeps up.
        let tell = req.response == StoreResponse::Answer || (condstore && changed.contains(u));
        if !tell {
            continue;
        }
        let Some(e) = sel.entry(*u) else { continue };
        sel.flags_fetch(r, *seq, &e, req.uid, condstore);
    }
    let code = if outcome.conflicts.is_empty() {
        None
    } else {
        let mut failed: Vec<u32> = targets
            .iter()
            .filter(|(_, u)| outcome.conflicts.contains(u))
            .map(|(seq, u)| if req.uid { u.0 } else { *seq })
            .collect();
        failed.sort_unstable();
        Some(format!("MODIFIED {}", super::copy::number_set(&failed)))
    };
    let text = if code.is_some() {
        "Conditional STORE failed for some messages"
    } else {
        "STORE completed"
    };
    m.finish(tag, code.as_deref(), text, false, r).await;
    Ok(Step::CONTINUE)
}
