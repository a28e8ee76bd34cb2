//! `strata deliver`: a local delivery agent (LDA) for a mail server that hands a message to a
//! program (Postfix's `pipe`, procmail-style setups): the message on standard input is filed
//! into a user's INBOX or a named mailbox, through the running server's control socket when
//! there is one, else by opening the stores itself. The exit status is a sysexits code the
//! mail server understands: 0 delivered, 67 no such user, 65 a message it will never take,
//! 73 the user's quota is full, 75 try again later.

use std::sync::Arc;

use strata_config::Config;
use strata_mailstore::Mailstore;

/// How a delivery ended, as the mail server is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Filed into this mailbox.
    Delivered(String),
    /// No account of that name (EX_NOUSER, bounced).
    NoUser(String),
    /// A message this server never takes, such as one over the size limit (EX_DATAERR).
    Refused(String),
    /// The message does not fit the user's quota (EX_CANTCREAT, bounced as mailbox full).
    Full(String),
    /// Not now: the store or the server failed (EX_TEMPFAIL, queued and tried again).
    TryLater(String),
}

impl Outcome {
    /// The sysexits code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Delivered(_) => 0,
            Outcome::Refused(_) => 65,
            Outcome::NoUser(_) => 67,
            Outcome::Full(_) => 73,
            Outcome::TryLater(_) => 75,
        }
    }

    /// The control socket's answer line.
    fn answer(&self) -> String {
        match self {
            Outcome::Delivered(m) => format!("ok {m}\n"),
            Outcome::NoUser(w) => format!("error nouser {w}\n"),
            Outcome::Refused(w) => format!("error refused {w}\n"),
            Outcome::Full(w) => format!("error full {w}\n"),
            Outcome::TryLater(w) => format!("error tempfail {w}\n"),
        }
    }

    /// Reads an answer line back.
    fn from_answer(done: Result<Option<String>, anyhow::Error>) -> Option<Outcome> {
        match done {
            Ok(Some(mailbox)) => Some(Outcome::Delivered(mailbox)),
            Ok(None) => None,
            Err(e) => {
                let e = e.to_string();
                Some(if let Some(w) = e.strip_prefix("nouser ") {
                    Outcome::NoUser(w.to_string())
                } else if let Some(w) = e.strip_prefix("refused ") {
                    Outcome::Refused(w.to_string())
                } else if let Some(w) = e.strip_prefix("full ") {
                    Outcome::Full(w.to_string())
                } else {
                    Outcome::TryLater(e.strip_prefix("tempfail ").unwrap_or(&e).to_string())
                })
            }
        }
    }
}

/// What `strata deliver` does with a message read from standard input.
pub async fn run(cfg: &Config, user: &str, mailbox: Option<&str>, message: Vec<u8>) -> Outcome {
    if message.is_empty() {
        return Outcome::Refused("the message is empty".into());
    }
    if message.len() as u64 > cfg.lmtp.max_message_bytes {
        return Outcome::Refused(format!(
            "the message is larger than the limit of {} bytes ([lmtp] max_message_bytes)",
            cfg.lmtp.max_message_bytes
        ));
    }
    let request = match mailbox {
        Some(m) => format!("deliver {user} {} {m}", message.len()),
        None => format!("deliver {user} {}", message.len()),
    };
    let asked = crate::control::request_with(&cfg.data_dir, &request, &message).await;
    if let Some(outcome) = Outcome::from_answer(asked) {
        return outcome;
    }
    // No server: this process takes the user's index lock for the while.
    let accounts = match crate::accounts::Accounts::open_direct(cfg).await {
        Ok(a) => a,
        Err(e) => return Outcome::TryLater(format!("accounts: {e}")),
    };
    let (store, _backends) = match crate::serve::mailstore(cfg).await {
        Ok(s) => s,
        Err(e) => return Outcome::TryLater(format!("storage: {e}")),
    };
    let outcome = deliver_in(&store, &accounts, user, mailbox, message).await;
    if let Ok(u) = store.user(user).await {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), u.flush()).await;
    }
    store.close_idle().await;
    outcome
}

/// Delivers inside a process that holds the stores (the server, or `strata deliver` alone).
pub async fn deliver_in(
    store: &Arc<Mailstore>,
    accounts: &crate::accounts::Accounts,
    user: &str,
    mailbox: Option<&str>,
    message: Vec<u8>,
) -> Outcome {
    let outcome = match accounts.hash_of(user).await {
        Ok(Some(_)) => match strata_lmtp::deliver_into(store, user, mailbox, message).await {
            Ok(m) => Outcome::Delivered(m),
            Err(strata_mailstore::StoreError::OverQuota(over)) => Outcome::Full(over.to_string()),
            Err(e) => Outcome::TryLater(e.to_string()),
        },
        Ok(None) => Outcome::NoUser(format!("no account named {user:?}")),
        Err(e) => Outcome::TryLater(format!("accounts: {e}")),
    };
    strata_metrics::metrics().delivery(match outcome {
        Outcome::Delivered(_) => "delivered",
        Outcome::NoUser(_) => "no_user",
        Outcome::Full(_) => "over_quota",
        Outcome::Refused(_) | Outcome::TryLater(_) => "failed",
    });
    outcome
}

/// The control socket's `deliver USER LEN [MAILBOX]`: the message's LEN bytes follow the line,
/// and the mailbox is the rest of the line (a name may hold spaces).
pub(crate) async fn answer_control(
    store: &Arc<Mailstore>,
    accounts: &crate::accounts::Accounts,
    user: &str,
    mailbox: Option<&str>,
    message: Vec<u8>,
) -> String {
    deliver_in(store, accounts, user, mailbox, message)
        .await
        .answer()
}
