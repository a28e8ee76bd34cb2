//! Tiering moves exactly the bodies its rules make cold from the main store to the cold one,
//! leaves a body a warm message shares, keeps every body readable, and keeps to its pace.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_backend_api::MemoryBackend;
use strata_index::{Flags, Parts, StoreId, Timestamp, Uid};
use strata_mailstore::{
    Appended, BodyRead, BodyStores, Mailstore, Pace, RelocateOptions, TierDate, TierPolicy,
    TierRule, UserStore,
};

const HOT: StoreId = StoreId(0);
const COLD: StoreId = StoreId(1);
const DAY: u64 = 86_400;

fn mailstore(dir: &std::path::Path, stores: BodyStores) -> Mailstore {
    common::mailstore(dir, stores, 8)
}

fn message(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n").into_bytes();
    m.resize(size.max(m.len()), b'x');
    m
}

/// Appends one message per `(subject, size, days old)` to `path`; returns their UIDs.
async fn append(user: &UserStore, path: &str, msgs: &[(&str, usize, u64)]) -> Vec<Uid> {
    let names: Vec<String> = path.split('/').map(String::from).collect();
    let snap = user.snapshot().unwrap();
    let mailbox = match user.find(&snap, &names) {
        Ok(m) => m.id,
        Err(_) => user.create(names).await.unwrap().id,
    };
    let now = Timestamp::now().unix;
    let appended = msgs
        .iter()
        .map(|(subject, size, days)| Appended {
            raw: message(subject, *size).into(),
            flags: Flags::default(),
            internal_date: Some(Timestamp {
                unix: now - (days * DAY) as i64,
                offset_minutes: 0,
            }),
        })
        .collect();
    user.append(mailbox, appended).await.unwrap().1
}

/// Where each message's body is, by subject, and that each reads back whole.
async fn placed(user: &UserStore) -> std::collections::BTreeMap<String, StoreId> {
    let snap = user.snapshot().unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut reads = Vec::new();
    for mb in snap.mailboxes().unwrap() {
        for m in snap.messages(mb.id).unwrap() {
            let c = snap.content_parts(&m.guid, Parts::ALL).unwrap().unwrap();
            let subject = c.parsed.envelope.subject.clone().unwrap();
            let subject = String::from_utf8(subject).unwrap();
            out.insert(format!("{}:{subject}", mb.name), c.location.store);
            reads.push(BodyRead {
                guid: m.guid,
                location: c.location.clone(),
                range: None,
                size: c.size,
            });
        }
    }
    let sizes: Vec<u64> = reads.iter().map(|r| r.size).collect();
    let bodies: Vec<_> = user.bodies(reads).collect().await;
    for (b, size) in bodies.into_iter().zip(sizes) {
        let b = b.expect("every body reads back");
        assert_eq!(b.len() as u64, size);
        assert!(b.starts_with(b"From: a@example.org"));
    }
    out
}

#[tokio::test]
async fn cold_bodies_move_and_warm_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let hot = Arc::new(MemoryBackend::new());
    let cold = Arc::new(MemoryBackend::new());
    let store = mailstore(
        dir.path(),
        BodyStores::new(HOT, hot.clone()).with(COLD, cold.clone()),
    );
    let user = store.user("u").await.unwrap();
    append(
        &user,
        "INBOX",
        &[("new", 500, 1), ("old", 500, 100), ("big", 3_000_000, 10)],
    )
    .await;
    append(&user, "Archive", &[("a1", 500, 0)]).await;
    append(&user, "Archive/2024", &[("a2", 500, 0)]).await;
    append(&user, "Archived", &[("not-archive", 500, 0)]).await;
    append(
        &user,
        "Trash",
        &[("trash-new", 500, 1), ("trash-old", 500, 8)],
    )
    .await;
    // A message copied from Archive to INBOX: its body is held by a warm message too.
    let shared = append(&user, "Archive", &[("shared", 500, 0)]).await;
    let snap = user.snapshot().unwrap();
    let archive = user.find(&snap, &["Archive".into()]).unwrap().id;
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    drop(snap);
    user.index().copy(archive, shared, inbox).await.unwrap();

    let policy = TierPolicy {
        to: COLD,
        date: TierDate::Internal,
        rules: vec![
            TierRule {
                mailboxes: vec!["Archive".into()],
                ..TierRule::default()
            },
            TierRule {
                older_than: Some(Duration::from_secs(30 * DAY)),
                ..TierRule::default()
            },
            TierRule {
                mailboxes: vec!["Trash".into()],
                older_than: Some(Duration::from_secs(7 * DAY)),
                ..TierRule::default()
            },
            TierRule {
                larger_than: Some(1 << 20),
                older_than: Some(Duration::from_secs(7 * DAY)),
                ..TierRule::default()
            },
        ],
    };
    let report = user
        .tier(&policy, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap();
    assert_eq!((report.total, report.moved), (5, 5), "{report:?}");
    let want = [
        ("INBOX:new", HOT),
        ("INBOX:old", COLD),
        ("INBOX:big", COLD),
        ("INBOX:shared", HOT),
        ("Archive:a1", COLD),
        ("Archive:shared", HOT),
        ("2024:a2", COLD),
        ("Archived:not-archive", HOT),
        ("Trash:trash-new", HOT),
        ("Trash:trash-old", COLD),
    ];
    let got = placed(&user).await;
    for (name, store) in want {
        assert_eq!(got[name], store, "{name}");
    }
    // Each body is in one store: the move deleted what it moved.
    assert_eq!(cold.keys().len(), 5);
    assert_eq!(hot.keys().len(), 4);
    let usage = user.store_usage().await.unwrap();
    let by_store = |id| usage.iter().find(|u| u.store == id).unwrap();
    assert_eq!((by_store(HOT).bodies, by_store(HOT).objects), (4, 4));
    assert_eq!((by_store(COLD).bodies, by_store(COLD).objects), (5, 5));
    assert_eq!(by_store(COLD).bytes, 3_000_000 + 4 * 500);
    assert_eq!(by_store(COLD).stored_bytes, by_store(COLD).bytes);

    // A second run finds nothing more; new mail still goes to the main store.
    let again = user
        .tier(&policy, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap();
    assert_eq!(again.total, 0);
    append(&user, "Archive", &[("later", 500, 0)]).await;
    assert_eq!(placed(&user).await["Archive:later"], HOT);
    let third = user
        .tier(&policy, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap();
    assert_eq!(third.moved, 1);
    assert_eq!(placed(&user).await["Archive:later"], COLD);
}

#[tokio::test]
async fn ages_count_from_savedate_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let store = mailstore(
        dir.path(),
        BodyStores::new(HOT, Arc::new(MemoryBackend::new()))
            .with(COLD, Arc::new(MemoryBackend::new())),
    );
    let user = store.user("u").await.unwrap();
    // Received long ago, saved just now (an import).
    append(&user, "INBOX", &[("imported", 500, 400)]).await;
    let mut policy = TierPolicy {
        to: COLD,
        date: TierDate::default(),
        rules: vec![TierRule {
            older_than: Some(Duration::from_secs(90 * DAY)),
            ..TierRule::default()
        }],
    };
    let opts = RelocateOptions::default();
    assert_eq!(
        user.tier(&policy, &opts, &mut |_| true)
            .await
            .unwrap()
            .moved,
        0
    );
    policy.date = TierDate::Internal;
    assert_eq!(
        user.tier(&policy, &opts, &mut |_| true)
            .await
            .unwrap()
            .moved,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn moves_that_share_a_pace_keep_to_it_together() {
    let pace = Arc::new(Pace::new(1_000_000));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                pace.take(100_000).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 2 MB at 1 MB/s: the first 100 KB goes at once, the rest waits its turn.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(2000),
        "{took:?}"
    );
}
