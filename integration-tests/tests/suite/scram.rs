//! AUTHENTICATE SCRAM-SHA-256 (RFC 7677): a real client (mbsync, through Cyrus SASL) logs in
//! with it; a wrong password, an unknown user, a malformed message, a required channel binding
//! and a cancelled exchange each end with a clear answer; and failures count against the login
//! limits as a failed LOGIN does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use strata_integration_tests::{Client, TestServer};

use crate::imap::{fill_maildir, mbsync, mbsync_config};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// How an exchange went, as the client saw it.
#[derive(Debug)]
struct Outcome {
    /// The tagged status line, tag removed.
    status: String,
    /// The salt the server offered, if it got that far.
    salt: Option<String>,
}

/// Runs the client side of SCRAM-SHA-256 (RFC 5802, written here for the test) on `c`, with the
/// client-first message in the command (SASL-IR) or after an empty challenge; `cancel` answers
/// the challenge with `*`. Checks the server's signature when it sends one.
async fn scram(c: &mut Client, user: &str, password: &str, ir: bool, cancel: bool) -> Outcome {
    let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    let first = format!("n,,{bare}");
    let tag = c.tag();
    if ir {
        let line = format!(
            "{tag} AUTHENTICATE SCRAM-SHA-256 {}\r\n",
            B64.encode(&first)
        );
        c.send_raw(line.as_bytes()).await;
    } else {
        c.send_raw(format!("{tag} AUTHENTICATE SCRAM-SHA-256\r\n").as_bytes())
            .await;
        assert_eq!(c.read_response().await.unwrap().trim_end(), "+");
        c.send_raw(format!("{}\r\n", B64.encode(&first)).as_bytes())
            .await;
    }
    let tagged = |line: String| Outcome {
        status: line.strip_prefix(&format!("{tag} ")).unwrap().to_string(),
        salt: None,
    };
    let line = c.read_response().await.unwrap();
    let Some(challenge) = line.strip_prefix("+ ") else {
        return tagged(line);
    };
    let server_first = String::from_utf8(B64.decode(challenge).unwrap()).unwrap();
    let field = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let (nonce, salt, iterations) = (field("r="), field("s="), field("i=").parse().unwrap());
    assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL") && nonce.len() > 30);
    if cancel {
        c.send_raw(b"*\r\n").await;
        let mut out = tagged(c.read_response().await.unwrap());
        out.salt = Some(salt);
        return out;
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.as_bytes(),
        &B64.decode(&salt).unwrap(),
        iterations,
        &mut salted,
    );
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let last = format!("{without_proof},p={}", B64.encode(proof));
    c.send_raw(format!("{}\r\n", B64.encode(last)).as_bytes())
        .await;
    let line = c.read_response().await.unwrap();
    if let Some(verifier) = line.strip_prefix("+ ") {
        let server_key = hmac(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            B64.encode(hmac(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(B64.decode(verifier).unwrap(), expected.as_bytes());
        c.send_raw(b"\r\n").await;
        let mut out = tagged(c.read_response().await.unwrap());
        out.salt = Some(salt);
        return out;
    }
    let mut out = tagged(line);
    out.salt = Some(salt);
    out
}

/// Sends one raw AUTHENTICATE SCRAM-SHA-256 with `first` as its initial response.
async fn first_refused(c: &mut Client, first: &str) -> String {
    let r = c
        .cmd(&format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode(first)))
        .await;
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_logs_in_with_scram_sha_256() {
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    fill_maildir(&local, "INBOX", 3);
    // Only SCRAM-SHA-256: mbsync fails rather than fall back to PLAIN.
    let rc = mbsync_config(work.path(), &s, &local, "AuthMechs SCRAM-SHA-256");
    let out = mbsync(&rc).await;
    assert!(out.contains("SCRAM-SHA-256"), "{out}");
    let mut c = s.login("alice").await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 3"), "{r:?}");
}

#[tokio::test]
async fn scram_exchanges_end_clearly_and_failures_count_against_the_login_limits() {
    let s = TestServer::start_with(|c| c.imap.max_failed_logins_per_account = 3).await;
    let mut c = s.connect().await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps.has("AUTH=SCRAM-SHA-256"), "{caps:?}");

    // Right, with the initial response and without: logged in, the server's signature checked.
    for ir in [true, false] {
        let mut c = s.connect().await;
        let out = scram(&mut c, "alice", "alice-password", ir, false).await;
        assert!(out.status.starts_with("OK"), "{out:?}");
        assert!(c.ok("SELECT INBOX").await.is_ok());
    }

    // Wrong: as a failed login.
    let out = scram(&mut c, "bob", "not-bobs", true, false).await;
    assert!(
        out.status.starts_with("NO [AUTHENTICATIONFAILED]"),
        "{out:?}"
    );
    // No such user: the same answer, after a challenge with the same salt every time.
    let ghost = scram(&mut c, "ghost", "whatever", true, false).await;
    assert!(
        ghost.status.starts_with("NO [AUTHENTICATIONFAILED]"),
        "{ghost:?}"
    );
    let again = scram(&mut c, "ghost", "whatever", false, false).await;
    assert_eq!(ghost.salt, again.salt);
    assert!(ghost.salt.is_some());

    // Malformed first messages are BAD; a required channel binding is not offered.
    for bad in ["garbage", "n,,r=abc", "n,,n=bob", "n,,n=b=zz,r=x"] {
        let status = first_refused(&mut c, bad).await;
        assert!(status.starts_with("BAD"), "{bad:?}: {status}");
    }
    let status = first_refused(&mut c, "p=tls-exporter,,n=bob,r=abc").await;
    assert!(status.starts_with("NO [CANNOT]"), "{status}");
    let status = first_refused(&mut c, "n,a=alice,n=bob,r=abc").await;
    assert!(status.starts_with("NO [AUTHORIZATIONFAILED]"), "{status}");

    // A cancelled exchange counts as a failure: with the wrong password above, and one wrong
    // LOGIN, bob is at his limit of 3, and even the right password is refused for now.
    let out = scram(&mut c, "bob", "bob-password", true, true).await;
    assert!(out.status.starts_with("BAD"), "{out:?}");
    assert!(c.cmd("LOGIN bob wrong").await.status.starts_with("NO"));
    let out = scram(&mut c, "bob", "bob-password", true, false).await;
    assert!(
        out.status
            .contains("too many failed logins for this account"),
        "{out:?}"
    );
    let login = c.cmd("LOGIN bob bob-password").await.status;
    assert!(login.contains("too many failed logins"), "{login}");
    // The connection is still usable, and another account is not affected.
    let out = scram(&mut c, "alice", "alice-password", true, false).await;
    assert!(out.status.starts_with("OK"), "{out:?}");
}
