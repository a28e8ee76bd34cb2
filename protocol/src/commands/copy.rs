//! COPY, MOVE and their UID forms (RFC 3501 6.4.7, RFC 6851) with COPYUID (RFC 4315).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use strata_mailstore::model::Uid;

use super::{InMailbox, R};
use crate::respond::Responder;
use crate::session::Step;

#[allow(clippy::too_many_arguments)]
pub(super) async fn copy(
    m: &mut InMailbox<'_>,
    tag: &str,
    set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid: bool,
    moving: bool,
    r: &mut Responder<'_>,
) -> R {
    let what = if moving { "MOVE" } else { "COPY" };
    let user = m.user.clone();
    let sel = &*m.sel;
    let Some(targets) = super::targets(sel, set, uid, moving, tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let from = sel.id;
    let Some(dest) = super::destination(&user, mailbox, m.enabled.utf8_names(), tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let uids: Vec<Uid> = targets.iter().map(|t| t.1).collect();
    let res = if moving {
        user.move_messages(from, uids, dest.id).await
    } else {
        user.copy(from, uids, dest.id).await
    };
    let pairs = match res {
        Ok(p) => p,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    if pairs.is_empty() {
        // Every message named was expunged meanwhile, or the set was empty.
        m.finish(
            tag,
            None,
            &format!("{what} completed (nothing to do)"),
            !moving,
            r,
        )
        .await;
        return Ok(Step::CONTINUE);
    }
    let src: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
    let dst: Vec<Uid> = pairs.iter().map(|p| p.1).collect();
    let code = format!(
        "COPYUID {} {} {}",
        dest.uid_validity,
        uid_set(&src),
        uid_set(&dst)
    );
    if moving {
        r.untagged(&format!("OK [{code}] moved"));
        m.finish(tag, None, "MOVE completed", true, r).await;
    } else {
        m.finish(tag, Some(&code), "COPY completed", true, r).await;
    }
    Ok(Step::CONTINUE)
}

/// A UID list in sequence-set form, runs collapsed (`1:3,7`).
pub(crate) fn uid_set(uids: &[Uid]) -> String {
    number_set(&uids.iter().map(|u| u.0).collect::<Vec<_>>())
}

/// Numbers, in the order given, in sequence-set form with ascending runs collapsed.
pub(crate) fn number_set(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}
