//! Moving a user's bodies between stores: everything ends in the target and stays readable,
//! an expunge racing the move loses and leaks nothing, and an interrupted run's leftovers are
//! deleted by the next.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_backend_api::{Backend, Batch, Key, MemoryBackend};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};
use strata_index::{Flags, Parts, StoreId, Uid};
use strata_mailstore::{Appended, BodyRead, BodyStores, Mailstore, RelocateOptions, UserStore};

const OLD: StoreId = StoreId(0);
const NEW: StoreId = StoreId(1);

fn mailstore(dir: &std::path::Path, stores: BodyStores) -> Mailstore {
    common::mailstore(dir, stores, 8)
}

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nSubject: message {i}\r\n\r\n{}\r\n",
        "body ".repeat(i % 50 + 1)
    )
    .into_bytes()
}

/// Appends `n` messages to INBOX (and copies every third to Sent, sharing content).
async fn fill(user: &UserStore, n: usize) {
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let sent = user.find(&snap, &["Sent".into()]).unwrap().id;
    let msgs = (0..n)
        .map(|i| Appended {
            raw: message(i).into(),
            flags: Flags::default(),
            internal_date: None,
        })
        .collect();
    let (_, uids) = user.append(inbox, msgs).await.unwrap();
    let copied: Vec<Uid> = uids.iter().step_by(3).copied().collect();
    user.index().copy(inbox, copied, sent).await.unwrap();
}

/// `n` messages (and copies) of user `u`, written while `old` was the main store.
async fn written_to_old(dir: &std::path::Path, old: &Arc<MemoryBackend>, n: usize) {
    let before = mailstore(dir, BodyStores::new(OLD, old.clone()));
    fill(&before.user("u").await.unwrap(), n).await;
    before.close_idle().await;
}

/// Every message's body, read through the user store, checked against what was appended.
async fn check_all(user: &UserStore, want_store: StoreId) -> usize {
    let snap = user.snapshot().unwrap();
    let mut reads = Vec::new();
    for mb in snap.mailboxes().unwrap() {
        for m in snap.messages(mb.id).unwrap() {
            let c = snap.content_parts(&m.guid, Parts::ALL).unwrap().unwrap();
            assert_eq!(c.location.store, want_store, "{:?}", c.location);
            reads.push((
                BodyRead {
                    guid: m.guid,
                    location: c.location.clone(),
                    range: None,
                    size: c.size,
                },
                c.size,
            ));
        }
    }
    let n = reads.len();
    let sizes: Vec<u64> = reads.iter().map(|r| r.1).collect();
    let bodies: Vec<_> = user
        .bodies(reads.into_iter().map(|r| r.0).collect())
        .collect()
        .await;
    for (b, size) in bodies.into_iter().zip(sizes) {
        let b = b.expect("every body is readable");
        assert_eq!(b.len() as u64, size);
        assert!(b.starts_with(b"From: a@example.org"));
    }
    n
}

#[tokio::test]
async fn bodies_move_to_the_target_and_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let old = Arc::new(MemoryBackend::new());
    let new = Arc::new(MemoryBackend::new());
    written_to_old(dir.path(), &old, 300).await;
    assert_eq!(old.keys().len(), 300);
    // The store new bodies go to changes; the old one is still read from.
    let after = mailstore(
        dir.path(),
        BodyStores::new(NEW, new.clone()).with(OLD, old.clone()),
    );
    let user = after.user("u").await.unwrap();
    fill(&user, 10).await;
    assert_eq!(new.keys().len(), 10, "new mail goes to the main store");

    // Reads planned before the move (a FETCH that took its snapshot then).
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let stale: Vec<BodyRead> = snap
        .messages(inbox)
        .unwrap()
        .iter()
        .map(|m| BodyRead {
            range: Some(0..4),
            size: 4,
            ..common::read_of(&snap, m.guid)
        })
        .collect();
    drop(snap);

    let mut seen = Vec::new();
    let opts = RelocateOptions {
        batch: 64,
        ..RelocateOptions::default()
    };
    let report = user
        .relocate(NEW, &opts, &mut |r| {
            seen.push(r.moved);
            true
        })
        .await
        .unwrap();
    assert_eq!(
        (report.total, report.moved, report.skipped, report.damaged),
        (300, 300, 0, 0)
    );
    assert!(seen.len() >= 5, "progress after each batch: {seen:?}");
    assert!(old.keys().is_empty(), "the source keeps nothing");
    assert_eq!(new.keys().len(), 310);
    assert_eq!(check_all(&user, NEW).await, 310 + 310 / 3 + 1);
    // The stale reads find each body where it went.
    assert_eq!(
        stale.iter().filter(|r| r.location.store == OLD).count(),
        300
    );
    let got: Vec<_> = user.bodies(stale).collect().await;
    assert_eq!(got.len(), 310);
    for b in got {
        assert_eq!(&b.unwrap()[..], b"From");
    }

    // Run again: nothing to do.
    let again = user.relocate(NEW, &opts, &mut |_| true).await.unwrap();
    assert_eq!((again.total, again.moved, again.cleaned), (0, 0, 0));
}

#[tokio::test]
async fn an_expunge_racing_the_move_loses_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let old = Arc::new(MemoryBackend::new());
    let new_mem = Arc::new(MemoryBackend::new());
    // A slow target, so that expunges land between batches and inside them.
    let new: Arc<dyn Backend> = Arc::new(DelayBackend::new(
        new_mem.clone() as Arc<dyn Backend>,
        DelayConfig {
            write: Latency::fixed(Duration::from_millis(20)),
            ..DelayConfig::default()
        },
    ));
    written_to_old(dir.path(), &old, 400).await;
    let after = mailstore(dir.path(), BodyStores::new(NEW, new).with(OLD, old.clone()));
    let user = after.user("u").await.unwrap();
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let sent = user.find(&snap, &["Sent".into()]).unwrap().id;
    let uids: Vec<Uid> = snap
        .messages(inbox)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    let sent_uids: Vec<Uid> = snap.messages(sent).unwrap().iter().map(|m| m.uid).collect();
    drop(snap);

    let mover = user.clone();
    let task = tokio::spawn(async move {
        let opts = RelocateOptions {
            batch: 16,
            ..RelocateOptions::default()
        };
        mover.relocate(NEW, &opts, &mut |_| true).await.unwrap()
    });
    // Expunge every other INBOX message, a few at a time, while the move runs; and all of Sent.
    for chunk in uids
        .iter()
        .step_by(2)
        .copied()
        .collect::<Vec<_>>()
        .chunks(10)
    {
        user.expunge(inbox, chunk.to_vec()).await.unwrap();
        // Let the move go on between expunges.
        tokio::task::yield_now().await;
    }
    user.expunge(sent, sent_uids).await.unwrap();
    let report = task.await.unwrap();
    assert_eq!(report.damaged, 0);
    assert_eq!(report.moved + report.skipped, 400);
    assert!(
        report.skipped > 0,
        "some expunges raced the move: {report:?}"
    );

    let left = check_all(&user, NEW).await;
    assert_eq!(left, 200);
    assert!(old.keys().is_empty(), "nothing leaks in the source");
    assert_eq!(new_mem.keys().len(), 200, "nothing leaks in the target");
}

#[tokio::test]
async fn leftovers_of_an_interrupted_run_are_deleted_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let old = Arc::new(MemoryBackend::new());
    let new = Arc::new(MemoryBackend::new());
    written_to_old(dir.path(), &old, 20).await;
    let after = mailstore(
        dir.path(),
        BodyStores::new(NEW, new.clone()).with(OLD, old.clone()),
    );
    let user = after.user("u").await.unwrap();
    // An interrupted run: its intents listed 5 bodies, copied them to the target and died
    // before switching the index.
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let mut intents = String::new();
    let mut batch = Batch::new();
    for m in snap.messages(inbox).unwrap().iter().take(5) {
        let c = snap
            .content_parts(&m.guid, Parts::default())
            .unwrap()
            .unwrap();
        for store in [OLD, NEW] {
            intents.push_str(&format!("{}\t{}\t{}\n", m.guid, store.0, c.location.key));
        }
        let body = old
            .get(&Key::new(c.location.key.clone()).unwrap(), None)
            .await
            .unwrap();
        batch = batch.put(Key::new(c.location.key).unwrap(), body);
    }
    drop(snap);
    new.commit(batch).await.unwrap();
    std::fs::write(dir.path().join("u.moving"), intents).unwrap();

    let report = user
        .relocate(NEW, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap();
    assert_eq!(report.cleaned, 5, "the 5 unswitched target copies");
    assert_eq!(report.moved, 20);
    assert!(!dir.path().join("u.moving").exists());
    assert!(old.keys().is_empty());
    assert_eq!(new.keys().len(), 20);
    check_all(&user, NEW).await;

    // A damaged intent file is an error naming it, and nothing is touched.
    std::fs::write(dir.path().join("u.moving"), "not an intent\n").unwrap();
    let err = user
        .relocate(OLD, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("u.moving line 1"), "{err}");
    assert_eq!(new.keys().len(), 20);
}
