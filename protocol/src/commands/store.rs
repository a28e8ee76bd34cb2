//! STORE and UID STORE (RFC 3501 6.4.6): FLAGS, +FLAGS, -FLAGS, with .SILENT, system flags and
//! keywords. Flag changes are group-committed with other sessions' changes.

use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use strata_index::{Flags, StoreOp, SystemFlags};
use strata_mailstore::{StoreError, UserStore};

use crate::respond::Responder;
use crate::session::{Next, Session};

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

#[allow(clippy::too_many_arguments)]
pub(super) async fn store(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: Vec<Flag<'_>>,
    uid: bool,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    let user = s.user.clone().expect("authenticated");
    let sel = s.selected().expect("selected");
    let Some(targets) = super::targets(sel, set, uid, true, tag, r) else {
        return Ok(Next::Continue);
    };
    let mailbox = sel.id;
    let flags = match flags_from(&user, &flags).await {
        Ok(f) => f,
        Err(FlagError::Bad(why)) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Next::Continue);
        }
        Err(FlagError::Store(e)) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let op = match kind {
        StoreType::Replace => StoreOp::Replace,
        StoreType::Add => StoreOp::Add,
        StoreType::Remove => StoreOp::Remove,
    };
    let uids = targets.iter().map(|t| t.1).collect();
    let outcome = match user.index().store(mailbox, uids, op, flags, None).await {
        Ok(o) => o,
        Err(e) => {
            super::store_error(r, tag, &e.into());
            return Ok(Next::Continue);
        }
    };
    // Keyword names may be new since SELECT.
    let keywords: std::collections::HashMap<_, _> = user
        .snapshot()
        .and_then(|snap| Ok(snap.keywords()?))
        .map(|k| k.into_iter().collect())
        .unwrap_or_default();
    let sel = s.selected_mut().expect("selected");
    sel.set_keywords(keywords, r);
    for (u, _, modseq) in &outcome.changed {
        sel.reported(*u, *modseq);
    }
    if response == StoreResponse::Answer {
        for (seq, u) in &targets {
            let Some(e) = sel.entry(*u) else { continue };
            let recent = sel.recent.contains(u);
            r.out.raw(format!("* {seq} FETCH ("));
            if uid {
                r.out.raw(format!("UID {u} "));
            }
            r.out.raw("FLAGS ");
            let kw = &sel.keywords;
            r.out.flags(&e.flags, &|k| kw.get(&k).cloned(), recent);
            r.out.raw(")").crlf();
        }
    }
    super::finish_selected(s, tag, None, "STORE completed", false, r).await;
    Ok(Next::Continue)
}
