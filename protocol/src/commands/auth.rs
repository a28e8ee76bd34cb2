//! STARTTLS, LOGIN and AUTHENTICATE PLAIN and SCRAM-SHA-256 (with SASL-IR). Credentials are
//! refused before TLS unless the server allows them on this connection (SCRAM's too: its proof
//! would give a listener a password to guess at offline).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use strata_mailstore::{StoreError, UserStore};

use super::R;
use crate::respond::Responder;
use crate::scram::{Challenge, ScramError};
use crate::session::{LoginAttempt, Next, Session, State, Step, To};

/// An AUTHENTICATE waiting for the client's next response line.
pub struct Authenticating {
    pub(crate) tag: String,
    step: Sasl,
}

/// Where a SASL exchange is.
enum Sasl {
    /// PLAIN's one response.
    Plain,
    /// SCRAM's client-first-message.
    ScramFirst,
    /// SCRAM's client-final-message, checked against the challenge sent.
    ScramFinal {
        user: String,
        challenge: Box<Challenge>,
        attempt: Box<dyn LoginAttempt>,
    },
    /// The proof matched and the server's signature was sent: the client's empty response.
    ScramDone {
        user: String,
        attempt: Box<dyn LoginAttempt>,
    },
}

impl Authenticating {
    fn then(tag: &str, step: Sasl) -> Step {
        let to = To::Authenticating(Authenticating {
            tag: tag.to_string(),
            step,
        });
        Step::then(Next::AuthContinue, to)
    }
}

pub(super) fn starttls(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    if !s.opts.starttls_available || s.opts.tls_active {
        r.tagged_bad(tag, None, "STARTTLS is not available on this connection");
        return Ok(Step::CONTINUE);
    }
    r.tagged_ok(tag, None, "Begin TLS negotiation now");
    Ok(Step {
        next: Next::StartTls,
        to: None,
    })
}

fn plaintext_refused(s: &Session, tag: &str, r: &mut Responder<'_>) -> bool {
    if s.opts.tls_active || s.opts.plaintext_auth {
        return false;
    }
    r.tagged_no(
        tag,
        Some("PRIVACYREQUIRED"),
        "use STARTTLS or the TLS port before sending a password",
    );
    true
}

pub(super) async fn login(
    s: &mut Session,
    tag: &str,
    user: &[u8],
    password: &[u8],
    r: &mut Responder<'_>,
) -> R {
    if plaintext_refused(s, tag, r) {
        return Ok(Step::CONTINUE);
    }
    Ok(logged_in(check(s, tag, user, password, r).await))
}

pub(super) async fn authenticate(
    s: &mut Session,
    tag: &str,
    mechanism: &str,
    initial: Option<Vec<u8>>,
    r: &mut Responder<'_>,
) -> R {
    let scram = mechanism.eq_ignore_ascii_case("SCRAM-SHA-256");
    if !scram && !mechanism.eq_ignore_ascii_case("PLAIN") {
        r.tagged_no(
            tag,
            Some("CANNOT"),
            "the mechanisms are PLAIN and SCRAM-SHA-256",
        );
        return Ok(Step::CONTINUE);
    }
    if plaintext_refused(s, tag, r) {
        return Ok(Step::CONTINUE);
    }
    match (initial, scram) {
        (Some(data), false) => Ok(logged_in(plain(s, tag, &data, r).await)),
        (Some(data), true) => Ok(scram_first(s, tag, &data, r).await),
        (None, scram) => {
            r.continuation("");
            let step = if scram { Sasl::ScramFirst } else { Sasl::Plain };
            Ok(Authenticating::then(tag, step))
        }
    }
}

/// Answers a client-first-message with the server's challenge, or ends the command.
async fn scram_first(s: &mut Session, tag: &str, data: &[u8], r: &mut Responder<'_>) -> Step {
    let first = match crate::scram::client_first(data) {
        Ok(f) => f,
        Err(e) => {
            scram_refused(s, tag, "", &e, r).await;
            return Step::to(To::NotAuthenticating);
        }
    };
    let user = first.user.clone();
    let (keys, attempt) = match s.auth.scram(&user, s.opts.peer).await {
        Ok(k) => k,
        Err(why) => {
            r.tagged_no(tag, Some("UNAVAILABLE"), &why);
            return Step::to(To::NotAuthenticating);
        }
    };
    let nonce = B64.encode(rand::random::<[u8; 24]>());
    let (challenge, server_first) = first.challenge(keys, &nonce);
    r.continuation(&B64.encode(server_first));
    let step = Sasl::ScramFinal {
        user,
        challenge: Box::new(challenge),
        attempt,
    };
    Authenticating::then(tag, step)
}

/// Ends a SCRAM exchange that went wrong, as a failed login where the proof did not match.
async fn scram_refused(
    s: &mut Session,
    tag: &str,
    user: &str,
    e: &ScramError,
    r: &mut Responder<'_>,
) {
    match e {
        ScramError::Malformed(_) => r.tagged_bad(tag, None, &e.to_string()),
        ScramError::ChannelBinding => r.tagged_no(tag, Some("CANNOT"), &e.to_string()),
        ScramError::Authorization => r.tagged_no(tag, Some("AUTHORIZATIONFAILED"), &e.to_string()),
        ScramError::Proof => {
            s.failed_logins += 1;
            tracing::info!(%user, peer = %s.opts.peer, failures = s.failed_logins, "login failed");
            tokio::time::sleep(s.opts.failed_login_delay).await;
            r.tagged_no(tag, Some("AUTHENTICATIONFAILED"), "invalid credentials");
        }
    }
}

fn logged_in(user: Option<Arc<UserStore>>) -> Step {
    match user {
        Some(u) => Step::to(To::LoggedIn(u)),
        None => Step::CONTINUE,
    }
}

/// The client's SASL response line (already base64-decoded), or `None` if it cancelled;
/// whether the exchange waits for another.
pub(crate) async fn finish_authenticate(
    s: &mut Session,
    data: Option<Vec<u8>>,
    r: &mut Responder<'_>,
) -> bool {
    let Some(Authenticating { tag, step }) = take_authenticating(s) else {
        return false;
    };
    let Some(data) = data else {
        r.tagged_bad(&tag, None, "AUTHENTICATE cancelled");
        s.apply(To::NotAuthenticating);
        return false;
    };
    let user = match step {
        Sasl::Plain => plain(s, &tag, &data, r).await,
        Sasl::ScramFirst => {
            let step = scram_first(s, &tag, &data, r).await;
            let more = matches!(step.next, Next::AuthContinue);
            if let Some(to) = step.to {
                s.apply(to);
            }
            return more;
        }
        Sasl::ScramFinal {
            user,
            challenge,
            attempt,
        } => match challenge.finish(&data) {
            Ok(server_final) => {
                r.continuation(&B64.encode(server_final));
                let step = Sasl::ScramDone { user, attempt };
                s.apply(To::Authenticating(Authenticating { tag, step }));
                return true;
            }
            Err(e) => {
                drop(attempt);
                scram_refused(s, &tag, &user, &e, r).await;
                None
            }
        },
        Sasl::ScramDone { user, attempt } => {
            if data.is_empty() {
                attempt.succeeded();
                open(s, &tag, user, r).await
            } else {
                r.tagged_bad(
                    &tag,
                    None,
                    "expected an empty response after the server's signature",
                );
                None
            }
        }
    };
    s.apply(match user {
        Some(u) => To::LoggedIn(u),
        None => To::NotAuthenticating,
    });
    false
}

/// The AUTHENTICATE waiting for its response line, taken (a failure if it was SCRAM's).
pub(crate) fn take_authenticating(s: &mut Session) -> Option<Authenticating> {
    match &mut s.state {
        State::NotAuthenticated { authenticating } => authenticating.take(),
        _ => None,
    }
}

// RFC 4616: authzid NUL authcid NUL password; authzid must be empty or the user itself.
async fn plain(
    s: &mut Session,
    tag: &str,
    data: &[u8],
    r: &mut Responder<'_>,
) -> Option<Arc<UserStore>> {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let [authz, user, password] = parts.as_slice() else {
        r.tagged_bad(tag, None, "malformed PLAIN response");
        return None;
    };
    if !authz.is_empty() && authz != user {
        r.tagged_no(
            tag,
            Some("AUTHORIZATIONFAILED"),
            "acting as another user is not allowed",
        );
        return None;
    }
    check(s, tag, user, password, r).await
}

/// Checks credentials and opens the user's mail; answers the command either way.
async fn check(
    s: &mut Session,
    tag: &str,
    user: &[u8],
    password: &[u8],
    r: &mut Responder<'_>,
) -> Option<Arc<UserStore>> {
    let name = String::from_utf8_lossy(user).into_owned();
    let ok = match s.auth.verify(&name, password, s.opts.peer).await {
        Ok(ok) => ok,
        Err(why) => {
            r.tagged_no(tag, Some("UNAVAILABLE"), &why);
            return None;
        }
    };
    if !ok {
        s.failed_logins += 1;
        tracing::info!(user = %name, peer = %s.opts.peer, failures = s.failed_logins, "login failed");
        tokio::time::sleep(s.opts.failed_login_delay).await;
        r.tagged_no(tag, Some("AUTHENTICATIONFAILED"), "invalid credentials");
        return None;
    }
    open(s, tag, name, r).await
}

/// Opens the mail of a user who proved who they are; answers the command either way.
async fn open(
    s: &mut Session,
    tag: &str,
    name: String,
    r: &mut Responder<'_>,
) -> Option<Arc<UserStore>> {
    match s.store.user(&name).await {
        Ok(u) => {
            tracing::info!(user = %name, peer = %s.opts.peer, "logged in");
            let caps = s.capability_list(true);
            r.tagged_ok(tag, Some(&format!("CAPABILITY {caps}")), "logged in");
            Some(u)
        }
        Err(e @ StoreError::Index(_)) | Err(e @ StoreError::Backend(_)) => {
            tracing::warn!(user = %name, error = %e, "could not open the user's mail");
            r.tagged_no(
                tag,
                Some("UNAVAILABLE"),
                &format!("mail store unavailable: {e}"),
            );
            None
        }
        Err(e) => {
            super::store_error(r, tag, &e);
            None
        }
    }
}
