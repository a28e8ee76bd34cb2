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
    let split = Arc::new(strata_mailstore::mime::leaf_bodies);
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
