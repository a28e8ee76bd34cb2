//! Single-instance parts with the server's MIME splitter: every message of a generated corpus,
//! and malformed ones, comes back byte for byte, whole, by range and in batches, through
//! compression; and a message delivered to ten users stores its attachment once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_backend_api::{Backend, Batch, Key, MemoryBackend, Read};
use strata_backend_compress::{CompressBackend, CompressOptions};
use strata_backend_sis::{SisBackend, SisOptions};
use strata_integration_tests::bench::corpus;

fn layer(min_part: usize) -> (Arc<MemoryBackend>, SisBackend) {
    let store = Arc::new(MemoryBackend::new());
    let compressed = CompressBackend::new(
        store.clone(),
        CompressOptions {
            level: 1,
            frame_size: 16 << 10,
        },
    );
    let opts = SisOptions::new(min_part, Duration::from_secs(3600));
    let split = Arc::new(strata_server::backends::message_parts);
    (store, SisBackend::new(Arc::new(compressed), split, opts))
}

/// Messages a MIME walk must not lose a byte of.
fn malformed() -> Vec<Vec<u8>> {
    let big = "QUJD".repeat(2000);
    let mut out = vec![
        Vec::new(),
        b"\0STRS1 a message that starts like a skeleton".to_vec(),
        b"Subject: only a header\r\n".to_vec(),
        // A multipart whose closing boundary never comes, and one whose boundary is empty.
        format!(
            "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n{big}\r\n--x\r\nContent-Type: text/plain\r\n\r\n{big}"
        )
        .into_bytes(),
        format!("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n{big}\r\n----\r\n").into_bytes(),
        // Bare LF and bare CR line ends.
        format!("Content-Type: multipart/mixed; boundary=y\n\n--y\n\n{big}\n--y--\n").into_bytes(),
        format!("Content-Type: multipart/mixed; boundary=y\r\r--y\r\r{big}\r--y--\r").into_bytes(),
    ];
    // Nesting deeper than the walk follows.
    let mut deep = String::new();
    for i in 0..150 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str(&format!("\r\n{big}\r\n"));
    for i in (0..150).rev() {
        deep.push_str(&format!("--b{i}--\r\n"));
    }
    out.push(deep.into_bytes());
    let mut rng = StdRng::seed_from_u64(7);
    for n in [10, 5000, 70_000] {
        out.push((0..n).map(|_| rng.random::<u8>()).collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_comes_back_byte_for_byte_whole_by_range_and_in_batches() {
    let mut messages: Vec<Vec<u8>> = (0..400).map(|i| corpus::message(11, i)).collect();
    messages.extend(malformed());
    let mut rng = StdRng::seed_from_u64(3);
    for min_part in [1024, 32 << 10] {
        let (_, sis) = layer(min_part);
        let keys: Vec<Key> = (0..messages.len())
            .map(|i| Key::new(format!("u/{i}")).unwrap())
            .collect();
        for chunk in keys.iter().zip(&messages).collect::<Vec<_>>().chunks(16) {
            let batch = chunk
                .iter()
                .fold(Batch::new(), |b, (k, m)| b.put((*k).clone(), (*m).clone()));
            sis.commit(batch).await.unwrap();
        }
        for (k, m) in keys.iter().zip(&messages) {
            assert_eq!(sis.get(k, None).await.unwrap(), m[..], "{k}");
            assert_eq!(sis.size(k).await.unwrap(), m.len() as u64, "{k}");
            for _ in 0..4 {
                let a = rng.random_range(0..=m.len() as u64 + 10);
                let b = rng.random_range(0..=m.len() as u64 + 10);
                let (a, b) = (a.min(b), a.max(b));
                let end = (b as usize).min(m.len());
                let start = (a as usize).min(end);
                let got = sis.get(k, Some(a..b)).await.unwrap();
                assert_eq!(got, m[start..end], "{k} {a}..{b}");
            }
        }
        let reads = keys.iter().cloned().map(Read::whole).collect();
        let got: Vec<_> = sis.get_many(reads, 8).collect().await;
        for ((g, m), k) in got.into_iter().zip(&messages).zip(&keys) {
            assert_eq!(g.unwrap(), m[..], "{k}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_to_ten_users_stores_its_attachment_once() {
    let (store, sis) = layer(32 << 10);
    // Corpus messages with an attachment of 100 KB or more.
    let big: Vec<Vec<u8>> = (0..400)
        .map(|i| corpus::message(5, i))
        .filter(|m| m.len() > 150_000)
        .take(3)
        .collect();
    assert_eq!(big.len(), 3, "the corpus has large attachments");
    for (n, m) in big.iter().enumerate() {
        let deliveries = (0..10).map(|u| {
            let key = Key::new(format!("user{u}/{n}")).unwrap();
            // Each recipient's copy has its own trace header, as LMTP writes it.
            let mut copy = format!("Delivered-To: user{u}@example.org\r\n").into_bytes();
            copy.extend_from_slice(m);
            sis.commit(Batch::new().put(key, copy))
        });
        for r in futures::future::join_all(deliveries).await {
            r.unwrap();
        }
    }
    let stored: u64 = store.list("").await.unwrap().iter().map(|l| l.size).sum();
    let plain: u64 = big.iter().map(|m| m.len() as u64 * 10).sum();
    // Once, and compressed: base64 of random bytes shrinks by a quarter at most.
    assert!(
        stored * 10 < plain * 2,
        "stored {stored} bytes for {plain} delivered"
    );
    for u in 0..10 {
        let key = Key::new(format!("user{u}/0")).unwrap();
        let got = sis.get(&key, None).await.unwrap();
        assert!(got.ends_with(&big[0]));
    }
}

/// The server on SQLite with parts stored once from 1 KiB, collected every second a second
/// after they are marked: collection runs among the APPENDs, EXPUNGEs and kills.
fn crash_config(root: &std::path::Path, data: &std::path::Path) -> std::path::PathBuf {
    let cfg = root.join("strata.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\n\
             [storage]\nbackend = \"sql\"\nreconcile_interval_secs = 0\n\
             [storage.sql]\nurl = \"sqlite:{}\"\n\
             [storage.single_instance]\nmin_part = \"1K\"\ngrace_secs = 1\ncollect_interval_secs = 1\n\
             [log]\nlevel = \"warn\"\n",
            data.display(),
            data.join("bodies.db").display(),
        ),
    )
    .unwrap();
    cfg
}

/// Kills of the server in the crash loop.
const ROUNDS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_with_collection_loses_no_part_and_keeps_none_unreferenced() {
    use crate::reconcile::{Seen, crash_loop, data_dir_with_alice, subjects};
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    let root = tempfile::tempdir().unwrap();
    let data = data_dir_with_alice(root.path());
    let cfg_path = crash_config(root.path(), &data);
    let seen = Arc::new(Mutex::new(Seen::default()));
    // A second node collects all along, on the same database, without a journal of its own.
    let cfg = strata_config::load(&cfg_path).unwrap();
    let mut other = cfg.storage.clone();
    other.main.journal.enabled = false;
    let node = strata_server::backends::Backends::connect(&other)
        .await
        .unwrap();
    let (_, collector, _) = node
        .single_instance()
        .pop()
        .expect("the layer is configured");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let collecting = tokio::spawn(async move {
        let mut runs = Vec::new();
        // Back to back, as often as the store answers.
        while !*stopped.borrow_and_update() {
            runs.push(collector.collect().await.unwrap());
        }
        runs
    });
    crash_loop(&cfg_path, ROUNDS, 0, &seen).await;
    stop.send(true).unwrap();
    let runs = collecting.await.unwrap();
    let deleted: u64 = runs.iter().map(|r| r.deleted).sum();
    eprintln!(
        "{} collections during the kills deleted {deleted} parts",
        runs.len()
    );
    assert!(runs.len() > 1, "collection ran among the kills");

    // Restarted: the reconciler deletes what the kills left unrecorded, and every message
    // acknowledged and not expunged reads back whole, its part included.
    let running = strata_server::serve::start(cfg.clone()).await.unwrap();
    let reconciled = running.reconciled.clone();
    strata_integration_tests::until("a reconciler run", Duration::from_secs(60), || {
        reconciled.runs.load(Ordering::Relaxed) >= 1
    })
    .await;
    let mut c = strata_integration_tests::Client::plain(running.imap.unwrap()).await;
    c.ok("LOGIN alice alice-password").await;
    let in_index = subjects(&mut c).await;
    c.ok("SELECT INBOX").await;
    let fetched = c.ok("FETCH 1:* BODY.PEEK[]").await;
    let bodies = fetched
        .untagged
        .iter()
        .filter(|l| l.contains("--b--"))
        .count();
    assert_eq!(bodies, in_index.len(), "every message reads back whole");
    drop(c);
    running.shutdown().await;
    {
        let s = seen.lock().unwrap();
        eprintln!(
            "single-instance parts: {} APPENDs and {} EXPUNGEs answered over {ROUNDS} kills",
            s.appended.len(),
            s.expunged.len()
        );
        s.assert_kept(&in_index);
    }

    // Collected until no part is left that nothing refers to (a grace after being marked),
    // and no reference names a part that is gone.
    // Whatever the journal still held reaches the store first.
    {
        let (_store, backends) = strata_server::serve::mailstore(&cfg).await.unwrap();
        backends.drain_journals().await.unwrap();
    }
    // The layer over the database, on a clock each run moves a grace on.
    let url = format!("sqlite:{}", data.join("bodies.db").display());
    let raw = Arc::new(
        strata_backend_sql::SqlBackend::connect(&strata_backend_sql::SqlOptions::new(url))
            .await
            .unwrap(),
    );
    let ahead = Arc::new(Mutex::new(Duration::ZERO));
    let clock = ahead.clone();
    let grace = Duration::from_secs(1);
    let sis = SisBackend::new(
        raw,
        Arc::new(strata_server::backends::message_parts),
        SisOptions {
            min_part: 1024,
            grace,
            clock: Arc::new(move || std::time::SystemTime::now() + *clock.lock().unwrap()),
        },
    );
    for runs in 1.. {
        let run = sis.collect().await.unwrap();
        let listed = sis.list_stored("").await.unwrap();
        let names: std::collections::HashSet<&str> =
            listed.iter().map(|l| l.key.as_str()).collect();
        let parts: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix(".sis/p/"))
            .collect();
        let mut referred = std::collections::HashSet::new();
        for (hash, message) in names
            .iter()
            .filter_map(|n| n.strip_prefix(".sis/r/")?.split_once('/'))
        {
            assert!(
                names.contains(format!(".sis/p/{hash}").as_str()),
                "{message} refers to part {hash}, which is gone"
            );
            if names.contains(message) {
                referred.insert(hash);
            }
        }
        assert!(
            !parts.is_empty(),
            "the messages' attachments are stored apart"
        );
        assert!(
            parts.len() <= 4 * ROUNDS,
            "four attachments a round, each once: {parts:?}"
        );
        if parts.iter().all(|p| referred.contains(p)) && run.marked == 0 {
            break;
        }
        // Marked, then deleted; a reference whose message is gone, then its part: four runs.
        assert!(runs < 6, "parts nothing refers to are still kept: {run:?}");
        *ahead.lock().unwrap() += grace;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_not_opened_without_the_layers_that_wrote_it() {
    let root = tempfile::tempdir().unwrap();
    let data = crate::reconcile::data_dir_with_alice(root.path());
    let with = crash_config(root.path(), &data);
    // Compressed and sealed as well.
    let keys = root.path().join("keyring");
    std::fs::write(&keys, "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let text = std::fs::read_to_string(&with).unwrap().replace(
        "[log]",
        &format!(
            "[storage.compression]\nlevel = 1\n[storage.encryption]\nkeys = \"{}\"\n[log]",
            keys.display()
        ),
    );
    std::fs::write(&with, &text).unwrap();
    let cfg = strata_config::load(&with).unwrap();
    let running = strata_server::serve::start(cfg.clone()).await.unwrap();
    let mut c = strata_integration_tests::Client::plain(running.imap.unwrap()).await;
    c.ok("LOGIN alice alice-password").await;
    let m = format!(
        "Subject: kept\r\nContent-Type: multipart/mixed; boundary=k\r\n\r\n--k\r\n\r\nhello\r\n\
         --k\r\nContent-Type: application/octet-stream\r\n\r\n{}--k--\r\n",
        "0123456789abcdef\r\n".repeat(300)
    )
    .into_bytes();
    assert!(c.append("INBOX", "", &m).await.is_ok());
    let m = String::from_utf8(m).unwrap();
    drop(c);
    running.shutdown().await;

    // Any one of the tables taken out: the server refuses to start, naming the store and the
    // table.
    for table in ["single_instance", "compression", "encryption"] {
        let start = text.find(&format!("[storage.{table}]")).unwrap();
        let end = text[start + 1..].find('[').unwrap() + start + 1;
        let without = root.path().join(format!("without-{table}.toml"));
        std::fs::write(&without, format!("{}{}", &text[..start], &text[end..])).unwrap();
        let e = strata_server::serve::start(strata_config::load(&without).unwrap())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("\"main\"") && e.contains(table), "{e}");
    }

    // Put back, the message reads as it was appended.
    let running = strata_server::serve::start(cfg).await.unwrap();
    let mut c = strata_integration_tests::Client::plain(running.imap.unwrap()).await;
    c.ok("LOGIN alice alice-password").await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1 BODY.PEEK[]").await;
    assert!(r.has(&m), "{:?}", r.untagged);
    drop(c);
    running.shutdown().await;
}
