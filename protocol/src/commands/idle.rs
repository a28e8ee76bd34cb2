//! IDLE (RFC 2177): the client waits, the server reports changes as they commit, DONE ends it.
//! The waiting itself is the connection's job; this is what is said at each end.

use super::R;
use crate::respond::Responder;
use crate::session::{Next, Session, State, Step, To};

pub(super) fn idle(tag: &str, r: &mut Responder<'_>) -> R {
    r.continuation("idling");
    Ok(Step::then(Next::Idle, To::Idling(tag.to_string())))
}

/// Reports what changed while idling (EXPUNGE allowed: no command is in progress).
pub(crate) async fn idle_update(s: &mut Session, r: &mut Responder<'_>) {
    let enabled = s.enabled;
    if let State::Selected { user, mailbox, .. } = &mut s.state {
        let user = user.clone();
        super::sync_selected(&user, mailbox, enabled, true, r).await;
    }
}

/// DONE (or a malformed line, which also ends IDLE).
pub(crate) async fn finish_idle(s: &mut Session, done: bool, r: &mut Responder<'_>) {
    let tag = match &mut s.state {
        State::Authenticated { idling, .. } | State::Selected { idling, .. } => idling.take(),
        _ => None,
    };
    let Some(tag) = tag else { return };
    if done {
        idle_update(s, r).await;
        r.tagged_ok(&tag, None, "IDLE terminated");
    } else {
        r.tagged_bad(&tag, None, "expected DONE");
    }
    s.apply(To::NotIdling);
}
