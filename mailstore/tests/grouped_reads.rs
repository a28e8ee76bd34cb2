//! Reads from a store of local files (Maildir) are handed to it in groups: the answers keep the
//! request's order and bytes whatever mix of sizes, ranges and stores it holds, a group never
//! spans stores or passes its size bound, a body missing from the store fails alone, and a
//! body moved to another store since the caller's snapshot is read where it went.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use strata_backend_api::{Backend, ErrorKind, MemoryBackend, Observed};
use strata_backend_maildir::MaildirBackend;
use strata_index::StoreId;
use strata_mailstore::{BodyRead, BodyStores, Mailstore, RelocateOptions, StoreError};

const LOCAL: StoreId = StoreId(0);
const OTHER: StoreId = StoreId(1);

fn mailstore(dir: &std::path::Path, stores: BodyStores) -> Mailstore {
    common::mailstore(dir, stores, 32)
}

/// A message of about `size` bytes whose every line names it.
fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: message {i}\r\n\r\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(format!("line of message {i}\r\n").as_bytes());
    }
    m
}

/// What a read must answer, from the message it reads.
fn expected(raw: &[u8], r: &BodyRead) -> Vec<u8> {
    match &r.range {
        None => raw.to_vec(),
        Some(range) => {
            let end = (range.end as usize).min(raw.len());
            raw[(range.start as usize).min(end)..end].to_vec()
        }
    }
}

#[tokio::test]
async fn local_reads_go_in_groups_and_answer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = Arc::new(MaildirBackend::open(dir.path().join("maildir")).unwrap());
    let local = Arc::new(Observed::new(maildir as Arc<dyn Backend>));
    let other = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    assert!(local.capabilities().local_reads);
    assert!(!other.capabilities().local_reads);

    // Messages in the Maildir, of sizes from 1 KB to 400 KB.
    let before = mailstore(
        &dir.path().join("index"),
        BodyStores::new(LOCAL, local.clone() as Arc<dyn Backend>)
            .with(OTHER, other.clone() as Arc<dyn Backend>),
    );
    let user = before.user("u").await.unwrap();
    let raws: Vec<Vec<u8>> = (0..120)
        .map(|i| message(i, [1_000, 30_000, 120_000, 400_000][i % 4] + i))
        .collect();
    let local_reads = common::append(&user, &raws).await;
    drop(user);
    before.close_idle().await;

    // More in the other store, as after a change of main store.
    let after = mailstore(
        &dir.path().join("index"),
        BodyStores::new(OTHER, other.clone() as Arc<dyn Backend>)
            .with(LOCAL, local.clone() as Arc<dyn Backend>),
    );
    let user = after.user("u").await.unwrap();
    let other_raws: Vec<Vec<u8>> = (0..10).map(|i| message(1000 + i, 5_000)).collect();
    let other_reads = common::append(&user, &other_raws).await;

    // A request mixing both stores, out of append order, some reads ranges.
    let mut plan: Vec<(BodyRead, Vec<u8>)> = Vec::new();
    for (n, i) in (0..120).rev().enumerate() {
        let mut r = local_reads[i].clone();
        if n % 5 == 0 {
            r.range = Some(10..r.size / 2);
            r.size = r.size / 2 - 10;
        }
        plan.push((r, raws[i].clone()));
        if n % 13 == 0 {
            let j = n % other_reads.len();
            plan.push((other_reads[j].clone(), other_raws[j].clone()));
        }
    }
    local.take_reads();
    other.take_reads();
    let got: Vec<_> = user
        .bodies(plan.iter().map(|p| p.0.clone()).collect())
        .collect()
        .await;
    assert_eq!(got.len(), plan.len());
    for (k, ((r, raw), body)) in plan.iter().zip(&got).enumerate() {
        let body = body.as_ref().unwrap_or_else(|e| panic!("read {k}: {e}"));
        assert!(
            body[..] == expected(raw, r)[..],
            "read {k} answers its own bytes"
        );
    }

    let (groups, singles) = local.take_reads();
    let grouped: usize = groups.iter().map(Vec::len).sum();
    assert_eq!(grouped + singles, 120, "every Maildir read made once");
    assert!(
        groups.iter().any(|g| g.len() > 1),
        "Maildir reads are grouped: {:?}",
        groups.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(groups.iter().all(|g| g.len() <= 8), "at most 8 per group");
    assert!(
        groups.len() + singles < 60,
        "{} groups and {singles} single reads for 120 bodies",
        groups.len()
    );
    let (other_groups, other_singles) = other.take_reads();
    assert!(
        other_groups.is_empty(),
        "a remote store's reads are not grouped"
    );
    assert_eq!(other_singles, 10);

    // A body gone from the Maildir fails alone; the rest of its group answers.
    let gone = &local_reads[7];
    let path = walk(&dir.path().join("maildir"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(gone.location.key.rsplit('/').next().unwrap()))
        })
        .expect("the body's file");
    std::fs::remove_file(path).unwrap();
    let reads: Vec<BodyRead> = local_reads[..16].to_vec();
    let got: Vec<_> = user.bodies(reads).collect().await;
    for (i, body) in got.iter().enumerate() {
        match body {
            Err(StoreError::Backend(e)) if i == 7 => assert_eq!(e.kind, ErrorKind::NotFound),
            Err(e) => panic!("read {i}: {e}"),
            Ok(b) => assert!(i != 7 && b[..] == raws[i][..], "read {i}"),
        }
    }
    drop(user);
    after.close_idle().await;
}

#[tokio::test]
async fn a_group_follows_bodies_moved_since_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = Arc::new(MaildirBackend::open(dir.path().join("maildir")).unwrap());
    let other = Arc::new(MemoryBackend::new());
    let before = mailstore(
        &dir.path().join("index"),
        BodyStores::new(LOCAL, maildir.clone() as Arc<dyn Backend>),
    );
    let user = before.user("u").await.unwrap();
    let raws: Vec<Vec<u8>> = (0..40).map(|i| message(i, 2_000 + 10 * i)).collect();
    let stale = common::append(&user, &raws).await;
    drop(user);
    before.close_idle().await;

    let after = mailstore(
        &dir.path().join("index"),
        BodyStores::new(OTHER, other.clone() as Arc<dyn Backend>)
            .with(LOCAL, maildir as Arc<dyn Backend>),
    );
    let user = after.user("u").await.unwrap();
    let report = user
        .relocate(OTHER, &RelocateOptions::default(), &mut |_| true)
        .await
        .unwrap();
    assert_eq!(report.moved, 40);
    assert!(stale.iter().all(|r| r.location.store == LOCAL));
    let got: Vec<_> = user.bodies(stale).collect().await;
    for (raw, body) in raws.iter().zip(got) {
        assert!(body.unwrap()[..] == raw[..], "read where it went");
    }
    drop(user);
    after.close_idle().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
