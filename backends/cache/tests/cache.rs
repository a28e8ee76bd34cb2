//! The read cache keeps the contract, pays the store once for an object read twice, survives a
//! restart, stays within its bound, and never answers stale, partial or damaged bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_backend_api::{Backend, Batch, Key, MemoryBackend, Observed, conformance};
use strata_backend_cache::{CacheBackend, CacheOptions};

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().unwrap() == "tmp" || !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicU64::new(0);
    conformance::run_all(|| {
        let d = dir
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        async move {
            Arc::new(
                CacheBackend::open(
                    Arc::new(MemoryBackend::new()),
                    CacheOptions::new(d, 1 << 20),
                )
                .unwrap(),
            ) as Arc<dyn Backend>
        }
    })
    .await;
}

#[tokio::test]
async fn an_object_read_twice_pays_the_store_once_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    let m = body(100_000, 1);
    store
        .commit(Batch::new().put(k("u/1"), m.clone()))
        .await
        .unwrap();
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    assert_eq!(c.get(&k("u/1"), None).await.unwrap(), m);
    let after_first = store.read_bytes();
    assert_eq!(after_first, m.len() as u64);
    assert_eq!(c.get(&k("u/1"), None).await.unwrap(), m);
    assert_eq!(c.get(&k("u/1"), Some(10..20)).await.unwrap(), m[10..20]);
    assert_eq!(store.read_bytes(), after_first, "the second read is local");
    let s = c.stats();
    assert_eq!((s.misses, s.hits, s.inserts, s.objects), (1, 2, 1, 1));
    drop(c);

    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    assert_eq!(c.stats().objects, 1);
    // Checked whole at its first read after the restart, then by range.
    assert_eq!(
        c.get(&k("u/1"), Some(99_990..200_000)).await.unwrap(),
        m[99_990..]
    );
    assert_eq!(c.get(&k("u/1"), None).await.unwrap(), m);
    assert_eq!(store.read_bytes(), after_first, "the restart kept it");
}

#[tokio::test]
async fn a_read_from_the_start_is_kept_as_a_prefix_and_answers_the_ranges_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    let (a, b) = (body(5000, 2), body(300, 3));
    store
        .commit(Batch::new().put(k("a"), a.clone()).put(k("b"), b.clone()))
        .await
        .unwrap();
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();

    // A range elsewhere keeps nothing.
    assert_eq!(c.get(&k("a"), Some(100..200)).await.unwrap(), a[100..200]);
    assert!(cache_files(dir.path()).is_empty());

    // A header's range is kept and answers what it holds.
    assert_eq!(c.get(&k("a"), Some(0..1000)).await.unwrap(), a[..1000]);
    let paid = store.read_bytes();
    assert_eq!(c.get(&k("a"), Some(0..1000)).await.unwrap(), a[..1000]);
    assert_eq!(c.get(&k("a"), Some(10..20)).await.unwrap(), a[10..20]);
    assert_eq!(
        store.read_bytes(),
        paid,
        "ranges within the prefix are local"
    );
    assert_eq!(c.stats().objects, 1);

    // A longer one, or the whole object, goes to the store once; the whole replaces the prefix.
    assert_eq!(c.get(&k("a"), Some(0..2000)).await.unwrap(), a[..2000]);
    assert_eq!(store.read_bytes(), paid + 2000);
    assert_eq!(c.get(&k("a"), None).await.unwrap(), a);
    assert_eq!(c.get(&k("a"), Some(0..2000)).await.unwrap(), a[..2000]);
    assert_eq!(c.get(&k("a"), Some(4000..9000)).await.unwrap(), a[4000..]);
    assert_eq!(store.read_bytes(), paid + 2000 + 5000);
    assert_eq!(c.stats().objects, 1);
    assert_eq!(cache_files(dir.path()).len(), 1);

    // A range past the end of an object reads all of it: kept whole.
    assert_eq!(c.get(&k("b"), Some(0..1000)).await.unwrap(), b);
    let paid = store.read_bytes();
    assert_eq!(c.get(&k("b"), None).await.unwrap(), b);
    assert_eq!(store.read_bytes(), paid);

    // A prefix survives a restart (checked whole at its first read) and a write drops it.
    store
        .commit(Batch::new().put(k("c"), a.clone()))
        .await
        .unwrap();
    assert_eq!(c.get(&k("c"), Some(0..100)).await.unwrap(), a[..100]);
    drop(c);
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    let paid = store.read_bytes();
    assert_eq!(c.get(&k("c"), Some(50..100)).await.unwrap(), a[50..100]);
    assert_eq!(store.read_bytes(), paid);
    c.commit(Batch::new().put(k("c"), b.clone())).await.unwrap();
    assert_eq!(c.get(&k("c"), Some(0..100)).await.unwrap(), b[..100]);
}

#[tokio::test]
async fn writes_and_deletes_drop_the_cached_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryBackend::new());
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    c.commit(
        Batch::new()
            .put(k("a"), body(3000, 1))
            .put(k("b"), body(10, 9)),
    )
    .await
    .unwrap();
    c.get(&k("a"), None).await.unwrap();
    c.commit(Batch::new().put(k("a"), body(3000, 2)))
        .await
        .unwrap();
    assert_eq!(c.get(&k("a"), None).await.unwrap(), body(3000, 2));
    c.commit(Batch::new().copy(k("b"), k("a"))).await.unwrap();
    assert_eq!(c.get(&k("a"), None).await.unwrap(), body(10, 9));
    c.commit(Batch::new().delete(k("a"))).await.unwrap();
    assert!(c.get(&k("a"), None).await.is_err());
    assert_eq!(c.stats().objects, 0);
}

/// A store whose reads wait for the test to let them go, to put a commit in the middle of one.
struct Gated {
    inner: MemoryBackend,
    gate: tokio::sync::Semaphore,
    waiting: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Backend for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    fn capabilities(&self) -> strata_backend_api::Capabilities {
        self.inner.capabilities()
    }
    async fn commit(
        &self,
        batch: Batch,
    ) -> Result<strata_backend_api::Receipt, strata_backend_api::BackendError> {
        self.inner.commit(batch).await
    }
    async fn flush(&self, seq: u64) -> Result<(), strata_backend_api::BackendError> {
        self.inner.flush(seq).await
    }
    async fn get(
        &self,
        key: &Key,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<bytes::Bytes, strata_backend_api::BackendError> {
        // The bytes as they are when the read starts, answered once the gate opens.
        let data = self.inner.get(key, range).await;
        self.waiting.notify_one();
        let _ = self.gate.acquire().await.unwrap();
        data
    }
    async fn size(&self, key: &Key) -> Result<u64, strata_backend_api::BackendError> {
        self.inner.size(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<strata_backend_api::Listed>, strata_backend_api::BackendError> {
        self.inner.list(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_overlaps_a_write_does_not_keep_the_old_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Gated {
        inner: MemoryBackend::new(),
        gate: tokio::sync::Semaphore::new(0),
        waiting: tokio::sync::Notify::new(),
    });
    store
        .inner
        .commit(Batch::new().put(k("a"), body(4000, 1)))
        .await
        .unwrap();
    let c = Arc::new(
        CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap(),
    );
    let reader = {
        let c = c.clone();
        tokio::spawn(async move { c.get(&k("a"), None).await.unwrap() })
    };
    // The read has the old bytes in hand; the write lands before it answers.
    store.waiting.notified().await;
    c.commit(Batch::new().put(k("a"), body(4000, 2)))
        .await
        .unwrap();
    store.gate.add_permits(1);
    assert_eq!(reader.await.unwrap(), body(4000, 1));
    assert_eq!(c.stats().objects, 0, "what it read was not kept");
    store.gate.add_permits(1);
    assert_eq!(c.get(&k("a"), None).await.unwrap(), body(4000, 2));
}

#[tokio::test]
async fn the_least_recently_read_objects_go_first_and_the_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryBackend::new());
    let mut b = Batch::new();
    for i in 0..10 {
        b = b.put(k(&format!("m{i}")), body(10_000, i));
    }
    store.commit(b).await.unwrap();
    let mut opts = CacheOptions::new(dir.path(), 45_000);
    opts.max_object = 20_000;
    let c = CacheBackend::open(store.clone(), opts.clone()).unwrap();
    for i in 0..4 {
        c.get(&k(&format!("m{i}")), None).await.unwrap();
    }
    // m0 read again: m1 is now the least recently read.
    c.get(&k("m0"), None).await.unwrap();
    c.get(&k("m4"), None).await.unwrap();
    let s = c.stats();
    assert!(s.bytes <= 45_000 && s.objects == 4, "{s:?}");
    assert_eq!(s.evictions, 1);
    let hits = s.hits;
    for i in [0, 2, 3, 4] {
        c.get(&k(&format!("m{i}")), None).await.unwrap();
    }
    assert_eq!(c.stats().hits, hits + 4, "m1 went, the others stayed");
    assert_eq!(cache_files(dir.path()).len(), 4);
    drop(c);
    // A smaller bound at the next start drops the oldest files.
    opts.max_bytes = 25_000;
    let c = CacheBackend::open(store, opts).unwrap();
    assert_eq!(c.stats().objects, 2);
    assert_eq!(cache_files(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_damaged_or_cut_file_is_dropped_and_the_store_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    store
        .commit(
            Batch::new()
                .put(k("a"), body(5000, 1))
                .put(k("b"), body(5000, 2))
                .put(k("c"), body(5000, 3)),
        )
        .await
        .unwrap();
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    for key in ["a", "b", "c"] {
        c.get(&k(key), None).await.unwrap();
    }
    drop(c);
    let mut files = cache_files(dir.path());
    files.sort_by_key(|p| std::fs::read(p).unwrap()[10..11].to_vec());
    // One flipped byte, one cut short, one holding another key's bytes.
    let mut flipped = std::fs::read(&files[0]).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(&files[0], flipped).unwrap();
    let cut = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &cut[..cut.len() - 100]).unwrap();
    std::fs::copy(&files[0], &files[2]).unwrap();
    let c = CacheBackend::open(store.clone(), CacheOptions::new(dir.path(), 1 << 20)).unwrap();
    let before = store.read_bytes();
    for (key, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(c.get(&k(key), None).await.unwrap(), body(5000, seed));
    }
    assert_eq!(
        store.read_bytes() - before,
        15_000,
        "all three went to the store"
    );
    assert_eq!(c.stats().damaged, 3);
    // And were kept again, whole.
    for (key, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        assert_eq!(
            c.get(&k(key), Some(4990..6000)).await.unwrap(),
            body(5000, seed)[4990..]
        );
    }
    assert_eq!(store.read_bytes() - before, 15_000);
}

#[tokio::test]
async fn keys_it_is_told_not_to_cache_always_go_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    store
        .commit(Batch::new().put(k("head"), body(100, 1)))
        .await
        .unwrap();
    let mut opts = CacheOptions::new(dir.path(), 1 << 20);
    opts.cacheable = Arc::new(|k: &Key| k.as_str() != "head");
    let c = CacheBackend::open(store.clone(), opts).unwrap();
    c.get(&k("head"), None).await.unwrap();
    c.get(&k("head"), None).await.unwrap();
    assert_eq!(store.read_bytes(), 200);
    assert_eq!(c.stats().objects, 0);
}
