//! STARTTLS, LOGIN and AUTHENTICATE PLAIN (with SASL-IR). Plaintext credentials are refused
//! before TLS unless the server allows them on this connection.

use std::sync::Arc;

use strata_mailstore::{StoreError, UserStore};

use super::R;
use crate::respond::Responder;
use crate::session::{Next, Session, State, Step, To};

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
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        r.tagged_no(tag, Some("CANNOT"), "only AUTHENTICATE PLAIN is supported");
        return Ok(Step::CONTINUE);
    }
    if plaintext_refused(s, tag, r) {
        return Ok(Step::CONTINUE);
    }
    match initial {
        Some(data) => Ok(logged_in(plain(s, tag, &data, r).await)),
        None => {
            r.continuation("");
            Ok(Step::then(
                Next::AuthContinue,
                To::Authenticating(tag.to_string()),
            ))
        }
    }
}

fn logged_in(user: Option<Arc<UserStore>>) -> Step {
    match user {
        Some(u) => Step::to(To::LoggedIn(u)),
        None => Step::CONTINUE,
    }
}

/// The client's SASL response line (already base64-decoded), or `None` if it cancelled.
pub(crate) async fn finish_authenticate(
    s: &mut Session,
    data: Option<Vec<u8>>,
    r: &mut Responder<'_>,
) {
    let Some(tag) = take_authenticating(s) else {
        return;
    };
    let user = match data {
        Some(d) => plain(s, &tag, &d, r).await,
        None => {
            r.tagged_bad(&tag, None, "AUTHENTICATE cancelled");
            None
        }
    };
    s.apply(match user {
        Some(u) => To::LoggedIn(u),
        None => To::NotAuthenticating,
    });
}

/// The tag of the AUTHENTICATE waiting for its response line, taken.
pub(crate) fn take_authenticating(s: &mut Session) -> Option<String> {
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
