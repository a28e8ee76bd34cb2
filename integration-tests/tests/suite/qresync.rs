//! QRESYNC (RFC 7162 section 3.2) over TCP: ENABLE, SELECT's QRESYNC parameter with VANISHED
//! (EARLIER) and the flags changed since, known UIDs, UID FETCH's VANISHED modifier, VANISHED
//! instead of EXPUNGE, `[CLOSED]`; and a client that resyncs with one SELECT after another
//! session changed, expunged and appended, checked against a full fetch.

use std::collections::BTreeMap;

use strata_integration_tests::{Client, Reply, TestServer, number_after};

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn code(r: &Reply, key: &str) -> u64 {
    r.untagged
        .iter()
        .find_map(|l| number_after(l, key))
        .unwrap_or_else(|| panic!("no {key} in {r:?}"))
}

/// UIDs in a sequence-set string (`1:3,7`).
fn expand(set: &str) -> Vec<u32> {
    set.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().unwrap()..=b.parse().unwrap()).collect::<Vec<_>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

/// The UIDs of every `VANISHED (EARLIER)` response.
fn vanished_earlier(r: &Reply) -> Vec<u32> {
    r.untagged
        .iter()
        .filter_map(|l| l.strip_prefix("VANISHED (EARLIER) "))
        .flat_map(expand)
        .collect()
}

/// UID → flags (sorted, without \Recent) of every untagged FETCH with UID and FLAGS.
fn flags_by_uid(r: &Reply) -> BTreeMap<u32, Vec<String>> {
    r.untagged
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .filter_map(|l| {
            let uid = number_after(l, "UID ")? as u32;
            let at = l.find("FLAGS (")? + 7;
            let end = l[at..].find(')')? + at;
            let mut f: Vec<String> = l[at..end]
                .split(' ')
                .filter(|f| !f.is_empty() && *f != "\\Recent")
                .map(str::to_string)
                .collect();
            f.sort();
            Some((uid, f))
        })
        .collect()
}

/// Creates `Box` with messages 1..=n through `c`.
async fn boxed(c: &mut Client, n: u32) {
    c.ok("CREATE Box").await;
    for i in 1..=n {
        assert!(c.append("Box", "", &message(i)).await.is_ok());
    }
}

async fn qresync_client(s: &TestServer) -> Client {
    let mut c = s.login("alice").await;
    let r = c.ok("ENABLE QRESYNC").await;
    assert_eq!(r.with("ENABLED"), vec!["ENABLED QRESYNC"], "{r:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resyncs_with_one_select() {
    let s = TestServer::start().await;
    let mut c = qresync_client(&s).await;
    c.ok("CREATE Box").await;
    for i in 1..=20 {
        let flags = if i % 4 == 0 { "\\Seen" } else { "" };
        assert!(c.append("Box", flags, &message(i)).await.is_ok());
    }
    // The client's cache: every UID's flags, UIDVALIDITY and HIGHESTMODSEQ.
    let r = c.ok("SELECT Box").await;
    let validity = code(&r, "UIDVALIDITY");
    let highest = code(&r, "HIGHESTMODSEQ");
    let mut cache = flags_by_uid(&c.ok("UID FETCH 1:* (FLAGS)").await);
    assert_eq!(cache.len(), 20);
    c.ok("LOGOUT").await;

    // Meanwhile another session changes flags, expunges and appends.
    let mut other = s.login("alice").await;
    other.ok("SELECT Box").await;
    other.ok("UID STORE 3,5,7 +FLAGS (\\Flagged)").await;
    other.ok("UID STORE 4 -FLAGS (\\Seen)").await;
    other.ok("UID STORE 2,6,11,12,13 +FLAGS (\\Deleted)").await;
    other.ok("UID EXPUNGE 2,6,11:13").await;
    for i in 21..=23 {
        other.append("Box", "", &message(i)).await;
    }
    other.ok("UID STORE 21 +FLAGS (\\Answered)").await;

    // One SELECT resyncs.
    let mut c = qresync_client(&s).await;
    let r = c
        .ok(&format!("SELECT Box (QRESYNC ({validity} {highest}))"))
        .await;
    let gone = vanished_earlier(&r);
    assert_eq!(gone, vec![2, 6, 11, 12, 13], "{r:?}");
    let changed = flags_by_uid(&r);
    for uid in [3, 4, 5, 7, 21, 22, 23] {
        assert!(changed.contains_key(&uid), "UID {uid} changed: {r:?}");
    }
    assert!(
        r.untagged
            .iter()
            .filter(|l| l.contains(" FETCH ("))
            .all(|l| l.contains("MODSEQ (")),
        "{r:?}"
    );
    // VANISHED comes before the FETCHes (RFC 7162 3.2.5.2).
    let first_fetch = r
        .untagged
        .iter()
        .position(|l| l.contains(" FETCH ("))
        .unwrap();
    let vanished_at = r
        .untagged
        .iter()
        .position(|l| l.starts_with("VANISHED"))
        .unwrap();
    assert!(vanished_at < first_fetch, "{r:?}");
    for uid in gone {
        cache.remove(&uid);
    }
    cache.extend(changed);
    let full = flags_by_uid(&c.ok("UID FETCH 1:* (FLAGS)").await);
    assert_eq!(cache, full, "the resynced cache is the server's state");
    assert_eq!(r.with(&format!("{} EXISTS", full.len())).len(), 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_uids_and_uidvalidity_limit_what_is_told() {
    let s = TestServer::start().await;
    let mut c = qresync_client(&s).await;
    boxed(&mut c, 6).await;
    let r = c.ok("SELECT Box").await;
    let validity = code(&r, "UIDVALIDITY");
    let highest = code(&r, "HIGHESTMODSEQ");
    c.ok("UID STORE 1:6 +FLAGS (\\Deleted)").await;
    c.ok("UID EXPUNGE 1,2,5").await;
    c.ok("UID STORE 3,6 +FLAGS (\\Seen)").await;
    // Known UIDs 1:3: only what happened to them.
    let r = c
        .ok(&format!("EXAMINE Box (QRESYNC ({validity} {highest} 1:3))"))
        .await;
    assert!(r.untagged[0].starts_with("OK [CLOSED]"), "{r:?}");
    assert_eq!(vanished_earlier(&r), vec![1, 2], "{r:?}");
    assert_eq!(
        flags_by_uid(&r).keys().copied().collect::<Vec<_>>(),
        vec![3]
    );
    // A different UIDVALIDITY is a plain SELECT; after a MODSEQ from the future nothing changed.
    for (v, m) in [(validity + 1, highest), (validity, highest * 1000)] {
        let r = c.ok(&format!("SELECT Box (QRESYNC ({v} {m}))")).await;
        assert!(
            vanished_earlier(&r).is_empty() && flags_by_uid(&r).is_empty(),
            "{r:?}"
        );
    }
    // UID FETCH with VANISHED: the same answer for a UID range.
    let r = c
        .ok(&format!(
            "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)"
        ))
        .await;
    assert_eq!(vanished_earlier(&r), vec![1, 2, 5], "{r:?}");
    let changed: Vec<u32> = flags_by_uid(&r).keys().copied().collect();
    assert_eq!(changed, vec![3, 4, 6], "{r:?}");
    let r = c
        .ok(&format!(
            "UID FETCH 4:6 (FLAGS) (CHANGEDSINCE {highest} VANISHED)"
        ))
        .await;
    assert_eq!(vanished_earlier(&r), vec![5], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunges_are_told_as_vanished() {
    let s = TestServer::start().await;
    let mut c = qresync_client(&s).await;
    boxed(&mut c, 5).await;
    c.ok("SELECT Box").await;
    c.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("EXPUNGE").await;
    assert_eq!(r.with("VANISHED"), vec!["VANISHED 2,4"], "{r:?}");
    assert!(!r.has("EXPUNGE"), "{r:?}");
    // Another session's expunge, seen at NOOP.
    let mut other = s.login("alice").await;
    other.ok("SELECT Box").await;
    other.ok("UID STORE 5 +FLAGS (\\Deleted)").await;
    other.ok("UID EXPUNGE 5").await;
    let r = c.ok("NOOP").await;
    assert_eq!(r.with("VANISHED"), vec!["VANISHED 5"], "{r:?}");
    // A session without QRESYNC still gets EXPUNGE.
    other.ok("UID STORE 3 +FLAGS (\\Deleted)").await;
    let r = other.ok("EXPUNGE").await;
    assert!(r.has("EXPUNGE") && !r.has("VANISHED"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_errors_are_bad() {
    let s = TestServer::start().await;
    let mut plain = s.login("alice").await;
    // Not enabled: BAD, and the mailbox stays unselected.
    let r = plain.cmd("SELECT INBOX (QRESYNC (1 1))").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    let r = plain.cmd("FETCH 1 FLAGS").await;
    assert!(r.status.starts_with("BAD"), "still nothing selected: {r:?}");
    let mut c = qresync_client(&s).await;
    c.append("INBOX", "", &message(1)).await;
    c.ok("SELECT INBOX").await;
    for bad in [
        "UID FETCH 1:* (FLAGS) (VANISHED)",
        "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "SELECT INBOX (QRESYNC (0 1))",
        "SELECT INBOX (QRESYNC (1 0))",
        "SELECT INBOX (QRESYNC (1))",
    ] {
        let r = c.cmd(bad).await;
        assert!(r.status.starts_with("BAD"), "{bad}: {r:?}");
    }
    c.ok("NOOP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modseqs_told_while_an_expunge_waits_come_with_a_lower_highestmodseq() {
    let s = TestServer::start().await;
    let mut c = qresync_client(&s).await;
    boxed(&mut c, 3).await;
    let r = c.ok("SELECT Box").await;
    let before = code(&r, "HIGHESTMODSEQ");
    let mut other = s.login("alice").await;
    other.ok("SELECT Box").await;
    other.ok("UID STORE 1 +FLAGS (\\Deleted)").await;
    other.ok("UID EXPUNGE 1").await;
    other.ok("UID STORE 3 +FLAGS (\\Flagged)").await;
    // FETCH may not tell the expunge (RFC 3501 7.4.1), but tells UID 3's new MODSEQ: the
    // HIGHESTMODSEQ it gives first is below the expunge, so a client that stops here still
    // asks for it next time.
    let r = c.ok("FETCH 1 (FLAGS)").await;
    assert!(!r.has("VANISHED"), "{r:?}");
    let flag_at = r.untagged.iter().position(|l| l.contains("UID 3")).unwrap();
    let highest_at = r
        .untagged
        .iter()
        .position(|l| l.contains("[HIGHESTMODSEQ"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(highest_at < flag_at, "{r:?}");
    assert_eq!(code(&r, "HIGHESTMODSEQ"), before, "{r:?}");
    let r = c.ok("NOOP").await;
    assert_eq!(r.with("VANISHED"), vec!["VANISHED 1"], "{r:?}");
    let r = c
        .ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert_eq!(vanished_earlier(&r), vec![1], "{r:?}");
}
