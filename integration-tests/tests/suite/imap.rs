//! Strata over real IMAP connections: every command with its error paths, STARTTLS and TLS,
//! concurrent sessions, IDLE, restarts, bad input, the delay backend, and real clients.

use std::time::Duration;

use strata_integration_tests::{
    Client, Reply, TestServer, multipart_message, plain_message, read_delay,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_capabilities_and_login_over_every_transport() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    assert!(
        c.greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{}",
        c.greeting
    );
    assert!(c.greeting.contains("STARTTLS"));
    let caps = c.ok("CAPABILITY").await;
    assert!(caps.has("AUTH=PLAIN") && caps.has("LITERAL+") && caps.has("SASL-IR"));
    c.ok("NOOP").await;
    // Loopback may log in without TLS by default.
    let r = c.ok("LOGIN alice alice-password").await;
    assert!(r.status.contains("IDLE") && r.status.contains("UIDPLUS") && r.status.contains("MOVE"));
    c.ok("LOGOUT").await;

    // Implicit TLS.
    let mut t = s.connect_tls().await;
    assert!(!t.greeting.contains("STARTTLS"));
    t.ok("LOGIN bob bob-password").await;
    t.ok("SELECT INBOX").await;

    // STARTTLS, then the capability list no longer offers it.
    let c = s.connect().await;
    let mut c = c.starttls(&s.certificate()).await;
    let caps = c.ok("CAPABILITY").await;
    assert!(!caps.has("STARTTLS"), "{caps:?}");
    c.ok("LOGIN alice alice-password").await;
    let r = c.cmd("STARTTLS").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_passwords_are_refused_before_tls_when_configured() {
    let s = TestServer::start_with(|c| c.imap.plaintext_auth = strata_config::PlaintextAuth::Never)
        .await;
    let mut c = s.connect().await;
    assert!(c.greeting.contains("LOGINDISABLED"));
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c
        .cmd("AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk")
        .await;
    assert!(r.status.starts_with("NO [PRIVACYREQUIRED]"), "{r:?}");
    let mut c = c.starttls(&s.certificate()).await;
    c.ok("LOGIN alice alice-password").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_and_failed_logins() {
    let s = TestServer::start_with(|c| c.imap.max_failed_logins_per_ip = 3).await;
    let mut c = s.connect().await;
    // SASL-IR: base64("\0alice\0alice-password").
    c.ok("AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk")
        .await;
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("BAD"), "LOGIN after login: {r:?}");

    // Without an initial response: continuation, then the response line.
    let mut c = s.connect().await;
    c.send_raw(b"x1 AUTHENTICATE PLAIN\r\n").await;
    let cont = c.read_response().await.unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    c.send_raw(b"AGJvYgBib2ItcGFzc3dvcmQ=\r\n").await;
    let r = c.until_tagged("x1").await;
    assert!(r.is_ok(), "{r:?}");

    // Cancelled, then malformed.
    let mut c = s.connect().await;
    c.send_raw(b"x1 AUTHENTICATE PLAIN\r\n").await;
    c.read_response().await.unwrap();
    c.send_raw(b"*\r\n").await;
    assert!(c.until_tagged("x1").await.status.starts_with("BAD"));
    let r = c.cmd("AUTHENTICATE PLAIN !!!notbase64").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    let r = c.cmd("AUTHENTICATE CRAM-MD5").await;
    assert!(
        r.status.starts_with("NO") || r.status.starts_with("BAD"),
        "{r:?}"
    );

    // Wrong passwords: NO, then the address is refused for a while even with the right one.
    for _ in 0..3 {
        let r = c.cmd("LOGIN alice wrong").await;
        assert!(r.status.starts_with("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    }
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("NO [UNAVAILABLE]"), "{r:?}");
    let r = c.cmd("LOGIN nobody x").await;
    assert!(r.status.starts_with("NO"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_the_wrong_state_are_refused() {
    let s = TestServer::start().await;
    let mut c = s.connect().await;
    for cmd in [
        "SELECT INBOX",
        "LIST \"\" *",
        "FETCH 1 FLAGS",
        "APPEND INBOX {1+}\r\nx",
        "IDLE",
    ] {
        let r = c.cmd(cmd).await;
        assert!(r.status.starts_with("BAD"), "{cmd}: {r:?}");
    }
    c.ok("LOGIN alice alice-password").await;
    for cmd in [
        "FETCH 1 FLAGS",
        "STORE 1 +FLAGS (\\Seen)",
        "EXPUNGE",
        "CLOSE",
        "SEARCH ALL",
        "UID FETCH 1 FLAGS",
        "COPY 1 INBOX",
    ] {
        let r = c.cmd(cmd).await;
        assert!(r.status.starts_with("BAD"), "{cmd}: {r:?}");
    }
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("NOOP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_create_list_rename_delete_subscribe_status() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let list = c.ok("LIST \"\" *").await;
    for (name, attr) in [
        ("Drafts", "\\Drafts"),
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ] {
        assert!(
            list.untagged
                .iter()
                .any(|l| l.contains(attr) && l.ends_with(name)),
            "{name}: {list:?}"
        );
    }
    assert!(list.has("\"/\" INBOX"));
    let r = c.ok("LIST \"\" \"\"").await;
    assert_eq!(r.untagged, vec!["LIST (\\Noselect) \"/\" \"\"".to_string()]);

    c.ok("CREATE Work/Projects/2026").await;
    c.ok("CREATE Personal/").await;
    let r = c.cmd("CREATE Work").await;
    assert!(r.status.starts_with("NO [ALREADYEXISTS]"), "{r:?}");
    let r = c.cmd("CREATE INBOX").await;
    assert!(r.status.starts_with("NO"), "{r:?}");
    let r = c.ok("LIST \"\" %").await;
    assert!(
        r.untagged
            .iter()
            .any(|l| l.contains("\\HasChildren") && l.ends_with("Work")),
        "{r:?}"
    );
    assert!(!r.has("Work/Projects"));
    let r = c.ok("LIST Work/ %").await;
    assert_eq!(r.untagged.len(), 1, "{r:?}");
    assert!(r.untagged[0].ends_with("Work/Projects"));
    let r = c.ok("LIST \"\" Work/*").await;
    assert_eq!(r.untagged.len(), 2, "{r:?}");
    let r = c.ok("LIST \"\" inbox").await;
    assert_eq!(r.untagged.len(), 1, "{r:?}");

    // DELETE refuses a parent and INBOX; RENAME moves a subtree.
    let r = c.cmd("DELETE Work").await;
    assert!(r.status.starts_with("NO [HASCHILDREN]"), "{r:?}");
    assert!(c.cmd("DELETE INBOX").await.status.starts_with("NO"));
    assert!(
        c.cmd("DELETE Nope")
            .await
            .status
            .starts_with("NO [NONEXISTENT]")
    );
    c.ok("RENAME Work Jobs").await;
    let r = c.ok("LIST \"\" *").await;
    assert!(r.has("Jobs/Projects/2026") && !r.has("Work"), "{r:?}");
    assert!(
        c.cmd("RENAME Nope Other")
            .await
            .status
            .starts_with("NO [NONEXISTENT]")
    );
    assert!(
        c.cmd("RENAME Jobs Sent")
            .await
            .status
            .starts_with("NO [ALREADYEXISTS]")
    );
    assert!(
        c.cmd("RENAME Jobs Jobs/Inner")
            .await
            .status
            .starts_with("NO")
    );
    c.ok("DELETE Jobs/Projects/2026").await;

    // RENAME INBOX moves its messages and leaves it empty.
    c.append("INBOX", "", &plain_message(1, "one")).await;
    c.ok("RENAME INBOX Old").await;
    let r = c
        .ok("STATUS Old (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)")
        .await;
    assert!(r.has("MESSAGES 1") && r.has("UNSEEN 1"), "{r:?}");
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 0"), "{r:?}");
    assert!(
        c.cmd("STATUS Nope (MESSAGES)")
            .await
            .status
            .starts_with("NO [NONEXISTENT]")
    );

    // Subscriptions.
    c.ok("SUBSCRIBE Old").await;
    let r = c.ok("LSUB \"\" *").await;
    assert!(r.has("Old") && r.has("Sent"), "{r:?}");
    c.ok("UNSUBSCRIBE Old").await;
    let r = c.ok("LSUB \"\" %").await;
    assert!(r.has("Sent") && !r.has("Old"), "{r:?}");
    let r = c.ok("LSUB \"\" O*").await;
    assert!(r.untagged.is_empty(), "{r:?}");
    assert!(c.cmd("SUBSCRIBE Nope").await.status.starts_with("NO"));
    let r = c.ok("NAMESPACE").await;
    assert_eq!(
        r.untagged,
        vec!["NAMESPACE ((\"\" \"/\")) NIL NIL".to_string()]
    );
    c.ok("ID NIL").await;
    c.ok("ENABLE CONDSTORE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_fetch_every_item() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let msg = multipart_message(7);
    let r = c.append("INBOX", "\\Flagged $Work", &msg).await;
    assert!(r.status.starts_with("OK [APPENDUID "), "{r:?}");
    let validity: u32 = r.status.split(' ').nth(2).unwrap().parse().unwrap();
    // APPEND with a date, and LITERAL+.
    let m2 = plain_message(2, "second");
    c.send_raw(
        format!(
            "d1 APPEND INBOX (\\Seen) \"05-Mar-2024 10:11:12 +0100\" {{{}+}}\r\n",
            m2.len()
        )
        .as_bytes(),
    )
    .await;
    c.send_raw(&m2).await;
    c.send_raw(b"\r\n").await;
    let r = c.until_tagged("d1").await;
    assert!(
        r.status
            .starts_with(&format!("OK [APPENDUID {validity} 2]")),
        "{r:?}"
    );
    assert!(
        c.append("Nope", "", &m2)
            .await
            .status
            .starts_with("NO [TRYCREATE]")
    );
    let r = c.append("INBOX", "\\Bogus", &m2).await;
    assert!(r.status.starts_with("BAD"), "{r:?}");

    let r = c.ok("SELECT INBOX").await;
    assert!(
        r.has("2 EXISTS") && r.has("2 RECENT") && r.has("[UNSEEN 1]"),
        "{r:?}"
    );
    assert!(
        r.has(&format!("[UIDVALIDITY {validity}]")) && r.has("[UIDNEXT 3]"),
        "{r:?}"
    );
    assert!(r.has("$Work") && r.has("PERMANENTFLAGS"), "{r:?}");
    assert!(r.status.starts_with("OK [READ-WRITE]"));

    let r = c.ok("FETCH 1:2 (FLAGS UID RFC822.SIZE INTERNALDATE)").await;
    assert_eq!(r.untagged.len(), 2);
    assert!(
        r.untagged[0].contains("FLAGS (\\Flagged \\Recent $Work)"),
        "{r:?}"
    );
    assert!(r.untagged[0].contains(&format!("RFC822.SIZE {}", msg.len())));
    assert!(
        r.untagged[1].contains("INTERNALDATE \"05-Mar-2024 10:11:12 +0100\""),
        "{r:?}"
    );

    let r = c.ok("FETCH 1 (ENVELOPE)").await;
    let env = &r.untagged[0];
    assert!(env.contains("\"Tue, 1 Jul 2003 10:52:37 +0200\""), "{env}");
    assert!(
        env.contains("((\"Bob Sender\" NIL \"bob\" \"example.org\"))"),
        "{env}"
    );
    assert!(
        env.contains("((NIL NIL \"carol\" \"example.org\"))"),
        "{env}"
    );
    assert!(env.contains("\"<m7@example.org>\""), "{env}");

    let r = c.ok("FETCH 1 (BODYSTRUCTURE)").await;
    let bs = &r.untagged[0];
    assert!(
        bs.contains("(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\""),
        "{bs}"
    );
    assert!(bs.contains("\"alternative\""), "{bs}");
    assert!(
        bs.contains("(\"attachment\" (\"filename\" \"report.pdf\"))"),
        "{bs}"
    );
    assert!(bs.contains("\"message\" \"rfc822\""), "{bs}");
    assert!(bs.contains("\"mixed\" (\"boundary\" \"outer\")"), "{bs}");
    let r = c.ok("FETCH 1 (BODY)").await;
    assert!(
        !r.untagged[0].contains("boundary"),
        "BODY has no extension data: {r:?}"
    );

    // Sections: parts, nested parts, MIME, HEADER, TEXT, fields, partial.
    let r = c.ok("FETCH 1 (BODY.PEEK[1.1])").await;
    assert!(r.untagged[0].contains("Caf=C3=A9."), "{r:?}");
    let r = c.ok("FETCH 1 (BODY.PEEK[2] BODY.PEEK[2.MIME])").await;
    assert!(
        r.untagged[0].contains("BODY[2] {12}\r\nJVBERi0xLjQK"),
        "{r:?}"
    );
    assert!(r.untagged[0].contains("BODY[2.MIME] {"), "{r:?}");
    assert!(
        r.untagged[0].contains("Content-Disposition: attachment"),
        "{r:?}"
    );
    let r = c
        .ok("FETCH 1 (BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1])")
        .await;
    assert!(r.untagged[0].contains("Subject: Forwarded 7"), "{r:?}");
    assert!(
        r.untagged[0].contains("BODY[3.TEXT] {12}\r\ninner body 7 BODY[3.1] {12}"),
        "{r:?}"
    );
    let r = c
        .ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject X-Custom)])")
        .await;
    assert!(
        r.untagged[0].contains("BODY[HEADER.FIELDS (Subject X-Custom)] {"),
        "{r:?}"
    );
    assert!(
        r.untagged[0].contains("X-Custom: custom-7\r\n\r\n"),
        "{r:?}"
    );
    assert!(!r.untagged[0].contains("From:"), "{r:?}");
    let r = c
        .ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Subject)])")
        .await;
    assert!(
        r.untagged[0].contains("From: Bob") && !r.untagged[0].contains("Subject:"),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 (BODY.PEEK[]<0.4>)").await;
    assert!(r.untagged[0].contains("BODY[]<0> {4}\r\nFrom"), "{r:?}");
    let r = c.ok("FETCH 1 (BODY.PEEK[HEADER]<6.3>)").await;
    assert!(
        r.untagged[0].contains("BODY[HEADER]<6> {3}\r\nBob"),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 (BODY.PEEK[9])").await;
    assert!(r.untagged[0].contains("BODY[9] {0}"), "{r:?}");
    let r = c.ok("FETCH 1 (RFC822.HEADER)").await;
    assert!(
        r.untagged[0].contains("RFC822.HEADER {") && !r.untagged[0].contains("\\Seen"),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 (FLAGS)").await;
    assert!(
        !r.untagged[0].contains("\\Seen"),
        "PEEK must not set \\Seen: {r:?}"
    );

    // Non-peek fetches set \Seen and report it.
    let r = c.ok("FETCH 1 (BODY[TEXT])").await;
    assert!(r.untagged[0].contains("\\Seen"), "{r:?}");
    let full = c.ok("FETCH 1 (RFC822)").await;
    assert!(full.untagged[0].contains(&String::from_utf8_lossy(&msg).to_string()));
    let r = c.ok("FETCH 2 (RFC822.TEXT)").await;
    assert!(r.untagged[0].contains("body of message 2"), "{r:?}");

    // Macros and UID FETCH (UID always included).
    let r = c.ok("FETCH 1 ALL").await;
    assert!(r.untagged[0].contains("ENVELOPE") && r.untagged[0].contains("RFC822.SIZE"));
    let r = c.ok("FETCH 1 FULL").await;
    assert!(r.untagged[0].contains("BODY ("));
    let r = c.ok("FETCH 1:* FAST").await;
    assert_eq!(r.untagged.len(), 2);
    let r = c.ok("UID FETCH 2 FLAGS").await;
    assert!(r.untagged[0].starts_with("2 FETCH (UID 2 FLAGS"), "{r:?}");
    let r = c.ok("UID FETCH 1:4294967295 (FLAGS)").await;
    assert_eq!(r.untagged.len(), 2);
    let r = c.ok("UID FETCH 99 (FLAGS)").await;
    assert!(r.untagged.is_empty());
    let r = c.cmd("FETCH 3 FLAGS").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    // An item Strata does not know is a syntax error, never silently dropped.
    let r = c.cmd("FETCH 1 (FLAGS X-UNKNOWN-ITEM)").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

/// HEADER.FIELDS naming only fields the index keeps is answered from the index; naming one
/// more (which no message has) reads the message. Both answers are the same bytes, for
/// folded, repeated, encoded and oddly cased fields, and for a message another session
/// expunged that this one may still fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_from_the_index_match_the_message() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let messages: Vec<Vec<u8>> = vec![
        plain_message(1, "plain"),
        b"subject: =?UTF-8?Q?Caf=C3=A9?= and a long subject\r\n  folded onto a second line\r\n\
          FROM: \"Ann\" <ann@example.org>\r\nTo: b@example.org,\r\n\tc@example.org\r\n\
          To: second-to@example.org\r\nX-Other: not kept\r\nMessage-ID: <m2@example.org>\r\n\
          Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody\r\n"
            .to_vec(),
        b"Subject:no space\r\nfrom:\r\nTo:   three spaces\r\nCc: d@example.org\r\n\r\n".to_vec(),
        b"\r\nno header at all\r\n".to_vec(),
    ];
    for m in &messages {
        assert!(c.append("INBOX", "", m).await.is_ok());
    }
    let mut other = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    other.ok("SELECT INBOX").await;
    let r = fields_both_ways(&mut c).await;
    assert!(
        r.untagged[1].contains("\r\n  folded onto a second line\r\n"),
        "{r:?}"
    );
    assert!(r.untagged[1].contains("To: second-to@example.org"), "{r:?}");
    assert!(!r.untagged[1].contains("X-Other"), "{r:?}");
    // Another session expunges message 2; this one still answers for it, from what it kept.
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    other.ok("EXPUNGE").await;
    let r = fields_both_ways(&mut c).await;
    assert!(
        r.untagged[1].contains("Message-ID: <m2@example.org>"),
        "{r:?}"
    );
}

/// FETCH 1:* of the header fields the index keeps, answered from the index and (with one more
/// field no message has) from the messages: the same bytes for every message.
async fn fields_both_ways(c: &mut Client) -> Reply {
    let indexed = "FROM TO CC SUBJECT DATE MESSAGE-ID";
    let from_index = c
        .ok(&format!("FETCH 1:* (BODY.PEEK[HEADER.FIELDS ({indexed})])"))
        .await;
    let from_body = c
        .ok(&format!(
            "FETCH 1:* (BODY.PEEK[HEADER.FIELDS ({indexed} X-NONE)])"
        ))
        .await;
    assert_eq!(from_index.untagged.len(), 4, "{from_index:?}");
    assert_eq!(from_body.untagged.len(), 4, "{from_body:?}");
    for (a, b) in from_index.untagged.iter().zip(&from_body.untagged) {
        let a = a.split_once("] ").expect("a section").1;
        let b = b.split_once("] ").expect("a section").1;
        assert_eq!(a, b, "from the index and from the message");
    }
    from_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_flags_and_keywords() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.fill("INBOX", 3, "s").await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("STORE 1 +FLAGS (\\Seen \\Answered)").await;
    assert_eq!(
        r.untagged,
        vec!["1 FETCH (FLAGS (\\Answered \\Seen \\Recent))".to_string()]
    );
    let r = c.ok("STORE 1:2 FLAGS (\\Flagged $Label1)").await;
    // A keyword new to the user is announced first (RFC 3501 7.2.6).
    assert!(r.untagged[0].starts_with("FLAGS ("), "{r:?}");
    assert!(r.untagged[1].starts_with("OK [PERMANENTFLAGS ("), "{r:?}");
    assert!(
        r.untagged[2].contains("(\\Flagged \\Recent $Label1)"),
        "{r:?}"
    );
    let r = c.ok("STORE 1 -FLAGS (\\Flagged)").await;
    assert!(r.untagged[0].contains("(\\Recent $Label1)"), "{r:?}");
    let r = c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    assert!(r.untagged.is_empty(), "{r:?}");
    let r = c.ok("UID STORE 3 +FLAGS (\\Draft)").await;
    assert!(
        r.untagged[0].starts_with("3 FETCH (UID 3 FLAGS (\\Draft"),
        "{r:?}"
    );
    let r = c.ok("FETCH 1:3 FLAGS").await;
    assert!(r.untagged[1].contains("\\Deleted"), "{r:?}");
    let r = c.cmd("STORE 1 +FLAGS (\\Recent)").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    let r = c.cmd("STORE 9 +FLAGS (\\Seen)").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    // Flags outlive the session.
    c.ok("LOGOUT").await;
    let mut c = s.login("alice").await;
    let r = c.ok("EXAMINE INBOX").await;
    assert!(
        r.status.starts_with("OK [READ-ONLY]") && r.has("0 RECENT"),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 FLAGS").await;
    // FLAGS replaced \Seen and \Answered.
    assert!(r.untagged[0].contains("FLAGS ($Label1)"), "{r:?}");
    let r = c.cmd("STORE 1 +FLAGS (\\Seen)").await;
    assert!(r.status.starts_with("NO [READ-ONLY]"), "{r:?}");
    // EXAMINE never sets \Seen.
    c.ok("FETCH 2 BODY[]").await;
    let r = c.ok("FETCH 2 FLAGS").await;
    assert!(!r.untagged[0].contains("\\Seen"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_every_key() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.append("INBOX", "\\Seen", &multipart_message(1)).await;
    c.append("INBOX", "\\Flagged", &plain_message(2, "Meeting notes"))
        .await;
    c.append("INBOX", "\\Deleted $Todo", &plain_message(3, "Lunch"))
        .await;
    c.ok("SELECT INBOX").await;
    let cases: &[(&str, &str)] = &[
        ("ALL", "1 2 3"),
        ("SEEN", "1"),
        ("UNSEEN", "2 3"),
        ("FLAGGED", "2"),
        ("UNFLAGGED", "1 3"),
        ("DELETED", "3"),
        ("UNDELETED", "1 2"),
        ("ANSWERED", ""),
        ("UNANSWERED", "1 2 3"),
        ("DRAFT", ""),
        ("UNDRAFT", "1 2 3"),
        ("KEYWORD $Todo", "3"),
        ("UNKEYWORD $Todo", "1 2"),
        ("RECENT", "1 2 3"),
        ("NEW", "2 3"),
        ("OLD", ""),
        ("SUBJECT meeting", "2"),
        ("SUBJECT \"report 1\"", "1"),
        ("CHARSET UTF-8 SUBJECT {5+}\r\nété", "1"),
        ("FROM bob@example.org", "1"),
        ("FROM sender3", "3"),
        ("TO alice", "1 2 3"),
        ("CC carol", "1"),
        ("BCC nobody", ""),
        ("HEADER X-Custom custom-1", "1"),
        ("HEADER Message-ID p2", "2"),
        ("HEADER X-Custom \"\"", "1"),
        ("BODY \"body of message\"", "2 3"),
        ("CHARSET UTF-8 BODY {5+}\r\ncafé", "1"),
        ("TEXT Lunch", "3"),
        ("TEXT \"inner body\"", "1"),
        ("LARGER 500", "1"),
        ("SMALLER 500", "2 3"),
        ("SENTBEFORE 2-Jul-2003", "1"),
        ("SENTON 2-Jul-2003", "2 3"),
        ("SENTSINCE 2-Jul-2003", "2 3"),
        ("SINCE 1-Jan-2020", "1 2 3"),
        ("BEFORE 1-Jan-2020", ""),
        ("ON 1-Jan-2020", ""),
        ("OR SEEN FLAGGED", "1 2"),
        ("NOT SEEN", "2 3"),
        ("NOT OR SEEN FLAGGED", "3"),
        ("(SEEN) LARGER 10", "1"),
        ("OR (SEEN LARGER 5000) (FLAGGED NOT DELETED)", "2"),
        ("2:*", "2 3"),
        ("1,3", "1 3"),
        ("UID 2", "2"),
        ("UID 2:*", "2 3"),
        ("SEEN UNSEEN", ""),
    ];
    for (query, want) in cases {
        let r = c.ok(&format!("SEARCH {query}")).await;
        let got = r.with("SEARCH");
        assert_eq!(got.len(), 1, "{query}: {r:?}");
        assert_eq!(got[0].trim_start_matches("SEARCH").trim(), *want, "{query}");
    }
    let r = c.ok("UID SEARCH FLAGGED").await;
    assert_eq!(r.with("SEARCH")[0], "SEARCH 2");
    let r = c.cmd("SEARCH CHARSET KOI8-R ALL").await;
    assert!(r.status.starts_with("NO [BADCHARSET"), "{r:?}");
    let r = c.cmd("SEARCH FROBNICATE").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_move_expunge_close_unselect() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.fill("INBOX", 5, "m").await;
    c.ok("CREATE Keep").await;
    let r = c.ok("STATUS Keep (UIDVALIDITY)").await;
    let validity = r.untagged[0]
        .split("UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    c.ok("SELECT INBOX").await;
    c.ok("CHECK").await;
    let r = c.ok("COPY 1:2 Keep").await;
    assert_eq!(
        r.status,
        format!("OK [COPYUID {validity} 1:2 1:2] COPY completed")
    );
    let r = c.ok("UID COPY 4 Keep").await;
    assert!(
        r.status
            .starts_with(&format!("OK [COPYUID {validity} 4 3]")),
        "{r:?}"
    );
    assert!(
        c.cmd("COPY 1 Nope")
            .await
            .status
            .starts_with("NO [TRYCREATE]")
    );
    let r = c.ok("MOVE 2 Keep").await;
    assert!(
        r.untagged[0].starts_with(&format!("OK [COPYUID {validity} 2 4]")),
        "{r:?}"
    );
    assert!(r.has("2 EXPUNGE"), "{r:?}");
    let r = c.ok("UID MOVE 5 Keep").await;
    assert!(r.has("4 EXPUNGE"), "{r:?}");
    // INBOX now holds UIDs 1, 3, 4.
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("UID EXPUNGE 3").await;
    assert_eq!(r.with("2 EXPUNGE").len(), 1, "{r:?}");
    let r = c.ok("EXPUNGE").await;
    // Each EXPUNGE renumbers the rest, so both are reported as 1.
    assert_eq!(
        r.untagged,
        vec!["1 EXPUNGE".to_string(), "1 EXPUNGE".to_string()]
    );
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 0"), "{r:?}");
    // Copies survive the originals' expunge, bodies included.
    c.ok("SELECT Keep").await;
    let r = c.ok("FETCH 1:* (BODY.PEEK[TEXT])").await;
    assert_eq!(r.untagged.len(), 5, "{r:?}");
    assert!(r.untagged.iter().all(|l| l.contains("body of message")));
    // CLOSE expunges silently; UNSELECT does not.
    c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    c.ok("UNSELECT").await;
    let r = c.ok("STATUS Keep (MESSAGES)").await;
    assert!(r.has("MESSAGES 5"), "{r:?}");
    c.ok("SELECT Keep").await;
    let r = c.ok("CLOSE").await;
    assert!(r.untagged.is_empty(), "{r:?}");
    let r = c.ok("STATUS Keep (MESSAGES)").await;
    assert!(r.has("MESSAGES 4"), "{r:?}");
    assert!(c.cmd("FETCH 1 FLAGS").await.status.starts_with("BAD"));
    // EXAMINE: EXPUNGE and MOVE refused, CLOSE does not expunge.
    c.ok("SELECT Keep").await;
    c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    c.ok("EXAMINE Keep").await;
    assert!(c.cmd("EXPUNGE").await.status.starts_with("NO [READ-ONLY]"));
    assert!(
        c.cmd("MOVE 1 INBOX")
            .await
            .status
            .starts_with("NO [READ-ONLY]")
    );
    c.ok("CLOSE").await;
    let r = c.ok("STATUS Keep (MESSAGES)").await;
    assert!(r.has("MESSAGES 4"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_see_each_others_changes_when_the_rfc_allows() {
    let s = TestServer::start().await;
    let mut a = s.login("alice").await;
    a.fill("INBOX", 3, "x").await;
    let r = a.ok("SELECT INBOX").await;
    assert!(r.has("3 RECENT"));
    let mut b = s.login("alice").await;
    let r = b.ok("SELECT INBOX").await;
    assert!(
        r.has("0 RECENT"),
        "recent belongs to the first session: {r:?}"
    );
    b.ok("STORE 1 +FLAGS (\\Flagged)").await;
    b.ok("STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    b.append("INBOX", "", &plain_message(4, "new")).await;

    // FETCH may report flags and new messages but never an expunge; message 3 keeps its number.
    let r = a.ok("FETCH 1:3 (UID)").await;
    assert!(!r.untagged.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    assert!(r.has("1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"), "{r:?}");
    assert!(r.has("4 EXISTS"), "{r:?}");
    let r = a.ok("SEARCH ALL").await;
    assert!(!r.untagged.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    // NOOP may: the expunge is reported and the numbers shift.
    let r = a.ok("NOOP").await;
    assert_eq!(r.with("3 EXPUNGE").len(), 1, "{r:?}");
    let r = a.ok("FETCH 3 (UID)").await;
    assert!(r.untagged[0].starts_with("3 FETCH (UID 4"), "{r:?}");
    // Session B's own changes are reported to B once, not twice.
    let r = b.ok("STORE 2 +FLAGS (\\Answered)").await;
    assert_eq!(r.untagged.len(), 1, "{r:?}");
    let r = b.ok("NOOP").await;
    assert!(!r.has("FETCH"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_changes_within_a_second() {
    let s = TestServer::start().await;
    let mut a = s.login("alice").await;
    a.append("INBOX", "", &plain_message(1, "x")).await;
    a.ok("SELECT INBOX").await;
    a.send_raw(b"i1 IDLE\r\n").await;
    let cont = a.read_response().await.unwrap();
    assert!(cont.starts_with("+ "), "{cont}");
    let mut b = s.login("alice").await;
    b.append("INBOX", "", &plain_message(2, "y")).await;
    let line = a.read_response_within(Duration::from_secs(1)).await;
    assert_eq!(line.as_deref(), Some("* 2 EXISTS"));
    let line = a.read_response_within(Duration::from_secs(1)).await;
    assert_eq!(line.as_deref(), Some("* 2 RECENT"));
    b.ok("SELECT INBOX").await;
    b.ok("STORE 1 +FLAGS (\\Seen)").await;
    let line = a
        .read_response_within(Duration::from_secs(1))
        .await
        .unwrap();
    assert!(line.starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen"), "{line}");
    b.ok("STORE 1 +FLAGS (\\Deleted)").await;
    a.read_response_within(Duration::from_secs(1))
        .await
        .unwrap();
    b.ok("EXPUNGE").await;
    let line = a.read_response_within(Duration::from_secs(1)).await;
    assert_eq!(line.as_deref(), Some("* 1 EXPUNGE"));
    a.send_raw(b"DONE\r\n").await;
    let r = a.until_tagged("i1").await;
    assert!(r.is_ok(), "{r:?}");
    a.ok("NOOP").await;
    // IDLE in the authenticated state is allowed and ends the same way.
    let mut c = s.login("bob").await;
    c.send_raw(b"i2 IDLE\r\n").await;
    assert!(c.read_response().await.unwrap().starts_with('+'));
    c.send_raw(b"DONE\r\n").await;
    assert!(c.until_tagged("i2").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_nothing() {
    restart_round_trip(&mut TestServer::start().await).await;
}

/// A database that cannot be reached stops the server at start with an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_an_error_at_start() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = strata_config::Config {
        data_dir: root.path().join("data"),
        ..strata_config::Config::default()
    };
    cfg.imap.starttls = Some("127.0.0.1:0".parse().unwrap());
    cfg.imap.tls = None;
    cfg.storage.main.backend = strata_config::Backend::Sql {
        url: "postgres://postgres@127.0.0.1:9/test".into(),
        max_connections: 2,
        chunk_bytes: 4096,
        connect_timeout: Duration::from_secs(2),
    };
    let e = strata_server::serve::start(cfg)
        .await
        .err()
        .expect("no database there");
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
}

/// S3 with wrong credentials or a missing bucket stops the server at start, saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_s3_credentials_or_bucket_are_errors_at_start() {
    use strata_integration_tests::{s3server::S3Server, stores::s3_backend};
    let root = tempfile::tempdir().unwrap();
    let server = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .unwrap();
    let mut cfg = strata_config::Config {
        data_dir: root.path().join("data"),
        ..strata_config::Config::default()
    };
    cfg.imap.starttls = Some("127.0.0.1:0".parse().unwrap());
    cfg.imap.tls = None;
    cfg.storage.main.journal.enabled = true;
    let strata_config::Backend::S3(good) = s3_backend(&server) else {
        unreachable!()
    };
    let mut bad = good.clone();
    bad.credentials.as_mut().unwrap().1 = strata_config::Secret("not-the-secret".into());
    cfg.storage.main.backend = strata_config::Backend::S3(bad);
    let e = strata_server::serve::start(cfg.clone())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("access denied"), "{e}");
    assert!(!e.to_string().contains("not-the-secret"), "{e}");
    let mut missing = good;
    missing.bucket = "elsewhere".into();
    cfg.storage.main.backend = strata_config::Backend::S3(missing);
    let e = strata_server::serve::start(cfg)
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string().contains("\"elsewhere\" does not exist"),
        "{e}"
    );
}

async fn restart_round_trip(s: &mut TestServer) {
    let mut c = s.login("alice").await;
    c.ok("CREATE Archive/2025").await;
    for i in 1..=20 {
        let flags = if i % 2 == 0 { "\\Seen" } else { "" };
        c.append("INBOX", flags, &plain_message(i, &format!("msg {i}")))
            .await;
    }
    c.append("Archive/2025", "$Old", &multipart_message(99))
        .await;
    c.ok("SELECT INBOX").await;
    c.ok("STORE 1:5 +FLAGS (\\Flagged)").await;
    let before = c.ok("FETCH 1:* (UID FLAGS BODY.PEEK[])").await;
    drop(c);
    s.restart().await;
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    let after = c.ok("FETCH 1:* (UID FLAGS BODY.PEEK[])").await;
    let strip = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.replace(" \\Recent", "").replace("\\Recent", ""))
            .collect()
    };
    assert_eq!(strip(&after.untagged), strip(&before.untagged));
    let r = c.ok("STATUS Archive/2025 (MESSAGES)").await;
    assert!(r.has("MESSAGES 1"));
    let r = c.ok("LIST \"\" Archive/*").await;
    assert_eq!(r.untagged.len(), 1, "{r:?}");
    // UIDs keep growing after the restart.
    let r = c.append("INBOX", "", &plain_message(21, "after")).await;
    assert!(r.status.contains(" 21] "), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_answer_and_the_connection_survives() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    let bad = |r: &strata_integration_tests::Reply| {
        r.status.starts_with("BAD") || r.status.starts_with("NO")
    };
    for line in [
        "FROBNICATE",
        "FETCH",
        "FETCH x FLAGS",
        "STORE 1 FLAGS",
        "SELECT",
        "LIST",
        "UID BOGUS 1",
        "SEARCH OR SEEN",
    ] {
        let r = c.cmd(line).await;
        assert!(r.status.starts_with("BAD"), "{line}: {r:?}");
    }
    // No tag at all.
    c.send_raw(b"\r\n").await;
    let line = c.read_response().await.unwrap();
    assert!(line.contains("BAD"), "{line}");
    // A bare LF line ending.
    c.send_raw(b"x1 NOOP\n").await;
    let r = c.until_tagged("x1").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("NOOP").await;

    // A command line over the limit (64 KiB by default).
    let long = format!("x2 SEARCH SUBJECT \"{}\"\r\n", "a".repeat(100_000));
    c.send_raw(long.as_bytes()).await;
    let r = c.until_tagged("x2").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("NOOP").await;

    // A 100 MB synchronizing literal is refused before the client sends it.
    c.send_raw(b"x3 APPEND INBOX {104857600}\r\n").await;
    let r = c.until_tagged("x3").await;
    assert!(r.status.starts_with("NO [TOOBIG]"), "{r:?}");
    c.ok("NOOP").await;
    // A 100 MB non-synchronizing literal is read, dropped and refused.
    c.send_raw(b"x4 APPEND INBOX {104857600+}\r\n").await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        c.send_raw(&chunk).await;
    }
    c.send_raw(b"\r\n").await;
    let r = c.until_tagged("x4").await;
    assert!(r.status.starts_with("NO [TOOBIG]"), "{r:?}");
    c.ok("NOOP").await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 0"), "{r:?}");

    // Mailbox names that could escape the user's storage or break it.
    let long_name = "n".repeat(10_000);
    for name in [
        "../evil",
        "/etc",
        "a//b",
        "a/../../b",
        ".",
        "..",
        "x/.",
        long_name.as_str(),
    ] {
        for cmd in ["CREATE", "SELECT", "DELETE", "STATUS"] {
            let line = if cmd == "STATUS" {
                format!("{cmd} \"{name}\" (MESSAGES)")
            } else {
                format!("{cmd} \"{name}\"")
            };
            let r = c.cmd(&line).await;
            assert!(bad(&r), "{line}: {r:?}");
        }
        let r = c.cmd(&format!("RENAME INBOX \"{name}\"")).await;
        assert!(bad(&r), "RENAME to {name}: {r:?}");
        let r = c.append(&format!("\"{name}\""), "", b"x").await;
        assert!(bad(&r), "APPEND to {name}: {r:?}");
    }
    let r = c.cmd("CREATE {3+}\r\na\0b").await;
    assert!(bad(&r), "NUL: {r:?}");
    let r = c.cmd("CREATE \"a\\\"b\"").await;
    let _ = r;
    c.ok("NOOP").await;

    // Nothing was written outside the data directory, but for the objects of an S3 store
    // (files of the S3 server's, whose names are still checked below).
    drop(c);
    for f in s.files() {
        assert!(
            f.starts_with("data") || f.starts_with("s3"),
            "file outside the data directory: {}",
            f.display()
        );
        let text = f.to_string_lossy();
        assert!(!text.contains("evil") && !text.contains("etc"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_reads_run_in_parallel() {
    let s = TestServer::start_with(|c| {
        // It counts the main store's reads: bodies stay there.
        c.storage.tiering = None;
        c.storage.main.delay = Some(read_delay(
            Duration::from_millis(50),
            Duration::from_millis(5),
        ));
    })
    .await;
    let mut c = s.login("alice").await;
    c.fill("INBOX", 100, "slow").await;
    // The full-text indexer reads the new bodies once, in the background: let it finish.
    s.fts_caught_up("alice").await;
    // Behind a journal, bodies not yet in the store are read from it: count only store reads.
    s.server().backends.drain_journals().await.unwrap();
    c.ok("SELECT INBOX").await;
    let stats = || s.server().backends.delay_stats();
    let before = stats();
    // Everything but bodies comes from the index: no backend reads.
    c.ok("FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
        .await;
    c.ok("SEARCH SUBJECT slow FROM sender1").await;
    assert_eq!(
        stats().reads,
        before.reads,
        "header-only commands read the backend"
    );
    let r = c.ok("UID FETCH 1:100 (BODY.PEEK[])").await;
    assert_eq!(r.untagged.len(), 100);
    for (i, line) in r.untagged.iter().enumerate() {
        assert!(
            line.contains(&format!("body of message {}\r\n", i + 1)),
            "answers in order"
        );
    }
    let after = stats();
    let reads = after.reads - before.reads;
    assert_eq!(reads, 100);
    // 100 reads at 32 in flight are 4 round trips of 50 ms, not 100.
    let round_trips = reads.div_ceil(after.max_reads_in_flight);
    assert!(after.max_reads_in_flight >= 10, "{after:?}");
    assert!(round_trips <= 10, "{round_trips} round trips: {after:?}");

    // A part fetch reads only the part's bytes, not the 1 MiB attachment beside it.
    let mut big = multipart_message(5);
    let attachment = "QUFB".repeat(1 << 18);
    let at = big.windows(12).position(|w| w == b"JVBERi0xLjQK").unwrap();
    big.splice(at..at + 12, attachment.bytes());
    c.append("INBOX", "", &big).await;
    s.fts_caught_up("alice").await;
    let before = stats();
    let r = c
        .ok("FETCH 101 (BODY.PEEK[1.1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(
        r.untagged[0].contains("Quarterly figures attached, number 5."),
        "{r:?}"
    );
    // (Behind compression or encryption: a header and a frame or two, nothing like 1 MiB.)
    let read = stats().bytes_read - before.bytes_read;
    assert!(
        read < 16 << 10,
        "read {read} bytes of a {} byte message",
        big.len()
    );

    // Large literals go out byte for byte, in their place among the other items.
    let r = c
        .ok("FETCH 101 (BODY.PEEK[] UID BODY.PEEK[]<1000.200000>)")
        .await;
    let whole = String::from_utf8(big.clone()).unwrap();
    let line = &r.untagged[0];
    let head = format!("101 FETCH (BODY[] {{{}}}\r\n{whole} UID ", big.len());
    let tail = format!(" BODY[]<1000> {{200000}}\r\n{})", &whole[1000..201_000]);
    assert!(line.starts_with(&head), "{}", &line[..200]);
    assert!(line.ends_with(&tail), "{}", &line[line.len() - 200..]);
}

fn tool(name: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a real client to completion off the async workers, returning its output.
async fn run_client(cmd: &mut std::process::Command) -> String {
    let cmd = std::mem::replace(cmd, std::process::Command::new("true"));
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output().expect("client runs")
    })
    .await
    .expect("client task");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client failed: {text}");
    text
}

/// Runs a Python client script from `clients/` over TLS as alice; returns its output.
async fn python_client(script: &str) -> String {
    assert!(tool("python3"), "python3 is needed (.ci/run installs it)");
    let s = TestServer::start().await;
    let script = format!("{}/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    run_client(
        std::process::Command::new("python3")
            .arg(script)
            .arg("localhost")
            .arg(s.imaps_addr().port().to_string())
            .arg(s.certificate())
            .arg("alice")
            .arg("alice-password"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_runs_a_whole_session() {
    let out = python_client("imaplib_session.py").await;
    assert!(out.contains("imaplib session ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imapclient_uses_condstore() {
    let out = python_client("imapclient_condstore.py").await;
    assert!(out.contains("imapclient condstore ok"), "{out}");
}

/// Writes `n` messages into a Maildir as another mail program would, some flagged in the name.
pub(crate) fn fill_maildir(dir: &std::path::Path, folder: &str, n: u32) -> Vec<Vec<u8>> {
    let base = if folder == "INBOX" {
        dir.to_path_buf()
    } else {
        dir.join(folder)
    };
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    (1..=n)
        .map(|i| {
            let body = plain_message(i, &format!("{folder} local {i}"));
            let name = if i % 3 == 0 {
                base.join("new")
                    .join(format!("1700000000.{folder}{i}.host"))
            } else {
                base.join("cur")
                    .join(format!("1700000000.{folder}{i}.host:2,S"))
            };
            std::fs::write(name, &body).unwrap();
            body
        })
        .collect()
}

/// Every file under a directory, for a failure message.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Every message file's contents under a Maildir tree.
fn maildir_messages(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "cur" || n == "new")
            {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out.sort();
    out
}

/// An mbsync configuration syncing INBOX and Projects of `alice` with `local`; `account`
/// lines are added to its IMAPAccount (`AuthMechs`, for one).
pub(crate) fn mbsync_config(
    dir: &std::path::Path,
    s: &TestServer,
    local: &std::path::Path,
    account: &str,
) -> std::path::PathBuf {
    let rc = dir.join(format!(
        "mbsyncrc-{}",
        local.file_name().unwrap().to_string_lossy()
    ));
    let text = format!(
        "IMAPAccount strata\nHost localhost\nPort {port}\nUser alice\nPass alice-password\n\
SSLType IMAPS\nCertificateFile {cert}\n{account}\n\n\
IMAPStore remote\nAccount strata\n\n\
MaildirStore local\nPath {local}/\nInbox {local}/\nSubFolders Verbatim\n\n\
Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Projects\nCreate Both\nExpunge Both\nSyncState *\n",
        port = s.imaps_addr().port(),
        cert = s.certificate().display(),
        local = local.display(),
    );
    std::fs::write(&rc, text).unwrap();
    rc
}

/// Runs `mbsync -V -c rc -a` (every channel, verbosely); its output.
pub(crate) async fn mbsync(rc: &std::path::Path) -> String {
    assert!(
        tool("mbsync"),
        "mbsync is needed (.ci/run installs the isync package)"
    );
    run_client(
        std::process::Command::new("mbsync")
            .arg("-V")
            .arg("-c")
            .arg(rc)
            .arg("-a"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_round_trips_a_maildir_with_nothing_lost_or_duplicated() {
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    let mut sent = fill_maildir(&local, "INBOX", 12);
    sent.extend(fill_maildir(&local, "Projects", 5));
    sent.sort();

    // Push the local Maildir to Strata.
    let rc = mbsync_config(work.path(), &s, &local, "");
    mbsync(&rc).await;
    let mut c = s.login("alice").await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 12"), "{r:?}");
    let r = c.ok("STATUS Projects (MESSAGES)").await;
    assert!(r.has("MESSAGES 5"), "{r:?}");
    c.ok("SELECT INBOX").await;
    let r = c.ok("SEARCH SEEN").await;
    assert_eq!(
        r.with("SEARCH")[0].split(' ').count() - 1,
        8,
        "flags from file names: {r:?}"
    );

    // Syncing again changes nothing.
    mbsync(&rc).await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 12"), "{r:?}");

    // A change on the server travels back.
    c.append("INBOX", "", &plain_message(100, "from the server"))
        .await;
    mbsync(&rc).await;
    assert_eq!(maildir_messages(&local).len(), 18);

    // Pull everything into a fresh Maildir: the same messages, byte for byte.
    let fresh = work.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let rc2 = mbsync_config(work.path(), &s, &fresh, "");
    mbsync(&rc2).await;
    // mbsync stores LF line endings and adds its X-TUID header; the rest must be identical.
    let normal = |m: &Vec<u8>| -> String {
        String::from_utf8_lossy(m)
            .replace("\r\n", "\n")
            .lines()
            .filter(|l| !l.starts_with("X-TUID: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut pulled: Vec<String> = maildir_messages(&fresh).iter().map(normal).collect();
    pulled.retain(|m| !m.contains("from the server"));
    pulled.sort();
    let mut sent: Vec<String> = sent.iter().map(normal).collect();
    sent.sort();
    assert_eq!(pulled.len(), sent.len());
    assert_eq!(pulled, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_import_and_index_rebuild_keep_folders_flags_and_dates() {
    let mut s = TestServer::start().await;
    s.stop().await;
    // A Maildir as Dovecot leaves it: folders, flag letters, keyword letters, new/ mail.
    let src = s.root.path().join("dovecot-maildir");
    fill_maildir(&src, "INBOX", 6);
    fill_maildir(&src, ".Work.Projects", 3);
    std::fs::write(src.join("dovecot-keywords"), "0 $Important\n").unwrap();
    let tagged = src.join("cur/1700000000.x.host:2,FRa");
    std::fs::write(&tagged, plain_message(50, "tagged")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&tagged)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let (store, _) = strata_server::serve::mailstore(&s.config).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let report = strata_server::import::import_maildir(&user, &src, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((report.folders, report.messages), (2, 10));
    drop(user);
    store.close_idle().await;
    // The store holds the journal's lock until it goes.
    drop(store);

    s.restart().await;
    let mut c = s.login("alice").await;
    let r = c.ok("STATUS INBOX (MESSAGES UNSEEN)").await;
    // Two delivered to new/ and the tagged one are unseen.
    assert!(r.has("MESSAGES 7") && r.has("UNSEEN 3"), "{r:?}");
    let r = c.ok("STATUS Work/Projects (MESSAGES)").await;
    assert!(r.has("MESSAGES 3"), "{r:?}");
    c.ok("SELECT INBOX").await;
    let r = c.ok("SEARCH SUBJECT tagged").await;
    let n = r.with("SEARCH")[0]
        .trim_start_matches("SEARCH ")
        .to_string();
    let r = c.ok(&format!("FETCH {n} (FLAGS INTERNALDATE)")).await;
    assert!(
        r.untagged[0].contains("(\\Answered \\Flagged \\Recent $Important)"),
        "{r:?}"
    );
    assert!(r.untagged[0].contains("13-Sep-2020"), "{r:?}");
    c.ok("STORE 1 +FLAGS (\\Deleted)").await;
    c.ok("CREATE Later").await;
    c.append("Later", "", &plain_message(60, "later")).await;
    c.ok("LOGOUT").await;
    let before = {
        let mut c = s.login("alice").await;
        c.ok("SELECT INBOX").await;
        c.ok("FETCH 1:* (BODY.PEEK[])").await.untagged.len()
    };

    // Rebuild: the index goes aside; every body the backend holds is found again. Only a
    // Maildir can be read back without its index (SQL and S3 keys are the index's to name).
    use strata_integration_tests::stores::Store;
    if !matches!(s.store, Store::Maildir | Store::MaildirJournal) {
        return;
    }
    s.stop().await;
    let index = strata_server::index_path(&s.data_dir, "alice");
    let aside = strata_server::import::retire_index(&index, "rebuild")
        .await
        .unwrap()
        .unwrap();
    assert!(aside.exists() && !index.exists());
    let (store, backends) = strata_server::serve::mailstore(&s.config).await.unwrap();
    backends.drain_journals().await.unwrap();
    let user = store.user("alice").await.unwrap();
    let root = s.data_dir.join("mail").join("alice");
    let scanned: Vec<String> = strata_server::maildir_scan::scan(&root)
        .unwrap()
        .iter()
        .flat_map(|f| {
            f.messages
                .iter()
                .map(|m| format!("{}/{}", f.dir_name, m.unique))
        })
        .collect();
    let report = strata_server::import::adopt_maildir(&user, &root, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        report.messages,
        11,
        "{report:?}: scanned {scanned:?}, now {:?}",
        walk(&root)
    );
    drop(user);
    store.close_idle().await;
    drop(store);
    drop(backends);
    s.restart().await;
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1:* (BODY.PEEK[])").await;
    assert_eq!(r.untagged.len(), before);
    let r = c.ok("STATUS Later (MESSAGES)").await;
    assert!(r.has("MESSAGES 1"), "{r:?}");
    let r = c.ok("STATUS Work/Projects (MESSAGES)").await;
    assert!(r.has("MESSAGES 3"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_timeouts() {
    let s = TestServer::start_with(|c| {
        c.imap.max_connections_per_ip = 2;
        c.imap.login_timeout = Duration::from_millis(500);
        c.imap.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut first = s.connect().await;
    let _second = s.connect().await;
    // A third connection from the same address is told why and closed.
    let mut third = strata_integration_tests::Client::plain(s.imap_addr()).await;
    assert!(
        third.greeting.starts_with("* BYE [UNAVAILABLE]"),
        "{}",
        third.greeting
    );
    assert!(third.read_response().await.is_none());
    // Silence before login ends the connection after the login timeout, with BYE.
    let bye = first.read_response_within(Duration::from_secs(5)).await;
    assert_eq!(bye.as_deref(), Some("* BYE login took too long"));
    assert!(first.read_response().await.is_none());
    drop(first);
    // The second connection has not logged in either: it goes at its deadline too.
    s.wait_for_connections(0).await;
    // After login the longer timeout applies, and IDLE is exempt from it.
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    c.send_raw(b"i1 IDLE\r\n").await;
    assert!(c.read_response().await.unwrap().starts_with('+'));
    assert!(
        c.read_response_within(Duration::from_millis(1500))
            .await
            .is_none()
    );
    c.send_raw(b"DONE\r\n").await;
    assert!(c.until_tagged("i1").await.is_ok());
    let bye = c.read_response_within(Duration::from_secs(5)).await;
    assert_eq!(bye.as_deref(), Some("* BYE autologout: idle for too long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_and_keeps_every_acknowledged_message() {
    let mut s = TestServer::start().await;
    let mut idle = s.login("bob").await;
    idle.ok("SELECT INBOX").await;
    idle.send_raw(b"i1 IDLE\r\n").await;
    assert!(idle.read_response().await.unwrap().starts_with('+'));
    let mut c = s.login("alice").await;
    c.fill("INBOX", 10, "kept").await;
    s.stop().await;
    assert_eq!(
        c.read_response().await.as_deref(),
        Some("* BYE server shutting down")
    );
    assert_eq!(
        idle.read_response().await.as_deref(),
        Some("* BYE server shutting down")
    );
    s.restart().await;
    let mut c = s.login("alice").await;
    let r = c.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 10"), "{r:?}");
}

/// The benchmark tool, seconds-long, so it keeps working: every phase against two servers
/// side by side, with no protocol errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_smoke_runs_every_phase_side_by_side() {
    use strata_integration_tests::bench::{self, Options, PHASES, Target, report};
    let a = TestServer::start_with(|c| c.imap.max_connections_per_ip = 1000).await;
    let b = TestServer::start_with(|c| c.imap.max_connections_per_ip = 1000).await;
    let target = |name: &str, s: &TestServer| Target {
        name: name.into(),
        addr: s.imap_addr(),
        tls_ca: None,
        user: "alice".into(),
        password: "alice-password".into(),
        processes: vec![
            std::fs::read_to_string("/proc/self/comm")
                .unwrap()
                .trim()
                .to_string(),
        ],
    };
    let targets = [target("one", &a), target("two", &b)];
    let o = Options {
        messages: 40,
        connections: 4,
        seed: 3,
        repeats: 2,
        random_bodies: 10,
        mixed_clients: 4,
        mixed_duration: Duration::from_millis(500),
        idle_connections: 10,
    };
    let phases: Vec<String> = PHASES.iter().map(|p| p.to_string()).collect();
    let results = bench::run(&targets, &phases, &o).await;
    for (t, rs) in targets.iter().zip(&results) {
        assert_eq!(rs.len(), PHASES.len());
        for r in rs {
            assert_eq!(r.errors, 0, "{} {}: {r:?}", t.name, r.phase);
        }
        let mixed = rs.iter().find(|r| r.phase == "mixed").unwrap();
        assert!(
            mixed.figure.as_ref().is_some_and(|f| f.1 > 0.0),
            "{mixed:?}"
        );
        let append = rs.iter().find(|r| r.phase == "append-1").unwrap();
        assert_eq!(append.samples.len(), 40);
    }
    let table = report::side_by_side("one", &results[0], "two", &results[1]);
    assert_eq!(table.lines().count(), 2 + PHASES.len(), "{table}");
    assert!(table.contains("| fetch-bodies |") && table.contains("(time ratio)"));
    assert!(table.contains("(commands/s ratio)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_this_stores_operations() {
    // It counts the main store's operations: bodies stay there.
    let s = TestServer::start_with(|c| c.storage.tiering = None).await;
    let mut c = s.login("alice").await;
    assert!(
        c.append("INBOX", "", &plain_message(1, "counted"))
            .await
            .is_ok()
    );
    // Behind a journal the store is written, and read, once the journal has handed it on.
    s.server().backends.drain_journals().await.unwrap();
    c.ok("SELECT INBOX").await;
    c.ok("FETCH 1 BODY[]").await;
    let (status, text) = s.scrape("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "strata_store_operations_total{store=\"main\",op=\"commit\",result=\"ok\"}",
        "strata_store_operation_seconds_count{store=\"main\",op=\"get\"}",
        "strata_imap_commands_total{command=\"APPEND\",result=\"ok\"}",
        "strata_index_commits_total{durable=\"true\"}",
    ] {
        assert!(crate::metrics::value(&text, series) >= 1.0, "{series}");
    }
    let stores: String = s
        .config
        .storage
        .stores()
        .map(|st| format!("store {}: ok\n", st.name))
        .collect();
    assert_eq!(s.scrape("/health").await, (200, format!("ready\n{stores}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_their_parts_read_back_whole_wherever_they_are_stored() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let mut msgs = Vec::new();
    for n in 1..=12 {
        let m = if n % 3 == 0 {
            multipart_message(n)
        } else {
            plain_message(n, "placed")
        };
        assert!(c.append("INBOX", "", &m).await.is_ok());
        msgs.push(m);
    }
    // With tiering on (STRATA_TEST_LAYERS=tier), every body moves to the cold store at the next
    // run: wait for it, so what follows reads the cold store, then its cache.
    if let Some(t) = &s.config.storage.tiering {
        let mut runs = s.server().backends.tierer().unwrap().runs();
        loop {
            let mut lines = Vec::new();
            strata_server::control::request(&s.data_dir, "tier-status alice", &mut |l| {
                lines.push(l.to_string())
            })
            .await
            .unwrap()
            .unwrap();
            let cold = lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(t.to.as_str()))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok());
            if cold == Some(msgs.len()) {
                break;
            }
            tokio::time::timeout(Duration::from_secs(60), runs.changed())
                .await
                .unwrap_or_else(|_| panic!("no tiering run for a minute: {lines:?}"))
                .unwrap();
        }
    }
    c.ok("SELECT INBOX").await;
    for round in 0..2 {
        let r = c.ok("FETCH 1:* (BODY.PEEK[])").await;
        assert_eq!(r.untagged.len(), msgs.len(), "round {round}");
        for (line, m) in r.untagged.iter().zip(&msgs) {
            let text = String::from_utf8_lossy(m);
            assert!(line.ends_with(&format!("{text})")), "round {round}: {line}");
        }
        let r = c
            .ok("FETCH 3 (BODY.PEEK[HEADER] BODY.PEEK[1] BODY.PEEK[]<10.20>)")
            .await;
        let whole = String::from_utf8_lossy(&msgs[2]);
        assert!(r.untagged[0].contains(&whole[10..30]), "{r:?}");
    }
}
