//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE and STATUS (RFC 3501 6.3.3-6.3.6, 6.3.10).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use strata_mailstore::model::{MailboxRecord, SpecialUse};
use strata_mailstore::{UserStore, names};

use super::{Authed, R};
use crate::respond::Responder;
use crate::session::{Enabled, Step, To};

pub(super) async fn create(
    a: &mut Authed<'_>,
    tag: &str,
    m: &Mailbox<'_>,
    uses: &[String],
    r: &mut Responder<'_>,
) -> R {
    let special_use = match uses {
        [] => None,
        [one] => match super::list::special_use_of(one) {
            // \All and \Flagged are views of other mailboxes, which Strata does not keep.
            Some(su) if !matches!(su, SpecialUse::All | SpecialUse::Flagged) => Some(su),
            _ => {
                r.tagged_no(
                    tag,
                    Some("USEATTR"),
                    &format!("cannot create a {one} mailbox"),
                );
                return Ok(Step::CONTINUE);
            }
        },
        _ => {
            r.tagged_no(tag, Some("USEATTR"), "a mailbox has one special use");
            return Ok(Step::CONTINUE);
        }
    };
    // A trailing delimiter only says the client means to create children under it.
    let path = match m {
        Mailbox::Other(o) => {
            let raw = o.as_ref();
            let raw = raw.strip_suffix(b"/").unwrap_or(raw);
            names::split_name(&names::to_stored(raw, a.enabled.utf8_names()))
        }
        Mailbox::Inbox => Ok(vec!["INBOX".into()]),
    };
    let path = match path {
        Ok(p) => p,
        Err(e) => {
            super::name_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let user = a.user.clone();
    match user.create_special(path, special_use).await {
        Ok(rec) => {
            // RFC 8474 4.1.
            let code = format!("MAILBOXID ({})", crate::objectid::mailbox_id(&rec));
            a.finish(tag, Some(&code), "CREATE completed", r).await;
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
}

pub(super) async fn delete(
    a: &mut Authed<'_>,
    tag: &str,
    m: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    let Some(path) = super::path_or_refuse(m, a.enabled.utf8_names(), tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let user = a.user.clone();
    match user.delete(path).await {
        Ok(()) => {
            // A session whose own mailbox vanished goes back to the authenticated state.
            if a.sel.as_ref().is_some_and(|sel| sel.view().is_deleted()) {
                r.untagged("OK [CLOSED] the selected mailbox was deleted");
                r.tagged_ok(tag, None, "DELETE completed");
                return Ok(Step::to(To::Deselect));
            }
            finish(a, tag, "DELETE completed", r).await
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
}

pub(super) async fn rename(
    a: &mut Authed<'_>,
    tag: &str,
    from: &Mailbox<'_>,
    to: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    let (from, to) = match (
        super::mailbox_path(from, a.enabled.utf8_names()),
        super::mailbox_path(to, a.enabled.utf8_names()),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            super::name_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let user = a.user.clone();
    match user.rename(from, to).await {
        Ok(()) => finish(a, tag, "RENAME completed", r).await,
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
}

pub(super) async fn subscribe(
    a: &mut Authed<'_>,
    tag: &str,
    m: &Mailbox<'_>,
    on: bool,
    r: &mut Responder<'_>,
) -> R {
    let Some(path) = super::path_or_refuse(m, a.enabled.utf8_names(), tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let user = a.user.clone();
    let name = names::join_name(&path);
    if on {
        // RFC 3501 allows refusing to subscribe to a mailbox that does not exist; clients rely
        // on subscribing right after CREATE, which always works.
        match user.snapshot().and_then(|snap| user.find(&snap, &path)) {
            Ok(_) => {}
            Err(e) => {
                super::store_error(r, tag, &e);
                return Ok(Step::CONTINUE);
            }
        }
    }
    let res = user.set_subscribed(name, on).await;
    match res {
        Ok(()) => {
            finish(
                a,
                tag,
                if on {
                    "SUBSCRIBE completed"
                } else {
                    "UNSUBSCRIBE completed"
                },
                r,
            )
            .await
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
}

pub(super) async fn status(
    a: &mut Authed<'_>,
    tag: &str,
    m: &Mailbox<'_>,
    items: &[StatusDataItemName],
    mailbox_id: bool,
    r: &mut Responder<'_>,
) -> R {
    if a.enabled.rev2 && items.contains(&StatusDataItemName::Recent) {
        r.tagged_bad(tag, None, "RECENT is not an IMAP4rev2 STATUS item");
        return Ok(Step::CONTINUE);
    }
    let Some(path) = super::path_or_refuse(m, a.enabled.utf8_names(), tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let user = a.user.clone();
    let rec = match user.snapshot().and_then(|snap| user.find(&snap, &path)) {
        Ok(rec) => rec,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let deleted = match deleted_if_asked(&user, &rec, items).await {
        Ok(d) => d,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let parts = status_items(&rec, items, deleted, mailbox_id, a.enabled);
    r.out.raw("* STATUS ");
    let utf8 = a.enabled.utf8_names();
    r.out
        .mailbox(&names::shown(&names::join_name(&path), utf8), utf8);
    r.out.raw(format!(" ({parts})")).crlf();
    finish(a, tag, "STATUS completed", r).await;
    Ok(Step::CONTINUE)
}

async fn finish(a: &mut Authed<'_>, tag: &str, text: &str, r: &mut Responder<'_>) {
    a.finish(tag, None, text, r).await;
}

/// The `\Deleted` messages' count and size, when the items ask for either (zeros otherwise).
pub(super) async fn deleted_if_asked(
    user: &UserStore,
    rec: &MailboxRecord,
    items: &[StatusDataItemName],
) -> strata_mailstore::Result<(u32, u64)> {
    let asked = items.iter().any(|i| {
        matches!(
            i,
            StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage
        )
    });
    if asked {
        user.deleted_messages(rec.id).await
    } else {
        Ok((0, 0))
    }
}

/// A STATUS response's items for a mailbox (RFC 3501 6.3.10, RFC 8438 SIZE, RFC 7162
/// HIGHESTMODSEQ, DELETED and DELETED-STORAGE from `deleted`), space-separated.
pub(super) fn status_items(
    rec: &MailboxRecord,
    items: &[StatusDataItemName],
    deleted: (u32, u64),
    mailbox_id: bool,
    enabled: &mut Enabled,
) -> String {
    let mut parts = Vec::new();
    if mailbox_id {
        // RFC 8474 4.2.
        parts.push(format!("MAILBOXID ({})", crate::objectid::mailbox_id(rec)));
    }
    for item in items {
        match item {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", rec.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {}", rec.recent)),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", rec.uid_next)),
            StatusDataItemName::UidValidity => {
                parts.push(format!("UIDVALIDITY {}", rec.uid_validity))
            }
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", rec.unseen)),
            StatusDataItemName::Size => parts.push(format!("SIZE {}", rec.size)),
            // RFC 9051 and RFC 9208.
            StatusDataItemName::Deleted => parts.push(format!("DELETED {}", deleted.0)),
            StatusDataItemName::DeletedStorage => {
                parts.push(format!("DELETED-STORAGE {}", deleted.1))
            }
            StatusDataItemName::HighestModSeq => {
                // Asking for it is a CONDSTORE enabling command (RFC 7162 3.1).
                enabled.condstore();
                parts.push(format!("HIGHESTMODSEQ {}", rec.highest_modseq.0.max(1)));
            }
        }
    }
    parts.join(" ")
}
