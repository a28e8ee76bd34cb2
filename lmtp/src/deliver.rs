//! Filing one received message into each accepted recipient's mailbox: trace headers added,
//! line endings made CRLF, the message parsed once for every recipient and written once to a
//! store they share (`strata_mailstore::delivery`), and each recipient's outcome turned into
//! its own reply; and the same filing for a local delivery agent.

use std::sync::Arc;

use bytes::Bytes;
use strata_index::MailboxId;
use strata_mailstore::model::Flags;
use strata_mailstore::{Mailstore, Prepared, StoreError, UserStore, delivery, names};

use crate::address::trace_headers;

/// A recipient RCPT accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The address as the client gave it.
    pub address: String,
    /// The account it names.
    pub user: String,
    /// The mailbox its detail names, to use if the user has it.
    pub detail: Option<String>,
}

/// Delivers `body` from `from` to each recipient; one reply line per recipient, in order.
pub async fn deliver(
    store: &Arc<Mailstore>,
    from: &str,
    accepted: &[Accepted],
    body: Vec<u8>,
) -> Vec<String> {
    let single = match accepted {
        [only] => Some(only.address.as_str()),
        _ => None,
    };
    let mut raw = trace_headers(from, single).into_bytes();
    raw.extend_from_slice(&crlf(body));
    let message = Prepared::parse(Bytes::from(raw)).await;
    // Each recipient's mailbox first; then the message filed into all of them at once, its
    // bytes written once to a store they share.
    let found = futures::future::join_all(
        accepted
            .iter()
            .map(|a| target(store, &a.user, a.detail.as_deref())),
    )
    .await;
    let mut targets = Vec::new();
    let mut names = Vec::new();
    for (user, mailbox, name) in found.iter().flatten() {
        targets.push((user.clone(), *mailbox));
        names.push(name.clone());
    }
    let mut filed = delivery::deliver(&targets, &message)
        .await
        .into_iter()
        .zip(names);
    let m = strata_metrics::metrics();
    accepted
        .iter()
        .zip(found)
        .map(|(a, f)| {
            let outcome = match f {
                Ok(_) => match filed.next() {
                    Some((Ok(_), name)) => Ok(name),
                    Some((Err(e), _)) => Err(e),
                    None => Err(StoreError::NotAllowed("not filed".into())),
                },
                Err(e) => Err(e),
            };
            reply(m, a, outcome)
        })
        .collect()
}

/// The reply line for one recipient's outcome, counted in the delivery metrics.
fn reply(m: &strata_metrics::Metrics, a: &Accepted, outcome: Result<String, StoreError>) -> String {
    match outcome {
        Ok(mailbox) => {
            m.delivery("delivered");
            format!("250 2.0.0 <{}> delivered to {mailbox}", a.address)
        }
        // RFC 3463: mailbox full, a permanent failure the sender is told of.
        Err(StoreError::OverQuota(over)) => {
            m.delivery("over_quota");
            tracing::info!(user = %a.user, %over, "LMTP delivery refused");
            format!("552 5.2.2 <{}>: mailbox full: {over}", a.address)
        }
        Err(e) => {
            m.delivery("failed");
            tracing::warn!(user = %a.user, error = %e, "LMTP delivery failed");
            format!(
                "451 4.3.0 <{}>: not delivered, try again later: {e}",
                a.address
            )
        }
    }
}

/// Files a message handed over by a local delivery agent into `user`'s `mailbox` (a full
/// name, `/` between levels) if it exists, else INBOX; line endings made CRLF, nothing added.
/// Returns the mailbox it went to.
pub async fn deliver_into(
    store: &Arc<Mailstore>,
    user: &str,
    mailbox: Option<&str>,
    raw: Vec<u8>,
) -> Result<String, StoreError> {
    let message = Prepared::parse(Bytes::from(crlf(raw))).await;
    file(store, user, mailbox, message).await
}

/// Appends one copy to `user`'s `mailbox` if it exists, else INBOX; the mailbox it went to.
async fn file(
    store: &Arc<Mailstore>,
    user: &str,
    mailbox: Option<&str>,
    message: Prepared,
) -> Result<String, StoreError> {
    let (user, mailbox, name) = target(store, user, mailbox).await?;
    user.append_prepared(mailbox, vec![(message, Flags::default(), None)])
        .await?;
    Ok(name)
}

/// Where a delivery to `user` goes: `mailbox` (a full name, `/` between levels) if the user
/// has it, else INBOX (made if missing); with the name it goes by.
async fn target(
    store: &Arc<Mailstore>,
    user: &str,
    mailbox: Option<&str>,
) -> Result<(Arc<UserStore>, MailboxId, String), StoreError> {
    let user = store.user(user).await?;
    let snap = user.snapshot()?;
    let wanted = mailbox.and_then(|name| {
        let path = names::split_name(name.as_bytes()).ok()?;
        Some((user.find(&snap, &path).ok()?, name.to_string()))
    });
    drop(snap);
    let (mailbox, name) = match wanted {
        Some(found) => found,
        None => (
            user.ensure(vec!["INBOX".to_string()]).await?,
            "INBOX".to_string(),
        ),
    };
    Ok((user, mailbox.id, name))
}

/// The message with every line ending CRLF: a bare LF becomes CRLF (IMAP clients count and
/// read lines that way); a message already in CRLF is returned as it is.
fn crlf(body: Vec<u8>) -> Vec<u8> {
    let lone = memchr::memchr_iter(b'\n', &body).any(|i| i == 0 || body[i - 1] != b'\r');
    if !lone {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut last = 0;
    for i in memchr::memchr_iter(b'\n', &body) {
        if i == 0 || body[i - 1] != b'\r' {
            out.extend_from_slice(&body[last..i]);
            out.extend_from_slice(b"\r\n");
            last = i + 1;
        }
    }
    out.extend_from_slice(&body[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::crlf;

    #[test]
    fn bare_line_feeds_become_crlf_and_crlf_is_kept() {
        let crlf = |b: &[u8]| crlf(b.to_vec());
        assert_eq!(crlf(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"\n\n"), b"\r\n\r\n");
        assert_eq!(crlf(b"no end"), b"no end");
    }
}
