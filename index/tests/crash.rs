//! Crash test: a child process writes in a loop and is killed with SIGKILL at random moments,
//! hundreds of times. After each kill the index is reopened and checked: every write that
//! returned durable is there, nothing that was never begun is, UIDs never repeat, and UIDNEXT
//! and HIGHESTMODSEQ never go backwards. Recovery times are printed.
//!
//! The child is this same test binary, started with `STRATA_CRASH_CHILD` set.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use strata_index::*;

const CHILD_ENV: &str = "STRATA_CRASH_CHILD";
const START_ENV: &str = "STRATA_CRASH_START";

fn content_number(g: &Guid) -> u64 {
    u64::from_be_bytes(g.0[..8].try_into().unwrap())
}

/// The child: append, mark seen, sometimes expunge, forever; report each step before it starts
/// and after it is durable.
async fn child(path: &str, mut n: u64) -> ! {
    let (index, report) = UserIndex::open(path, IndexOptions::default())
        .await
        .unwrap();
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    say(format!(
        "RECOVERY {} {}",
        report.duration.as_micros(),
        report.repaired
    ));
    let snap = index.snapshot().unwrap();
    let inbox = match snap.lookup(None, "INBOX").unwrap() {
        Some(id) => id,
        None => {
            say("BEGIN CREATE".into());
            index.create_mailbox(common::top("INBOX")).await.unwrap().id
        }
    };
    drop(snap);
    say("READY".into());
    loop {
        say(format!("BEGIN APPEND {n}"));
        let uid = index
            .append(inbox, vec![common::message(n, SystemFlags::empty())])
            .await
            .unwrap()[0];
        say(format!("DURABLE APPEND {n} {}", uid.0));
        if n.is_multiple_of(2) {
            say(format!("BEGIN SEEN {}", uid.0));
            common::store_system(&index, inbox, vec![uid], StoreOp::Add, SystemFlags::SEEN).await;
            say(format!("DURABLE SEEN {}", uid.0));
        }
        if n.is_multiple_of(3) {
            say(format!("BEGIN EXPUNGE {}", uid.0));
            index.expunge(inbox, vec![uid]).await.unwrap();
            say(format!("DURABLE EXPUNGE {}", uid.0));
        }
        n += 1;
    }
}

#[derive(Default)]
struct History {
    begun_contents: BTreeSet<u64>,
    acked_appends: BTreeMap<u32, u64>,
    acked_seen: BTreeSet<u32>,
    acked_expunges: BTreeSet<u32>,
    begun_expunges: BTreeSet<u32>,
    uid_owner: BTreeMap<u32, u64>,
    uid_next: u32,
    modseq: Modseq,
    next_n: u64,
}

fn parse(h: &mut History, line: &str) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["BEGIN", "APPEND", n] => {
            let n: u64 = n.parse().unwrap();
            h.begun_contents.insert(n);
            h.next_n = h.next_n.max(n + 1);
        }
        ["DURABLE", "APPEND", n, uid] => {
            h.acked_appends
                .insert(uid.parse().unwrap(), n.parse().unwrap());
        }
        ["DURABLE", "SEEN", uid] => {
            h.acked_seen.insert(uid.parse().unwrap());
        }
        ["BEGIN", "EXPUNGE", uid] => {
            h.begun_expunges.insert(uid.parse().unwrap());
        }
        ["DURABLE", "EXPUNGE", uid] => {
            h.acked_expunges.insert(uid.parse().unwrap());
        }
        _ => {}
    }
}

async fn verify_after_crash(path: &std::path::Path, h: &mut History) -> RecoveryReport {
    let (index, report) = UserIndex::open(path, IndexOptions::default())
        .await
        .unwrap();
    let snap = index.snapshot().unwrap();
    strata_index::verify(&snap).unwrap();
    assert!(snap.modseq() >= h.modseq, "HIGHESTMODSEQ went backwards");
    h.modseq = snap.modseq();
    if let Some(inbox) = snap.lookup(None, "INBOX").unwrap() {
        let rec = snap.mailbox(inbox).unwrap().unwrap();
        assert!(rec.uid_next.0 >= h.uid_next, "UIDNEXT went backwards");
        h.uid_next = rec.uid_next.0;
        let present: BTreeMap<u32, MessageRecord> = snap
            .messages(inbox)
            .unwrap()
            .into_iter()
            .map(|m| (m.uid.0, m))
            .collect();
        for (uid, m) in &present {
            let n = content_number(&m.guid);
            assert!(
                h.begun_contents.contains(&n),
                "content {n} was never appended"
            );
            let owner = *h.uid_owner.entry(*uid).or_insert(n);
            assert_eq!(owner, n, "UID {uid} was given to two messages");
            assert!(
                !h.acked_expunges.contains(uid),
                "expunged UID {uid} came back"
            );
            if h.acked_seen.contains(uid) {
                assert!(m.flags.is_seen(), "durable \\Seen on UID {uid} was lost");
            }
        }
        for (uid, n) in &h.acked_appends {
            // An expunge that began may have committed before the kill, acknowledged or not.
            if !h.begun_expunges.contains(uid) {
                let m = present
                    .get(uid)
                    .unwrap_or_else(|| panic!("durable append of UID {uid} lost"));
                assert_eq!(content_number(&m.guid), *n);
            }
            let owner = *h.uid_owner.entry(*uid).or_insert(*n);
            assert_eq!(owner, *n, "UID {uid} was given to two messages");
        }
    } else {
        assert!(h.acked_appends.is_empty(), "INBOX vanished");
    }
    drop(snap);
    index.close().await;
    report
}

#[test]
fn sigkill_loses_nothing_durable() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
        common::runtime().block_on(child(&path, start));
    }
    let rounds: usize = std::env::var("STRATA_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let rt = common::runtime();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5717a);
    let mut h = History::default();
    let mut child_recovery = Vec::new();
    let mut parent_recovery = Vec::new();
    let mut repaired = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "sigkill_loses_nothing_durable",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env(START_ENV, h.next_n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is writing, then let it run for a random while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("round {round}: the child never became ready"));
            let ready = line.ends_with("READY");
            lines.push(line);
            if ready {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..40_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for line in &lines {
            // The test harness may print "test name ... " on the same line first.
            if let Some(rest) = line.find("RECOVERY ").map(|i| &line[i + 9..]) {
                let clean: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                child_recovery.push(clean);
            }
            parse(&mut h, line);
        }
        let report = rt.block_on(verify_after_crash(&path, &mut h));
        parent_recovery.push(report.duration.as_micros() as u64);
        assert!(
            report.unclean_shutdown,
            "the reopen did not notice the crash"
        );
        repaired += usize::from(report.repaired);
    }
    child_recovery.sort_unstable();
    parent_recovery.sort_unstable();
    let pct = |v: &[u64], p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "{rounds} SIGKILLs, {} durable appends, {} expunges; reopen after kill (us): p50 {} p99 {} max {}, {repaired} needed an engine repair; clean reopen p50 {} us",
        h.acked_appends.len(),
        h.acked_expunges.len(),
        pct(&parent_recovery, 50),
        pct(&parent_recovery, 99),
        parent_recovery.last().unwrap(),
        pct(&child_recovery, 50),
    );
    assert!(
        h.acked_appends.len() > rounds / 4,
        "the child barely wrote anything"
    );
}
