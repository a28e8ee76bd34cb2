//! Repack under concurrent load, the maintenance worker, and the backup form (base + diffs).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_index::*;

/// Everything a client could see, for comparing two indexes.
fn answers(snap: &Snapshot) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        snap.keywords().unwrap(),
        snap.subscriptions().unwrap()
    );
    for mb in snap.mailboxes().unwrap() {
        out += &format!("{mb:?}\n");
        for m in snap.messages(mb.id).unwrap() {
            out += &format!(
                "{m:?} {:?} {}\n",
                snap.content(&m.guid).unwrap(),
                snap.content_refs(&m.guid).unwrap()
            );
        }
    }
    out += &format!("{:?}\n", snap.changes_since(snap.log_floor()).unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repack_under_load_keeps_every_write_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.redb");
    let (index, _) = UserIndex::open(&path, IndexOptions::default())
        .await
        .unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let uids = common::fill(&index, inbox, 0..6000).await;
    let evens: Vec<Uid> = uids.iter().copied().filter(|u| u.0 % 2 == 0).collect();
    index.expunge(inbox, evens).await.unwrap();
    let before = disk_bytes(&path);

    // A writer and readers keep going while repack runs, with a model of what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (index, stop) = (index.clone(), stop.clone());
        tokio::spawn(async move {
            let mut model: BTreeMap<Uid, bool> = BTreeMap::new();
            let mut n = 100_000u64;
            while !stop.load(Ordering::Relaxed) {
                let uid = index
                    .append(inbox, vec![common::message(n, SystemFlags::empty())])
                    .await
                    .unwrap()[0];
                model.insert(uid, false);
                if n.is_multiple_of(2) {
                    common::store_system(&index, inbox, vec![uid], StoreOp::Add, SystemFlags::SEEN)
                        .await;
                    model.insert(uid, true);
                }
                if n.is_multiple_of(5) {
                    index.expunge(inbox, vec![Uid(uid.0 - 3)]).await.unwrap();
                    model.remove(&Uid(uid.0 - 3));
                }
                n += 1;
            }
            model
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (index, stop) = (index.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                let view = index.view(inbox).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let snap = index.snapshot().unwrap();
                    let rec = snap.mailbox(inbox).unwrap().unwrap();
                    assert_eq!(snap.messages(inbox).unwrap().len() as u32, rec.messages);
                    assert!(view.len() > 2000);
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();

    let mut reports = Vec::new();
    for _ in 0..3 {
        reports.push(repack(&index, None).await.unwrap());
        // Let the writer commit more before the next repack catches up with it.
        let commits = index.stats().commits;
        while index.stats().commits < commits + 5 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let model = writer.await.unwrap();
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }

    let snap = index.snapshot().unwrap();
    strata_index::verify(&snap).unwrap();
    for (uid, seen) in &model {
        let m = snap
            .message(inbox, *uid)
            .unwrap()
            .unwrap_or_else(|| panic!("lost {uid}"));
        assert_eq!(m.flags.is_seen(), *seen, "flags of {uid}");
    }
    let odd_before: usize = (1..=6000).filter(|u| u % 2 == 1).count();
    let new_uids = snap
        .messages(inbox)
        .unwrap()
        .iter()
        .filter(|m| m.uid.0 > 6000)
        .count();
    assert_eq!(new_uids, model.len());
    assert!(snap.messages(inbox).unwrap().len() >= odd_before - model.len());
    let view = index.view(inbox).await.unwrap();
    let want: Vec<Uid> = snap
        .messages(inbox)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(view.search(|_| true), want);

    let first = &reports[0];
    assert!(first.bytes_after < before, "{first:?}");
    println!("repacks under load: {reports:?}");
    assert!(index.stats().repacks >= 3);

    // Still usable after the swaps, and durable across a reopen.
    drop(snap);
    common::fill(&index, inbox, 200_000..200_010).await;
    let expected = answers(&index.snapshot().unwrap());
    index.close().await;
    let (index, report) = UserIndex::open(&path, IndexOptions::default())
        .await
        .unwrap();
    assert!(!report.unclean_shutdown);
    assert_eq!(answers(&index.snapshot().unwrap()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_repack_of_the_same_index_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = UserIndex::open(dir.path().join("u.redb"), IndexOptions::default())
        .await
        .unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..3000).await;
    let (a, b) = tokio::join!(repack(&index, None), repack(&index, None));
    let refused = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(IndexError::RepackInProgress(_))))
        .count();
    assert_eq!(refused, 1, "{a:?} {b:?}");
    assert!(a.is_ok() || b.is_ok());
    // Once it is over, the next one runs.
    repack(&index, None).await.unwrap();
    strata_index::verify(&index.snapshot().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_worker_repacks_sparse_files_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.redb");
    let maintenance = Maintenance::spawn(MaintenanceOptions {
        min_file_bytes: 256 << 10,
        check_every_commits: 1,
        ..MaintenanceOptions::default()
    });
    let opts = IndexOptions {
        maintenance: Some(maintenance),
        ..IndexOptions::default()
    };
    let (index, _) = UserIndex::open(&path, opts).await.unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let uids = common::fill(&index, inbox, 0..4000).await;
    let full = disk_bytes(&path);
    index.expunge(inbox, uids[..3800].to_vec()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while index.stats().repacks == 0 {
        // Each commit lets the writer look at the file again.
        common::store_system(
            &index,
            inbox,
            vec![uids[3999]],
            StoreOp::Add,
            SystemFlags::SEEN,
        )
        .await;
        common::store_system(
            &index,
            inbox,
            vec![uids[3999]],
            StoreOp::Remove,
            SystemFlags::SEEN,
        )
        .await;
        tokio::task::yield_now().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never repacked"
        );
    }
    let snap = index.snapshot().unwrap();
    strata_index::verify(&snap).unwrap();
    assert_eq!(snap.messages(inbox).unwrap().len(), 200);
    let len = disk_bytes(&path);
    assert!(
        len < full / 2,
        "{len} bytes after repack, {full} before the expunge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_and_diffs_restore_an_identical_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.redb");
    let (index, _) = UserIndex::open(&path, IndexOptions::default())
        .await
        .unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let trash = index.create_mailbox(common::top("Trash")).await.unwrap().id;
    common::fill(&index, inbox, 0..200).await;

    let base = dir.path().join("base.redb");
    let m0 = export_base(&index, &base).await.unwrap();

    // Changes of every kind after the base.
    index
        .write(Durability::Immediate, move |t| {
            let k = t.intern_keyword("todo")?;
            let flags = Flags {
                system: SystemFlags::FLAGGED,
                keywords: vec![k],
            };
            t.store(
                inbox,
                &(1..50).map(Uid).collect::<Vec<_>>(),
                StoreOp::Add,
                &flags,
                None,
            )?;
            t.subscribe("INBOX")?;
            t.claim_recent(inbox, Uid(u32::MAX)).map(drop)
        })
        .await
        .unwrap();
    index
        .move_messages(inbox, (10..20).map(Uid).collect(), trash)
        .await
        .unwrap();
    let d1 = dir.path().join("1.diff");
    let m1 = export_diff(&index, m0, &d1).await.unwrap();
    assert!(m1 > m0);

    let archive = index
        .create_mailbox(common::top("Archive"))
        .await
        .unwrap()
        .id;
    index
        .copy(inbox, (30..40).map(Uid).collect(), archive)
        .await
        .unwrap();
    index
        .expunge(inbox, (100..150).map(Uid).collect())
        .await
        .unwrap();
    index
        .rename_mailbox(trash, None, "Bin".into())
        .await
        .unwrap();
    index.delete_mailbox(archive).await.unwrap();
    index
        .write(Durability::Immediate, move |t| {
            t.set_body_location(
                common::content(5).guid,
                BodyLocation {
                    store: StoreId(2),
                    key: "cold/5".into(),
                },
            )
        })
        .await
        .unwrap();
    let d2 = dir.path().join("2.diff");
    export_diff(&index, m1, &d2).await.unwrap();
    let expected = answers(&index.snapshot().unwrap());

    let restored = dir.path().join("restored.redb");
    let m = import(&base, &[&d1, &d2], &restored).unwrap();
    assert_eq!(m, index.snapshot().unwrap().modseq());
    let (copy, _) = UserIndex::open(&restored, IndexOptions::default())
        .await
        .unwrap();
    assert_eq!(answers(&copy.snapshot().unwrap()), expected);
    // The restored index keeps working, with UIDs continuing where they were.
    let next = copy
        .append(inbox, vec![common::message(999, SystemFlags::empty())])
        .await
        .unwrap();
    assert_eq!(next, vec![Uid(201)]);

    // Diffs out of order, a gap, or a damaged diff are refused and leave nothing behind.
    let bad = dir.path().join("bad.redb");
    let err = import(&base, &[&d2], &bad).unwrap_err();
    assert!(matches!(err, IndexError::BackupMismatch(_)), "{err}");
    assert!(!bad.exists());
    let mut raw = std::fs::read(&d1).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x40;
    let damaged = dir.path().join("damaged.diff");
    std::fs::write(&damaged, raw).unwrap();
    let err = import(&base, &[&damaged], &bad).unwrap_err();
    assert!(matches!(err, IndexError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("damaged.diff"));
    assert!(!bad.exists());
    let err = import(&base, &[&d1], &restored).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_change_log_refuses_old_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = UserIndex::open(dir.path().join("u.redb"), IndexOptions::default())
        .await
        .unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..50).await;
    let old = index.snapshot().unwrap().modseq();
    common::fill(&index, inbox, 50..100).await;
    repack(&index, Some(10)).await.unwrap();
    let snap = index.snapshot().unwrap();
    assert_eq!(snap.log_floor(), Modseq(snap.modseq().0 - 10));
    assert_eq!(snap.changes_since(snap.log_floor()).unwrap().len(), 10);
    strata_index::verify(&snap).unwrap();
    let err = export_diff(&index, old, &dir.path().join("x.diff"))
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::BackupMismatch(_)), "{err}");
    // A view built before the trim still works after it.
    let view = index.view(inbox).await.unwrap();
    assert_eq!(view.len(), 100);
}
