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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap4rev2_names_mailboxes_in_utf8_and_imap4rev1_in_modified_utf7() {
    let s = TestServer::start().await;
    let mut old = s.login("alice").await;
    let r = old.ok("CAPABILITY").await;
    assert!(r.has("IMAP4rev1 IMAP4rev2"), "{r:?}");
    old.ok("CREATE Entw&APw-rfe").await;
    // A bare & is not modified UTF-7; "&-" is the & itself.
    let r = old.cmd("CREATE \"R&D\"").await;
    assert!(r.status.starts_with("NO [CANNOT]"), "{r:?}");
    old.ok("CREATE R&-D").await;
    // 8-bit from an IMAP4rev1 client can only mean UTF-8: kept as modified UTF-7.
    let raw = "Über".as_bytes();
    let tag = old.tag();
    old.send_raw(format!("{tag} CREATE {{{}+}}\r\n", raw.len()).as_bytes())
        .await;
    old.send_raw(raw).await;
    old.send_raw(b"\r\n").await;
    assert!(old.until_tagged(&tag).await.is_ok());

    let mut new = s.login("alice").await;
    new.ok("ENABLE IMAP4rev2").await;
    let r = new.ok("LIST \"\" *").await;
    for name in ["\"Entwürfe\"", "R&D", "\"Über\""] {
        assert!(
            r.with("LIST").iter().any(|l| l.ends_with(name)),
            "{name}: {r:?}"
        );
    }
    // Wildcards stand for whole characters.
    let r = new.ok("LIST \"\" \"%rfe\"").await;
    assert_eq!(
        r.with("LIST"),
        vec!["LIST (\\HasNoChildren) \"/\" \"Entwürfe\""]
    );
    let r = new.ok("LIST \"\" \"Entw?rfe\"").await;
    assert!(r.with("LIST").is_empty(), "{r:?}");
    new.ok("CREATE \"Отправленные\"").await;
    new.ok("CREATE \"Q&A\"").await;
    // A UTF-8 name that looks like modified UTF-7 is still only itself.
    new.ok("CREATE \"&AOk-\"").await;
    let r = new.ok("LIST \"\" \"&*\"").await;
    assert_eq!(
        r.with("LIST"),
        vec!["LIST (\\HasNoChildren) \"/\" &AOk-"],
        "{r:?}"
    );
    assert!(
        new.append("\"Entwürfe\"", "", &plain_message(1, "draft"))
            .await
            .is_ok()
    );
    let r = new.ok("SELECT \"Entwürfe\"").await;
    assert_eq!(r.with("LIST"), vec!["LIST () \"/\" \"Entwürfe\""], "{r:?}");
    assert!(r.has("1 EXISTS"), "{r:?}");
    let r = new.ok("STATUS \"Отправленные\" (MESSAGES)").await;
    assert_eq!(
        r.with("STATUS"),
        vec!["STATUS \"Отправленные\" (MESSAGES 0)"],
        "{r:?}"
    );
    new.ok("RENAME \"Отправленные\" \"Brouillons/été\"").await;
    let r = new.ok("COPY 1 \"Brouillons/été\"").await;
    assert!(r.status.contains("COPYUID"), "{r:?}");
    new.ok("SUBSCRIBE \"Brouillons/été\"").await;
    let r = new.ok("LSUB \"\" \"Brouillons/%\"").await;
    assert_eq!(
        r.with("LSUB"),
        vec!["LSUB () \"/\" \"Brouillons/été\""],
        "{r:?}"
    );

    // The IMAP4rev1 session sees the same mailboxes in modified UTF-7.
    let r = old.ok("LIST \"\" *").await;
    for name in [
        "Entw&APw-rfe",
        "R&-D",
        "&ANw-ber",
        "Brouillons/&AOk-t&AOk-",
        "Q&-A",
        "&-AOk-",
    ] {
        assert!(
            r.with("LIST").iter().any(|l| l.ends_with(name)),
            "{name}: {r:?}"
        );
    }
    let r = old.ok("STATUS Brouillons/&AOk-t&AOk- (MESSAGES)").await;
    assert!(r.has("(MESSAGES 1)"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap4rev2_refuses_what_it_removed_and_names_its_codes() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Parent/Child").await;
    c.ok("ENABLE IMAP4rev2").await;
    let r = c.cmd("STATUS INBOX (MESSAGES RECENT)").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("SELECT INBOX").await;
    for key in ["RECENT", "NEW", "OLD", "OR SEEN NOT NEW"] {
        let r = c.cmd(&format!("SEARCH {key}")).await;
        assert!(r.status.starts_with("BAD"), "{key}: {r:?}");
    }
    // RFC 9051 7.1's codes.
    let r = c.cmd("DELETE Parent").await;
    assert!(r.status.starts_with("NO [HASCHILDREN]"), "{r:?}");
    let r = c.cmd("CREATE Parent").await;
    assert!(r.status.starts_with("NO [ALREADYEXISTS]"), "{r:?}");
    // The connection is still good.
    c.ok("NOOP").await;
}
