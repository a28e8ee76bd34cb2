//! COMPRESS=DEFLATE (RFC 4978) over TCP and TLS: a whole session deflated both ways, a large
//! FETCH and IDLE through it, the refusals, and a small compressed line that inflates past the
//! line limit.

use strata_integration_tests::{Client, TestServer, plain_message};

async fn exercise(mut c: Client) {
    let r = c.ok("CAPABILITY").await;
    assert!(!r.has("COMPRESS=DEFLATE"), "not offered twice: {r:?}");
    let r = c.cmd("COMPRESS DEFLATE").await;
    assert!(r.status.starts_with("NO [COMPRESSIONACTIVE]"), "{r:?}");
    c.ok("CREATE Zipped").await;
    // A big message: many writes, each response flushed whole.
    let mut big = b"From: a@example.org\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!("line {i} of a large body\r\n").as_bytes());
    }
    assert!(c.append("Zipped", "", &big).await.is_ok());
    c.fill("Zipped", 5, "small").await;
    let r = c.ok("SELECT Zipped").await;
    assert!(r.has("6 EXISTS"), "{r:?}");
    let r = c.ok("FETCH 1 BODY.PEEK[]").await;
    let body = r.with("1 FETCH")[0];
    assert!(
        body.contains("line 19999 of a large body"),
        "{}",
        body.len()
    );
    let r = c.ok("FETCH 2:6 (FLAGS ENVELOPE)").await;
    assert_eq!(r.untagged.len(), 5, "{r:?}");
    let r = c.ok("SEARCH BODY \"line 12345\"").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1"], "{r:?}");
    c.ok("LOGOUT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_deflated_over_tcp_and_tls() {
    let s = TestServer::start().await;
    let mut before = s.connect().await;
    let r = before.cmd("COMPRESS DEFLATE").await;
    assert!(r.status.starts_with("BAD"), "not before login: {r:?}");
    let c = s.login("alice").await;
    exercise(c.compress().await).await;
    let mut t = Client::tls(s.imaps_addr(), &s.certificate()).await;
    t.ok("LOGIN bob bob-password").await;
    let r = t.ok("CAPABILITY").await;
    assert!(r.has("COMPRESS=DEFLATE"), "{r:?}");
    exercise(t.compress().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_through_compression() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await.compress().await;
    c.ok("SELECT INBOX").await;
    c.send_raw(b"i1 IDLE\r\n").await;
    assert!(c.read_response().await.unwrap().starts_with('+'));
    let mut other = s.login("alice").await;
    assert!(
        other
            .append("INBOX", "", &plain_message(1, "new"))
            .await
            .is_ok()
    );
    let line = c.read_response().await.unwrap();
    assert!(line.ends_with("EXISTS"), "{line}");
    c.send_raw(b"DONE\r\n").await;
    let r = c.until_tagged("i1").await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_inflates_past_the_limit_is_refused() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await.compress().await;
    // Megabytes of one byte deflate to a few kilobytes; the limit counts inflated bytes.
    let mut line = b"x1 SELECT ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 8 << 20));
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line).await;
    let r = c.until_tagged("x1").await;
    assert!(r.status.starts_with("BAD [TOOBIG]"), "{r:?}");
    c.ok("NOOP").await;
}
