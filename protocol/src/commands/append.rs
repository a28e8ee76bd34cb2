//! APPEND (RFC 3501 6.3.11) with UIDPLUS's APPENDUID (RFC 4315).

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use strata_index::Timestamp;
use strata_mailstore::Appended;

use crate::respond::Responder;
use crate::session::{Next, Session};

pub(super) async fn append(
    s: &mut Session,
    tag: &str,
    mailbox: &Mailbox<'_>,
    flags: Vec<Flag<'_>>,
    date: Option<DateTime>,
    message: LiteralOrLiteral8<'_>,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    let raw = match message {
        LiteralOrLiteral8::Literal(l) => l.into_inner().into_owned(),
        LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
    };
    let user = s.user.clone().expect("authenticated");
    let Some(target) = super::destination(&user, mailbox, tag, r) else {
        return Ok(Next::Continue);
    };
    let flags = match super::store::flags_from(&user, &flags).await {
        Ok(f) => f,
        Err(super::store::FlagError::Bad(why)) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Next::Continue);
        }
        Err(super::store::FlagError::Store(e)) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
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
            super::finish_selected(s, tag, Some(&code), "APPEND completed", true, r).await;
        }
        Err(e) => super::store_error(r, tag, &e),
    }
    Ok(Next::Continue)
}
