//! IMAP4rev2's session rules (RFC 9051 Appendix E) once a client sends ENABLE IMAP4rev2.

use strata_integration_tests::{TestServer, plain_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_imap4rev2_switches_the_session_to_its_rules() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Two").await;
    c.fill("Two", 3, "rev2").await;
    let r = c.ok("ENABLE IMAP4rev2").await;
    assert_eq!(r.with("ENABLED"), vec!["ENABLED IMAP4rev2"], "{r:?}");
    // SELECT: a LIST with the name, no RECENT and no UNSEEN code.
    let r = c.ok("SELECT Two").await;
    assert_eq!(r.with("LIST"), vec!["LIST () \"/\" Two"], "{r:?}");
    assert!(!r.has("RECENT") && !r.has("[UNSEEN"), "{r:?}");
    assert!(r.has("3 EXISTS"), "{r:?}");
    // SEARCH answers ESEARCH (ALL), tagged with the command.
    let tag = c.tag();
    c.send_raw(format!("{tag} UID SEARCH ALL\r\n").as_bytes())
        .await;
    let r = c.until_tagged(&tag).await;
    assert_eq!(
        r.with("ESEARCH"),
        vec![format!("ESEARCH (TAG \"{tag}\") UID ALL 1:3").as_str()],
        "{r:?}"
    );
    assert!(
        r.with("SEARCH").iter().all(|l| l.starts_with("ESEARCH")),
        "{r:?}"
    );
    let r = c.ok("SEARCH SUBJECT nowhere").await;
    assert!(r.with("ESEARCH")[0].ends_with("\")"), "{r:?}");
    // No \Recent anywhere, even for mail that arrives now.
    let r = c.ok("FETCH 1:* FLAGS").await;
    assert!(!r.has("\\Recent"), "{r:?}");
    let mut other = s.login("alice").await;
    assert!(
        other
            .append("Two", "", &plain_message(4, "new"))
            .await
            .is_ok()
    );
    let r = c.ok("NOOP").await;
    assert!(r.has("4 EXISTS") && !r.has("RECENT"), "{r:?}");
    // A rev1 session still sees the new message as \Recent: rev2 claimed none.
    other.ok("SELECT Two").await;
    let r = other.ok("SEARCH RECENT").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1 2 3 4"], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_imap4rev2_in_a_mailbox_drops_recent_there() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.fill("INBOX", 2, "recent").await;
    let r = c.ok("SELECT INBOX").await;
    assert!(r.has("2 RECENT"), "{r:?}");
    c.ok("ENABLE IMAP4rev2").await;
    let r = c.ok("FETCH 1:* FLAGS").await;
    assert!(!r.has("\\Recent"), "{r:?}");
    // Enabling twice says nothing new.
    let r = c.ok("ENABLE IMAP4rev2").await;
    assert_eq!(r.with("ENABLED"), vec!["ENABLED"], "{r:?}");
}
