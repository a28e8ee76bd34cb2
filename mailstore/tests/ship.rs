//! Shipping a user's index to their store and restoring it on a node with an empty disk: the
//! restored index answers as the lost one did; compaction keeps a restorable chain at every
//! step; a damaged, truncated or missing object is an error naming it, never a wrong index.

use std::sync::Arc;
use std::time::Duration;

use strata_backend_api::{Backend, Batch, Key, MemoryBackend};
use strata_index::{Durability, Flags, IndexOptions, Snapshot, StoreId, StoreOp, SystemFlags, Uid};
use strata_mailstore::ship::ShipOptions;
use strata_mailstore::ship::chain;
use strata_mailstore::{AckPolicy, Appended, BodyStores, Mailstore, MailstoreOptions, StoreError};

fn opts(max_diffs: u64) -> ShipOptions {
    ShipOptions {
        max_lag: Duration::from_millis(20),
        max_changes: 1_000_000,
        compact_ratio: 100.0,
        max_diffs,
        read_concurrency: 8,
    }
}

fn mailstore(dir: &std::path::Path, store: Arc<dyn Backend>, ship: ShipOptions) -> Mailstore {
    Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: AckPolicy::Acked,
            read_concurrency: 8,
            index: IndexOptions::default(),
            ship: Some(ship),
            fts: None,
        },
        Arc::new(move |_| Ok(BodyStores::new(StoreId(0), store.clone()))),
    )
}

fn message(i: usize) -> Appended {
    Appended {
        raw: format!("Subject: m{i}\r\nFrom: a@example.org\r\n\r\nbody {i}\r\n")
            .into_bytes()
            .into(),
        flags: Flags::default(),
        internal_date: None,
    }
}

/// Everything a client can ask of the index, as text.
fn answers(snap: &Snapshot) -> String {
    let mut out = format!(
        "modseq {:?}\n{:?}\n{:?}\n",
        snap.modseq(),
        snap.keywords().unwrap(),
        snap.subscriptions().unwrap()
    );
    for mb in snap.mailboxes().unwrap() {
        out += &format!("{mb:?} {:?}\n", snap.path_of(mb.id).unwrap());
        for m in snap.messages(mb.id).unwrap() {
            out += &format!("{m:?} {:?}\n", snap.content(&m.guid).unwrap());
        }
    }
    out
}

/// A workload of every kind of change, through the mail store and the index.
async fn workload(store: &Mailstore, rounds: usize) {
    let user = store.user("alice").await.unwrap();
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".to_string()]).unwrap().id;
    let trash = user.find(&snap, &["Trash".to_string()]).unwrap().id;
    for round in 0..rounds {
        let (_, uids) = user
            .append(inbox, (0..10).map(|i| message(round * 10 + i)).collect())
            .await
            .unwrap();
        let kw = user.keywords(vec![format!("$label{round}")]).await.unwrap();
        let flags = Flags {
            system: SystemFlags::SEEN | SystemFlags::FLAGGED,
            keywords: kw,
        };
        user.index()
            .store(inbox, uids[..5].to_vec(), StoreOp::Add, flags, None)
            .await
            .unwrap();
        let name = format!("Folder{round}");
        let folder = user.create(vec![name.clone()]).await.unwrap().id;
        user.index()
            .copy(inbox, uids[5..7].to_vec(), folder)
            .await
            .unwrap();
        user.move_messages(inbox, uids[7..9].to_vec(), trash)
            .await
            .unwrap();
        user.expunge(inbox, vec![uids[9]]).await.unwrap();
        user.rename(vec![name.clone()], vec![format!("Renamed{round}")])
            .await
            .unwrap();
        user.index()
            .write(Durability::Immediate, move |t| {
                t.subscribe(&format!("Renamed{round}"))
            })
            .await
            .unwrap();
        if round % 2 == 1 {
            user.delete(vec![format!("Renamed{}", round - 1)])
                .await
                .unwrap();
        }
    }
    user.shipped().await.unwrap();
}

async fn restore_on_fresh_node(
    store: Arc<dyn Backend>,
    ship: ShipOptions,
) -> (tempfile::TempDir, Result<String, StoreError>) {
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), store, ship);
    let answer = match node.user("alice").await {
        Ok(u) => Ok(answers(&u.snapshot().unwrap())),
        Err(e) => Err(e),
    };
    node.close_idle().await;
    (dir, answer)
}

/// What the store's chain restores to, read without taking the user over (the node that
/// writes it keeps writing).
async fn chain_answers(store: &dyn Backend) -> (tempfile::TempDir, Result<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("alice.redb");
    let answer = match chain::restore(store, &dest, 8).await {
        Ok(Some(_)) => {
            let ix = strata_index::ReadOnlyIndex::open(&dest).unwrap();
            Ok(answers(&ix.snapshot().unwrap()))
        }
        Ok(None) => Err("no chain".to_string()),
        Err(e) => Err(e.to_string()),
    };
    (dir, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_disk_restores_every_acknowledged_change() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(1000));
    workload(&node, 6).await;
    let user = node.user("alice").await.unwrap();
    let expected = answers(&user.snapshot().unwrap());
    // Every body the index names is in the store.
    let snap = user.snapshot().unwrap();
    for mb in snap.mailboxes().unwrap() {
        for m in snap.messages(mb.id).unwrap() {
            let c = snap.content(&m.guid).unwrap().unwrap();
            backend
                .get(&Key::new(c.location.key).unwrap(), None)
                .await
                .unwrap();
        }
    }
    drop(snap);
    drop(user);
    // The node is lost: nothing of its disk is used again.
    std::mem::forget(node);
    drop(dir);

    let (_keep, restored) = restore_on_fresh_node(backend.clone(), opts(1000)).await;
    assert_eq!(restored.unwrap(), expected);

    // The restored node goes on with the same chain, and a third node restores both.
    let dir2 = tempfile::tempdir().unwrap();
    let node2 = mailstore(dir2.path(), backend.clone(), opts(1000));
    workload(&node2, 1).await;
    let expected2 = answers(&node2.user("alice").await.unwrap().snapshot().unwrap());
    node2.close_idle().await;
    let (_keep, restored) = restore_on_fresh_node(backend, opts(1000)).await;
    assert_eq!(restored.unwrap(), expected2);
}

async fn chain_keys(backend: &MemoryBackend) -> Vec<String> {
    let mut keys: Vec<String> = backend
        .list(chain::PREFIX)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key.to_string())
        .filter(|k| chain::is_index_key(k))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_replaces_the_chain_and_restores_at_every_step() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(3));
    let user = node.user("alice").await.unwrap();
    let inbox = user
        .find(&user.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    let mut bases = Vec::new();
    for i in 0..12 {
        user.append(inbox, vec![message(i)]).await.unwrap();
        let head = chain::read_head(&*backend).await.unwrap().unwrap();
        bases.push(head.base);
        // Whatever the step, the store holds a chain that restores to what was acknowledged.
        let expected = answers(&user.snapshot().unwrap());
        let (_keep, restored) = chain_answers(&*backend).await;
        assert_eq!(restored.unwrap(), expected, "step {i}");
        // Nothing older than the head's base is left once a compaction is done.
        let keys = chain_keys(&backend).await;
        assert!(
            keys.iter()
                .filter(|k| !k.ends_with("head"))
                .all(|k| k.as_str() >= chain::object_key(head.base).as_str()),
            "{keys:?} {head:?}"
        );
    }
    bases.dedup();
    assert!(bases.len() >= 3, "new bases were shipped: {bases:?}");
    drop(user);
    node.close_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_interrupted_at_any_point_leaves_a_restorable_chain() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(1000));
    workload(&node, 2).await;
    let expected = answers(&node.user("alice").await.unwrap().snapshot().unwrap());
    node.close_idle().await;
    let head = chain::read_head(&*backend).await.unwrap().unwrap();
    let sizes = chain::probe(&*backend, head.base).await.unwrap();
    let last = head.base + sizes.len() as u64 - 1;

    // Interrupted after the new base is acked, before the head names it: the base is found
    // after the head's and used.
    let base = backend
        .get(&chain::object_key(head.base), None)
        .await
        .unwrap();
    let copy = rewrite_seq(&base, last + 1);
    backend
        .commit(Batch::new().put(chain::object_key(last + 1), copy))
        .await
        .unwrap();
    let (_keep, restored) = restore_on_fresh_node(backend.clone(), opts(1000)).await;
    // The copied base is older than the diffs before it: refused as out of order, not used
    // as if it were newer. A real compaction's base is at the chain's end, which this is not.
    assert!(
        restored.is_err(),
        "an older base after newer diffs is refused"
    );
    backend
        .commit(Batch::new().delete(chain::object_key(last + 1)))
        .await
        .unwrap();

    // Interrupted after the head moved, before the old objects were deleted: they are ignored,
    // and the next writer deletes them.
    backend
        .commit(Batch::new().put(
            Key::new("strata-index/00000000000000000000").unwrap(),
            b"leftover".to_vec(),
        ))
        .await
        .unwrap();
    let (_keep, restored) = restore_on_fresh_node(backend.clone(), opts(1000)).await;
    assert_eq!(restored.unwrap(), expected);
}

/// An object's bytes with its position changed (and its checksum fixed).
fn rewrite_seq(raw: &[u8], seq: u64) -> Vec<u8> {
    let mut v = raw[..raw.len() - 4].to_vec();
    v[31..39].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_truncated_or_missing_object_is_an_error_naming_it() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(1000));
    workload(&node, 3).await;
    node.close_idle().await;
    let head = chain::read_head(&*backend).await.unwrap().unwrap();
    let sizes = chain::probe(&*backend, head.base).await.unwrap();
    assert!(sizes.len() >= 3, "a base and diffs: {sizes:?}");
    let victim = chain::object_key(head.base + 1);
    let good = backend.get(&victim, None).await.unwrap();

    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("flipped", {
            let mut v = good.to_vec();
            let at = v.len() / 2;
            v[at] ^= 0x40;
            Some(v)
        }),
        ("truncated", Some(good[..good.len() - 9].to_vec())),
        ("empty", Some(Vec::new())),
        ("missing", None),
    ];
    for (what, bytes) in cases {
        let batch = match bytes {
            Some(b) => Batch::new().put(victim.clone(), b),
            None => Batch::new().delete(victim.clone()),
        };
        backend.commit(batch).await.unwrap();
        let (dir, restored) = chain_answers(&*backend).await;
        let err = restored.expect_err(what);
        assert!(
            err.contains(victim.as_str()),
            "{what}: the error names the object: {err}"
        );
        // Nothing half-built is left to be taken for an index.
        assert!(!dir.path().join("alice.redb").exists(), "{what}");
    }
    backend
        .commit(Batch::new().put(victim.clone(), good))
        .await
        .unwrap();
    let (_keep, restored) = restore_on_fresh_node(backend.clone(), opts(1000)).await;
    restored.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_index_is_set_aside_and_restored() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(1000));
    workload(&node, 2).await;
    let expected = answers(&node.user("alice").await.unwrap().snapshot().unwrap());
    node.close_idle().await;
    drop(node);
    let path = dir.path().join("alice.redb");
    std::fs::write(&path, b"not an index at all").unwrap();
    let node = mailstore(dir.path(), backend.clone(), opts(1000));
    let user = node.user("alice").await.unwrap();
    assert_eq!(answers(&user.snapshot().unwrap()), expected);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("damaged"));
    assert!(aside, "the damaged file is kept for inspection");
    drop(user);
    node.close_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunged_bodies_are_deleted_only_after_the_index_stops_naming_them() {
    let backend = Arc::new(MemoryBackend::new());
    let dir = tempfile::tempdir().unwrap();
    // A long lag: only the expunge's own wait ships the index.
    let mut slow = opts(1000);
    slow.max_lag = Duration::from_secs(3600);
    let node = mailstore(dir.path(), backend.clone(), slow.clone());
    let user = node.user("alice").await.unwrap();
    let inbox = user
        .find(&user.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    let (_, uids) = user
        .append(inbox, (0..4).map(message).collect())
        .await
        .unwrap();
    user.expunge(inbox, uids[..2].to_vec()).await.unwrap();
    // The deletes follow the answer; once they are done, the store's chain already says the
    // messages are gone: a restore names no deleted body.
    user.release_graves().await;
    let (_keep, restored) = chain_answers(&*backend).await;
    let restored = restored.unwrap();
    for uid in [Uid(1), Uid(2)] {
        assert!(
            !restored.contains(&format!(
                "MessageRecord {{ mailbox: MailboxId(1), uid: {uid:?},"
            )),
            "{restored}"
        );
    }
    assert_eq!(restored.matches("MessageRecord {").count(), 2, "{restored}");
    drop(user);
    node.close_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_takes_the_user_over_and_the_first_stops_writing() {
    let backend = Arc::new(MemoryBackend::new());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = mailstore(dir_a.path(), backend.clone(), opts(1000));
    workload(&a, 1).await;
    let user_a = a.user("alice").await.unwrap();
    let inbox_a = user_a
        .find(&user_a.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    assert!(user_a.fenced().is_none());

    // B takes the user over: it restores what A shipped and goes on from there.
    let b = mailstore(dir_b.path(), backend.clone(), opts(1000));
    let user_b = b.user("alice").await.unwrap();
    assert_eq!(
        answers(&user_b.snapshot().unwrap())
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        answers(&user_a.snapshot().unwrap())
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        "B starts from A's state (MODSEQ aside: B's takeover is a commit of its own)"
    );
    let inbox_b = user_b
        .find(&user_b.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    user_b.append(inbox_b, vec![message(1000)]).await.unwrap();

    // A's next change is refused by the store: A stops writing and says why.
    let err = user_a
        .append(inbox_a, vec![message(2000)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotShipped(_)), "{err}");
    assert!(user_a.fenced().is_some(), "A knows it was fenced");
    let err = user_a.shipped().await.unwrap_err();
    assert!(err.to_string().contains("another node"), "{err}");

    // B keeps writing; the chain holds B's changes and none of A's after the takeover.
    user_b.append(inbox_b, vec![message(1001)]).await.unwrap();
    user_b.shipped().await.unwrap();
    let expected = answers(&user_b.snapshot().unwrap());
    let (_keep, restored) = chain_answers(&*backend).await;
    assert_eq!(restored.unwrap(), expected);
    let head = chain::read_head(&*backend).await.unwrap().unwrap();
    let sizes = chain::probe(&*backend, head.base).await.unwrap();
    let mut epochs = Vec::new();
    for seq in head.base..head.base + sizes.len() as u64 {
        epochs.push(chain::peek(&*backend, seq).await.unwrap().epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "epochs never go back: {epochs:?}"
    );
    assert!(
        !expected.contains("m2000"),
        "A's late message is not in the chain"
    );

    // A new login on A is refused while A's own sessions hold the fenced user.
    let Err(err) = a.user("alice").await else {
        panic!("a fenced user is not handed out while its sessions hold it")
    };
    assert!(err.to_string().contains("still hold"), "{err}");
    drop(user_a);
    drop(user_b);
    b.close_idle().await;
    a.close_idle().await;
}
