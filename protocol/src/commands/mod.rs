//! One file per command (or per family of commands that share their rules), and the dispatch
//! from a decoded command to its handler.

mod any;
mod append;
mod auth;
mod copy;
mod expunge;
mod fetch;
mod idle;
mod list;
mod mailbox;
mod search;
mod select;
mod store;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_index::IndexError;
use strata_mailstore::{StoreError, names};

use crate::respond::Responder;
use crate::session::{Next, Session};

pub(crate) use auth::finish_authenticate;
pub(crate) use idle::{finish_idle, idle_update};

/// Runs a command allowed in the current state.
pub(crate) async fn dispatch(
    s: &mut Session,
    tag: String,
    body: CommandBody<'static>,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    use CommandBody as C;
    // With `append_ack = "acked"`, an OK means the store holds the change: see `settle`.
    let settles = s.user.as_ref().filter(|u| u.settles()).cloned();
    let before = match &settles {
        Some(u) => u.snapshot().ok().map(|snap| snap.modseq()),
        None => None,
    };
    let next = match body {
        C::Capability => any::capability(s, &tag, r),
        C::Noop | C::Check => any::noop(s, &tag, r).await,
        C::Logout => any::logout(s, &tag, r),
        C::Id { .. } => any::id(&tag, r),
        C::Enable { .. } => any::enable(&tag, r),
        C::Namespace => any::namespace(&tag, r),
        C::StartTLS => auth::starttls(s, &tag, r),
        C::Login { username, password } => {
            auth::login(
                s,
                &tag,
                username.as_ref(),
                password.declassify().as_ref(),
                r,
            )
            .await
        }
        C::Authenticate {
            mechanism,
            initial_response,
        } => {
            let ir = initial_response.map(|i| i.declassify().to_vec());
            auth::authenticate(s, &tag, mechanism.as_ref(), ir, r).await
        }
        C::Select { mailbox, .. } => select::select(s, &tag, &mailbox, false, r).await,
        C::Examine { mailbox, .. } => select::select(s, &tag, &mailbox, true, r).await,
        C::Create { mailbox } => mailbox::create(s, &tag, &mailbox, r).await,
        C::Delete { mailbox } => mailbox::delete(s, &tag, &mailbox, r).await,
        C::Rename { from, to } => mailbox::rename(s, &tag, &from, &to, r).await,
        C::Subscribe { mailbox } => mailbox::subscribe(s, &tag, &mailbox, true, r).await,
        C::Unsubscribe { mailbox } => mailbox::subscribe(s, &tag, &mailbox, false, r).await,
        C::List {
            reference,
            mailbox_wildcard,
        } => list::list(s, &tag, &reference, &mailbox_wildcard, false, r),
        C::Lsub {
            reference,
            mailbox_wildcard,
        } => list::list(s, &tag, &reference, &mailbox_wildcard, true, r),
        C::Status {
            mailbox,
            item_names,
        } => mailbox::status(s, &tag, &mailbox, &item_names, r).await,
        C::Append {
            mailbox,
            flags,
            date,
            message,
        } => append::append(s, &tag, &mailbox, flags, date, message, r).await,
        C::Close => expunge::close(s, &tag, r).await,
        C::Unselect => expunge::unselect(s, &tag, r),
        C::Expunge => expunge::expunge(s, &tag, None, r).await,
        C::ExpungeUid { sequence_set } => expunge::expunge(s, &tag, Some(sequence_set), r).await,
        C::Search {
            charset,
            criteria,
            uid,
        } => search::search(s, &tag, charset, criteria, uid, r).await,
        C::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            ..
        } => fetch::fetch(s, &tag, &sequence_set, macro_or_item_names, uid, r).await,
        C::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            ..
        } => store::store(s, &tag, &sequence_set, kind, response, flags, uid, r).await,
        C::Copy {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(s, &tag, &sequence_set, &mailbox, uid, false, r).await,
        C::Move {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(s, &tag, &sequence_set, &mailbox, uid, true, r).await,
        C::Idle => idle::idle(s, &tag, r),
        other => {
            r.tagged_bad(&tag, None, &format!("{} is not supported", other.name()));
            Ok(Next::Continue)
        }
    }?;
    if let (Some(u), Some(before)) = (settles, before)
        && r.last_status == "OK"
        && u.snapshot().is_ok_and(|snap| snap.modseq() > before)
        && let Err(e) = u.settle().await
    {
        tracing::warn!(error = %e, "a change is not yet confirmed by the store");
        r.retract_ok(
            &tag,
            Some("UNAVAILABLE"),
            &format!("done on this server, but the store has not confirmed it yet: {e}"),
        );
    }
    Ok(next)
}

/// A mailbox argument as index path components.
pub(crate) fn mailbox_path(m: &Mailbox<'_>) -> Result<Vec<String>, names::NameError> {
    match m {
        Mailbox::Inbox => Ok(vec!["INBOX".into()]),
        Mailbox::Other(o) => names::split_name(o.as_ref()),
    }
}

/// Answers a failed store operation with NO and the RFC 5530 response code that fits.
pub(crate) fn store_error(r: &mut Responder<'_>, tag: &str, e: &StoreError) {
    let code = match e {
        StoreError::NoSuchMailbox(_) | StoreError::Index(IndexError::NoSuchMailbox(_)) => {
            "NONEXISTENT"
        }
        StoreError::MailboxExists(_) | StoreError::Index(IndexError::MailboxExists { .. }) => {
            "ALREADYEXISTS"
        }
        StoreError::Name(_)
        | StoreError::NotAllowed(_)
        | StoreError::Index(
            IndexError::HasChildren(_)
            | IndexError::RenameIntoSelf(_)
            | IndexError::InvalidName { .. }
            | IndexError::InvalidKeyword(_),
        ) => "CANNOT",
        StoreError::Index(IndexError::TooManyKeywords(_) | IndexError::UidsExhausted(_)) => "LIMIT",
        StoreError::Index(IndexError::Locked { .. }) => "INUSE",
        StoreError::Expunged => "EXPUNGEISSUED",
        StoreError::Backend(_) | StoreError::NotShipped(_) | StoreError::Chain(_) => "UNAVAILABLE",
        _ => "SERVERBUG",
    };
    if code == "SERVERBUG" || code == "UNAVAILABLE" {
        tracing::warn!(error = %e, "command failed");
    }
    r.tagged_no(tag, Some(code), &e.to_string());
}

/// A mailbox argument as path components, or `None` after answering NO.
pub(crate) fn path_or_refuse(
    m: &Mailbox<'_>,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<Vec<String>> {
    match mailbox_path(m) {
        Ok(p) => Some(p),
        Err(e) => {
            name_error(r, tag, &e);
            None
        }
    }
}

/// The destination of APPEND, COPY or MOVE, or `None` after answering NO (`TRYCREATE` when it
/// does not exist, as RFC 3501 asks).
pub(crate) fn destination(
    user: &strata_mailstore::UserStore,
    m: &Mailbox<'_>,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<strata_index::MailboxRecord> {
    let path = path_or_refuse(m, tag, r)?;
    match user.snapshot().and_then(|snap| user.find(&snap, &path)) {
        Ok(rec) => Some(rec),
        Err(StoreError::NoSuchMailbox(name)) => {
            r.tagged_no(
                tag,
                Some("TRYCREATE"),
                &format!("no mailbox named \"{name}\""),
            );
            None
        }
        Err(e) => {
            store_error(r, tag, &e);
            None
        }
    }
}

/// The messages a set names in the selected mailbox, or `None` after answering (NO for a
/// write to a read-only mailbox, BAD for a set naming messages that do not exist).
pub(crate) fn targets(
    sel: &crate::selected::Selected,
    set: &imap_codec::imap_types::sequence::SequenceSet,
    uid: bool,
    writes: bool,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<Vec<(u32, strata_index::Uid)>> {
    if writes && sel.read_only {
        r.tagged_no(tag, Some("READ-ONLY"), "the mailbox is read-only (EXAMINE)");
        return None;
    }
    match sel.resolve(set, uid) {
        Ok(t) => Some(t),
        Err(why) => {
            r.tagged_bad(tag, None, &why);
            None
        }
    }
}

/// Answers a refused mailbox name.
pub(crate) fn name_error(r: &mut Responder<'_>, tag: &str, e: &names::NameError) {
    let code = match e {
        names::NameError::TooLong => "LIMIT",
        _ => "CANNOT",
    };
    r.tagged_no(tag, Some(code), &e.to_string());
}

/// Ends a command in the selected state: reports other sessions' changes (with EXPUNGE when
/// `expunges`), claims new messages as `\Recent` for a read-write session, then the tagged OK.
pub(crate) async fn finish_selected(
    s: &mut Session,
    tag: &str,
    code: Option<&str>,
    text: &str,
    expunges: bool,
    r: &mut Responder<'_>,
) {
    sync_selected(s, expunges, r).await;
    r.tagged_ok(tag, code, text);
}

/// Reports other sessions' changes to the selected mailbox, if any.
pub(crate) async fn sync_selected(s: &mut Session, expunges: bool, r: &mut Responder<'_>) {
    let Some(user) = s.user.clone() else { return };
    let Some(sel) = s.selected_mut() else { return };
    // Another session may have added keywords since SELECT.
    if let Ok(kw) = user.snapshot().and_then(|snap| Ok(snap.keywords()?))
        && kw.len() != sel.keywords.len()
    {
        sel.set_keywords(kw.into_iter().collect(), r);
    }
    let arrived = sel.sync(r, expunges);
    if expunges {
        // What this session has now reported may be the last thing an expunged body waited for.
        user.release_graves().await;
    }
    let Some(sel) = s.selected_mut() else { return };
    if arrived.is_empty() {
        return;
    }
    let mut recent = Vec::new();
    if !sel.read_only {
        let id = sel.id;
        // Claims share fsyncs with other sessions' changes: every session that sees new mail
        // claims, and a claim lost in a crash only shows \Recent once more.
        if let Ok((from, to)) = user
            .index()
            .write(strata_index::Durability::Grouped, move |t| {
                t.claim_recent(id)
            })
            .await
        {
            recent = arrived
                .into_iter()
                .filter(|u| *u >= from && *u < to)
                .collect();
        }
    }
    sel.add_recent(r, recent);
}
