//! The single-instance layer keeps the contract (alone and above compression), stores a part
//! shared by many messages once, reads a part by range without the rest, reports a missing
//! part as damage, and collects exactly the parts nothing refers to, after the grace period
//! and never from under a commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use strata_backend_api::{
    Backend, Batch, ErrorKind, Key, Listed, MemoryBackend, Observed, conformance,
};
use strata_backend_compress::{CompressBackend, CompressOptions};
use strata_backend_sis::{SisBackend, SisOptions, Splitter, collect::Collection};

/// Names what lies between `<<` and `>>`: the parts of these tests' messages.
fn marked_parts() -> Splitter {
    Arc::new(|_: &Key, raw: &[u8]| {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(s) = find(&raw[at..], b"<<") {
            let start = at + s + 2;
            let Some(e) = find(&raw[start..], b">>") else {
                break;
            };
            out.push(start..start + e);
            at = start + e + 2;
        }
        out
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A clock the test moves.
#[derive(Clone)]
struct Clock(Arc<Mutex<SystemTime>>);

impl Clock {
    fn new() -> Self {
        Clock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30),
        )))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

const GRACE: Duration = Duration::from_secs(3600);

/// Cuts every object of 16 bytes or more in three places, so every object the contract
/// writes is a skeleton with parts.
fn everywhere() -> Splitter {
    Arc::new(|_: &Key, raw: &[u8]| {
        let n = raw.len();
        if n < 16 {
            return Vec::new();
        }
        vec![0..n / 8, n / 4..n / 2, 3 * n / 4..n]
    })
}

fn layer(inner: Arc<dyn Backend>, clock: &Clock) -> SisBackend {
    layer_with(inner, clock, marked_parts())
}

fn layer_with(inner: Arc<dyn Backend>, clock: &Clock, split: Splitter) -> SisBackend {
    let c = clock.clone();
    let opts = SisOptions {
        min_part: 8,
        grace: GRACE,
        clock: Arc::new(move || *c.0.lock().unwrap()),
    };
    SisBackend::new(inner, split, opts)
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn attachment(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i * 7 + seed as usize) % 26) as u8)
        .collect()
}

fn message(subject: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = format!("Subject: {subject}\r\n\r\nhello\r\n").into_bytes();
    for p in parts {
        m.extend_from_slice(b"--b\r\n<<");
        m.extend_from_slice(p);
        m.extend_from_slice(b">>\r\n");
    }
    m
}

/// The store's own objects under `prefix`.
async fn stored(store: &dyn Backend, prefix: &str) -> Vec<Listed> {
    store.list(prefix).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_keeps_the_contract_alone_and_above_compression() {
    let clock = Clock::new();
    conformance::run_all(|| {
        let clock = clock.clone();
        async move { Arc::new(layer(Arc::new(MemoryBackend::new()), &clock)) as Arc<dyn Backend> }
    })
    .await;
    conformance::run_all(|| {
        let clock = clock.clone();
        async move {
            let sis = layer_with(Arc::new(MemoryBackend::new()), &clock, everywhere());
            Arc::new(sis) as Arc<dyn Backend>
        }
    })
    .await;
    conformance::run_all(|| {
        let clock = clock.clone();
        async move {
            let compressed = CompressBackend::new(
                Arc::new(MemoryBackend::new()),
                CompressOptions {
                    level: 1,
                    frame_size: 1000,
                },
            );
            Arc::new(layer_with(Arc::new(compressed), &clock, everywhere())) as Arc<dyn Backend>
        }
    })
    .await;
}

fn counting() -> Observed {
    Observed::new(Arc::new(MemoryBackend::new()))
}

#[tokio::test]
async fn a_part_many_messages_hold_is_stored_once_and_read_by_range() {
    let store = Arc::new(counting());
    let clock = Clock::new();
    let sis = layer(store.clone(), &clock);
    let shared = attachment(1, 200_000);
    let own = attachment(2, 50_000);
    // Ten users, each in a batch of their own, concurrently: as LMTP delivers to them.
    let messages: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            message(
                &format!("to {i}"),
                &[&shared, if i == 0 { &own } else { b"tiny" }],
            )
        })
        .collect();
    let puts = messages
        .iter()
        .enumerate()
        .map(|(i, m)| sis.commit(Batch::new().put(k(&format!("user{i}/m")), m.clone())));
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    let parts = stored(&*store, ".sis/p/").await;
    // The shared part once, user0's own part; "tiny" is under the minimum and stays inline.
    assert_eq!(parts.len(), 2, "{parts:?}");
    let total: u64 = stored(&*store, "").await.iter().map(|l| l.size).sum();
    let plain: usize = messages.iter().map(Vec::len).sum();
    assert!(total < plain as u64 / 4, "{total} stored for {plain}");
    for (i, m) in messages.iter().enumerate() {
        let key = k(&format!("user{i}/m"));
        assert_eq!(sis.get(&key, None).await.unwrap(), m[..]);
        assert_eq!(sis.size(&key).await.unwrap(), m.len() as u64);
    }
    // Listing shows the messages only, with their own sizes.
    let listed = sis.list("").await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(
        listed
            .iter()
            .all(|l| l.size == messages[0].len() as u64 || l.key.as_str() != "user0/m")
    );
    // A range inside the shared part reads the skeleton's first bytes and that range only.
    let start = find(&messages[3], b"<<").unwrap() + 2 + 100_000;
    store.reset();
    let r = sis
        .get(&k("user3/m"), Some(start as u64..start as u64 + 1000))
        .await
        .unwrap();
    assert_eq!(r, messages[3][start..start + 1000]);
    let read = store.read_bytes();
    assert!(read < 4096 + 1000 + 4096, "read {read}");
    // The header alone: the skeleton's first bytes.
    store.reset();
    let h = sis.get(&k("user3/m"), Some(0..16)).await.unwrap();
    assert_eq!(h, messages[3][..16]);
    assert!(store.read_bytes() <= 4096);
    // Many at once, in order.
    let reads = (0..10)
        .map(|i| strata_backend_api::Read::whole(k(&format!("user{i}/m"))))
        .collect();
    let got: Vec<_> = futures::StreamExt::collect::<Vec<_>>(sis.get_many(reads, 4)).await;
    for (g, m) in got.into_iter().zip(&messages) {
        assert_eq!(g.unwrap(), m[..]);
    }
}

#[tokio::test]
async fn a_missing_part_is_damage_naming_it_and_other_messages_stay_readable() {
    let store = Arc::new(MemoryBackend::new());
    let clock = Clock::new();
    let sis = layer(store.clone(), &clock);
    let a = message("a", &[&attachment(1, 5000)]);
    let b = message("b", &[&attachment(2, 5000)]);
    sis.commit(Batch::new().put(k("a"), a.clone()).put(k("b"), b.clone()))
        .await
        .unwrap();
    let parts = stored(&*store, ".sis/p/").await;
    let hash = blake3::hash(&attachment(1, 5000)).to_hex().to_string();
    let doomed = parts
        .iter()
        .find(|p| p.key.as_str().ends_with(&hash))
        .unwrap();
    store
        .commit(Batch::new().delete(doomed.key.clone()))
        .await
        .unwrap();
    let e = sis.get(&k("a"), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(e.message.contains(&hash), "{e}");
    assert_eq!(sis.get(&k("b"), None).await.unwrap(), b[..]);
}

#[tokio::test]
async fn collection_deletes_what_nothing_refers_to_after_the_grace_and_nothing_else() {
    let store = Arc::new(MemoryBackend::new());
    let clock = Clock::new();
    let sis = layer(store.clone(), &clock);
    let shared = attachment(1, 5000);
    let m1 = message("1", &[&shared]);
    let m2 = message("2", &[&shared, &attachment(3, 4000)]);
    sis.commit(
        Batch::new()
            .put(k("u/1"), m1.clone())
            .put(k("v/2"), m2.clone()),
    )
    .await
    .unwrap();
    let run = sis.collect().await.unwrap();
    assert_eq!((run.parts, run.references, run.marked), (2, 3, 0));

    // 2 goes: its own part is marked, the shared one is still 1's.
    sis.commit(Batch::new().delete(k("v/2"))).await.unwrap();
    let run = sis.collect().await.unwrap();
    assert_eq!((run.references, run.marked, run.deleted), (1, 1, 0));
    clock.advance(GRACE - Duration::from_secs(1));
    assert_eq!(sis.collect().await.unwrap().deleted, 0);
    clock.advance(Duration::from_secs(1));
    let run = sis.collect().await.unwrap();
    assert_eq!((run.deleted, run.deleted_bytes > 0), (1, true));
    assert_eq!(stored(&*store, ".sis/p/").await.len(), 1);
    assert!(stored(&*store, ".sis/t/").await.is_empty());
    assert_eq!(sis.get(&k("u/1"), None).await.unwrap(), m1[..]);

    // 1 goes, and the shared part is marked; a new message refers to it again before the
    // grace ends: the mark is taken off and the part kept.
    sis.commit(Batch::new().delete(k("u/1"))).await.unwrap();
    assert_eq!(sis.collect().await.unwrap().marked, 1);
    clock.advance(GRACE / 4);
    let m3 = message("3", &[&shared]);
    sis.commit(Batch::new().put(k("w/3"), m3.clone()))
        .await
        .unwrap();
    clock.advance(GRACE);
    let run = sis.collect().await.unwrap();
    assert_eq!((run.deleted, run.unmarked), (0, 1));
    assert_eq!(sis.get(&k("w/3"), None).await.unwrap(), m3[..]);
    assert_eq!(
        stored(&*store, ".sis/r/").await.len(),
        1,
        "one reference, w/3's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_referring_to_a_part_being_collected_keeps_it() {
    let store = Arc::new(MemoryBackend::new());
    let clock = Clock::new();
    let sis = Arc::new(layer(store.clone(), &clock));
    let part = attachment(5, 6000);
    sis.commit(Batch::new().put(k("a/1"), message("1", &[&part])))
        .await
        .unwrap();
    sis.commit(Batch::new().delete(k("a/1"))).await.unwrap();
    assert_eq!(sis.collect().await.unwrap().marked, 1);
    // The mark is now old enough for the next run to act on.
    clock.advance(GRACE);
    let m = message("2", &[&part]);
    let committing = tokio::spawn({
        let sis = sis.clone();
        let m = m.clone();
        async move { sis.commit(Batch::new().put(k("b/2"), m)).await }
    });
    // The commit has written its reference and waits on the mark; the run sees the reference.
    wait_for(|| async { !stored(&*store, ".sis/r/").await.is_empty() }).await;
    let run: Collection = sis.collect().await.unwrap();
    committing.await.unwrap().unwrap();
    assert_eq!(run.deleted, 0, "{run:?}");
    assert_eq!(sis.get(&k("b/2"), None).await.unwrap(), m[..]);

    // And when a run deleted the part just before the commit looked: it is put again.
    sis.commit(Batch::new().delete(k("b/2"))).await.unwrap();
    sis.collect().await.unwrap();
    clock.advance(GRACE);
    let run = sis.collect().await.unwrap();
    assert_eq!(run.deleted, 1);
    sis.commit(Batch::new().put(k("c/3"), m.clone()))
        .await
        .unwrap();
    assert_eq!(sis.get(&k("c/3"), None).await.unwrap(), m[..]);
}

/// Polls `cond` until it holds (a state another task reaches), failing after ten seconds.
async fn wait_for<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn references_to_messages_never_stored_go_after_the_grace() {
    let store = Arc::new(MemoryBackend::new());
    let clock = Clock::new();
    let sis = layer(store.clone(), &clock);
    sis.commit(Batch::new().put(k("a/1"), message("1", &[&attachment(1, 3000)])))
        .await
        .unwrap();
    // A crash that left the reference and lost the message.
    store.commit(Batch::new().delete(k("a/1"))).await.unwrap();
    let run = sis.collect().await.unwrap();
    assert_eq!((run.stale_references, run.marked), (0, 0));
    clock.advance(GRACE);
    let run = sis.collect().await.unwrap();
    assert_eq!((run.stale_references, run.marked), (1, 1));
    clock.advance(GRACE);
    assert_eq!(sis.collect().await.unwrap().deleted, 1);
    assert!(stored(&*store, ".sis/").await.is_empty());
}

// On tokio's paused clock: the store's time passes as soon as nothing else can run, and a
// deadlock meets the timeout at once.
#[tokio::test(start_paused = true)]
async fn many_messages_read_at_once_never_wait_on_each_other_for_the_stores_connections() {
    let store = Arc::new(counting().with_connections(2, Duration::from_millis(1)));
    let clock = Clock::new();
    let sis = layer(store.clone(), &clock);
    let messages: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            message(
                &i.to_string(),
                &[&attachment(i as u8, 3000), &attachment(7, 2000)],
            )
        })
        .collect();
    for (i, m) in messages.iter().enumerate() {
        sis.commit(Batch::new().put(k(&format!("u/{i}")), m.clone()))
            .await
            .unwrap();
    }
    let reads = (0..40)
        .map(|i| strata_backend_api::Read::whole(k(&format!("u/{i}"))))
        .collect();
    let all = futures::StreamExt::collect::<Vec<_>>(sis.get_many(reads, 16));
    let got = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("every read ends");
    for (g, m) in got.into_iter().zip(&messages) {
        assert_eq!(g.unwrap(), m[..]);
    }
}
