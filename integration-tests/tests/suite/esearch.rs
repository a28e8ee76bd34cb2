//! ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and PARTIAL (RFC 9394) over TCP, after the RFCs'
//! examples and their error cases.

use strata_integration_tests::{Client, TestServer, number_after};

/// A mailbox `Box` of ten messages: 2, 4, 6, 8 and 10 are `\Seen`; 3, 5 and 7 say "match".
async fn ten(c: &mut Client) {
    c.ok("CREATE Box").await;
    for i in 1..=10u32 {
        let subject = if [3, 5, 7].contains(&i) {
            "match"
        } else {
            "other"
        };
        let flags = if i % 2 == 0 { "\\Seen" } else { "" };
        let msg = strata_integration_tests::plain_message(i, subject);
        assert!(c.append("Box", flags, &msg).await.is_ok());
    }
    c.ok("SELECT Box").await;
}

fn esearch(r: &strata_integration_tests::Reply) -> String {
    let lines = r.with("ESEARCH");
    assert_eq!(lines.len(), 1, "{r:?}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_options_min_max_all_count() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let caps = c.ok("CAPABILITY").await;
    assert!(
        caps.has(" ESEARCH") && caps.has(" SEARCHRES") && caps.has(" PARTIAL"),
        "{caps:?}"
    );
    ten(&mut c).await;
    let tag = c.tag();
    c.send_raw(format!("{tag} SEARCH RETURN (MIN COUNT) UNSEEN\r\n").as_bytes())
        .await;
    let r = c.until_tagged(&tag).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        esearch(&r),
        format!("ESEARCH (TAG \"{tag}\") MIN 1 COUNT 5")
    );
    assert!(r.with("SEARCH").is_empty(), "no plain SEARCH: {r:?}");
    let r = c
        .ok("SEARCH RETURN (MIN MAX ALL COUNT) SUBJECT match")
        .await;
    assert!(
        esearch(&r).ends_with(") MIN 3 MAX 7 ALL 3,5,7 COUNT 3"),
        "{r:?}"
    );
    // UID SEARCH says UID and answers in UIDs; RETURN () is RETURN (ALL).
    let r = c.ok("UID SEARCH RETURN () SEEN").await;
    assert!(esearch(&r).ends_with(") UID ALL 2,4,6,8,10"), "{r:?}");
    let r = c.ok("UID SEARCH RETURN (ALL) 1:4").await;
    assert!(esearch(&r).ends_with(") UID ALL 1:4"), "{r:?}");
    // Nothing found: only COUNT is told.
    let r = c
        .ok("SEARCH RETURN (MIN MAX ALL COUNT) SUBJECT nowhere")
        .await;
    assert!(esearch(&r).ends_with(") COUNT 0"), "{r:?}");
    let r = c.ok("SEARCH RETURN (MIN) SUBJECT nowhere").await;
    assert!(esearch(&r).ends_with("\")"), "{r:?}");
    // A CHARSET may follow RETURN.
    let r = c
        .ok("SEARCH RETURN (COUNT) CHARSET UTF-8 SUBJECT match")
        .await;
    assert!(esearch(&r).ends_with(" COUNT 3"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_result_options_are_bad() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    ten(&mut c).await;
    for cmd in [
        "SEARCH RETURN (FOO) ALL",
        "SEARCH RETURN (MIN",
        "SEARCH RETURN (MIN)",
        "SEARCH RETURN MIN ALL",
        "SEARCH RETURN (PARTIAL 0:10) ALL",
        "SEARCH RETURN (PARTIAL 1:*) ALL",
        "SEARCH RETURN (PARTIAL -1:5) ALL",
        "SEARCH RETURN (ALL PARTIAL 1:5) ALL",
    ] {
        let r = c.cmd(cmd).await;
        assert!(r.status.starts_with("BAD"), "{cmd}: {r:?}");
    }
    let r = c.cmd("SEARCH RETURN (MIN) CHARSET KOI8-R ALL").await;
    assert!(r.status.starts_with("NO [BADCHARSET"), "{r:?}");
    // The session goes on.
    c.ok("SEARCH RETURN (COUNT) ALL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_pages_from_either_end() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    ten(&mut c).await;
    let r = c.ok("UID SEARCH RETURN (PARTIAL 1:3) ALL").await;
    assert!(esearch(&r).ends_with(") UID PARTIAL (1:3 1:3)"), "{r:?}");
    let r = c.ok("UID SEARCH RETURN (PARTIAL -1:-3 COUNT) SEEN").await;
    assert!(
        esearch(&r).ends_with(") UID PARTIAL (-1:-3 6,8,10) COUNT 5"),
        "{r:?}"
    );
    // Reversed bounds mean the same range.
    let r = c.ok("SEARCH RETURN (PARTIAL 4:2) SEEN").await;
    assert!(esearch(&r).ends_with(") PARTIAL (2:4 4,6,8)"), "{r:?}");
    // Past the end: what exists, then nothing.
    let r = c.ok("SEARCH RETURN (PARTIAL 9:20) ALL").await;
    assert!(esearch(&r).ends_with(") PARTIAL (9:20 9:10)"), "{r:?}");
    let r = c.ok("SEARCH RETURN (PARTIAL 11:20) ALL").await;
    assert!(esearch(&r).ends_with(") PARTIAL (11:20 NIL)"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_result_feeds_later_commands() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    ten(&mut c).await;
    c.ok("CREATE Copies").await;
    // SAVE alone answers nothing but OK.
    let r = c.ok("SEARCH RETURN (SAVE) SUBJECT match").await;
    assert!(
        r.with("ESEARCH").is_empty() && r.with("SEARCH").is_empty(),
        "{r:?}"
    );
    let r = c.ok("FETCH $ (UID)").await;
    assert_eq!(r.with("").len(), 3, "{r:?}");
    for uid in [3, 5, 7] {
        assert!(r.has(&format!("{uid} FETCH (UID {uid})")), "{r:?}");
    }
    c.ok("UID STORE $ +FLAGS.SILENT (\\Flagged)").await;
    let r = c.ok("SEARCH FLAGGED").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 3 5 7"]);
    // `$` as a key, alone and beside others; `UID $` too.
    let r = c.ok("SEARCH $ UNSEEN").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 3 5 7"]);
    let r = c.ok("SEARCH OR UID $ 1").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1 3 5 7"]);
    // A `$` that is a string to search for stays one.
    let r = c.ok("SEARCH SUBJECT $").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH"]);
    let r = c.ok("COPY $ Copies").await;
    assert!(r.status.contains("COPYUID"), "{r:?}");
    // An expunged message drops out of the saved result.
    c.ok("STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    let r = c.ok("UID FETCH $ (FLAGS)").await;
    assert_eq!(r.with("").len(), 2, "{r:?}");
    // With MIN, only the first is saved; a SAVE that fails saves nothing.
    let r = c.ok("UID SEARCH RETURN (SAVE MIN) SEEN").await;
    assert!(esearch(&r).ends_with(") UID MIN 2"), "{r:?}");
    let r = c.ok("UID SEARCH UID $").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 2"]);
    let r = c.cmd("SEARCH RETURN (SAVE) CHARSET KOI8-R ALL").await;
    assert!(r.status.starts_with("NO"), "{r:?}");
    let r = c.ok("FETCH $ (UID)").await;
    assert!(r.with("").is_empty(), "{r:?}");
    let r = c.ok("SEARCH $").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH"]);
    // SELECT starts with nothing saved.
    c.ok("SEARCH RETURN (SAVE) ALL").await;
    c.ok("SELECT Box").await;
    let r = c.ok("STORE $ +FLAGS (\\Answered)").await;
    assert!(r.with("").is_empty(), "{r:?}");
    let r = c.ok("SEARCH ANSWERED").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esearch_tells_modseq() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    ten(&mut c).await;
    c.ok("STORE 4 +FLAGS.SILENT (\\Flagged)").await;
    let all = c.ok("FETCH 1:* (MODSEQ)").await;
    let modseq = |seq: u32| {
        let line = all.with(&format!("{seq} FETCH"))[0];
        number_after(line, "MODSEQ").unwrap()
    };
    let r = c.ok("SEARCH RETURN (MIN) MODSEQ 1 SEEN").await;
    assert!(
        esearch(&r).ends_with(&format!(") MIN 2 MODSEQ {}", modseq(2))),
        "{r:?}"
    );
    let r = c.ok("SEARCH RETURN (COUNT) MODSEQ 1 SEEN").await;
    assert!(
        esearch(&r).ends_with(&format!(") COUNT 5 MODSEQ {}", modseq(4))),
        "{r:?}"
    );
}
