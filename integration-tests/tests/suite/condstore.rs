//! CONDSTORE (RFC 7162 section 3.1) over TCP, following the RFC's examples and error cases:
//! enabling commands, HIGHESTMODSEQ, FETCH MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE with
//! `[MODIFIED]`, SEARCH MODSEQ, and MODSEQ in every untagged FETCH once on.

use strata_integration_tests::{Client, Reply, TestServer, number_after};

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// The HIGHESTMODSEQ a reply carries, in an untagged OK or a STATUS.
fn highest(r: &Reply) -> u64 {
    r.untagged
        .iter()
        .find_map(|l| number_after(l, "HIGHESTMODSEQ"))
        .unwrap_or_else(|| panic!("no HIGHESTMODSEQ in {r:?}"))
}

/// (sequence number, MODSEQ) of each untagged FETCH.
fn modseqs(r: &Reply) -> Vec<(u32, u64)> {
    r.untagged
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let seq = l.split(' ').next().unwrap().parse().unwrap();
            let m = number_after(l, "MODSEQ").unwrap_or_else(|| panic!("no MODSEQ in {l}"));
            (seq, m)
        })
        .collect()
}

async fn mailbox_with(s: &TestServer, name: &str, n: u32) -> Client {
    let mut c = s.login("alice").await;
    c.ok(&format!("CREATE {name}")).await;
    for i in 1..=n {
        assert!(c.append(name, "", &message(i)).await.is_ok());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_is_advertised_and_enabled() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 2).await;
    let r = c.ok("CAPABILITY").await;
    assert!(r.has(" CONDSTORE"), "{r:?}");
    let r = c.ok("ENABLE CONDSTORE").await;
    assert_eq!(r.with("ENABLED"), vec!["ENABLED CONDSTORE"], "{r:?}");
    // Already on: nothing newly enabled (RFC 5161 3.1).
    let r = c.ok("ENABLE CONDSTORE").await;
    assert_eq!(r.with("ENABLED"), vec!["ENABLED"], "{r:?}");
    let r = c.ok("SELECT Box").await;
    let h = highest(&r);
    assert!(h > 0);
    let r = c.ok("STATUS Box (HIGHESTMODSEQ MESSAGES)").await;
    assert_eq!(highest(&r), h, "STATUS and SELECT agree: {r:?}");
    // EXAMINE carries it too.
    let r = c.ok("EXAMINE Box").await;
    assert_eq!(highest(&r), h, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_enabling_command_turns_condstore_on() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 1).await;
    // The enabling commands of RFC 7162 3.1, each on a fresh connection; afterwards another
    // session's flag change is reported with MODSEQ.
    for cmd in [
        "SELECT Box (CONDSTORE)",
        "EXAMINE Box (CONDSTORE)",
        "STATUS Box (HIGHESTMODSEQ)",
        "FETCH 1 (MODSEQ)",
        "SEARCH MODSEQ 1",
        "FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
        "STORE 1 (UNCHANGEDSINCE 1000000) +FLAGS.SILENT (x)",
    ] {
        let mut d = s.login("alice").await;
        let select = if cmd.starts_with("SELECT") || cmd.starts_with("EXAMINE") {
            d.ok(cmd).await
        } else {
            d.ok("SELECT Box").await
        };
        assert!(
            !cmd.contains("CONDSTORE") || highest(&select) > 0,
            "{select:?}"
        );
        if !(cmd.starts_with("SELECT") || cmd.starts_with("EXAMINE")) {
            let r = d.ok(cmd).await;
            // Turned on with a mailbox selected: its HIGHESTMODSEQ is told before the OK.
            assert!(r.has("[HIGHESTMODSEQ "), "{cmd}: {r:?}");
        }
        c.ok("SELECT Box").await;
        c.ok("STORE 1 FLAGS (\\Flagged)").await;
        c.ok("STORE 1 -FLAGS (\\Flagged)").await;
        let r = d.ok("NOOP").await;
        let fetches = modseqs(&r);
        assert!(!fetches.is_empty(), "{cmd}: {r:?}");
        assert!(
            r.with("1 FETCH").iter().all(|l| l.contains("UID ")),
            "{cmd}: {r:?}"
        );
    }
    // Without an enabling command, untagged FETCHes carry no MODSEQ.
    let mut plain = s.login("alice").await;
    plain.ok("SELECT Box").await;
    c.ok("STORE 1 +FLAGS (\\Seen)").await;
    let r = plain.ok("NOOP").await;
    assert!(r.has("FETCH") && !r.has("MODSEQ"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_changedsince_returns_only_what_changed() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 5).await;
    let r = c.ok("SELECT Box (CONDSTORE)").await;
    let h = highest(&r);
    let r = c.ok("FETCH 1:* (FLAGS MODSEQ)").await;
    let before = modseqs(&r);
    assert_eq!(before.len(), 5, "{r:?}");
    assert!(before.iter().all(|(_, m)| *m <= h), "{r:?} vs {h}");
    // The STORE's answer carries the new MODSEQ.
    let r = c.ok("STORE 2,4 +FLAGS (\\Answered)").await;
    let stored = modseqs(&r);
    assert_eq!(stored.len(), 2, "{r:?}");
    assert!(stored.iter().all(|(_, m)| *m > h), "{r:?}");
    let r = c.ok(&format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {h})")).await;
    let changed: Vec<u32> = modseqs(&r).iter().map(|m| m.0).collect();
    assert_eq!(changed, vec![2, 4], "{r:?}");
    // UID FETCH: the same, with UIDs.
    let r = c
        .ok(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h})"))
        .await;
    assert_eq!(r.with("").iter().filter(|l| l.contains("FETCH")).count(), 2);
    assert!(r.with("2 FETCH")[0].contains("UID 2"), "{r:?}");
    // Nothing changed after the latest MODSEQ.
    let latest = stored.iter().map(|m| m.1).max().unwrap();
    let r = c
        .ok(&format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {latest})"))
        .await;
    assert!(modseqs(&r).is_empty(), "{r:?}");
    // HIGHESTMODSEQ moved to the last change.
    let r = c.ok("STATUS Box (HIGHESTMODSEQ)").await;
    assert_eq!(highest(&r), latest, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unchangedsince_leaves_changed_messages_and_says_modified() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 3).await;
    let h = highest(&c.ok("SELECT Box (CONDSTORE)").await);
    let mut other = s.login("alice").await;
    other.ok("SELECT Box").await;
    other.ok("STORE 2 +FLAGS (\\Flagged)").await;
    // RFC 7162 3.1.3, example 6: message 2 changed after h, so it is left alone.
    let r = c
        .cmd(&format!(
            "STORE 1:3 (UNCHANGEDSINCE {h}) +FLAGS.SILENT (\\Deleted)"
        ))
        .await;
    assert!(r.status.starts_with("OK [MODIFIED 2]"), "{r:?}");
    // .SILENT, yet the changed ones are told with their MODSEQ.
    let told: Vec<u32> = modseqs(&r).iter().map(|m| m.0).collect();
    assert!(told.contains(&1) && told.contains(&3), "{r:?}");
    let r = c.ok("FETCH 1:3 (FLAGS)").await;
    assert!(r.with("1 FETCH")[0].contains("\\Deleted"), "{r:?}");
    assert!(!r.with("2 FETCH")[0].contains("\\Deleted"), "{r:?}");
    assert!(r.with("3 FETCH")[0].contains("\\Deleted"), "{r:?}");
    // UNCHANGEDSINCE 0 fails for every message (each has a MODSEQ above 0).
    let r = c
        .cmd("STORE 1:3 (UNCHANGEDSINCE 0) -FLAGS (\\Deleted)")
        .await;
    assert!(r.status.starts_with("OK [MODIFIED 1:3]"), "{r:?}");
    assert!(modseqs(&r).is_empty(), "{r:?}");
    // UID STORE names UIDs in MODIFIED.
    let r = c
        .cmd("UID STORE 1,3 (UNCHANGEDSINCE 0) -FLAGS (\\Deleted)")
        .await;
    assert!(r.status.starts_with("OK [MODIFIED 1,3]"), "{r:?}");
    // A message changed since: refused; one unchanged: done, with the new MODSEQ.
    let r = c.ok("FETCH 2 (MODSEQ)").await;
    let m2 = modseqs(&r)[0].1;
    let r = c
        .cmd(&format!("STORE 2 (UNCHANGEDSINCE {m2}) FLAGS (\\Seen)"))
        .await;
    assert!(r.status.starts_with("OK"), "{r:?}");
    assert!(!r.status.contains("MODIFIED"), "{r:?}");
    assert!(modseqs(&r)[0].1 > m2, "{r:?}");
    // Syntax: UNCHANGEDSINCE twice.
    let r = c
        .cmd("STORE 1 (UNCHANGEDSINCE 5 UNCHANGEDSINCE 6) +FLAGS (x)")
        .await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_modseq_ends_with_the_highest_found() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 4).await;
    let h = highest(&c.ok("SELECT Box").await);
    let r = c.ok("STORE 3 +FLAGS (\\Flagged)").await;
    assert!(!r.has("MODSEQ"), "CONDSTORE is not on yet: {r:?}");
    let r = c.ok(&format!("SEARCH MODSEQ {}", h + 1)).await;
    let line = r.with("SEARCH")[0];
    let m = number_after(line, "(MODSEQ").unwrap();
    assert!(line.starts_with("SEARCH 3 (MODSEQ "), "{r:?}");
    assert!(m > h);
    // With an entry name, answered from the message's MODSEQ.
    let r = c
        .ok(&format!(
            "UID SEARCH MODSEQ \"/flags/\\\\flagged\" all {}",
            h + 1
        ))
        .await;
    assert!(r.with("SEARCH")[0].starts_with("SEARCH 3 (MODSEQ"), "{r:?}");
    // No match: a plain SEARCH response.
    let r = c.ok(&format!("SEARCH MODSEQ {}", m + 1)).await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH"], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_seen_is_told_with_uid_and_modseq() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 2).await;
    c.ok("ENABLE CONDSTORE").await;
    c.ok("SELECT Box").await;
    let r = c.ok("FETCH 1 (BODY[TEXT])").await;
    let line = r.with("1 FETCH")[0];
    assert!(line.contains("\\Seen"), "{r:?}");
    assert!(line.contains("UID 1") && line.contains("MODSEQ ("), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_syntax_without_qresync_is_refused() {
    let s = TestServer::start().await;
    let mut c = mailbox_with(&s, "Box", 1).await;
    let r = c.cmd("SELECT Box (QRESYNC (1 1))").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("SELECT Box").await;
    let r = c
        .cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    // CHANGEDSINCE takes a MODSEQ above zero.
    let r = c.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE 0)").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    // The connection still works.
    c.ok("NOOP").await;
}
