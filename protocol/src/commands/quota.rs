//! QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA. Every user has one quota root, `""`,
//! over all of their mailboxes; only the resources with a limit are listed, and a user with no
//! limit has no root. Limits are the administrator's (`strata user quota`), so SETQUOTA is
//! refused and QUOTASET not advertised.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_mailstore::UserStore;
use strata_mailstore::quota::{Limits, ROOT};

use super::{Authed, R};
use crate::respond::Responder;
use crate::session::Step;

/// GETQUOTA: the root's usage and limits.
pub(super) async fn getquota(
    a: &mut Authed<'_>,
    tag: &str,
    root: &AString<'_>,
    r: &mut Responder<'_>,
) -> R {
    let user = a.user.clone();
    let limits = user.limits();
    if root.as_ref() != ROOT.as_bytes() || limits.is_unlimited() {
        r.tagged_no(tag, Some("NONEXISTENT"), "no such quota root");
        return Ok(Step::CONTINUE);
    }
    if !quota_line(&user, limits, tag, r) {
        return Ok(Step::CONTINUE);
    }
    a.finish(tag, None, "GETQUOTA completed", r).await;
    Ok(Step::CONTINUE)
}

/// GETQUOTAROOT: the roots of a mailbox (which need not exist), each with its QUOTA.
pub(super) async fn getquotaroot(
    a: &mut Authed<'_>,
    tag: &str,
    mailbox: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    let utf8 = a.enabled.utf8_names();
    let Some(path) = super::path_or_refuse(mailbox, utf8, tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let user = a.user.clone();
    let limits = user.limits();
    r.out.raw("* QUOTAROOT ");
    let name = strata_mailstore::names::join_name(&path);
    r.out
        .mailbox(&strata_mailstore::names::shown(&name, utf8), utf8);
    if !limits.is_unlimited() {
        r.out.raw(" ").string(ROOT.as_bytes());
    }
    r.out.crlf();
    if !limits.is_unlimited() && !quota_line(&user, limits, tag, r) {
        return Ok(Step::CONTINUE);
    }
    a.finish(tag, None, "GETQUOTAROOT completed", r).await;
    Ok(Step::CONTINUE)
}

/// SETQUOTA: refused; an administrator sets limits.
pub(super) fn setquota(tag: &str, r: &mut Responder<'_>) -> R {
    r.tagged_no(
        tag,
        Some("NOPERM"),
        "quota limits are set by the administrator (strata user quota)",
    );
    Ok(Step::CONTINUE)
}

/// Writes `* QUOTA "" (...)`; false after answering NO when the usage cannot be read.
fn quota_line(user: &UserStore, limits: Limits, tag: &str, r: &mut Responder<'_>) -> bool {
    let usage = match user.usage() {
        Ok(u) => u,
        Err(e) => {
            super::store_error(r, tag, &e);
            return false;
        }
    };
    let list: Vec<String> = limits
        .report(usage)
        .into_iter()
        .map(|(res, used, limit)| format!("{} {used} {limit}", res.name()))
        .collect();
    r.out.raw("* QUOTA ").string(ROOT.as_bytes());
    r.out.raw(format!(" ({})", list.join(" "))).crlf();
    true
}
