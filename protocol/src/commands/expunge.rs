//! CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE (RFC 3501 6.4.2, 6.4.3; RFC 3691; RFC 4315).

use imap_codec::imap_types::sequence::SequenceSet;
use strata_index::{SystemFlags, Uid};

use crate::respond::Responder;
use crate::session::{Next, Session, State};

type R = std::io::Result<Next>;

/// CLOSE: expunge `\Deleted` messages silently (unless read-only), then deselect.
pub(super) async fn close(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    let user = s.user.clone().expect("authenticated");
    let sel = s.selected().expect("selected");
    if !sel.read_only {
        let deleted = deleted_uids(sel, None);
        if !deleted.is_empty()
            && let Err(e) = user.expunge(sel.id, deleted).await
        {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    }
    s.apply(State::Authenticated);
    r.tagged_ok(tag, None, "CLOSE completed");
    Ok(Next::Continue)
}

/// UNSELECT: deselect without expunging.
pub(super) fn unselect(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    s.apply(State::Authenticated);
    r.tagged_ok(tag, None, "UNSELECT completed");
    Ok(Next::Continue)
}

/// EXPUNGE (all `\Deleted`) or UID EXPUNGE (only `\Deleted` ones in the set).
pub(super) async fn expunge(
    s: &mut Session,
    tag: &str,
    set: Option<SequenceSet>,
    r: &mut Responder<'_>,
) -> R {
    let user = s.user.clone().expect("authenticated");
    let sel = s.selected().expect("selected");
    if sel.read_only {
        r.tagged_no(tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Ok(Next::Continue);
    }
    let only = match &set {
        Some(set) => match sel.resolve(set, true) {
            Ok(t) => Some(t.into_iter().map(|t| t.1).collect::<Vec<_>>()),
            Err(why) => {
                r.tagged_bad(tag, None, &why);
                return Ok(Next::Continue);
            }
        },
        None => None,
    };
    let deleted = deleted_uids(sel, only.as_deref());
    if !deleted.is_empty()
        && let Err(e) = user.expunge(sel.id, deleted).await
    {
        super::store_error(r, tag, &e);
        return Ok(Next::Continue);
    }
    super::finish_selected(s, tag, None, "EXPUNGE completed", true, r).await;
    Ok(Next::Continue)
}

fn deleted_uids(sel: &crate::selected::Selected, only: Option<&[Uid]>) -> Vec<Uid> {
    sel.view().search(|e| {
        e.flags.system.contains(SystemFlags::DELETED)
            && only.is_none_or(|o| o.binary_search(&e.uid).is_ok())
    })
}
