//! The compression layer keeps the contract over a store in memory and over a real Maildir,
//! reads objects stored before it was there, fetches only the frames a range needs, and reports
//! damage as corruption naming the key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_backend_api::{Backend, Batch, ErrorKind, Key, MemoryBackend, Observed, conformance};
use strata_backend_compress::{CompressBackend, CompressOptions};
use strata_backend_maildir::MaildirBackend;

fn layer(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
    let opts = CompressOptions {
        level: 3,
        // Small frames, so the suite's objects span several.
        frame_size: 1000,
    };
    Arc::new(CompressBackend::new(inner, opts))
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn mail(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    let mut i = 0;
    while m.len() < n {
        m.extend_from_slice(
            format!("line {i} of a message that repeats itself a lot\r\n").as_bytes(),
        );
        i += 1;
    }
    m.truncate(n);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_keeps_the_contract_over_memory_and_a_maildir() {
    conformance::run_all(|| async { layer(Arc::new(MemoryBackend::new())) }).await;
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicU64::new(0);
    conformance::run_all(|| {
        let root = dir
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        async move { layer(Arc::new(MaildirBackend::open(root).unwrap())) }
    })
    .await;
}

#[tokio::test]
async fn objects_shrink_and_a_range_read_fetches_only_its_frames() {
    let store = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    let b = CompressBackend::new(store.clone(), CompressOptions::default());
    let m = mail(2 << 20);
    b.commit(Batch::new().put(k("big"), m.clone()))
        .await
        .unwrap();
    let stored = store.inner().size(&k("big")).await.unwrap();
    assert!(stored < m.len() as u64 / 5, "{stored} of {}", m.len());
    assert_eq!(b.size(&k("big")).await.unwrap(), m.len() as u64);
    assert_eq!(b.list("").await.unwrap()[0].size, m.len() as u64);
    store.reset();
    let part = b.get(&k("big"), Some(1_500_000..1_500_100)).await.unwrap();
    assert_eq!(part, m[1_500_000..1_500_100]);
    let read = store.read_bytes();
    // The header probe and one or two 64 KiB frames, compressed: far from the object.
    assert!(
        read < 4096 + 2 * 65536 / 2,
        "read {read} of {stored} stored bytes"
    );
    assert_eq!(b.get(&k("big"), None).await.unwrap(), m);
}

#[tokio::test]
async fn objects_stored_before_the_layer_are_read_as_they_are() {
    let store = Arc::new(MemoryBackend::new());
    let old = mail(10_000);
    store
        .commit(Batch::new().put(k("old"), old.clone()).put(k("tiny"), "x"))
        .await
        .unwrap();
    let b = layer(store.clone());
    b.commit(Batch::new().put(k("new"), mail(10_000)))
        .await
        .unwrap();
    assert_eq!(b.get(&k("old"), None).await.unwrap(), old);
    assert_eq!(
        b.get(&k("old"), Some(9_000..20_000)).await.unwrap(),
        old[9_000..]
    );
    assert_eq!(b.get(&k("tiny"), Some(0..5)).await.unwrap(), "x");
    assert_eq!(b.size(&k("old")).await.unwrap(), 10_000);
    assert_eq!(b.size(&k("tiny")).await.unwrap(), 1);
    assert_eq!(b.get(&k("new"), None).await.unwrap(), mail(10_000));
    // A copy made by the store is a compressed object too.
    b.commit(Batch::new().copy(k("new"), k("copy")))
        .await
        .unwrap();
    assert_eq!(
        b.get(&k("copy"), Some(5..15)).await.unwrap(),
        mail(10_000)[5..15]
    );
}

#[tokio::test]
async fn damage_is_corruption_naming_the_key_and_other_objects_stay_readable() {
    let store = Arc::new(MemoryBackend::new());
    let b = layer(store.clone());
    b.commit(
        Batch::new()
            .put(k("a"), mail(5_000))
            .put(k("b"), mail(5_000)),
    )
    .await
    .unwrap();
    let mut raw = store.get(&k("a"), None).await.unwrap().to_vec();
    let at = raw.len() - 10;
    raw[at] ^= 1;
    store.commit(Batch::new().put(k("a"), raw)).await.unwrap();
    for range in [None, Some(4_900..5_000)] {
        let e = b.get(&k("a"), range).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(
            e.to_string().contains("a: compressed object is damaged"),
            "{e}"
        );
    }
    assert_eq!(b.get(&k("b"), None).await.unwrap(), mail(5_000));
}
