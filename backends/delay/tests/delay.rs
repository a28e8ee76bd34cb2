//! The delay backend keeps the contract when it only delays, and injects what it is told to.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_backend_api::{Backend, Batch, ErrorKind, Key, MemoryBackend, Read, conformance};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};

fn slow(read_ms: u64) -> DelayConfig {
    DelayConfig {
        seed: 42,
        read: Latency {
            fixed: Duration::from_millis(read_ms),
            jitter: Duration::from_millis(read_ms / 5),
        },
        write: Latency::fixed(Duration::from_millis(1)),
        ..DelayConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_backend_keeps_the_contract() {
    conformance::run_all(|| async {
        Arc::new(DelayBackend::new(MemoryBackend::new(), slow(2))) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_many_bodies_overlap() {
    let b = DelayBackend::new(MemoryBackend::new(), slow(50));
    let mut batch = Batch::new();
    for i in 0..100 {
        batch = batch.put(Key::new(format!("b/{i}")).unwrap(), format!("body {i}"));
    }
    b.commit(batch).await.unwrap();
    let reads = (0..100)
        .map(|i| Read::whole(Key::new(format!("b/{i}")).unwrap()))
        .collect();
    let bodies: Vec<_> = b.get_many(reads, 16).collect().await;
    assert_eq!(bodies.len(), 100);
    for (i, body) in bodies.into_iter().enumerate() {
        assert_eq!(body.unwrap(), format!("body {i}").as_bytes());
    }
    let stats = b.stats();
    assert_eq!(stats.reads, 100);
    // 100 reads 16 at a time are ceil(100 / 16) = 7 round trips deep, not 100.
    assert_eq!(stats.max_reads_in_flight, 16);
}

#[tokio::test]
async fn an_injected_error_writes_nothing_and_says_to_retry() {
    let cfg = DelayConfig {
        error_rate: 1.0,
        ..DelayConfig::default()
    };
    let b = DelayBackend::new(MemoryBackend::new(), cfg);
    let key = Key::new("x").unwrap();
    let e = b
        .commit(Batch::new().put(key.clone(), "data"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.is_retryable());
    assert!(e.to_string().contains("delay(memory)"), "{e}");
    let inner = b.inner().get(&key, None).await.unwrap_err();
    assert_eq!(inner.kind, ErrorKind::NotFound);
    assert_eq!(b.stats().errors, 1);
}

#[tokio::test]
async fn the_same_seed_injects_the_same_failures() {
    let outcomes = |seed| async move {
        let cfg = DelayConfig {
            seed,
            error_rate: 0.4,
            ..DelayConfig::default()
        };
        let b = DelayBackend::new(MemoryBackend::new(), cfg);
        let mut out = Vec::new();
        for i in 0..40 {
            out.push(
                b.commit(Batch::new().put(Key::new(format!("k{i}")).unwrap(), "v"))
                    .await
                    .is_ok(),
            );
        }
        out
    };
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await);
    assert_ne!(a, outcomes(8).await);
    let failed = a.iter().filter(|ok| !**ok).count();
    assert!(
        (5..=30).contains(&failed),
        "{failed} of 40 failed at a 40% rate"
    );
}

#[tokio::test(start_paused = true)]
async fn stalls_hold_an_operation_for_their_length() {
    let cfg = DelayConfig {
        stall_rate: 1.0,
        stall: Duration::from_secs(30),
        ..DelayConfig::default()
    };
    let b = DelayBackend::new(MemoryBackend::new(), cfg);
    let key = Key::new("s").unwrap();
    let started = tokio::time::Instant::now();
    b.commit(Batch::new().put(key.clone(), "v")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(b.stats().stalls, 1);
}

fn acked_late() -> DelayConfig {
    DelayConfig {
        ack: Latency::fixed(Duration::from_millis(30)),
        ..DelayConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_acks_keep_the_contract() {
    conformance::run_all(|| async {
        Arc::new(DelayBackend::new(MemoryBackend::new(), acked_late())) as Arc<dyn Backend>
    })
    .await;
}

// On tokio's paused clock, so the check is on virtual time, not on this machine's speed.
#[tokio::test(start_paused = true)]
async fn soft_done_is_at_once_and_acks_are_pipelined_in_order() {
    let b = DelayBackend::new(MemoryBackend::new(), acked_late());
    assert!(b.capabilities().deferred_ack);
    let start = tokio::time::Instant::now();
    let mut receipts = Vec::new();
    for i in 0..20 {
        let key = Key::new(format!("k{i}")).unwrap();
        receipts.push(
            b.commit(Batch::new().put(key.clone(), "body"))
                .await
                .unwrap(),
        );
        // Soft-done: readable before the ack.
        assert_eq!(b.get(&key, None).await.unwrap(), "body".as_bytes());
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(receipts.iter().all(|r| !r.is_acked()));
    receipts.last().unwrap().acked().await.unwrap();
    assert!(receipts.iter().all(|r| r.is_acked()));
    // 20 commits waited one ack delay together (the timer rounds up a millisecond), not 20
    // in a row.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(30) && waited < Duration::from_millis(60),
        "{waited:?}"
    );
    b.flush(u64::MAX).await.unwrap();
}
