//! SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2).

use std::collections::{BTreeSet, HashMap};

use imap_codec::imap_types::mailbox::Mailbox;
use strata_index::{Durability, KeywordId};

use crate::encode::SYSTEM_FLAGS;
use crate::respond::Responder;
use crate::selected::Selected;
use crate::session::{Next, Session, State};

pub(super) async fn select(
    s: &mut Session,
    tag: &str,
    mailbox: &Mailbox<'_>,
    read_only: bool,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    // Selecting, even if it fails, leaves the previous mailbox without expunging it.
    if matches!(s.state, State::Selected(_)) {
        s.apply(State::Authenticated);
    }
    let Some(path) = super::path_or_refuse(mailbox, tag, r) else {
        return Ok(Next::Continue);
    };
    let user = s.user.clone().expect("authenticated");
    let result = async {
        let snap = user.snapshot()?;
        let rec = user.find(&snap, &path)?;
        let keywords: HashMap<KeywordId, String> = snap.keywords()?.into_iter().collect();
        let view = user.index().view(rec.id).await?;
        let recent = if read_only {
            BTreeSet::new()
        } else {
            let id = rec.id;
            let (from, to) = user
                .index()
                .write(Durability::Grouped, move |t| t.claim_recent(id))
                .await?;
            view.with_entries(|e| {
                e.iter()
                    .map(|e| e.uid)
                    .filter(|u| *u >= from && *u < to)
                    .collect()
            })
        };
        Ok::<_, strata_mailstore::StoreError>((rec, view, recent, keywords))
    }
    .await;
    let (rec, view, recent, keywords) = match result {
        Ok(v) => v,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let sel = Selected::new(rec.id, read_only, rec.uid_validity, view, recent, keywords);
    let mut names: Vec<&str> = SYSTEM_FLAGS.iter().map(|(_, n)| *n).collect();
    let mut kw: Vec<&String> = sel.keywords.values().collect();
    kw.sort();
    names.extend(kw.iter().map(|k| k.as_str()));
    r.untagged(&format!("FLAGS ({})", names.join(" ")));
    if read_only {
        r.untagged("OK [PERMANENTFLAGS ()] read-only mailbox");
    } else {
        r.untagged(&format!(
            "OK [PERMANENTFLAGS ({} \\*)] flags permitted",
            names.join(" ")
        ));
    }
    r.untagged(&format!("{} EXISTS", sel.exists()));
    r.untagged(&format!("{} RECENT", sel.recent.len()));
    let first_unseen = sel
        .view()
        .with_entries(|e| e.iter().position(|e| !e.flags.is_seen()));
    if let Some(i) = first_unseen {
        r.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1));
    }
    r.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", rec.uid_validity));
    r.untagged(&format!("OK [UIDNEXT {}] predicted next UID", rec.uid_next));
    s.apply(State::Selected(Box::new(sel)));
    let (code, what) = if read_only {
        ("READ-ONLY", "EXAMINE")
    } else {
        ("READ-WRITE", "SELECT")
    };
    r.tagged_ok(tag, Some(code), &format!("{what} completed"));
    Ok(Next::Continue)
}
