//! CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE (RFC 3501 6.4.2, 6.4.3; RFC 3691; RFC 4315).

use imap_codec::imap_types::sequence::SequenceSet;
use strata_mailstore::model::{SystemFlags, Uid};

use super::{InMailbox, R};
use crate::respond::Responder;
use crate::selected::Selected;
use crate::session::{Step, To};

/// CLOSE: expunge `\Deleted` messages silently (unless read-only), then deselect.
pub(super) async fn close(m: &mut InMailbox<'_>, tag: &str, r: &mut Responder<'_>) -> R {
    let user = m.user.clone();
    let sel = &*m.sel;
    if !sel.read_only {
        let deleted = deleted_uids(sel, None);
        if !deleted.is_empty()
            && let Err(e) = user.expunge(sel.id, deleted).await
        {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    }
    r.tagged_ok(tag, None, "CLOSE completed");
    Ok(Step::to(To::Deselect))
}

/// UNSELECT: deselect without expunging.
pub(super) fn unselect(tag: &str, r: &mut Responder<'_>) -> R {
    r.tagged_ok(tag, None, "UNSELECT completed");
    Ok(Step::to(To::Deselect))
}

/// EXPUNGE (all `\Deleted`) or UID EXPUNGE (only `\Deleted` ones in the set).
pub(super) async fn expunge(
    m: &mut InMailbox<'_>,
    tag: &str,
    set: Option<SequenceSet>,
    r: &mut Responder<'_>,
) -> R {
    let user = m.user.clone();
    let sel = &*m.sel;
    if sel.read_only {
        r.tagged_no(tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return Ok(Step::CONTINUE);
    }
    let only = match &set {
        Some(set) => match sel.resolve(set, true) {
            Ok(t) => Some(t.into_iter().map(|t| t.1).collect::<Vec<_>>()),
            Err(why) => {
                r.tagged_bad(tag, None, &why);
                return Ok(Step::CONTINUE);
            }
        },
        None => None,
    };
    let deleted = deleted_uids(sel, only.as_deref());
    if !deleted.is_empty()
        && let Err(e) = user.expunge(sel.id, deleted).await
    {
        super::store_error(r, tag, &e);
        return Ok(Step::CONTINUE);
    }
    m.finish(tag, None, "EXPUNGE completed", true, r).await;
    Ok(Step::CONTINUE)
}

fn deleted_uids(sel: &Selected, only: Option<&[Uid]>) -> Vec<Uid> {
    sel.view().search(|e| {
        e.flags.system.contains(SystemFlags::DELETED)
            && only.is_none_or(|o| o.binary_search(&e.uid).is_ok())
    })
}
