//! Commands valid in any state: CAPABILITY, NOOP (and CHECK), LOGOUT, ID; and the small
//! authenticated-state ones with fixed answers: ENABLE, NAMESPACE.

use crate::respond::Responder;
use crate::session::{Next, Session, State};

type R = std::io::Result<Next>;

pub(super) fn capability(s: &Session, tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged(&format!("CAPABILITY {}", s.capabilities()));
    r.tagged_ok(tag, None, "CAPABILITY completed");
    Ok(Next::Continue)
}

/// NOOP and CHECK: a chance for the server to report changes (RFC 3501 6.1.2, 6.4.1); every
/// write is already durable, so CHECK has nothing else to do.
pub(super) async fn noop(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    super::finish_selected(s, tag, None, "NOOP completed", true, r).await;
    Ok(Next::Continue)
}

pub(super) fn logout(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged("BYE Strata logging out");
    r.tagged_ok(tag, None, "LOGOUT completed");
    s.apply(State::Logout);
    Ok(Next::Close)
}

/// RFC 2971: the server identifies itself; what the client sends is only logged.
pub(super) fn id(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged(&format!(
        "ID (\"name\" \"Strata\" \"version\" \"{}\")",
        env!("CARGO_PKG_VERSION")
    ));
    r.tagged_ok(tag, None, "ID completed");
    Ok(Next::Continue)
}

/// RFC 5161: no extension Strata offers needs enabling yet, so nothing is enabled.
pub(super) fn enable(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged("ENABLED");
    r.tagged_ok(tag, None, "ENABLE completed");
    Ok(Next::Continue)
}

/// RFC 2342: one personal namespace, no others.
pub(super) fn namespace(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
    r.tagged_ok(tag, None, "NAMESPACE completed");
    Ok(Next::Continue)
}
