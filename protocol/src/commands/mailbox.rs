//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE and STATUS (RFC 3501 6.3.3-6.3.6, 6.3.10).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use strata_index::Durability;
use strata_mailstore::names;

use crate::respond::Responder;
use crate::session::{Next, Session, State};

type R = std::io::Result<Next>;

pub(super) async fn create(
    s: &mut Session,
    tag: &str,
    m: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    // A trailing delimiter only says the client means to create children under it.
    let path = match m {
        Mailbox::Other(o) => {
            let raw = o.as_ref();
            names::split_name(raw.strip_suffix(b"/").unwrap_or(raw))
        }
        Mailbox::Inbox => Ok(vec!["INBOX".into()]),
    };
    let path = match path {
        Ok(p) => p,
        Err(e) => {
            super::name_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let user = s.user.clone().expect("authenticated");
    match user.create(path).await {
        Ok(_) => finish(s, tag, "CREATE completed", r).await,
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Next::Continue)
}

pub(super) async fn delete(
    s: &mut Session,
    tag: &str,
    m: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    let Some(path) = super::path_or_refuse(m, tag, r) else {
        return Ok(Next::Continue);
    };
    let user = s.user.clone().expect("authenticated");
    match user.delete(path).await {
        Ok(()) => {
            // A session whose own mailbox vanished goes back to the authenticated state.
            if s.selected().is_some_and(|sel| sel.view().is_deleted()) {
                s.apply(State::Authenticated);
                r.untagged("OK [CLOSED] the selected mailbox was deleted");
            }
            finish(s, tag, "DELETE completed", r).await
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Next::Continue)
}

pub(super) async fn rename(
    s: &mut Session,
    tag: &str,
    from: &Mailbox<'_>,
    to: &Mailbox<'_>,
    r: &mut Responder<'_>,
) -> R {
    let (from, to) = match (super::mailbox_path(from), super::mailbox_path(to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            super::name_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let user = s.user.clone().expect("authenticated");
    match user.rename(from, to).await {
        Ok(()) => finish(s, tag, "RENAME completed", r).await,
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Next::Continue)
}

pub(super) async fn subscribe(
    s: &mut Session,
    tag: &str,
    m: &Mailbox<'_>,
    on: bool,
    r: &mut Responder<'_>,
) -> R {
    let Some(path) = super::path_or_refuse(m, tag, r) else {
        return Ok(Next::Continue);
    };
    let user = s.user.clone().expect("authenticated");
    let name = names::join_name(&path);
    if on {
        // RFC 3501 allows refusing to subscribe to a mailbox that does not exist; clients rely
        // on subscribing right after CREATE, which always works.
        match user.snapshot().and_then(|snap| user.find(&snap, &path)) {
            Ok(_) => {}
            Err(e) => {
                super::store_error(r, tag, &e);
                return Ok(Next::Continue);
            }
        }
    }
    let res = user
        .index()
        .write(Durability::Immediate, move |t| {
            if on {
                t.subscribe(&name)
            } else {
                t.unsubscribe(&name)
            }
        })
        .await;
    match res {
        Ok(()) => {
            finish(
                s,
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
        Err(e) => super::store_error(r, tag, &e.into()),
    }
    Ok(Next::Continue)
}

pub(super) async fn status(
    s: &mut Session,
    tag: &str,
    m: &Mailbox<'_>,
    items: &[StatusDataItemName],
    r: &mut Responder<'_>,
) -> R {
    let Some(path) = super::path_or_refuse(m, tag, r) else {
        return Ok(Next::Continue);
    };
    let user = s.user.clone().expect("authenticated");
    let rec = match user.snapshot().and_then(|snap| user.find(&snap, &path)) {
        Ok(rec) => rec,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let mut parts = Vec::new();
    for item in items {
        match item {
            StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", rec.messages)),
            StatusDataItemName::Recent => parts.push(format!("RECENT {}", rec.recent)),
            StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {}", rec.uid_next)),
            StatusDataItemName::UidValidity => {
                parts.push(format!("UIDVALIDITY {}", rec.uid_validity))
            }
            StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", rec.unseen)),
            other => {
                r.tagged_bad(
                    tag,
                    None,
                    &format!("STATUS item {other:?} is not supported"),
                );
                return Ok(Next::Continue);
            }
        }
    }
    r.out.raw("* STATUS ");
    r.out.astring(names::join_name(&path).as_bytes());
    r.out.raw(format!(" ({})", parts.join(" "))).crlf();
    finish(s, tag, "STATUS completed", r).await;
    Ok(Next::Continue)
}

async fn finish(s: &mut Session, tag: &str, text: &str, r: &mut Responder<'_>) {
    super::finish_selected(s, tag, None, text, true, r).await;
}
