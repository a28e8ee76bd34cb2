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
mod quota;
mod search;
mod select;
mod store;

use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_mailstore::model::{IndexError, MailboxRecord, Uid};
use strata_mailstore::{StoreError, UserStore, names};

use crate::grammar::{Detached, Extras};
use crate::respond::Responder;
use crate::selected::Selected;
use crate::session::{Enabled, Session, State, Step};

pub use auth::Authenticating;
pub(crate) use auth::{finish_authenticate, take_authenticating};
pub(crate) use idle::{finish_idle, idle_update};

type R = std::io::Result<Step>;

/// A logged-in session as the authenticated state's handlers see it.
pub(crate) struct Authed<'a> {
    pub(crate) user: Arc<UserStore>,
    /// The selected mailbox, when there is one (its changes are reported after the command).
    pub(crate) sel: Option<&'a mut Selected>,
    pub(crate) enabled: &'a mut Enabled,
}

/// A session with a mailbox selected, as the selected state's handlers see it.
pub(crate) struct InMailbox<'a> {
    pub(crate) user: Arc<UserStore>,
    pub(crate) sel: &'a mut Selected,
    pub(crate) enabled: &'a mut Enabled,
}

impl Authed<'_> {
    /// Reports other sessions' changes to the selected mailbox, if any, then the tagged OK.
    pub(crate) async fn finish(
        &mut self,
        tag: &str,
        code: Option<&str>,
        text: &str,
        r: &mut Responder<'_>,
    ) {
        if let Some(sel) = self.sel.as_deref_mut() {
            sync_selected(&self.user, sel, *self.enabled, true, r).await;
            tell_highest(sel, self.enabled, r);
        }
        self.enabled.condstore_news = false;
        r.tagged_ok(tag, code, text);
    }
}

impl InMailbox<'_> {
    /// Reports other sessions' changes (with EXPUNGE when `expunges`), then the tagged OK.
    pub(crate) async fn finish(
        &mut self,
        tag: &str,
        code: Option<&str>,
        text: &str,
        expunges: bool,
        r: &mut Responder<'_>,
    ) {
        sync_selected(&self.user, self.sel, *self.enabled, expunges, r).await;
        tell_highest(self.sel, self.enabled, r);
        r.tagged_ok(tag, code, text);
    }
}

/// Tells the selected mailbox's HIGHESTMODSEQ when the command just turned CONDSTORE on
/// (RFC 7162 3.1: the client learns it before the enabling command completes).
fn tell_highest(sel: &Selected, enabled: &mut Enabled, r: &mut Responder<'_>) {
    if std::mem::take(&mut enabled.condstore_news) {
        r.untagged(&format!(
            "OK [HIGHESTMODSEQ {}] CONDSTORE is on",
            sel.highest.0.max(1)
        ));
    }
}

/// Answers a command the current state does not allow.
fn refuse(tag: &str, r: &mut Responder<'_>, name: &str, why: &str) -> R {
    r.tagged_bad(tag, None, &format!("{name} {why}"));
    Ok(Step::CONTINUE)
}

/// Runs a command if the session's state allows it (RFC 3501 section 6), else answers BAD.
pub(crate) async fn dispatch(
    s: &mut Session,
    tag: String,
    body: CommandBody<'static>,
    extras: Extras,
    r: &mut Responder<'_>,
) -> R {
    use CommandBody as C;
    let name = body.name();
    match body {
        C::Capability => return any::capability(s, &tag, r),
        C::Logout => return any::logout(&tag, r),
        C::Id { .. } => return any::id(&tag, r),
        _ => {}
    }
    if !s.authenticated() {
        return match body {
            C::Noop => {
                r.tagged_ok(&tag, None, "NOOP completed");
                Ok(Step::CONTINUE)
            }
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
            _ => refuse(&tag, r, name, "is not allowed before login"),
        };
    }
    if matches!(body, C::StartTLS | C::Authenticate { .. } | C::Login { .. }) {
        return refuse(&tag, r, name, "is only allowed before login");
    }
    let Session {
        state,
        enabled,
        compressed,
        ..
    } = s;
    let compressed = *compressed;
    let (user, sel) = match state {
        State::Authenticated { user, .. } => (user.clone(), None),
        State::Selected { user, mailbox, .. } => (user.clone(), Some(&mut **mailbox)),
        State::NotAuthenticated { .. } | State::Logout => {
            return refuse(&tag, r, name, "is not allowed now");
        }
    };
    // With `append_ack = "acked"`, an OK means the store holds the change: see `settle`.
    let settles = user.settles().then(|| user.clone());
    let before = match &settles {
        Some(u) => u.snapshot().ok().map(|snap| snap.modseq()),
        None => None,
    };
    let mut a = Authed { user, sel, enabled };
    let step = match body {
        C::Noop => any::noop(&mut a, &tag, r).await,
        C::Enable { capabilities } => any::enable(&mut a, &tag, capabilities, r).await,
        C::Namespace => any::namespace(&tag, r),
        C::Select {
            mailbox,
            parameters,
        } => select::select(&mut a, &tag, &mailbox, false, parameters, r).await,
        C::Examine {
            mailbox,
            parameters,
        } => select::select(&mut a, &tag, &mailbox, true, parameters, r).await,
        C::Create { mailbox } => {
            mailbox::create(&mut a, &tag, &mailbox, &extras.create_use, r).await
        }
        C::Delete { mailbox } => mailbox::delete(&mut a, &tag, &mailbox, r).await,
        C::Rename { from, to } => mailbox::rename(&mut a, &tag, &from, &to, r).await,
        C::Subscribe { mailbox } => mailbox::subscribe(&mut a, &tag, &mailbox, true, r).await,
        C::Unsubscribe { mailbox } => mailbox::subscribe(&mut a, &tag, &mailbox, false, r).await,
        C::List {
            reference,
            mailbox_wildcard,
        } => {
            let opts = extras.list.unwrap_or_default();
            list::list(&mut a, &tag, &reference, mailbox_wildcard, opts, false, r).await
        }
        C::Lsub {
            reference,
            mailbox_wildcard,
        } => {
            list::list(
                &mut a,
                &tag,
                &reference,
                mailbox_wildcard,
                Default::default(),
                true,
                r,
            )
            .await
        }
        C::Status {
            mailbox,
            item_names,
        } => {
            // MAILBOXID alone came with a stand-in MESSAGES (see `grammar`).
            let items = if extras.status_stand_in {
                Vec::new()
            } else {
                item_names.into_owned()
            };
            let mailbox_id = extras.status_mailbox_id;
            mailbox::status(&mut a, &tag, &mailbox, &items, mailbox_id, r).await
        }
        C::Append {
            mailbox,
            flags,
            date,
            message,
        } => {
            let raw = match (extras.literal, message) {
                (Some(Detached::Bytes(b)), _) => b,
                (_, LiteralOrLiteral8::Literal(l)) => Bytes::from(l.into_inner().into_owned()),
                (_, LiteralOrLiteral8::Literal8(l)) => Bytes::from(l.data.into_owned()),
            };
            append::append(&mut a, &tag, &mailbox, flags, date, raw, r).await
        }
        C::GetQuota { root } => quota::getquota(&mut a, &tag, &root, r).await,
        C::GetQuotaRoot { mailbox } => quota::getquotaroot(&mut a, &tag, &mailbox, r).await,
        C::SetQuota { .. } => quota::setquota(&tag, r),
        C::Idle => idle::idle(&tag, r),
        C::Compress { algorithm } => any::compress(&tag, &algorithm, compressed, r),
        body => {
            let Authed { user, sel, enabled } = a;
            let Some(sel) = sel else {
                let why = if is_selected_command(&body) {
                    "needs a selected mailbox"
                } else {
                    "is not supported"
                };
                return refuse(&tag, r, name, why);
            };
            let mut m = InMailbox { user, sel, enabled };
            if extras.saved_empty {
                // `$` names no message: the command acts on none (RFC 5182 2.1).
                m.finish(&tag, None, &format!("{name} completed"), true, r)
                    .await;
                return Ok(Step::CONTINUE);
            }
            selected(&mut m, &tag, body, extras, r).await
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
    Ok(step)
}

/// Commands of the selected state (RFC 3501 6.4 and its extensions).
fn is_selected_command(body: &CommandBody<'_>) -> bool {
    use CommandBody as C;
    matches!(
        body,
        C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::ExpungeUid { .. }
            | C::Search { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
    )
}

/// Runs a command of the selected state.
async fn selected(
    m: &mut InMailbox<'_>,
    tag: &str,
    body: CommandBody<'static>,
    extras: Extras,
    r: &mut Responder<'_>,
) -> R {
    use CommandBody as C;
    match body {
        C::Check => {
            m.finish(tag, None, "CHECK completed", true, r).await;
            Ok(Step::CONTINUE)
        }
        C::Close => expunge::close(m, tag, r).await,
        C::Unselect => expunge::unselect(tag, r),
        C::Expunge => expunge::expunge(m, tag, None, r).await,
        C::ExpungeUid { sequence_set } => expunge::expunge(m, tag, Some(sequence_set), r).await,
        C::Search {
            charset,
            criteria,
            uid,
        } => search::search(m, tag, charset, criteria, uid, extras.search, r).await,
        C::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } => {
            let asked = fetch::Asked {
                names: macro_or_item_names,
                uid,
                modifiers,
                extras: &extras,
            };
            fetch::fetch(m, tag, &sequence_set, asked, r).await
        }
        C::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            modifiers,
        } => {
            let req = store::Request {
                set: sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            };
            store::store(m, tag, req, r).await
        }
        C::Copy {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(m, tag, &sequence_set, &mailbox, uid, false, r).await,
        C::Move {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(m, tag, &sequence_set, &mailbox, uid, true, r).await,
        other => refuse(tag, r, other.name(), "is not supported"),
    }
}

/// A mailbox argument as index path components; `utf8` when the client names mailboxes in
/// UTF-8 (`Enabled::utf8_names`).
pub(crate) fn mailbox_path(m: &Mailbox<'_>, utf8: bool) -> Result<Vec<String>, names::NameError> {
    match m {
        Mailbox::Inbox => Ok(vec!["INBOX".into()]),
        Mailbox::Other(o) => names::split_name(&names::to_stored(o.as_ref(), utf8)),
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
        // RFC 9051 7.1: a mailbox with children cannot be deleted.
        StoreError::HasChildren(_) | StoreError::Index(IndexError::HasChildren(_)) => "HASCHILDREN",
        StoreError::Name(_)
        | StoreError::NotAllowed(_)
        | StoreError::Index(
            IndexError::RenameIntoSelf(_)
            | IndexError::InvalidName { .. }
            | IndexError::InvalidKeyword(_),
        ) => "CANNOT",
        StoreError::Index(IndexError::TooManyKeywords(_) | IndexError::UidsExhausted(_)) => "LIMIT",
        StoreError::Index(IndexError::Locked { .. }) => "INUSE",
        StoreError::Expunged => "EXPUNGEISSUED",
        StoreError::OverQuota(_) => "OVERQUOTA",
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
    utf8: bool,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<Vec<String>> {
    match mailbox_path(m, utf8) {
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
    user: &UserStore,
    m: &Mailbox<'_>,
    utf8: bool,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<MailboxRecord> {
    let path = path_or_refuse(m, utf8, tag, r)?;
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
    sel: &Selected,
    set: &imap_codec::imap_types::sequence::SequenceSet,
    uid: bool,
    writes: bool,
    tag: &str,
    r: &mut Responder<'_>,
) -> Option<Vec<(u32, Uid)>> {
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

/// Reports other sessions' changes to the selected mailbox (with EXPUNGE when `expunges`) and
/// claims newly arrived messages as `\Recent` for a read-write session.
pub(crate) async fn sync_selected(
    user: &Arc<UserStore>,
    sel: &mut Selected,
    enabled: Enabled,
    expunges: bool,
    r: &mut Responder<'_>,
) {
    // Another session may have added keywords since SELECT.
    if let Ok(kw) = user.snapshot().and_then(|snap| Ok(snap.keywords()?))
        && kw.len() != sel.keywords.len()
    {
        sel.set_keywords(kw.into_iter().collect(), r);
    }
    let arrived = sel.sync(r, expunges, enabled);
    if expunges {
        // What this session has now reported may be the last thing an expunged body waited for.
        user.release_graves_soon();
    }
    if arrived.is_empty() {
        return;
    }
    if enabled.rev2 {
        // No \Recent in IMAP4rev2: nothing to claim or tell.
        return;
    }
    let mut recent = Vec::new();
    // Only what this session now numbers: a message arriving meanwhile is left for the session
    // that reports it.
    let below = arrived.last().map(|u| Uid(u.0 + 1));
    if !sel.read_only
        && let Ok((from, to)) = user.claim_recent(sel.id, below).await
    {
        // Every session that sees new mail claims; exactly one gets each message.
        recent = arrived
            .into_iter()
            .filter(|u| *u >= from && *u < to)
            .collect();
    }
    sel.add_recent(r, recent);
}
