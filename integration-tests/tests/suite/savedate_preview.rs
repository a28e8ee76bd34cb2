//! SAVEDATE (RFC 8514) and PREVIEW (RFC 8970) over TCP, after the RFCs' examples and their
//! error cases.

use strata_integration_tests::{TestServer, multipart_message, plain_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savedate_is_when_the_message_came_into_the_mailbox() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let caps = c.ok("CAPABILITY").await;
    assert!(caps.has(" SAVEDATE") && caps.has(" PREVIEW"), "{caps:?}");
    c.ok("CREATE Kept").await;
    // INTERNALDATE from APPEND is old; the save date is today.
    let old = plain_message(1, "old");
    let r = c
        .append_dated("Kept", "01-Jan-2020 10:00:00 +0000", &old)
        .await;
    assert!(r.is_ok(), "{r:?}");
    c.ok("SELECT Kept").await;
    let r = c.ok("FETCH 1 (INTERNALDATE SAVEDATE)").await;
    let line = r.with("1 FETCH")[0];
    assert!(
        line.contains("INTERNALDATE \"01-Jan-2020 10:00:00 +0000\""),
        "{line}"
    );
    // The day it was saved: a date-time, and not INTERNALDATE's.
    let saved = line
        .split("SAVEDATE \"")
        .nth(1)
        .expect("SAVEDATE")
        .to_string();
    let (today, time) = saved.split_once(' ').expect("date and time");
    assert!(
        today.len() >= 10 && !today.ends_with("2020") && time.contains(":"),
        "{line}"
    );
    // SAVEDATE alone, and by UID.
    let r = c.ok("UID FETCH 1 SAVEDATE").await;
    assert!(
        r.with("1 FETCH")[0].starts_with("1 FETCH (UID 1 SAVEDATE \""),
        "{r:?}"
    );
    let r = c.ok("FETCH 1 (SAVEDATE)").await;
    assert!(
        r.with("1 FETCH")[0].starts_with("1 FETCH (SAVEDATE \""),
        "{r:?}"
    );
    // A copy is saved anew.
    c.ok("CREATE Later").await;
    c.ok("COPY 1 Later").await;
    for (key, hits) in [
        ("SAVEDSINCE 1-Jan-2021", "SEARCH 1"),
        ("SAVEDBEFORE 1-Jan-2021", "SEARCH"),
        (&format!("SAVEDON {today}") as &str, "SEARCH 1"),
        (&format!("NOT SAVEDON \"{today}\"") as &str, "SEARCH"),
        ("SAVEDATESUPPORTED", "SEARCH 1"),
        ("OR SAVEDBEFORE 1-Jan-2020 BEFORE 2-Jan-2020", "SEARCH 1"),
    ] {
        let r = c.ok(&format!("SEARCH {key}")).await;
        assert_eq!(r.with("SEARCH"), vec![hits], "{key}: {r:?}");
    }
    for bad in [
        "SEARCH SAVEDON 2020-01-01",
        "SEARCH SAVEDSINCE",
        "FETCH 1 (SAVEDATE",
    ] {
        let r = c.cmd(bad).await;
        assert!(r.status.starts_with("BAD"), "{bad}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_comes_from_the_index_without_reading_bodies() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Pre").await;
    assert!(
        c.append("Pre", "", &plain_message(1, "plain"))
            .await
            .is_ok()
    );
    assert!(c.append("Pre", "", &multipart_message(2)).await.is_ok());
    let html = b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr\xc3\xbc\xc3\x9fe  aus <b>K\xc3\xb6ln</b></p>\r\n";
    assert!(c.append("Pre", "", html).await.is_ok());
    let empty = b"Subject: nothing\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n";
    assert!(c.append("Pre", "", empty).await.is_ok());
    c.ok("EXAMINE Pre").await;
    let r = c.ok("FETCH 1:4 (PREVIEW)").await;
    assert!(
        r.with("1 FETCH")[0].contains("PREVIEW \"body of message 1\""),
        "{r:?}"
    );
    // Non-ASCII goes as a literal; an image has an empty preview.
    assert!(r.has("PREVIEW {"), "{r:?}");
    assert!(r.has("Grüße aus Köln"), "{r:?}");
    assert!(r.with("4 FETCH")[0].contains("PREVIEW \"\""), "{r:?}");
    // LAZY changes nothing: the preview is always in the index.
    let r = c.ok("UID FETCH 1 (FLAGS PREVIEW (LAZY))").await;
    assert!(
        r.with("1 FETCH")[0].contains("PREVIEW \"body of message 1\""),
        "{r:?}"
    );
    let r = c.cmd("FETCH 1 (PREVIEW (EAGER))").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    // PREVIEW does not set \Seen: EXAMINE aside, a read-write session sees it unchanged.
    c.ok("SELECT Pre").await;
    c.ok("FETCH 1 PREVIEW").await;
    let r = c.ok("FETCH 1 FLAGS").await;
    assert!(!r.has("\\Seen"), "{r:?}");
}
