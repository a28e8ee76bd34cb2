//! APPEND (RFC 3501 6.3.11) with UIDPLUS's APPENDUID (RFC 4315).

use bytes::Bytes;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_mailstore::Appended;
use strata_mailstore::model::Timestamp;

use super::{Authed, R};
use crate::respond::Responder;
use crate::session::Step;

pub(super) async fn append(
    a: &mut Authed<'_>,
    tag: &str,
    mailbox: &Mailbox<'_>,
    flags: Vec<Flag<'_>>,
    date: Option<DateTime>,
    raw: Bytes,
    r: &mut Responder<'_>,
) -> R {
    let user = a.user.clone();
    let Some(target) = super::destination(&user, mailbox, a.enabled.utf8_names(), tag, r) else {
        return Ok(Step::CONTINUE);
    };
    let flags = match super::store::flags_from(&user, &flags).await {
        Ok(f) => f,
        Err(super::store::FlagError::Bad(why)) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Step::CONTINUE);
        }
        Err(super::store::FlagError::Store(e)) => {
            super::store_error(r, tag, &e);
            return Ok(Step::CONTINUE);
        }
    };
    let internal_date = date.map(|d| {
        let d = d.as_ref();
        Timestamp {
            unix: d.timestamp(),
            offset_minutes: (d.offset().local_minus_utc() / 60) as i16,
        }
    });
    let res = user
        .append(
            target.id,
            vec![Appended {
                raw,
                flags,
                internal_date,
            }],
        )
        .await;
    match res {
        Ok((validity, uids)) => {
            let code = format!("APPENDUID {validity} {}", uids[0]);
            a.finish(tag, Some(&code), "APPEND completed", r).await;
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Step::CONTINUE)
}
