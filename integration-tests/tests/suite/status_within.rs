//! STATUS=SIZE (RFC 8438) and WITHIN (RFC 5032) over TCP.

use strata_integration_tests::{TestServer, plain_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_size_is_the_sum_of_rfc822_sizes() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let r = c.ok("CAPABILITY").await;
    assert!(r.has(" STATUS=SIZE") && r.has(" WITHIN"), "{r:?}");
    c.ok("CREATE Sized").await;
    let r = c.ok("STATUS Sized (SIZE MESSAGES)").await;
    assert_eq!(
        r.with("STATUS"),
        vec!["STATUS Sized (SIZE 0 MESSAGES 0)"],
        "{r:?}"
    );
    c.fill("Sized", 3, "sized").await;
    c.ok("SELECT Sized").await;
    let r = c.ok("FETCH 1:* RFC822.SIZE").await;
    let total: u64 = r
        .untagged
        .iter()
        .filter_map(|l| {
            l.rsplit(' ')
                .next()?
                .trim_end_matches(')')
                .parse::<u64>()
                .ok()
        })
        .sum();
    let r = c.ok("STATUS Sized (SIZE)").await;
    assert_eq!(
        r.with("STATUS"),
        vec![format!("STATUS Sized (SIZE {total})").as_str()]
    );
    c.ok("STORE 2 +FLAGS (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    let r = c.ok("STATUS Sized (SIZE)").await;
    let left: u64 = r.with("STATUS")[0]
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left < total && left > 0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_and_younger_compare_internaldate_with_now() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Aged").await;
    // An old message (APPEND's date), then a new one (now).
    let old = plain_message(1, "old");
    let r = c
        .append_dated("Aged", "01-Jan-2020 10:00:00 +0000", &old)
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(c.append("Aged", "", &plain_message(2, "new")).await.is_ok());
    c.ok("SELECT Aged").await;
    let r = c.ok("SEARCH OLDER 86400").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1"], "{r:?}");
    let r = c.ok("SEARCH YOUNGER 86400").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 2"], "{r:?}");
    let r = c.ok("UID SEARCH NOT YOUNGER 3600 OLDER 1").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1"], "{r:?}");
    // An interval of zero is not a valid one.
    let r = c.cmd("SEARCH OLDER 0").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_deleted_counts_what_expunge_would_remove() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Marked").await;
    c.fill("Marked", 4, "marked").await;
    let r = c
        .ok("STATUS Marked (DELETED DELETED-STORAGE MESSAGES)")
        .await;
    assert_eq!(
        r.with("STATUS"),
        vec!["STATUS Marked (DELETED 0 DELETED-STORAGE 0 MESSAGES 4)"],
        "{r:?}"
    );
    c.ok("SELECT Marked").await;
    c.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)").await;
    let sizes = c.ok("FETCH 2,4 RFC822.SIZE").await;
    let bytes: u64 = sizes
        .with("")
        .iter()
        .map(|l| {
            l.trim_end_matches(')')
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    // Another session's STATUS, and LIST-STATUS, see the flags at once.
    let mut other = s.login("alice").await;
    let r = other.ok("STATUS Marked (DELETED DELETED-STORAGE)").await;
    assert_eq!(
        r.with("STATUS"),
        vec![format!("STATUS Marked (DELETED 2 DELETED-STORAGE {bytes})").as_str()],
        "{r:?}"
    );
    let r = other.ok("LIST \"\" Marked RETURN (STATUS (DELETED))").await;
    assert_eq!(r.with("STATUS"), vec!["STATUS Marked (DELETED 2)"], "{r:?}");
    c.ok("EXPUNGE").await;
    let r = other
        .ok("STATUS Marked (DELETED DELETED-STORAGE MESSAGES)")
        .await;
    assert_eq!(
        r.with("STATUS"),
        vec!["STATUS Marked (DELETED 0 DELETED-STORAGE 0 MESSAGES 2)"],
        "{r:?}"
    );
}
