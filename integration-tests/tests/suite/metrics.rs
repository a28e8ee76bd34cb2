//! The metrics endpoint (`[metrics] listen`) scraped while IMAP and LMTP traffic runs: every
//! family is there with values that follow what was done; `/health` is ready while the stores
//! answer and not while one is down. Counts are of the whole test process (other tests' servers
//! add to them), so they are checked as at least what this test did.

use std::net::SocketAddr;
use std::time::Duration;

use strata_integration_tests::{TestServer, plain_message, read_delay, stores, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of the series `series` (name and labels exactly as exported).
pub(crate) fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_family_follows_the_traffic_and_health_is_ready() {
    let s = TestServer::start_with(|c| {
        c.lmtp.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let mut a = s.login("alice").await;
    a.ok("SELECT INBOX").await;
    assert!(
        a.append("INBOX", "", &plain_message(1, "counted"))
            .await
            .is_ok()
    );
    a.ok("FETCH 1 BODY[]").await;
    let mut wrong = s.connect().await;
    assert!(!wrong.cmd("LOGIN alice not-her-password").await.is_ok());
    // An LMTP delivery.
    let lmtp = s.server().lmtp.unwrap();
    let mut c = tokio::net::TcpStream::connect(lmtp).await.unwrap();
    c.write_all(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: hi\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("250 2.0.0 <bob@example.org>"), "{answer}");
    // The reconciler's first run, at start.
    let reconciled = s.server().reconciled.clone();
    until(
        "the reconciler's first run",
        Duration::from_secs(30),
        || reconciled.runs.load(std::sync::atomic::Ordering::Relaxed) > 0,
    )
    .await;

    let (status, text) = s.scrape("/metrics").await;
    assert_eq!(status, 200);
    for (series, at_least) in [
        ("strata_connections{listener=\"imap\"}", 2.0),
        ("strata_connections_accepted_total{listener=\"lmtp\"}", 1.0),
        ("strata_imap_sessions{state=\"selected\"}", 1.0),
        ("strata_imap_sessions{state=\"not_authenticated\"}", 1.0),
        (
            "strata_imap_commands_total{command=\"APPEND\",result=\"ok\"}",
            1.0,
        ),
        (
            "strata_imap_commands_total{command=\"LOGIN\",result=\"no\"}",
            1.0,
        ),
        ("strata_imap_command_seconds_count{command=\"FETCH\"}", 1.0),
        ("strata_logins_total{result=\"ok\"}", 1.0),
        ("strata_logins_total{result=\"failed\"}", 1.0),
        ("strata_lmtp_deliveries_total{result=\"delivered\"}", 1.0),
        (
            "strata_store_operations_total{store=\"main\",op=\"commit\",result=\"ok\"}",
            2.0,
        ),
        (
            "strata_store_operation_seconds_count{store=\"main\",op=\"get\"}",
            1.0,
        ),
        ("strata_index_commits_total{durable=\"true\"}", 2.0),
        ("strata_index_commit_seconds_count{durable=\"true\"}", 2.0),
        ("strata_reconciler_runs_total", 1.0),
    ] {
        let v = value(&text, series);
        assert!(
            v >= at_least,
            "{series} = {v}, expected at least {at_least}"
        );
    }
    // A latency is a duration: its sum is positive and below the test's own length.
    let sum = value(&text, "strata_imap_command_seconds_sum{command=\"APPEND\"}");
    assert!(sum > 0.0 && sum < 600.0, "{sum}");
    for family in [
        "strata_index_repacks_total",
        "strata_reconciler_removed_bodies_total",
    ] {
        assert!(text.contains(family), "{family}");
    }
    // IDLE is a state of its own.
    let tag = a.tag();
    a.send_raw(format!("{tag} IDLE\r\n").as_bytes()).await;
    assert!(a.read_response().await.unwrap().starts_with('+'));
    let (_, text) = s.scrape("/metrics").await;
    assert!(value(&text, "strata_imap_sessions{state=\"idle\"}") >= 1.0);
    a.send_raw(b"DONE\r\n").await;
    a.until_tagged(&tag).await;

    let (status, body) = s.scrape("/health").await;
    assert_eq!((status, body.as_str()), (200, "ready\nstore main: ok\n"));
    let (status, _) = s.scrape("/nothing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn health_is_not_ready_while_the_store_is_down_and_the_journal_backlog_is_exported() {
    let s = TestServer::start_on(stores::Store::MaildirJournal, |c| {
        c.storage.main.delay = Some(read_delay(Duration::ZERO, Duration::ZERO));
    })
    .await;
    let mut a = s.login("alice").await;
    assert!(
        a.append("INBOX", "", &plain_message(1, "journaled"))
            .await
            .is_ok()
    );
    let (_, text) = s.scrape("/metrics").await;
    for series in [
        "strata_journal_pending_batches{store=\"main\"}",
        "strata_journal_pending_bytes{store=\"main\"}",
        "strata_journal_oldest_pending_seconds{store=\"main\"}",
    ] {
        assert!(value(&text, series) >= 0.0, "{series}");
    }
    assert_eq!(s.scrape("/health").await.0, 200);
    s.server().backends.set_error_rate(1.0);
    let (status, body) = s.scrape("/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready\nstore main: down: "), "{body}");
    let (_, text) = s.scrape("/metrics").await;
    assert!(
        value(
            &text,
            "strata_store_operations_total{store=\"main\",op=\"size\",result=\"unavailable\"}"
        ) >= 1.0,
        "{text}"
    );
    s.server().backends.set_error_rate(0.0);
    assert_eq!(s.scrape("/health").await.0, 200);
}
