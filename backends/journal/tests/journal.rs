//! The staging journal against real stores: the conformance suite, soft-done before the store
//! has a batch, replay after a restart, outages, back-pressure, torn and damaged segments.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_backend_api::{Backend, Batch, ErrorKind, Key, MemoryBackend, conformance};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};
use strata_backend_journal::{Journal, JournalOptions};
use tempfile::TempDir;

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// A store that can go down: the memory backend behind injected errors.
fn store(error_rate: f64) -> Arc<DelayBackend<Arc<MemoryBackend>>> {
    Arc::new(DelayBackend::new(
        Arc::new(MemoryBackend::new()),
        DelayConfig {
            error_rate,
            seed: 7,
            ..DelayConfig::default()
        },
    ))
}

async fn open(dir: &TempDir, inner: Arc<dyn Backend>) -> Journal {
    Journal::open(inner, JournalOptions::new(dir.path()))
        .await
        .unwrap()
}

/// Waits until `done` holds of the journal's figures (they change as its uploader and writer
/// work), failing after 20 s.
async fn wait_for(
    j: &Journal,
    what: &str,
    done: impl Fn(&strata_backend_journal::JournalStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = j.stats();
        if done(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {s:?}"
        );
        tokio::task::yield_now().await;
    }
}

async fn wait_drained(j: &Journal) {
    wait_for(j, "drained", |s| s.pending_batches == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_conformance_over_a_fast_and_a_slow_store() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = TempDir::new().unwrap();
        let path = dir.path().to_path_buf();
        dirs.lock().unwrap().push(dir);
        async move {
            let j = Journal::open(Arc::new(MemoryBackend::new()), JournalOptions::new(path))
                .await
                .unwrap();
            Arc::new(j) as Arc<dyn Backend>
        }
    })
    .await;
    conformance::run_all(|| {
        let dir = TempDir::new().unwrap();
        let path = dir.path().to_path_buf();
        dirs.lock().unwrap().push(dir);
        async move {
            let slow = DelayBackend::new(
                Arc::new(MemoryBackend::new()),
                DelayConfig {
                    write: Latency::fixed(Duration::from_millis(3)),
                    ack: Latency::fixed(Duration::from_millis(5)),
                    ..DelayConfig::default()
                },
            );
            let mut opts = JournalOptions::new(path);
            opts.segment_bytes = 4096;
            let j = Journal::open(Arc::new(slow), opts).await.unwrap();
            Arc::new(j) as Arc<dyn Backend>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_done_is_readable_before_the_store_has_it_and_acked_after() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    let j = open(&dir, down.clone()).await;
    let r = j
        .commit(Batch::new().put(k("u/1"), "body one").put(k("u/2"), "two"))
        .await
        .unwrap();
    assert!(!r.is_acked());
    assert_eq!(j.get(&k("u/1"), None).await.unwrap(), "body one");
    assert_eq!(j.get(&k("u/1"), Some(5..100)).await.unwrap(), "one");
    assert_eq!(j.size(&k("u/2")).await.unwrap(), 3);
    assert_eq!(
        down.inner().get(&k("u/1"), None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // A delete is seen at once too, although the store still has nothing to delete.
    j.commit(Batch::new().delete(k("u/2"))).await.unwrap();
    assert_eq!(
        j.get(&k("u/2"), None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    let s = j.stats();
    assert_eq!((s.pending_batches, s.pending_bytes), (2, 11));
    wait_for(&j, "retried", |s| s.retries > 0).await;
    down.set_error_rate(0.0);
    r.acked().await.unwrap();
    j.flush(u64::MAX).await.unwrap();
    assert_eq!(down.inner().get(&k("u/1"), None).await.unwrap(), "body one");
    assert_eq!(
        down.inner().get(&k("u/2"), None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    wait_drained(&j).await;
    // Acked keys are read from the store again.
    let before = down.inner().reads();
    assert_eq!(j.get(&k("u/1"), None).await.unwrap(), "body one");
    assert_eq!(down.inner().reads(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_uploads_every_batch_not_yet_acked() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    let mut expect = BTreeMap::new();
    {
        let j = open(&dir, down.clone()).await;
        for i in 0..50u32 {
            let key = k(&format!("u/{}", i % 20));
            if i % 7 == 3 {
                j.commit(Batch::new().delete(key.clone())).await.unwrap();
                expect.remove(&key);
            } else {
                let data = Bytes::from(format!("v{i}"));
                j.commit(Batch::new().put(key.clone(), data.clone()))
                    .await
                    .unwrap();
                expect.insert(key, data);
            }
        }
        assert_eq!(j.stats().pending_batches, 50);
    }
    // The same store, back up, behind the journal reopened as after a crash.
    down.set_error_rate(0.0);
    let j = open(&dir, down.clone()).await;
    assert_eq!(j.stats().replayed, 50);
    for (key, data) in &expect {
        assert_eq!(
            &j.get(key, None).await.unwrap(),
            data,
            "{key} before upload"
        );
    }
    j.flush(u64::MAX).await.unwrap();
    wait_drained(&j).await;
    for i in 0..20 {
        let key = k(&format!("u/{i}"));
        let got = down.inner().get(&key, None).await.ok();
        assert_eq!(got.as_ref(), expect.get(&key), "{key} in the store");
    }
    // Everything acked: once the writer has rolled past the acked segments, a third open has
    // nothing to replay.
    wait_for(&j, "rolled past the acked segments", |s| s.segments <= 1).await;
    drop(j);
    let j = open(&dir, down.clone()).await;
    assert_eq!(j.stats().replayed, 0);
    j.flush(u64::MAX).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_ends_with_every_key_as_last_written() {
    let dir = TempDir::new().unwrap();
    let flaky = store(0.3);
    let mut opts = JournalOptions::new(dir.path());
    opts.segment_bytes = 2048;
    opts.uploads = 8;
    let j = Arc::new(Journal::open(flaky.clone(), opts).await.unwrap());
    let mut expect = BTreeMap::new();
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let key = k(&format!("m/{}", i % 13));
        let batch = if i % 5 == 4 {
            expect.remove(&key);
            Batch::new().delete(key)
        } else {
            let data = Bytes::from(format!("value {i} ").repeat(i as usize % 40 + 1));
            expect.insert(key.clone(), data.clone());
            Batch::new().put(key, data)
        };
        // Commits in order; soft-done concurrently with the uploads.
        let r = j.commit(batch).await.unwrap();
        tasks.push(r);
    }
    flaky.set_error_rate(0.0);
    for r in tasks {
        r.acked().await.unwrap();
    }
    wait_drained(&j).await;
    for i in 0..13 {
        let key = k(&format!("m/{i}"));
        assert_eq!(
            flaky.inner().get(&key, None).await.ok().as_ref(),
            expect.get(&key),
            "{key}"
        );
    }
    let s = j.stats();
    assert!(s.retries > 0 && s.uploaded == 300, "{s:?}");
    wait_for(&j, "deleted its acked segments", |s| s.segments <= 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_holds_commits_back_until_the_store_acks() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    let mut opts = JournalOptions::new(dir.path());
    opts.max_bytes = 1000;
    let j = Arc::new(Journal::open(down.clone(), opts).await.unwrap());
    j.commit(Batch::new().put(k("a/1"), vec![b'x'; 800]))
        .await
        .unwrap();
    let held = tokio::spawn({
        let j = j.clone();
        async move { j.commit(Batch::new().put(k("a/2"), vec![b'y'; 800])).await }
    });
    wait_for(&j, "held a commit back", |s| s.full).await;
    assert!(!held.is_finished(), "a commit past the bound must wait");
    assert_eq!(j.stats().pending_batches, 1);
    down.set_error_rate(0.0);
    let r = held.await.unwrap().unwrap();
    r.acked().await.unwrap();
    assert_eq!(down.inner().get(&k("a/2"), None).await.unwrap().len(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_damage_elsewhere_is_refused() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    {
        let j = open(&dir, down.clone()).await;
        j.commit(Batch::new().put(k("t/1"), "kept")).await.unwrap();
    }
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    segs.sort();
    // The batch is in the first segment; the second was started and is empty.
    let first = segs[0].clone();
    let last = segs.last().unwrap().clone();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9]).unwrap();
    }
    let j = open(&dir, down.clone()).await;
    assert_eq!(j.stats().replayed, 1);
    assert_eq!(j.get(&k("t/1"), None).await.unwrap(), "kept");
    drop(j);
    let mut bytes = std::fs::read(&first).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    let e = Journal::open(down.clone(), JournalOptions::new(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(
        e.message.contains(&first.display().to_string()) && e.message.contains("at byte"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_directory_serves_one_process() {
    let dir = TempDir::new().unwrap();
    let _j = open(&dir, Arc::new(MemoryBackend::new())).await;
    let e = Journal::open(
        Arc::new(MemoryBackend::new()),
        JournalOptions::new(dir.path()),
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("in use"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_fsyncs() {
    let dir = TempDir::new().unwrap();
    let j = Arc::new(open(&dir, Arc::new(MemoryBackend::new())).await);
    let before = j.stats().fsyncs;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                j.commit(Batch::new().put(k(&format!("g/{t}/{i}")), "x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fsyncs = j.stats().fsyncs - before;
    assert!(fsyncs < 320, "320 commits took {fsyncs} fsyncs");
    j.flush(u64::MAX).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_is_journaled_and_reaches_the_store_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    let meta = strata_backend_api::BodyMeta {
        user: "u".into(),
        mailbox: 4,
        mailbox_name: "Archive/2026".into(),
        guid: "0123456789abcdef0123456789abcdef".into(),
        internal_date: 1_700_000_000,
        zone_minutes: 120,
        saved: 1_700_000_001,
        size: 4,
    };
    {
        let j = open(&dir, down.clone()).await;
        j.commit(
            Batch::new()
                .put(k("m/1"), "body")
                .meta(k("m/1"), meta.clone()),
        )
        .await
        .unwrap();
        assert_eq!(j.meta(&k("m/1")).await.unwrap(), Some(meta.clone()));
    }
    // The store was down throughout: the metadata is only in the journal, and comes back.
    let j = open(&dir, down.clone()).await;
    assert_eq!(j.stats().replayed, 1);
    assert_eq!(j.meta(&k("m/1")).await.unwrap(), Some(meta.clone()));
    down.set_error_rate(0.0);
    wait_for(&j, "uploaded the replayed batch", |s| {
        s.pending_batches == 0
    })
    .await;
    assert_eq!(down.inner().meta(&k("m/1")).await.unwrap(), Some(meta));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_what_a_batch_writes_are_journaled_and_uploaded_as_copies() {
    let dir = TempDir::new().unwrap();
    let down = store(1.0);
    let watched = Arc::new(strata_backend_api::Observed::new(down.clone()));
    let body = Bytes::from(vec![b'x'; 100_000]);
    let meta = |user: &str| strata_backend_api::BodyMeta {
        user: user.into(),
        mailbox: 1,
        mailbox_name: "INBOX".into(),
        guid: "0123456789abcdef0123456789abcdef".into(),
        internal_date: 1_700_000_000,
        zone_minutes: 0,
        saved: 1_700_000_001,
        size: 100_000,
    };
    let users: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    let key = |u: &str| k(&format!("{u}/m"));
    {
        let j = open(&dir, watched.clone()).await;
        // One message to ten users: put once, copied nine times, each with its own metadata.
        let mut batch = Batch::new()
            .put(key(&users[0]), body.clone())
            .meta(key(&users[0]), meta(&users[0]));
        for u in &users[1..] {
            batch = batch.copy(key(&users[0]), key(u)).meta(key(u), meta(u));
        }
        j.commit(batch).await.unwrap();
        for u in &users {
            assert_eq!(
                j.get(&key(u), None).await.unwrap(),
                body,
                "{u} from the journal"
            );
            assert_eq!(j.meta(&key(u)).await.unwrap(), Some(meta(u)));
        }
    }
    // The journal holds the data once.
    let journaled: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        journaled < 2 * body.len() as u64,
        "{journaled} bytes journaled"
    );
    // Replayed after a restart, read as before, and uploaded as one put and nine copies.
    let j = open(&dir, watched.clone()).await;
    assert_eq!(j.stats().replayed, 1);
    for u in &users {
        assert_eq!(j.get(&key(u), None).await.unwrap(), body, "{u} replayed");
    }
    watched.reset();
    down.set_error_rate(0.0);
    j.flush(u64::MAX).await.unwrap();
    wait_drained(&j).await;
    let c = watched.committed();
    assert_eq!(
        (c.puts, c.put_bytes, c.copies),
        (1, body.len() as u64, 9),
        "{c:?}"
    );
    for u in &users {
        assert_eq!(
            down.inner().get(&key(u), None).await.unwrap(),
            body,
            "{u} in the store"
        );
        assert_eq!(down.inner().meta(&key(u)).await.unwrap(), Some(meta(u)));
    }
}
