//! IDLE (RFC 2177): the client waits, the server reports changes as they commit, DONE ends it.
//! The waiting itself is the connection's job; this is what is said at each end.

use crate::respond::Responder;
use crate::session::{Next, Session};

pub(super) fn idle(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> std::io::Result<Next> {
    r.continuation("idling");
    s.idle_tag = Some(tag.to_string());
    Ok(Next::Idle)
}

/// Reports what changed while idling (EXPUNGE allowed: no command is in progress).
pub(crate) async fn idle_update(s: &mut Session, r: &mut Responder<'_>) {
    super::sync_selected(s, true, r).await;
}

/// DONE (or a malformed line, which also ends IDLE).
pub(crate) async fn finish_idle(s: &mut Session, done: bool, r: &mut Responder<'_>) {
    let Some(tag) = s.idle_tag.take() else { return };
    if done {
        super::finish_selected(s, &tag, None, "IDLE terminated", true, r).await;
    } else {
        r.tagged_bad(&tag, None, "expected DONE");
    }
}
