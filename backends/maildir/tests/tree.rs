//! The Maildir tree: every user's Maildir under one root, alone and behind the staging journal,
//! keeps the contract and writes the files a user's own Maildir backend would.

use std::sync::Arc;
use std::time::Duration;

use strata_backend_api::{Backend, Batch, ErrorKind, Key, Prefixed, conformance};
use strata_backend_journal::{Journal, JournalOptions};
use strata_backend_maildir::{MaildirBackend, MaildirTree};
use tempfile::TempDir;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_view_of_the_tree_keeps_the_contract() {
    let dir = TempDir::new().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::run_all(|| {
        let user = format!("u{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let tree = Arc::new(MaildirTree::open(dir.path()).unwrap());
        async move { Arc::new(Prefixed::new(tree, &user).unwrap()) as Arc<dyn Backend> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_behind_the_journal_keeps_the_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = TempDir::new().unwrap();
        let root = dir.path().join("mail");
        let journal = dir.path().join("journal");
        dirs.lock().unwrap().push(dir);
        async move {
            let tree = Arc::new(MaildirTree::open(root).unwrap());
            let j = Journal::open(tree, JournalOptions::new(journal))
                .await
                .unwrap();
            Arc::new(Prefixed::new(Arc::new(j), "alice").unwrap()) as Arc<dyn Backend>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_bodies_end_up_as_each_users_maildir_files() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("mail");
    let tree = Arc::new(MaildirTree::open(&root).unwrap());
    let journal = Arc::new(
        Journal::open(tree, JournalOptions::new(dir.path().join("journal")))
            .await
            .unwrap(),
    );
    let alice = Prefixed::new(journal.clone(), "alice").unwrap();
    let bob = Prefixed::new(journal.clone(), "bob").unwrap();
    alice
        .commit(Batch::new().put(key("1"), "to alice"))
        .await
        .unwrap();
    let last = bob
        .commit(Batch::new().put(key(".Work/2"), "to bob"))
        .await
        .unwrap();
    last.acked().await.unwrap();
    assert_eq!(journal.stats().pending_batches, 0);

    // Each user's files are where that user's own Maildir backend (and any Maildir tool) reads.
    let a = MaildirBackend::open(root.join("alice")).unwrap();
    assert_eq!(a.get(&key("1"), None).await.unwrap(), "to alice");
    assert!(root.join("alice/cur/1:2,").exists());
    let b = MaildirBackend::open(root.join("bob")).unwrap();
    assert_eq!(b.get(&key(".Work/2"), None).await.unwrap(), "to bob");
    assert!(root.join("bob/.Work/cur/2:2,").exists());
    assert_eq!(
        a.get(&key("2"), None).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_writes_the_files_a_crash_left_in_the_journal() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("mail");
    let journal_dir = dir.path().join("journal");
    // A store that never acks stands for a process killed before the files were written.
    let stuck = Arc::new(strata_backend_delay::DelayBackend::new(
        Arc::new(MaildirTree::open(&root).unwrap()) as Arc<dyn Backend>,
        strata_backend_delay::DelayConfig {
            error_rate: 1.0,
            ..Default::default()
        },
    ));
    let j = Journal::open(stuck, JournalOptions::new(&journal_dir))
        .await
        .unwrap();
    let view = Prefixed::new(Arc::new(j), "carol").unwrap();
    view.commit(Batch::new().put(key("9"), "kept"))
        .await
        .unwrap();
    assert_eq!(view.get(&key("9"), None).await.unwrap(), "kept");
    assert!(!root.join("carol/cur/9:2,").exists());
    drop(view);

    let tree = Arc::new(MaildirTree::open(&root).unwrap());
    let j = Journal::open(tree, JournalOptions::new(&journal_dir))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while j.stats().pending_batches != 0 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(j.stats().pending_batches, 0);
    assert_eq!(std::fs::read(root.join("carol/cur/9:2,")).unwrap(), b"kept");
}

#[tokio::test]
async fn keys_without_a_user_and_copies_out_of_order_are_refused() {
    let dir = TempDir::new().unwrap();
    let tree = MaildirTree::open(dir.path()).unwrap();
    let e = tree
        .commit(Batch::new().put(key("1"), "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidKey);
    tree.commit(Batch::new().put(key("a/1"), "x"))
        .await
        .unwrap();
    // b's part goes first, a's after it: the copy could not see a's put.
    let e = tree
        .commit(
            Batch::new()
                .put(key("b/0"), "y")
                .put(key("a/1"), "new")
                .copy(key("a/1"), key("b/1")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let e = tree
        .commit(Batch::new().copy(key("a/1"), key("b/1")).delete(key("a/1")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(!dir.path().join("b/cur/1:2,").exists());
}

#[tokio::test]
async fn a_copy_between_users_is_one_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new().unwrap();
    let tree = MaildirTree::open(dir.path()).unwrap();
    // One message to three users, one of them into a folder; and a copy of a stored file.
    tree.commit(
        Batch::new()
            .put(key("a/1"), "mail")
            .copy(key("a/1"), key("b/1"))
            .copy(key("a/1"), key("c/.Lists/1")),
    )
    .await
    .unwrap();
    tree.commit(Batch::new().copy(key("c/.Lists/1"), key("d/2")))
        .await
        .unwrap();
    let files = [
        "a/cur/1:2,",
        "b/cur/1:2,",
        "c/.Lists/cur/1:2,",
        "d/cur/2:2,",
    ];
    let inodes: Vec<(u64, u64)> = files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(dir.path().join(f)).unwrap();
            (m.ino(), m.nlink())
        })
        .collect();
    assert!(inodes.iter().all(|&i| i == (inodes[0].0, 4)), "{inodes:?}");
    for k in ["a/1", "b/1", "c/.Lists/1", "d/2"] {
        assert_eq!(tree.get(&key(k), None).await.unwrap(), "mail");
    }
    // Each user's file is theirs: deleting one leaves the others.
    tree.commit(Batch::new().delete(key("a/1"))).await.unwrap();
    assert_eq!(tree.get(&key("b/1"), None).await.unwrap(), "mail");
}
