//! SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2), with CONDSTORE's parameter and HIGHESTMODSEQ
//! (RFC 7162 3.1).

use std::collections::HashMap;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_mailstore::model::{KeywordId, Uid};

use super::{Authed, R};
use crate::respond::Responder;
use crate::selected::Selected;
use crate::session::{Step, To};

pub(super) async fn select(
    a: &mut Authed<'_>,
    tag: &str,
    mailbox: &Mailbox<'_>,
    read_only: bool,
    params: Vec<SelectParameter>,
    r: &mut Responder<'_>,
) -> R {
    for p in &params {
        match p {
            SelectParameter::CondStore => {}
            SelectParameter::QResync { .. } => {
                // RFC 7162 3.2.5: QRESYNC without ENABLE QRESYNC is a protocol error.
                r.tagged_bad(tag, None, "QRESYNC has not been enabled");
                return Ok(Step::CONTINUE);
            }
        }
    }
    // Selecting, even if it fails, leaves the previous mailbox without expunging it.
    let Some(path) = super::path_or_refuse(mailbox, tag, r) else {
        return Ok(Step::to(To::Deselect));
    };
    if params.contains(&SelectParameter::CondStore) {
        // SELECT tells HIGHESTMODSEQ itself.
        a.enabled.condstore = true;
    }
    let user = a.user.clone();
    let result = async {
        let snap = user.snapshot()?;
        let rec = user.find(&snap, &path)?;
        let keywords: HashMap<KeywordId, String> = snap.keywords()?.into_iter().collect();
        // Before the view: an expunge from now on waits for this session to report it.
        let watch = user.watch(rec.id);
        let view = user.view(rec.id).await?;
        // Which UIDs are \Recent here, and the last UID this session starts with.
        let (recent, upto) = if read_only {
            // EXAMINE sees which messages are recent but takes nothing from other sessions
            // (RFC 3501 6.3.2).
            ((rec.first_recent_uid, Uid(u32::MAX)), None)
        } else {
            let (from, to) = user.claim_recent(rec.id).await?;
            // Mail that arrives after the claim is not this session's yet: it is reported
            // (and claimed) at the next sync, so exactly one session sees it as recent.
            ((from, to), Some(to))
        };
        Ok::<_, strata_mailstore::StoreError>((rec, view, recent, upto, keywords, watch))
    }
    .await;
    let (rec, view, recent, upto, keywords, watch) = match result {
        Ok(v) => v,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Step::to(To::Deselect));
        }
    };
    let sel = Selected::new(
        rec.id,
        read_only,
        rec.uid_validity,
        view,
        upto,
        recent,
        keywords,
        watch,
    );
    sel.write_flag_lists(r);
    r.untagged(&format!("{} EXISTS", sel.exists()));
    r.untagged(&format!("{} RECENT", sel.recent.len()));
    let first_unseen = sel.view().with_entries(|e| {
        e.iter()
            .position(|e| sel.seq_of(e.uid).is_some() && !e.flags.is_seen())
    });
    if let Some(i) = first_unseen {
        r.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1));
    }
    r.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", rec.uid_validity));
    r.untagged(&format!("OK [UIDNEXT {}] predicted next UID", rec.uid_next));
    r.untagged(&format!(
        "OK [HIGHESTMODSEQ {}] highest",
        sel.highest.0.max(1)
    ));
    let (code, what) = if read_only {
        ("READ-ONLY", "EXAMINE")
    } else {
        ("READ-WRITE", "SELECT")
    };
    r.tagged_ok(tag, Some(code), &format!("{what} completed"));
    Ok(Step::to(To::Select(Box::new(sel))))
}
