//! LIST and LSUB (RFC 3501 6.3.8, 6.3.9) with CHILDREN (RFC 3348) and SPECIAL-USE (RFC 6154)
//! attributes.

use std::collections::{BTreeMap, HashSet};

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use strata_mailstore::model::SpecialUse;
use strata_mailstore::names::{self, DELIMITER};

use super::{Authed, R};
use crate::respond::Responder;
use crate::session::Step;

pub(super) fn list(
    a: &Authed<'_>,
    tag: &str,
    reference: &Mailbox<'_>,
    pattern: &ListMailbox<'_>,
    lsub: bool,
    r: &mut Responder<'_>,
) -> R {
    let cmd = if lsub { "LSUB" } else { "LIST" };
    let reference = match reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    };
    let pattern = match pattern {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(st) => String::from_utf8_lossy(st.as_ref()).into_owned(),
    };
    if pattern.is_empty() {
        // The hierarchy delimiter and root of the reference.
        r.untagged(&format!("{cmd} (\\Noselect) \"{DELIMITER}\" \"\""));
        r.tagged_ok(tag, None, &format!("{cmd} completed"));
        return Ok(Step::CONTINUE);
    }
    let full = format!("{reference}{pattern}");
    let user = a.user.clone();
    let listed = (|| -> strata_mailstore::Result<Vec<(String, Vec<&'static str>)>> {
        let snap = user.snapshot()?;
        let mut out = Vec::new();
        let mut all = Vec::new();
        for mb in snap.mailboxes()? {
            let Some(path) = snap.path_of(mb.id)? else {
                continue;
            };
            let has_children = !snap.children(Some(mb.id))?.is_empty();
            all.push((names::join_name(&path), mb.special_use, has_children));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if lsub {
            let existing: HashSet<&str> = all.iter().map(|m| m.0.as_str()).collect();
            let subscribed = snap.subscriptions()?;
            let is_subscribed: HashSet<&str> = subscribed.iter().map(String::as_str).collect();
            let mut found: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
            for name in &subscribed {
                if names::matches_pattern(name, &full) {
                    let attrs = if existing.contains(name.as_str()) {
                        vec![]
                    } else {
                        vec!["\\Noselect"]
                    };
                    found.insert(name.clone(), attrs);
                    continue;
                }
                // RFC 3501 6.3.9: with "%", a parent of a subscribed name that the pattern
                // matches is listed, \Noselect, even though only the child is subscribed.
                if !full.contains('%') {
                    continue;
                }
                for (i, _) in name.match_indices(DELIMITER) {
                    let parent = &name[..i];
                    if !is_subscribed.contains(parent) && names::matches_pattern(parent, &full) {
                        found
                            .entry(parent.to_string())
                            .or_insert_with(|| vec!["\\Noselect"]);
                    }
                }
            }
            out.extend(found);
        } else {
            for (name, special, has_children) in all {
                if !names::matches_pattern(&name, &full) {
                    continue;
                }
                let mut attrs = vec![if has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                }];
                if let Some(su) = special {
                    attrs.push(special_use_attr(su));
                }
                out.push((name, attrs));
            }
        }
        Ok(out)
    })();
    match listed {
        Ok(items) => {
            for (name, attrs) in items {
                r.out
                    .raw(format!("* {cmd} ({}) \"{DELIMITER}\" ", attrs.join(" ")));
                r.out.astring(name.as_bytes());
                r.out.crlf();
            }
            r.tagged_ok(tag, None, &format!("{cmd} completed"));
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
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
