//! Commands valid in any state: CAPABILITY, NOOP, LOGOUT, ID; and the small authenticated-state
//! ones: ENABLE, NAMESPACE, COMPRESS.

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::compress::CompressionAlgorithm;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use super::{Authed, R};
use crate::respond::Responder;
use crate::session::{Session, Step, To};

pub(super) fn capability(s: &Session, tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged(&format!("CAPABILITY {}", s.capabilities()));
    r.tagged_ok(tag, None, "CAPABILITY completed");
    Ok(Step::CONTINUE)
}

/// NOOP: a chance for the server to report changes (RFC 3501 6.1.2).
pub(super) async fn noop(a: &mut Authed<'_>, tag: &str, r: &mut Responder<'_>) -> R {
    a.finish(tag, None, "NOOP completed", r).await;
    Ok(Step::CONTINUE)
}

pub(super) fn logout(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged("BYE Strata logging out");
    r.tagged_ok(tag, None, "LOGOUT completed");
    Ok(Step::then(crate::session::Next::Close, To::Logout))
}

/// RFC 2971: the server identifies itself; what the client sends is only logged.
pub(super) fn id(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged(&format!(
        "ID (\"name\" \"Strata\" \"version\" \"{}\")",
        env!("CARGO_PKG_VERSION")
    ));
    r.tagged_ok(tag, None, "ID completed");
    Ok(Step::CONTINUE)
}

/// RFC 5161: turns on the extensions named that Strata has and were not on yet, and lists
/// them; unknown names are ignored, as the RFC says.
pub(super) async fn enable(
    a: &mut Authed<'_>,
    tag: &str,
    names: Vec1<CapabilityEnable<'_>>,
    r: &mut Responder<'_>,
) -> R {
    let mut now = Vec::new();
    for name in names.into_inner() {
        match &name {
            CapabilityEnable::CondStore if !a.enabled.condstore => {
                a.enabled.condstore();
                now.push("CONDSTORE");
            }
            // QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
            CapabilityEnable::Other(_)
                if name.to_string().eq_ignore_ascii_case("QRESYNC") && !a.enabled.qresync =>
            {
                a.enabled.qresync = true;
                a.enabled.condstore();
                now.push("QRESYNC");
            }
            CapabilityEnable::Other(_)
                if name.to_string().eq_ignore_ascii_case("IMAP4rev2") && !a.enabled.rev2 =>
            {
                a.enabled.rev2 = true;
                if let Some(sel) = a.sel.as_deref_mut() {
                    // \Recent is gone from here on (RFC 9051 Appendix E).
                    sel.recent.clear();
                }
                now.push("IMAP4rev2");
            }
            _ => {}
        }
    }
    let mut line = String::from("ENABLED");
    for n in now {
        line.push(' ');
        line.push_str(n);
    }
    r.untagged(&line);
    a.finish(tag, None, "ENABLE completed", r).await;
    Ok(Step::CONTINUE)
}

/// RFC 4978: DEFLATE from the end of the tagged OK on, in both directions.
pub(super) fn compress(
    tag: &str,
    algorithm: &CompressionAlgorithm,
    active: bool,
    r: &mut Responder<'_>,
) -> R {
    if active {
        r.tagged_no(tag, Some("COMPRESSIONACTIVE"), "DEFLATE is already on");
        return Ok(Step::CONTINUE);
    }
    match algorithm {
        CompressionAlgorithm::Deflate => {
            r.tagged_ok(tag, None, "DEFLATE active");
            Ok(Step {
                next: crate::session::Next::Compress,
                to: None,
            })
        }
        other => {
            r.tagged_no(tag, Some("CANNOT"), &format!("{other} is not offered"));
            Ok(Step::CONTINUE)
        }
    }
}

/// RFC 2342: one personal namespace, no others.
pub(super) fn namespace(tag: &str, r: &mut Responder<'_>) -> R {
    r.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
    r.tagged_ok(tag, None, "NAMESPACE completed");
    Ok(Step::CONTINUE)
}
