//! Body reads in flight for one stream stay within `READ_BUDGET` bytes: large bodies are read
//! a few at a time, small ones still `read_concurrency` at a time, and a body larger than the
//! budget is read alone; answers keep their order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_backend_api::{Backend, MemoryBackend};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};
use strata_index::{IndexOptions, StoreId};
use strata_mailstore::{AckPolicy, BodyStores, Mailstore, MailstoreOptions, READ_BUDGET};

fn message(i: usize, body_bytes: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: message {i}\r\n\r\n").into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while m.len() < body_bytes {
        m.extend_from_slice(line);
    }
    m
}

#[tokio::test]
async fn bytes_in_flight_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(DelayBackend::new(
        Arc::new(MemoryBackend::new()) as Arc<dyn Backend>,
        DelayConfig {
            read: Latency::fixed(Duration::from_millis(5)),
            ..DelayConfig::default()
        },
    ));
    let store = Mailstore::new(
        MailstoreOptions {
            index_dir: dir.path().to_path_buf(),
            append_ack: AckPolicy::SoftDone,
            read_concurrency: 32,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        {
            let stores = BodyStores::new(StoreId(0), slow.clone() as Arc<dyn Backend>);
            Arc::new(move |_| Ok(stores.clone()))
        },
    );
    let user = store.user("u").await.unwrap();
    let big = (READ_BUDGET / 3 + 1) as usize;
    let large: Vec<Vec<u8>> = (0..8).map(|i| message(i, big)).collect();
    let huge = vec![message(100, READ_BUDGET as usize + 1024)];
    let small: Vec<Vec<u8>> = (0..64).map(|i| message(i, 1024)).collect();

    // Large bodies: at most two of just over a third of the budget at once.
    let reads = common::append(&user, &large).await;
    let got: Vec<_> = user.bodies(reads).collect().await;
    for (raw, body) in large.iter().zip(&got) {
        assert_eq!(&body.as_ref().unwrap()[..], &raw[..], "answers in order");
    }
    assert_eq!(slow.stats().max_reads_in_flight, 2);

    // One body above the budget is still read, alone.
    let mut reads = common::append(&user, &huge).await;
    reads.extend(common::append(&user, &large[..1]).await);
    let got: Vec<_> = user.bodies(reads).collect().await;
    assert_eq!(got[0].as_ref().unwrap().len(), huge[0].len());
    assert_eq!(got[1].as_ref().unwrap().len(), large[0].len());
    assert_eq!(slow.stats().max_reads_in_flight, 2);

    // Small bodies keep the whole concurrency.
    let reads = common::append(&user, &small).await;
    let got: Vec<_> = user.bodies(reads).collect().await;
    for (raw, body) in small.iter().zip(&got) {
        assert_eq!(&body.as_ref().unwrap()[..], &raw[..], "answers in order");
    }
    assert_eq!(slow.stats().max_reads_in_flight, 32);
    drop(user);
    store.close_idle().await;
}
