//! COPY, MOVE and their UID forms (RFC 3501 6.4.7, RFC 6851) with COPYUID (RFC 4315).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use strata_index::Uid;

use crate::respond::Responder;
use crate::session::{Next, Session};

#[allow(clippy::too_many_arguments)]
pub(super) async fn copy(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid: bool,
    moving: bool,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    let what = if moving { "MOVE" } else { "COPY" };
    let user = s.user.clone().expect("authenticated");
    let sel = s.selected().expect("selected");
    let Some(targets) = super::targets(sel, set, uid, moving, tag, r) else {
        return Ok(Next::Continue);
    };
    let from = sel.id;
    let Some(dest) = super::destination(&user, mailbox, tag, r) else {
        return Ok(Next::Continue);
    };
    let uids: Vec<Uid> = targets.iter().map(|t| t.1).collect();
    let res = if moving {
        user.move_messages(from, uids, dest.id).await
    } else {
        user.index()
            .copy(from, uids, dest.id)
            .await
            .map_err(Into::into)
    };
    let pairs = match res {
        Ok(p) => p,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    if pairs.is_empty() {
        // Every message named was expunged meanwhile, or the set was empty.
        super::finish_selected(
            s,
            tag,
            None,
            &format!("{what} completed (nothing to do)"),
            !moving,
            r,
        )
        .await;
        return Ok(Next::Continue);
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
        super::finish_selected(s, tag, None, "MOVE completed", true, r).await;
    } else {
        super::finish_selected(s, tag, Some(&code), "COPY completed", true, r).await;
    }
    Ok(Next::Continue)
}

/// A UID list in sequence-set form, runs collapsed (`1:3,7`).
pub(crate) fn uid_set(uids: &[Uid]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i].0;
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1].0 == end + 1 {
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
