//! STARTTLS, LOGIN and AUTHENTICATE PLAIN (with SASL-IR). Plaintext credentials are refused
//! before TLS unless the server allows them on this connection.

use strata_mailstore::StoreError;

use crate::respond::Responder;
use crate::session::{Next, Session, State};

type R = std::io::Result<Next>;

pub(super) fn starttls(s: &mut Session, tag: &str, r: &mut Responder<'_>) -> R {
    if !s.opts.starttls_available || s.opts.tls_active {
        r.tagged_bad(tag, None, "STARTTLS is not available on this connection");
        return Ok(Next::Continue);
    }
    r.tagged_ok(tag, None, "Begin TLS negotiation now");
    Ok(Next::StartTls)
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
        return Ok(Next::Continue);
    }
    check(s, tag, user, password, r).await;
    Ok(Next::Continue)
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
        return Ok(Next::Continue);
    }
    if plaintext_refused(s, tag, r) {
        return Ok(Next::Continue);
    }
    match initial {
        Some(data) => {
            plain(s, tag, &data, r).await;
            Ok(Next::Continue)
        }
        None => {
            r.continuation("");
            s.pending_auth = Some(tag.to_string());
            Ok(Next::AuthContinue)
        }
    }
}

/// The client's SASL response line (already base64-decoded), or `None` if it cancelled.
pub(crate) async fn finish_authenticate(
    s: &mut Session,
    data: Option<Vec<u8>>,
    r: &mut Responder<'_>,
) {
    let Some(tag) = s.pending_auth.take() else {
        return;
    };
    match data {
        Some(d) => plain(s, &tag, &d, r).await,
        None => r.tagged_bad(&tag, None, "AUTHENTICATE cancelled"),
    }
}

// RFC 4616: authzid NUL authcid NUL password; authzid must be empty or the user itself.
async fn plain(s: &mut Session, tag: &str, data: &[u8], r: &mut Responder<'_>) {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let [authz, user, password] = parts.as_slice() else {
        r.tagged_bad(tag, None, "malformed PLAIN response");
        return;
    };
    if !authz.is_empty() && authz != user {
        r.tagged_no(
            tag,
            Some("AUTHORIZATIONFAILED"),
            "acting as another user is not allowed",
        );
        return;
    }
    check(s, tag, user, password, r).await;
}

async fn check(s: &mut Session, tag: &str, user: &[u8], password: &[u8], r: &mut Responder<'_>) {
    let name = String::from_utf8_lossy(user).into_owned();
    let ok = match s.auth.verify(&name, password, s.opts.peer).await {
        Ok(ok) => ok,
        Err(why) => {
            r.tagged_no(tag, Some("UNAVAILABLE"), &why);
            return;
        }
    };
    if !ok {
        s.failed_logins += 1;
        tracing::info!(user = %name, peer = %s.opts.peer, failures = s.failed_logins, "login failed");
        tokio::time::sleep(s.opts.failed_login_delay).await;
        r.tagged_no(tag, Some("AUTHENTICATIONFAILED"), "invalid credentials");
        return;
    }
    match s.store.user(&name).await {
        Ok(u) => {
            tracing::info!(user = %name, peer = %s.opts.peer, "logged in");
            s.user = Some(u);
            s.apply(State::Authenticated);
            let caps = s.capabilities();
            r.tagged_ok(tag, Some(&format!("CAPABILITY {caps}")), "logged in");
        }
        Err(e @ StoreError::Index(_)) | Err(e @ StoreError::Backend(_)) => {
            tracing::warn!(user = %name, error = %e, "could not open the user's mail");
            r.tagged_no(
                tag,
                Some("UNAVAILABLE"),
                &format!("mail store unavailable: {e}"),
            );
        }
        Err(e) => super::store_error(r, tag, &e),
    }
}
