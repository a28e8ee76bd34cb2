//! LIST and LSUB (RFC 3501 6.3.8, 6.3.9) with CHILDREN (RFC 3348), SPECIAL-USE (RFC 6154),
//! LIST-EXTENDED's selection and return options (RFC 5258) and LIST-STATUS (RFC 5819).

use std::collections::{BTreeMap, HashSet};

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use strata_mailstore::model::{MailboxRecord, SpecialUse};
use strata_mailstore::names::{self, DELIMITER};

use super::{Authed, R};
use crate::grammar::ListOptions;
use crate::respond::Responder;
use crate::session::Step;

/// One mailbox name a LIST answers with.
#[derive(Default)]
struct Listed {
    attrs: Vec<&'static str>,
    /// `CHILDINFO ("SUBSCRIBED")`: a descendant matches the selection (RFC 5258 3.5).
    childinfo: bool,
    /// The mailbox, for LIST-STATUS.
    rec: Option<MailboxRecord>,
}

/// Answers LIST or LSUB. `opts` carries LIST-EXTENDED's options and further patterns (all
/// off for a basic LIST).
pub(super) async fn list(
    a: &mut Authed<'_>,
    tag: &str,
    reference: &Mailbox<'_>,
    pattern: ListMailbox<'static>,
    opts: ListOptions,
    lsub: bool,
    r: &mut Responder<'_>,
) -> R {
    let cmd = if lsub { "LSUB" } else { "LIST" };
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    };
    let text = |p: &ListMailbox<'_>| match p {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(st) => String::from_utf8_lossy(st.as_ref()).into_owned(),
    };
    let patterns: Vec<String> = std::iter::once(&pattern)
        .chain(&opts.more_patterns)
        .map(text)
        .collect();
    if patterns.len() == 1 && patterns[0].is_empty() {
        // The hierarchy delimiter and root of the reference.
        r.untagged(&format!("{cmd} (\\Noselect) \"{DELIMITER}\" \"\""));
        r.tagged_ok(tag, None, &format!("{cmd} completed"));
        return Ok(Step::CONTINUE);
    }
    let full: Vec<String> = patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| format!("{reference}{p}"))
        .collect();
    let matches = |name: &str| full.iter().any(|p| names::matches_pattern(name, p));
    let user = a.user.clone();
    // Patterns match names as the client sees them (UTF-8 for IMAP4rev2), so a wildcard
    // stands for whole characters.
    let utf8 = a.enabled.utf8_names();
    let shown = |stored: String| match names::shown(&stored, utf8) {
        std::borrow::Cow::Owned(text) => text,
        std::borrow::Cow::Borrowed(_) => stored,
    };
    let listed = (|| -> strata_mailstore::Result<BTreeMap<String, Listed>> {
        let snap = user.snapshot()?;
        let mut all = BTreeMap::new();
        for mb in snap.mailboxes()? {
            let Some(path) = snap.path_of(mb.id)? else {
                continue;
            };
            let has_children = !snap.children(Some(mb.id))?.is_empty();
            all.insert(shown(names::join_name(&path)), (mb, has_children));
        }
        let subscribed: Vec<String> = snap.subscriptions()?.into_iter().map(shown).collect();
        Ok(if lsub {
            lsub_names(&all, &subscribed, &full, matches)
        } else {
            list_names(&all, &subscribed, &opts, matches)
        })
    })();
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    for (name, item) in listed {
        r.out.raw(format!(
            "* {cmd} ({}) \"{DELIMITER}\" ",
            item.attrs.join(" ")
        ));
        r.out.mailbox(&name, utf8);
        if item.childinfo && opts.select.subscribed {
            r.out.raw(" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        r.out.crlf();
        if let (Some(items), Some(rec)) = (&opts.ret.status, &item.rec) {
            // RFC 5819: each selectable mailbox's STATUS right after its LIST.
            let deleted = match super::mailbox::deleted_if_asked(&a.user, rec, items).await {
                Ok(d) => d,
                Err(e) => {
                    super::store_error(r, tag, &e);
                    return Ok(Step::CONTINUE);
                }
            };
            let parts = super::mailbox::status_items(
                rec,
                items,
                deleted,
                opts.ret.status_mailbox_id,
                a.enabled,
            );
            r.out.raw("* STATUS ");
            r.out.mailbox(&name, utf8);
            r.out.raw(format!(" ({parts})")).crlf();
        }
    }
    r.tagged_ok(tag, None, &format!("{cmd} completed"));
    Ok(Step::CONTINUE)
}

/// LIST's answer: existing mailboxes matching a pattern, narrowed by the selection options.
fn list_names(
    all: &BTreeMap<String, (MailboxRecord, bool)>,
    subscribed: &[String],
    opts: &ListOptions,
    matches: impl Fn(&str) -> bool,
) -> BTreeMap<String, Listed> {
    let sel = &opts.select;
    let is_subscribed: HashSet<&str> = subscribed.iter().map(String::as_str).collect();
    // Whether a mailbox meets the selection criteria, the pattern aside.
    let selected = |name: &str| -> bool {
        let exists = all.get(name);
        (!sel.subscribed || is_subscribed.contains(name))
            && (!sel.special_use || exists.is_some_and(|m| m.0.special_use.is_some()))
            && (sel.subscribed || exists.is_some())
    };
    let describe = |name: &str| -> Listed {
        let mut item = Listed::default();
        match all.get(name) {
            Some((mb, has_children)) => {
                item.attrs.push(if *has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                if let Some(su) = mb.special_use {
                    item.attrs.push(special_use_attr(su));
                }
                item.rec = Some(mb.clone());
            }
            // RFC 5258 3: a subscribed name with no mailbox behind it.
            None => item.attrs.push("\\NonExistent"),
        }
        if opts.ret.subscribed && is_subscribed.contains(name) {
            item.attrs.push("\\Subscribed");
        }
        item
    };
    let mut out = BTreeMap::new();
    let names: Vec<&str> = if sel.subscribed {
        subscribed.iter().map(String::as_str).collect()
    } else {
        all.keys().map(String::as_str).collect()
    };
    for name in names {
        if !selected(name) {
            continue;
        }
        if matches(name) {
            out.entry(name.to_string())
                .or_insert_with(|| describe(name));
        }
        if sel.recursive_match {
            // RFC 5258 3.5: every matching ancestor is listed, with CHILDINFO.
            for (i, _) in name.match_indices(DELIMITER) {
                let parent = &name[..i];
                if matches(parent) {
                    out.entry(parent.to_string())
                        .or_insert_with(|| describe(parent))
                        .childinfo = true;
                }
            }
        }
    }
    if !sel.recursive_match {
        for item in out.values_mut() {
            item.childinfo = false;
        }
    }
    out
}

/// LSUB's answer (RFC 3501 6.3.9).
fn lsub_names(
    all: &BTreeMap<String, (MailboxRecord, bool)>,
    subscribed: &[String],
    full: &[String],
    matches: impl Fn(&str) -> bool,
) -> BTreeMap<String, Listed> {
    let is_subscribed: HashSet<&str> = subscribed.iter().map(String::as_str).collect();
    let noselect = || Listed {
        attrs: vec!["\\Noselect"],
        ..Listed::default()
    };
    let mut found = BTreeMap::new();
    for name in subscribed {
        if matches(name) {
            let item = if all.contains_key(name) {
                Listed::default()
            } else {
                noselect()
            };
            found.insert(name.clone(), item);
            continue;
        }
        // RFC 3501 6.3.9: with "%", a parent of a subscribed name that the pattern matches is
        // listed, \Noselect, even though only the child is subscribed.
        if !full.iter().any(|p| p.contains('%')) {
            continue;
        }
        for (i, _) in name.match_indices(DELIMITER) {
            let parent = &name[..i];
            if !is_subscribed.contains(parent) && matches(parent) {
                found.entry(parent.to_string()).or_insert_with(noselect);
            }
        }
    }
    found
}

fn special_use_attr(su: SpecialUse) -> &'static str {
    match su {
        SpecialUse::All => "\\All",
        SpecialUse::Archive => "\\Archive",
        SpecialUse::Drafts => "\\Drafts",
        SpecialUse::Flagged => "\\Flagged",
        SpecialUse::Junk => "\\Junk",
        SpecialUse::Sent => "\\Sent",
        SpecialUse::Trash => "\\Trash",
    }
}

/// The special use a `\Name` attribute names (RFC 6154 2).
pub(super) fn special_use_of(attr: &str) -> Option<SpecialUse> {
    [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ]
    .into_iter()
    .find(|su| special_use_attr(*su).eq_ignore_ascii_case(attr))
}
