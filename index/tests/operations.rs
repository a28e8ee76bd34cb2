//! Behaviour of the index's operations, transactions, views, events and handles.

mod common;

use std::sync::Arc;

use strata_index::*;

async fn open_new() -> (tempfile::TempDir, UserIndex) {
    let dir = tempfile::tempdir().unwrap();
    let (index, report) = UserIndex::open(dir.path().join("u.redb"), IndexOptions::default())
        .await
        .unwrap();
    assert!(report.created);
    (dir, index)
}

#[tokio::test]
async fn multiappend_is_all_or_nothing() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap();
    let mut bad = common::message(2, SystemFlags::empty());
    bad.flags.keywords.push(KeywordId(77)); // never interned
    let err = index
        .append(
            inbox.id,
            vec![common::message(1, SystemFlags::empty()), bad],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidKeyword(_)), "{err}");
    let rec = index
        .snapshot()
        .unwrap()
        .mailbox(inbox.id)
        .unwrap()
        .unwrap();
    assert_eq!((rec.messages, rec.uid_next), (0, Uid(1)));
    assert_eq!(
        index
            .snapshot()
            .unwrap()
            .content_refs(&common::content(1).guid)
            .unwrap(),
        0
    );
    // The same content with another size is refused.
    common::fill(&index, inbox.id, 5..6).await;
    let mut other = common::message(5, SystemFlags::empty());
    other.content.size += 1;
    let err = index.append(inbox.id, vec![other]).await.unwrap_err();
    assert!(matches!(err, IndexError::ContentMismatch(_)), "{err}");
}

#[tokio::test]
async fn savepoints_nest_and_roll_back_only_their_part() {
    let (_d, index) = open_new().await;
    let names = index
        .write(Durability::Immediate, |t| {
            t.create_mailbox(common::top("A"))?;
            let outer = t.savepoint();
            t.create_mailbox(common::top("B"))?;
            let inner = t.savepoint();
            t.create_mailbox(common::top("C"))?;
            t.rollback_to(inner)?;
            t.create_mailbox(common::top("D"))?;
            t.release(outer)?;
            let failed: Result<()> = t.nested(|t| {
                t.create_mailbox(common::top("E"))?;
                t.create_mailbox(common::top("A")).map(drop) // exists: fails
            });
            assert!(matches!(failed, Err(IndexError::MailboxExists { .. })));
            Ok(())
        })
        .await;
    names.unwrap();
    let snap = index.snapshot().unwrap();
    let mut got: Vec<String> = snap
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    got.sort();
    assert_eq!(got, ["A", "B", "D"]);
    strata_index::verify(&snap).unwrap();
    // A savepoint that was already closed is refused.
    let err = index
        .write(Durability::Immediate, |t| {
            let sp = t.savepoint();
            let again = t.savepoint();
            t.rollback_to(sp)?;
            t.rollback_to(again)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidSavepoint(_)), "{err}");
}

#[tokio::test]
async fn a_failed_write_does_not_disturb_others_in_the_same_commit() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            if i.is_multiple_of(5) {
                index.expunge(MailboxId(999), vec![Uid(1)]).await.map(drop)
            } else {
                index
                    .append(inbox, vec![common::message(i, SystemFlags::empty())])
                    .await
                    .map(drop)
            }
        }));
    }
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(i % 5, 0);
                assert!(matches!(e, IndexError::NoSuchMailbox(_)));
            }
        }
    }
    assert_eq!(ok, 40);
    let snap = index.snapshot().unwrap();
    assert_eq!(snap.mailbox(inbox).unwrap().unwrap().messages, 40);
    strata_index::verify(&snap).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flag_changes_share_fsyncs() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let uids = common::fill(&index, inbox, 0..2000).await;
    let before = index.stats();
    let mut tasks = Vec::new();
    for uid in uids.clone() {
        let index = index.clone();
        tasks.push(tokio::spawn(async move {
            common::store_system(&index, inbox, vec![uid], StoreOp::Add, SystemFlags::FLAGGED).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().changed.len(), 1);
    }
    let after = index.stats();
    let jobs = after.jobs - before.jobs;
    let commits = after.commits - before.commits;
    assert_eq!(jobs, 2000);
    assert!(
        commits * 10 <= jobs,
        "{commits} commits for {jobs} flag changes"
    );
    let view = index.view(inbox).await.unwrap();
    assert_eq!(
        view.search(|e| e.flags.system.contains(SystemFlags::FLAGGED))
            .len(),
        2000
    );
}

/// With deferred flag durability, a flag change is answered and visible without an fsync, one
/// durable commit follows within the delay, and a close makes everything durable.
#[tokio::test]
async fn deferred_flag_changes_are_fsynced_within_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.redb");
    let opts = IndexOptions {
        deferred_flags: Some(std::time::Duration::from_millis(100)),
        ..IndexOptions::default()
    };
    let (index, _) = UserIndex::open(&path, opts.clone()).await.unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let uids = common::fill(&index, inbox, 0..20).await;
    let before = index.stats();
    for uid in &uids {
        common::store_system(&index, inbox, vec![*uid], StoreOp::Add, SystemFlags::SEEN).await;
    }
    let after = index.stats();
    assert_eq!(after.commits - before.commits, 20);
    assert!(after.fsyncs - before.fsyncs <= 1, "{before:?} → {after:?}");
    let seen = |s: &Snapshot| {
        s.messages(inbox)
            .unwrap()
            .iter()
            .filter(|m| m.flags.is_seen())
            .count()
    };
    assert_eq!(seen(&index.snapshot().unwrap()), 20);
    // The flush is the writer's own, at the end of the delay: wait for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while index.stats().fsyncs == after.fsyncs && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let flushed = index.stats();
    assert_eq!(
        flushed.fsyncs,
        after.fsyncs + 1,
        "one flush after the delay"
    );
    // An APPEND is durable at once, and carries the deferred changes with it.
    common::store_system(
        &index,
        inbox,
        vec![uids[0]],
        StoreOp::Remove,
        SystemFlags::SEEN,
    )
    .await;
    common::fill(&index, inbox, 20..21).await;
    assert_eq!(index.stats().fsyncs, flushed.fsyncs + 1);
    common::store_system(
        &index,
        inbox,
        vec![uids[1]],
        StoreOp::Remove,
        SystemFlags::SEEN,
    )
    .await;
    index.close().await;
    let (index, report) = UserIndex::open(&path, opts).await.unwrap();
    assert!(!report.unclean_shutdown);
    assert_eq!(seen(&index.snapshot().unwrap()), 18);
}

#[tokio::test]
async fn store_with_unchanged_since_reports_conflicts() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let uids = common::fill(&index, inbox, 0..3).await;
    let base = index.snapshot().unwrap().modseq();
    let first = index
        .store(
            inbox,
            vec![uids[1]],
            StoreOp::Add,
            Flags::system(SystemFlags::SEEN),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.changed.len(), 1);
    let out = index
        .store(
            inbox,
            uids.clone(),
            StoreOp::Add,
            Flags::system(SystemFlags::ANSWERED),
            Some(base),
        )
        .await
        .unwrap();
    assert_eq!(out.conflicts, vec![uids[1]]);
    assert_eq!(
        out.changed.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![uids[0], uids[2]]
    );
    // Storing flags a message already has changes nothing and keeps its MODSEQ.
    let m = index
        .snapshot()
        .unwrap()
        .message(inbox, uids[0])
        .unwrap()
        .unwrap()
        .modseq;
    let out = index
        .store(
            inbox,
            vec![uids[0]],
            StoreOp::Add,
            Flags::system(SystemFlags::ANSWERED),
            None,
        )
        .await
        .unwrap();
    assert!(out.changed.is_empty());
    assert_eq!(
        index
            .snapshot()
            .unwrap()
            .message(inbox, uids[0])
            .unwrap()
            .unwrap()
            .modseq,
        m
    );
}

#[tokio::test]
async fn copies_share_content_and_the_last_expunge_frees_it() {
    let (_d, index) = open_new().await;
    let a = index.create_mailbox(common::top("A")).await.unwrap().id;
    let b = index.create_mailbox(common::top("B")).await.unwrap().id;
    let uids = common::fill(&index, a, 10..13).await;
    let pairs = index.copy(a, uids.clone(), b).await.unwrap();
    assert_eq!(
        pairs,
        vec![(Uid(1), Uid(1)), (Uid(2), Uid(2)), (Uid(3), Uid(3))]
    );
    let g = common::content(10).guid;
    assert_eq!(index.snapshot().unwrap().content_refs(&g).unwrap(), 2);
    let moved = index.move_messages(b, vec![Uid(1)], a).await.unwrap();
    assert_eq!(moved, vec![(Uid(1), Uid(4))]);
    let snap = index.snapshot().unwrap();
    assert_eq!(snap.content_refs(&g).unwrap(), 2);
    assert!(snap.message(b, Uid(1)).unwrap().is_none());
    assert_eq!(snap.message(a, Uid(4)).unwrap().unwrap().guid, g);
    index.expunge(a, vec![Uid(1), Uid(4)]).await.unwrap();
    let snap = index.snapshot().unwrap();
    assert_eq!(snap.content_refs(&g).unwrap(), 0);
    assert!(snap.content(&g).unwrap().is_none());
    assert_eq!(
        snap.content(&common::content(11).guid).unwrap().unwrap(),
        common::content(11)
    );
    strata_index::verify(&snap).unwrap();
}

#[tokio::test]
async fn mailbox_hierarchy_rename_and_delete() {
    let (_d, index) = open_new().await;
    let work = index.create_mailbox(common::top("Work")).await.unwrap();
    let child = index
        .create_mailbox(NewMailbox {
            parent: Some(work.id),
            name: "Projects".into(),
            special_use: None,
        })
        .await
        .unwrap();
    let err = index
        .rename_mailbox(work.id, Some(child.id), "Loop".into())
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::RenameIntoSelf(_)), "{err}");
    let err = index.delete_mailbox(work.id).await.unwrap_err();
    assert!(matches!(err, IndexError::HasChildren(_)), "{err}");
    index
        .rename_mailbox(work.id, None, "Office".into())
        .await
        .unwrap();
    let snap = index.snapshot().unwrap();
    assert_eq!(
        snap.lookup_path(&["Office", "Projects"]).unwrap(),
        Some(child.id)
    );
    assert_eq!(
        snap.path_of(child.id).unwrap().unwrap(),
        ["Office", "Projects"]
    );
    assert_eq!(snap.lookup(None, "Work").unwrap(), None);
    for bad in ["", "a\0b", "tab\there"] {
        let err = index.create_mailbox(common::top(bad)).await.unwrap_err();
        assert!(
            matches!(err, IndexError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    assert!(index.create_mailbox(common::top(&long)).await.is_err());
    // Deleting and recreating a mailbox gives a higher UIDVALIDITY.
    let t = index.create_mailbox(common::top("Tmp")).await.unwrap();
    common::fill(&index, t.id, 0..3).await;
    assert_eq!(
        index.delete_mailbox(t.id).await.unwrap(),
        vec![Uid(1), Uid(2), Uid(3)]
    );
    let t2 = index.create_mailbox(common::top("Tmp")).await.unwrap();
    assert!(t2.uid_validity > t.uid_validity);
    assert_ne!(t2.id, t.id);
}

#[tokio::test]
async fn recent_is_claimed_once() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..4).await;
    let claim = |index: UserIndex| async move {
        index
            .write(Durability::Immediate, move |t| {
                t.claim_recent(inbox, Uid(u32::MAX))
            })
            .await
            .unwrap()
    };
    assert_eq!(claim(index.clone()).await, (Uid(1), Uid(5)));
    assert_eq!(claim(index.clone()).await, (Uid(5), Uid(5)));
    common::fill(&index, inbox, 4..6).await;
    let rec = index.snapshot().unwrap().mailbox(inbox).unwrap().unwrap();
    assert_eq!((rec.recent, rec.messages), (2, 6));
}

#[tokio::test]
async fn subscriptions_and_keywords() {
    let (_d, index) = open_new().await;
    let (a, b) = index
        .write(Durability::Immediate, |t| {
            t.subscribe("INBOX")?;
            t.subscribe("Not/Yet/There")?;
            t.unsubscribe("INBOX")?;
            Ok((
                t.intern_keyword("$Forwarded")?,
                t.intern_keyword("$forwarded")?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(a, b, "keywords are case-insensitive");
    let snap = index.snapshot().unwrap();
    assert_eq!(snap.subscriptions().unwrap(), ["Not/Yet/There"]);
    assert_eq!(
        snap.keywords().unwrap(),
        vec![(a, "$Forwarded".to_string())]
    );
    for bad in ["\\Seen", "has space", "", "paren("] {
        let r = index
            .write(Durability::Immediate, move |t| t.intern_keyword(bad))
            .await;
        assert!(matches!(r, Err(IndexError::InvalidKeyword(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn events_arrive_in_commit_order_with_new_values() {
    let (_d, index) = open_new().await;
    let mut rx = index.subscribe();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..2).await;
    common::store_system(
        &index,
        inbox,
        vec![Uid(2)],
        StoreOp::Replace,
        SystemFlags::DRAFT,
    )
    .await;
    index.expunge(inbox, vec![Uid(1)]).await.unwrap();
    let mut changes = Vec::new();
    let mut last = Modseq(0);
    while changes.len() < 5 {
        let ev = rx.recv().await.unwrap();
        assert!(ev.modseq > last);
        last = ev.modseq;
        changes.extend(ev.changes.iter().cloned());
    }
    assert!(matches!(
        changes[0],
        Change::Mailbox {
            kind: ChangeKind::MailboxCreated,
            ..
        }
    ));
    assert!(matches!(changes[1], Change::Appended { uid: Uid(1), .. }));
    assert!(matches!(changes[2], Change::Appended { uid: Uid(2), .. }));
    match &changes[3] {
        Change::FlagsChanged { uid, flags, .. } => {
            assert_eq!(*uid, Uid(2));
            assert_eq!(flags.system, SystemFlags::DRAFT);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(changes[4], Change::Expunged { uid: Uid(1), .. }));
    let mods: Vec<Modseq> = changes.iter().map(Change::modseq).collect();
    assert!(mods.windows(2).all(|w| w[0] < w[1]));
    // The change log says the same.
    let log = index.snapshot().unwrap().changes_since(Modseq(0)).unwrap();
    assert_eq!(log.len(), 5);
    assert!(matches!(log[4].kind, ChangeKind::Expunged { .. }));
}

#[tokio::test]
async fn views_are_shared_current_and_dropped_when_unused() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..5).await;
    let v1 = index.view(inbox).await.unwrap();
    let v2 = index.view(inbox).await.unwrap();
    assert!(Arc::ptr_eq(&v1, &v2));
    assert_eq!(v1.len(), 5);
    index.expunge(inbox, vec![Uid(2), Uid(4)]).await.unwrap();
    common::fill(&index, inbox, 5..6).await;
    common::store_system(&index, inbox, vec![Uid(3)], StoreOp::Add, SystemFlags::SEEN).await;
    assert_eq!(
        v1.with_entries(|e| e.iter().map(|x| x.uid.0).collect::<Vec<_>>()),
        [1, 3, 5, 6]
    );
    assert_eq!(v1.seq_of(Uid(5)), Some(3));
    assert_eq!(v1.uid_at(4), Some(Uid(6)));
    assert_eq!(v1.uid_at(0), None);
    assert!(v1.get(Uid(3)).unwrap().flags.is_seen());
    assert_eq!(v1.modseq(), index.snapshot().unwrap().modseq());
    let weak = Arc::downgrade(&v1);
    drop((v1, v2));
    assert!(weak.upgrade().is_none());
    let v3 = index.view(inbox).await.unwrap();
    assert_eq!(v3.len(), 4);
    index.delete_mailbox(inbox).await.unwrap();
    assert!(v3.is_deleted() && v3.is_empty());
    assert!(matches!(
        index.view(inbox).await,
        Err(IndexError::NoSuchMailbox(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_built_during_writes_miss_nothing() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    let writer = {
        let index = index.clone();
        tokio::spawn(async move {
            for n in 0..300u64 {
                let uid = common::fill(&index, inbox, n..n + 1).await[0];
                if n.is_multiple_of(3) {
                    index.expunge(inbox, vec![uid]).await.unwrap();
                }
            }
        })
    };
    let mut views = Vec::new();
    while !writer.is_finished() {
        views.push(index.view(inbox).await.unwrap());
        if views.len() > 3 {
            views.remove(0);
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let want: Vec<Uid> = index
        .snapshot()
        .unwrap()
        .messages(inbox)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    for v in views {
        assert_eq!(v.search(|_| true), want);
    }
}

#[tokio::test]
async fn snapshots_are_isolated_from_later_commits() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..3).await;
    let before = index.snapshot().unwrap();
    index.expunge(inbox, vec![Uid(1)]).await.unwrap();
    common::fill(&index, inbox, 3..4).await;
    assert_eq!(before.messages(inbox).unwrap().len(), 3);
    assert!(before.message(inbox, Uid(1)).unwrap().is_some());
    assert_eq!(index.snapshot().unwrap().messages(inbox).unwrap().len(), 3);
    assert!(
        index
            .snapshot()
            .unwrap()
            .message(inbox, Uid(1))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.redb");
    let (index, _) = UserIndex::open(&path, IndexOptions::default())
        .await
        .unwrap();
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..10).await;
    let before = index.snapshot().unwrap().messages(inbox).unwrap();
    let modseq = index.snapshot().unwrap().modseq();
    index.close().await;
    let (index, report) = UserIndex::open(&path, IndexOptions::default())
        .await
        .unwrap();
    assert!(!report.created && !report.unclean_shutdown);
    assert_eq!(report.modseq, modseq);
    assert_eq!(index.snapshot().unwrap().messages(inbox).unwrap(), before);
    // Writes after a close are refused, not lost silently.
    let closed = index.clone();
    index.close().await;
    let err = closed.create_mailbox(common::top("X")).await.unwrap_err();
    assert!(matches!(err, IndexError::Closed), "{err}");
}

#[tokio::test]
async fn read_only_open_follows_the_writer_and_a_second_writer_is_told_who_holds_it() {
    let (dir, index) = open_new().await;
    let path = dir.path().join("u.redb");
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
    common::fill(&index, inbox, 0..3).await;
    let ro = ReadOnlyIndex::open(&path).unwrap();
    assert_eq!(ro.snapshot().unwrap().messages(inbox).unwrap().len(), 3);
    common::fill(&index, inbox, 3..5).await;
    assert_eq!(ro.snapshot().unwrap().messages(inbox).unwrap().len(), 5);
    let report = ro.verify().unwrap();
    assert_eq!((report.mailboxes, report.messages), (1, 5));
    let err = match UserIndex::open(&path, IndexOptions::default()).await {
        Err(e) => e,
        Ok(_) => panic!("a second writer was let in"),
    };
    match &err {
        IndexError::Locked { holder, .. } => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            )
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("u.redb"));
}

#[tokio::test]
async fn a_stored_mime_tree_nested_too_deeply_is_read_as_one_part() {
    let (_d, index) = open_new().await;
    let mb = index.create_mailbox(common::top("A")).await.unwrap().id;
    // As a parser without a depth limit would have recorded a hostile message.
    let mut m = common::message(1, SystemFlags::empty());
    let mut deep = MimePart::default();
    for _ in 0..(MAX_STORED_DEPTH * 4) {
        deep = MimePart {
            media_type: b"multipart".to_vec(),
            subtype: b"mixed".to_vec(),
            children: vec![deep],
            ..MimePart::default()
        };
    }
    m.content.parsed.structure = deep;
    let size = m.content.size;
    let guid = m.content.guid;
    index.append(mb, vec![m]).await.unwrap();
    let snap = index.snapshot().unwrap();
    let c = snap.content(&guid).unwrap().unwrap();
    assert_eq!(c.parsed.structure, MimePart::opaque(size));
    assert_eq!(c.parsed.envelope, common::content(1).parsed.envelope);
    strata_index::verify(&snap).unwrap();
}

/// Whether a space followed a header field's colon is kept with the content and survives the
/// rewrites of its record (a copy's reference count, a body's move); records that never
/// noted it read as spaced.
#[tokio::test]
async fn header_fields_keep_an_unspaced_colon() {
    let (_d, index) = open_new().await;
    let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap();
    let other = index.create_mailbox(common::top("Other")).await.unwrap();
    let mut m = common::message(1, SystemFlags::empty());
    m.content.parsed.headers = vec![
        HeaderField {
            name: "Subject".into(),
            value: b"x".to_vec(),
            unspaced: true,
        },
        HeaderField {
            name: "From".into(),
            value: b"a@example.org".to_vec(),
            unspaced: false,
        },
    ];
    let guid = m.content.guid;
    index.append(inbox.id, vec![m]).await.unwrap();
    let unspaced = |index: &UserIndex| {
        let snap = index.snapshot().unwrap();
        let whole: Vec<bool> = snap
            .content_parts(&guid, Parts::ALL)
            .unwrap()
            .unwrap()
            .parsed
            .headers
            .iter()
            .map(|h| h.unspaced)
            .collect();
        let borrowed = snap
            .with_header_fields(&guid, |f| f.iter().map(|h| h.unspaced).collect::<Vec<_>>())
            .unwrap()
            .unwrap();
        assert_eq!(whole, borrowed);
        whole
    };
    assert_eq!(unspaced(&index), [true, false]);
    index.copy(inbox.id, vec![Uid(1)], other.id).await.unwrap();
    assert_eq!(unspaced(&index), [true, false], "after a copy");
    index
        .write(Durability::Immediate, move |t| {
            t.set_body_location(
                guid,
                BodyLocation {
                    store: StoreId(2),
                    key: "elsewhere".into(),
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(unspaced(&index), [true, false], "after a move");
    let mut line = Vec::new();
    HeaderField::write_line("Subject", b"x", true, &mut line);
    HeaderField::write_line("From", b"a@example.org", false, &mut line);
    assert_eq!(line, b"Subject:x\r\nFrom: a@example.org\r\n");
}
