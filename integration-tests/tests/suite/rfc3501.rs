//! RFC 3501 answers that a compliance suite checks and that are easy to get subtly wrong:
//! \Recent (EXAMINE, races), LSUB's parents, flags announced before they are used, STARTTLS
//! only where it can work.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use strata_integration_tests::{Client, Reply, TestServer, until};

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// The UIDs a FETCH (UID FLAGS) shows as \Recent.
fn recent_uids(r: &Reply) -> BTreeSet<u32> {
    r.untagged
        .iter()
        .filter(|l| l.contains("FETCH (") && l.contains("\\Recent"))
        .filter_map(|l| {
            let at = l.find("UID ")? + 4;
            l[at..].split([' ', ')']).next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examine_shows_recent_messages_without_taking_them() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Fresh").await;
    for n in 0..2 {
        c.append("Fresh", "", &message(n)).await;
    }
    let r = c.ok("EXAMINE Fresh").await;
    assert!(r.has("2 RECENT"), "{r:?}");
    let r = c.ok("FETCH 1:* (UID FLAGS)").await;
    assert_eq!(recent_uids(&r).len(), 2, "{r:?}");
    let r = c.ok("STATUS Fresh (RECENT)").await;
    assert!(r.has("RECENT 2"), "EXAMINE took nothing: {r:?}");
    let mut other = s.login("alice").await;
    let r = other.ok("SELECT Fresh").await;
    assert!(r.has("2 RECENT"), "{r:?}");
    let r = c.ok("EXAMINE Fresh").await;
    assert!(r.has("0 RECENT"), "SELECT took them: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_message_is_recent_in_exactly_one_session() {
    let s = TestServer::start().await;
    const MESSAGES: u32 = 60;
    let mut appender = s.login("alice").await;
    let watchers: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.imap_addr();
            tokio::spawn(async move {
                let mut c = Client::plain(addr).await;
                c.ok("LOGIN alice alice-password").await;
                let mut seen = BTreeSet::new();
                let mut last_exists = 0;
                let exists_in = |r: &Reply| -> u32 {
                    r.with("")
                        .iter()
                        .find_map(|l| l.strip_suffix(" EXISTS")?.parse().ok())
                        .unwrap_or(0)
                };
                loop {
                    let r = c.ok("SELECT INBOX").await;
                    let exists = exists_in(&r);
                    // Read until no new mail was reported after the last listing (an empty
                    // mailbox has nothing to list: `1:*` names no message).
                    if exists > 0 {
                        loop {
                            let f = c.ok("FETCH 1:* (UID FLAGS)").await;
                            seen.extend(recent_uids(&f));
                            if !f.has("EXISTS") {
                                break;
                            }
                        }
                    }
                    last_exists = last_exists.max(exists);
                    if last_exists >= MESSAGES {
                        return seen;
                    }
                }
            })
        })
        .collect();
    for n in 0..MESSAGES {
        appender.append("INBOX", "", &message(n)).await;
    }
    let mut owner: HashMap<u32, usize> = HashMap::new();
    for (i, w) in watchers.into_iter().enumerate() {
        for uid in w.await.unwrap() {
            assert!(
                owner.insert(uid, i).is_none(),
                "UID {uid} was recent in two sessions"
            );
        }
    }
    // Whatever no watcher took is still recent for the next session.
    let mut last = s.login("alice").await;
    last.ok("SELECT INBOX").await;
    let r = last.ok("FETCH 1:* (UID FLAGS)").await;
    for uid in recent_uids(&r) {
        assert!(owner.insert(uid, 9).is_none(), "UID {uid} was recent twice");
    }
    assert_eq!(
        owner.len(),
        MESSAGES as usize,
        "some message was recent nowhere: {owner:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsub_with_percent_lists_the_unsubscribed_parent_as_noselect() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE foo/bar").await;
    c.ok("SUBSCRIBE foo/bar").await;
    c.ok("UNSUBSCRIBE foo").await;
    let r = c.ok("LSUB \"\" %").await;
    assert!(r.has("LSUB (\\Noselect) \"/\" foo"), "{r:?}");
    assert!(!r.has("foo/bar"), "{r:?}");
    let r = c.ok("LSUB \"\" *").await;
    assert!(r.has("\"/\" foo/bar") && !r.has("\" foo\r"), "{r:?}");
    let r = c.ok("LSUB \"\" foo/%").await;
    assert!(r.has("\"/\" foo/bar"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_keyword_is_announced_before_it_is_shown() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.append("INBOX", "", &message(1)).await;
    c.ok("SELECT INBOX").await;
    let mut watcher = s.login("alice").await;
    watcher.ok("SELECT INBOX").await;
    let r = c.ok("STORE 1 +FLAGS ($Fresh)").await;
    let flags = r
        .untagged
        .iter()
        .position(|l| l.starts_with("FLAGS (") && l.contains("$Fresh"));
    let permanent = r
        .untagged
        .iter()
        .position(|l| l.starts_with("OK [PERMANENTFLAGS (") && l.contains("$Fresh"));
    let fetch = r
        .untagged
        .iter()
        .position(|l| l.contains("FETCH") && l.contains("$Fresh"));
    assert!(
        flags < permanent && permanent < fetch && flags.is_some(),
        "{r:?}"
    );
    // Another session learns it the same way.
    let r = watcher.ok("NOOP").await;
    let flags = r
        .untagged
        .iter()
        .position(|l| l.starts_with("FLAGS (") && l.contains("$Fresh"));
    let fetch = r
        .untagged
        .iter()
        .position(|l| l.contains("FETCH") && l.contains("$Fresh"));
    assert!(flags.is_some() && flags < fetch, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_offered_only_where_it_can_work() {
    let s = TestServer::start().await;
    let mut plain = s.connect().await;
    assert!(plain.greeting.contains("STARTTLS"), "{}", plain.greeting);
    let r = plain.ok("LOGIN alice alice-password").await;
    assert!(!r.status.contains("STARTTLS"), "{r:?}");
    let r = plain.ok("CAPABILITY").await;
    assert!(!r.has("STARTTLS"), "{r:?}");
    let r = plain.cmd("STARTTLS").await;
    assert!(
        r.status.starts_with("BAD") && r.status.contains("before login"),
        "{r:?}"
    );
    plain.ok("NOOP").await;
    let mut tls = s.connect_tls().await;
    assert!(!tls.greeting.contains("STARTTLS"), "{}", tls.greeting);
    let r = tls.ok("CAPABILITY").await;
    assert!(!r.has("STARTTLS"), "{r:?}");
    let upgraded = s.connect().await.starttls(&s.certificate()).await;
    let mut upgraded = upgraded;
    let r = upgraded.ok("CAPABILITY").await;
    assert!(!r.has("STARTTLS"), "{r:?}");
}

/// Message files in alice's Maildir.
fn alice_files(s: &TestServer) -> usize {
    s.files()
        .iter()
        .filter(|f| {
            let f = f.to_string_lossy();
            f.contains("mail/alice/") && f.contains("/cur/")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_expunged_by_another_session_stays_readable_until_it_is_reported() {
    let s = TestServer::start().await;
    let mut a = s.login("alice").await;
    for n in 0..3 {
        a.append("INBOX", "", &message(n)).await;
    }
    a.ok("SELECT INBOX").await;
    let mut b = s.login("alice").await;
    b.ok("SELECT INBOX").await;
    let files = alice_files(&s);
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = b.ok("EXPUNGE").await;
    assert!(r.has("1 EXPUNGE"), "{r:?}");
    // A has not been told: message 1 is still its message 1, with its data (RFC 2180 4.1).
    let r = a.ok("FETCH 1 (UID FLAGS ENVELOPE BODY[])").await;
    assert!(r.has("message 0") && r.has("body 0"), "{r:?}");
    assert!(!r.has("EXPUNGE"), "FETCH may not report EXPUNGE: {r:?}");
    assert_eq!(alice_files(&s), files, "the body waits for A");
    // Told now; then the body goes.
    let r = a.ok("NOOP").await;
    assert!(r.has("1 EXPUNGE"), "{r:?}");
    // The body is deleted in the background once no session may still name it.
    until(
        "the body went once A was told",
        Duration::from_secs(10),
        || alice_files(&s) == files - 1,
    )
    .await;
    // A session that selects after the expunge never saw it, and waits for nothing.
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    a.ok("NOOP").await;
    c.ok("NOOP").await;
    until("the second body went", Duration::from_secs(10), || {
        alice_files(&s) == files - 2
    })
    .await;
    // A session that goes away without being told lets the body go too.
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    a.ok("NOOP").await;
    drop(c);
    s.wait_for_connections(2).await;
    until("the last body went", Duration::from_secs(10), || {
        alice_files(&s) == files - 3
    })
    .await;
}
