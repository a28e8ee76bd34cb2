//! SELECT and EXAMINE (RFC 3501 6.3.1, 6.3.2), with CONDSTORE's parameter and HIGHESTMODSEQ
//! (RFC 7162 3.1) and QRESYNC's resynchronization: VANISHED (EARLIER) and the flags changed
//! since the client's MODSEQ, in the SELECT itself (RFC 7162 3.2.5).

use std::collections::HashMap;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_mailstore::model::{KeywordId, Modseq, Uid};
use strata_mailstore::{UserStore, Vanished, names};

use super::{Authed, R};
use crate::respond::Responder;
use crate::selected::Selected;
use crate::session::{Step, To};
use crate::uidset::UidSet;

pub(super) async fn select(
    a: &mut Authed<'_>,
    tag: &str,
    mailbox: &Mailbox<'_>,
    read_only: bool,
    params: Vec<SelectParameter>,
    r: &mut Responder<'_>,
) -> R {
    let mut resync = None;
    for p in params.iter() {
        match p {
            SelectParameter::CondStore => {}
            SelectParameter::QResync { .. } if !a.enabled.qresync => {
                // RFC 7162 3.2.5: QRESYNC without ENABLE QRESYNC is a protocol error.
                r.tagged_bad(tag, None, "QRESYNC has not been enabled");
                return Ok(Step::CONTINUE);
            }
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } => {
                // The sequence match data only helps a server that keeps no expunge history;
                // the change log answers exactly, or says it cannot (see `vanished`).
                resync = Some((
                    uid_validity.get(),
                    Modseq(mod_sequence_value.get()),
                    known_uids.clone(),
                ));
            }
        }
    }
    if a.sel.is_some() {
        // The boundary between the old mailbox's responses and the new one's (RFC 7162 3.2.11).
        r.untagged("OK [CLOSED] previous mailbox closed");
    }
    // Selecting, even if it fails, leaves the previous mailbox without expunging it.
    let Some(path) = super::path_or_refuse(mailbox, a.enabled.utf8_names(), tag, r) else {
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
        let (recent, upto) = if a.enabled.rev2 {
            // IMAP4rev2 has no \Recent: nothing is claimed, so rev1 sessions still see it.
            ((rec.uid_next, rec.uid_next), None)
        } else if read_only {
            // EXAMINE sees which messages are recent but takes nothing from other sessions
            // (RFC 3501 6.3.2).
            ((rec.first_recent_uid, Uid(u32::MAX)), None)
        } else if rec.first_recent_uid >= rec.uid_next {
            // Nothing to claim: no write. What arrives after the snapshot is numbered (and
            // claimed) at the next sync.
            ((rec.uid_next, rec.uid_next), Some(rec.uid_next))
        } else {
            let (from, to) = user.claim_recent(rec.id, None).await?;
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
    if a.enabled.rev2 {
        // RFC 9051 6.3.2: the mailbox's name as the server has it, in place of RECENT and
        // UNSEEN.
        r.out.raw(format!("* LIST () \"{}\" ", names::DELIMITER));
        let utf8 = a.enabled.utf8_names();
        r.out
            .mailbox(&names::shown(&names::join_name(&path), utf8), utf8);
        r.out.crlf();
    } else {
        r.untagged(&format!("{} RECENT", sel.recent.len()));
        let first_unseen = sel.view().with_entries(|e| {
            e.iter()
                .position(|e| sel.seq_of(e.uid).is_some() && !e.flags.is_seen())
        });
        if let Some(i) = first_unseen {
            r.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1));
        }
    }
    r.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", rec.uid_validity));
    r.untagged(&format!("OK [UIDNEXT {}] predicted next UID", rec.uid_next));
    r.untagged(&format!(
        "OK [HIGHESTMODSEQ {}] highest",
        sel.highest.0.max(1)
    ));
    r.untagged(&format!(
        "OK [MAILBOXID ({})] mailbox id",
        crate::objectid::mailbox_id(&rec)
    ));
    if let Some((validity, since, known)) = resync
        && validity == rec.uid_validity
    {
        // Anything below UIDNEXT may be known to the client when it names no UIDs.
        let known = match known {
            Some(set) => UidSet::from_sequence_set(&set, rec.uid_next.0.saturating_sub(1)),
            None if rec.uid_next.0 > 1 => UidSet::range(1, rec.uid_next.0 - 1),
            None => UidSet::default(),
        };
        match vanished(&a.user, &sel, since, &known) {
            Ok(gone) if !gone.is_empty() => r.untagged(&format!("VANISHED (EARLIER) {gone}")),
            Ok(_) => {}
            Err(e) => {
                super::store_error(r, tag, &e);
                return Ok(Step::to(To::Deselect));
            }
        }
        let changed = sel.view().with_entries(|entries| {
            entries
                .iter()
                .filter(|e| e.modseq > since && known.contains(e.uid))
                .filter_map(|e| Some((sel.seq_of(e.uid)?, e.clone())))
                .collect::<Vec<_>>()
        });
        for (seq, e) in changed {
            sel.flags_fetch(r, seq, &e, true, true);
        }
    }
    let (code, what) = if read_only {
        ("READ-ONLY", "EXAMINE")
    } else {
        ("READ-WRITE", "SELECT")
    };
    r.tagged_ok(tag, Some(code), &format!("{what} completed"));
    Ok(Step::to(To::Select(Box::new(sel))))
}

/// The UIDs in `within` expunged after `since` that this session may call vanished: none it
/// still numbers (those are told by the next sync), none the mailbox holds. When the change log
/// no longer reaches back to `since`, that is every UID in `within` the mailbox lacks.
pub(super) fn vanished(
    user: &UserStore,
    sel: &Selected,
    since: Modseq,
    within: &UidSet,
) -> strata_mailstore::Result<UidSet> {
    Ok(match user.vanished_since(sel.id, since)? {
        Vanished::Exactly(uids) => {
            // Few, as a rule: each is looked up rather than the mailbox listed.
            let gone: Vec<Uid> = uids
                .into_iter()
                .filter(|u| within.contains(*u) && sel.seq_of(*u).is_none())
                .filter(|u| sel.entry(*u).is_none())
                .collect();
            UidSet::from_sorted(&gone)
        }
        Vanished::Unknown => {
            let mut present: Vec<Uid> = sel
                .view()
                .with_entries(|e| e.iter().map(|e| e.uid).collect());
            present.extend_from_slice(&sel.uids);
            present.sort_unstable();
            present.dedup();
            within.without(&present)
        }
    })
}
