//! Tiering: a mailbox moves to a cold S3 store while a session FETCHes from it, every body
//! stays byte for byte what it was, a second read comes from the local cache (also after a
//! restart), `tier status` shows where the bytes are, and the periodic run moves what turns
//! cold by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_config::{Compression, Config, TierRule};
use strata_integration_tests::s3server::S3Server;
use strata_integration_tests::stores::{Store, cold_store, s3_backend};
use strata_integration_tests::{Client, TestServer};

/// The bodies of every message of `mailbox`, as one reply text.
async fn all_bodies(c: &mut Client, mailbox: &str) -> String {
    c.ok(&format!("EXAMINE {mailbox}")).await;
    let r = c.ok("UID FETCH 1:* (BODY.PEEK[])").await;
    r.untagged
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cold store on S3 (compressed, behind its journal), tiering by `rules`, a read cache.
fn with_cold_store(
    c: &mut Config,
    s3: &S3Server,
    rules: Vec<TierRule>,
    interval: Duration,
    rate: u64,
) {
    let cold = cold_store(c, s3_backend(s3), rules, interval, Some(rate), 16 << 20);
    cold.compression = Some(Compression {
        level: 3,
        frame_bytes: 16 << 10,
    });
}

/// `tier status` of `user`, through the running server.
async fn status(t: &TestServer, user: &str) -> Vec<String> {
    let mut lines = Vec::new();
    strata_server::control::request(&t.data_dir, &format!("tier-status {user}"), &mut |l| {
        lines.push(l.to_string())
    })
    .await
    .unwrap()
    .expect("the server answers");
    lines
}

/// Column `n` of `store`'s line: 1 messages, 2 bytes, 3 objects, 4 stored bytes.
fn column(lines: &[String], store: &str, n: usize) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(store))
        .unwrap_or_else(|| panic!("no line for {store}: {lines:?}"));
    line.split_whitespace().nth(n).unwrap().parse().unwrap()
}

/// The messages column of `store`'s line.
fn messages_in(lines: &[String], store: &str) -> u64 {
    column(lines, store, 1)
}

/// The cache line's number before `word` (`objects`, `hits`, `misses`).
fn cache_figure(lines: &[String], word: &str) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with("cache of cold"))
        .unwrap_or_else(|| panic!("no cache line: {lines:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("no {word} in {line}"));
    words[at - 1].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_goes_cold_while_a_session_reads_it_and_second_reads_are_local() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .unwrap();
    let archive_only = vec![TierRule {
        mailboxes: vec!["Archive".into()],
        ..TierRule::default()
    }];
    let mut t = TestServer::start_on(Store::Sqlite, |c| {
        // Slow enough that the move takes several batches, seconds apart.
        with_cold_store(c, &s3, archive_only, Duration::from_secs(3600), 16 << 10)
    })
    .await;
    let mut c = t.login("alice").await;
    c.fill("Archive", 120, "archived").await;
    c.fill("INBOX", 10, "current").await;
    let archive = all_bodies(&mut c, "Archive").await;
    let inbox = all_bodies(&mut c, "INBOX").await;
    assert_eq!(archive.matches("body of message").count(), 120);
    let before = status(&t, "alice").await;
    assert_eq!(messages_in(&before, "main"), 130, "{before:?}");
    assert_eq!(messages_in(&before, "cold"), 0, "{before:?}");

    // A second session reads the whole mailbox again and again while it moves.
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = t.login("alice").await;
    let reading = {
        let stop = stop.clone();
        let want = archive.clone();
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) || rounds == 0 {
                assert_eq!(all_bodies(&mut reader, "Archive").await, want);
                rounds += 1;
            }
            rounds
        })
    };
    let mut lines = Vec::new();
    let done = strata_server::control::request(&t.data_dir, "tier-run alice", &mut |l| {
        lines.push(l.to_string())
    })
    .await
    .unwrap()
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let rounds = reading.await.unwrap();
    assert!(done.contains("120/120 moved"), "{done} {lines:?}");
    println!("{done}; the reader read the mailbox {rounds} times meanwhile");
    assert!(rounds >= 2, "{rounds}");

    let after = status(&t, "alice").await;
    assert_eq!(messages_in(&after, "main"), 10, "{after:?}");
    assert_eq!(messages_in(&after, "cold"), 120, "{after:?}");
    // The cold store holds exactly the archive; the main store's bodies went.
    let cold = strata_server::backends::reach(&t.config.storage.others[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cold.list("alice/").await.unwrap().len(), 120);
    // Its stored bytes are what the S3 server holds (compressed), not the messages' sizes.
    let raw = strata_server::backends::reach_raw(&t.config.storage.others[0])
        .await
        .unwrap()
        .unwrap();
    let held: u64 = raw
        .list("alice/")
        .await
        .unwrap()
        .iter()
        .filter(|o| !strata_mailstore::ship::chain::is_index_key(o.key.as_str()))
        .map(|o| o.size)
        .sum();
    assert_eq!(column(&after, "cold", 4), held, "{after:?}");
    assert_ne!(column(&after, "cold", 4), column(&after, "cold", 2));

    // Read once from the cold store (the cache keeps them), then from the cache alone.
    assert_eq!(all_bodies(&mut c, "Archive").await, archive);
    let warm = status(&t, "alice").await;
    assert_eq!(cache_figure(&warm, "objects"), 120, "{warm:?}");
    let misses = cache_figure(&warm, "misses");
    let hits = cache_figure(&warm, "hits");
    assert_eq!(all_bodies(&mut c, "Archive").await, archive);
    let again = status(&t, "alice").await;
    assert_eq!(cache_figure(&again, "misses"), misses, "{again:?}");
    assert_eq!(cache_figure(&again, "hits"), hits + 120, "{again:?}");
    assert_eq!(all_bodies(&mut c, "INBOX").await, inbox);
    let (_, metrics) = t.scrape("/metrics").await;
    for (series, at_least) in [
        ("strata_tiered_bodies_total", 120.0),
        (
            "strata_cache_reads_total{store=\"cold\",result=\"hit\"}",
            120.0,
        ),
        ("strata_cache_objects{store=\"cold\"}", 120.0),
    ] {
        assert!(
            crate::metrics::value(&metrics, series) >= at_least,
            "{series}"
        );
    }

    // Nothing more is cold; a name that is not a user's is refused.
    let again = strata_server::control::request(&t.data_dir, "tier-run *", &mut |_| {})
        .await
        .unwrap()
        .unwrap();
    assert!(again.contains("0/0 moved"), "{again}");
    for (bad, why) in [("../x", "not a user name"), ("nobody", "no mail index")] {
        let err =
            strata_server::control::request(&t.data_dir, &format!("tier-run {bad}"), &mut |_| {})
                .await
                .unwrap_err()
                .to_string();
        assert!(err.contains(why), "{err}");
    }
    drop(c);

    // The cache survives a restart: every body comes from it.
    t.restart().await;
    let mut c = t.login("alice").await;
    assert_eq!(all_bodies(&mut c, "Archive").await, archive);
    let restarted = status(&t, "alice").await;
    assert_eq!(cache_figure(&restarted, "misses"), 0, "{restarted:?}");
    assert_eq!(cache_figure(&restarted, "hits"), 120, "{restarted:?}");
    drop(c);

    // With the server stopped, `strata tier status` opens the stores itself.
    t.stop().await;
    let offline = strata_server::tiering::status_cli(&t.config, "alice")
        .await
        .unwrap();
    assert_eq!(messages_in(&offline, "cold"), 120, "{offline:?}");
    assert_eq!(cache_figure(&offline, "objects"), 120, "{offline:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_run_moves_what_turns_cold() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .unwrap();
    let rules = vec![TierRule {
        mailboxes: vec!["Trash".into()],
        older_than: Some(Duration::ZERO),
        ..TierRule::default()
    }];
    let t = TestServer::start_on(Store::Maildir, |c| {
        with_cold_store(c, &s3, rules, Duration::from_millis(200), 4 << 20)
    })
    .await;
    let mut c = t.login("alice").await;
    c.fill("Trash", 20, "deleted").await;
    c.fill("INBOX", 5, "kept").await;
    let trash = all_bodies(&mut c, "Trash").await;
    // Waits for the runs to move them (a run every 200 ms), looking after each.
    let mut runs = t.server().backends.tierer().unwrap().runs();
    loop {
        let lines = status(&t, "alice").await;
        if messages_in(&lines, "cold") == 20 {
            assert_eq!(messages_in(&lines, "main"), 5, "{lines:?}");
            break;
        }
        tokio::time::timeout(Duration::from_secs(60), runs.changed())
            .await
            .unwrap_or_else(|_| panic!("no tiering run for a minute: {lines:?}"))
            .unwrap();
    }
    assert_eq!(all_bodies(&mut c, "Trash").await, trash);
}
