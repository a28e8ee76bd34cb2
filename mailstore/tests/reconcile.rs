//! Reconciling a user's stores with the index: what nothing names goes, and nothing else — not
//! a body an APPEND has written but not yet recorded, not one an expunged message in a
//! session's view still names.

use std::sync::Arc;
use std::time::Duration;

use strata_backend_api::{Backend, Batch, Key, MemoryBackend};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};
use strata_index::{Flags, IndexOptions, StoreId};
use strata_mailstore::{AckPolicy, Appended, BodyStores, Mailstore, MailstoreOptions};

fn mailstore(dir: &std::path::Path, store: Arc<dyn Backend>, ack: AckPolicy) -> Mailstore {
    Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: ack,
            read_concurrency: 8,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        Arc::new(move |_| Ok(BodyStores::new(StoreId(0), store.clone()))),
    )
}

fn message(i: usize) -> Appended {
    Appended {
        raw: format!("Subject: m{i}\r\n\r\nbody {i}\r\n")
            .into_bytes()
            .into(),
        flags: Flags::default(),
        internal_date: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_nothing_names_go_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let store = mailstore(dir.path(), backend.clone(), AckPolicy::SoftDone);
    let user = store.user("alice").await.unwrap();
    let inbox = user
        .find(&user.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    let (_, uids) = user
        .append(inbox, (0..5).map(message).collect())
        .await
        .unwrap();
    // What crashes left: bodies written, never recorded.
    backend
        .commit(
            Batch::new()
                .put(Key::new("1.G0badf00d.strata").unwrap(), "x")
                .put(Key::new(".Junk/2.G0badf00d.strata").unwrap(), "yy")
                // Another program's delivery: not Strata's to delete.
                .put(Key::new("1700000000.M1P2.host").unwrap(), "zzzz"),
        )
        .await
        .unwrap();
    // A session still numbers the first message when another expunges it.
    let watch = user.watch(inbox);
    user.expunge(inbox, vec![uids[0]]).await.unwrap();
    let report = user.reconcile().await.unwrap();
    assert_eq!(
        (report.listed, report.removed, report.bytes, report.foreign),
        (8, 2, 3, 1)
    );
    assert_eq!(
        backend.list("").await.unwrap().len(),
        6,
        "the grave's body and the foreign file stay"
    );
    assert!(user.expunged(inbox, uids[0]).is_some());
    drop(watch);
    user.release_graves().await;
    assert_eq!(backend.list("").await.unwrap().len(), 5);
    let again = user.reconcile().await.unwrap();
    assert_eq!((again.removed, again.foreign), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_between_its_write_and_its_record_is_never_taken() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(MemoryBackend::new());
    // Written at once, acked a while later: the APPEND waits between the two, unrecorded.
    let slow_ack = Arc::new(DelayBackend::new(
        memory.clone() as Arc<dyn Backend>,
        DelayConfig {
            ack: Latency {
                fixed: Duration::from_millis(500),
                jitter: Duration::ZERO,
            },
            ..DelayConfig::default()
        },
    ));
    let store = mailstore(dir.path(), slow_ack, AckPolicy::Acked);
    let user = store.user("alice").await.unwrap();
    let inbox = user
        .find(&user.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    let appending = tokio::spawn({
        let user = user.clone();
        async move { user.append(inbox, vec![message(1)]).await }
    });
    // Its body is in the store; its record is not.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while memory.list("").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never written");
        tokio::task::yield_now().await;
    }
    assert!(!appending.is_finished());
    let report = user.reconcile().await.unwrap();
    assert_eq!((report.listed, report.removed), (1, 0));
    let (_, uids) = appending.await.unwrap().unwrap();
    assert_eq!(uids.len(), 1);
    assert_eq!(memory.list("").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_an_expunge_gave_up_stay_listed_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(MemoryBackend::new());
    let flaky = Arc::new(DelayBackend::new(
        memory.clone() as Arc<dyn Backend>,
        DelayConfig::default(),
    ));
    let store = mailstore(dir.path(), flaky.clone(), AckPolicy::SoftDone);
    let user = store.user("alice").await.unwrap();
    let inbox = user
        .find(&user.snapshot().unwrap(), &["INBOX".to_string()])
        .unwrap()
        .id;
    let (_, uids) = user
        .append(inbox, (0..3).map(message).collect())
        .await
        .unwrap();
    // The expunge is recorded; deleting its body fails (as if the process died right then).
    flaky.set_error_rate(1.0);
    user.expunge(inbox, vec![uids[1]]).await.unwrap();
    // The answer does not wait for the deletes; this waits for them to have been tried.
    user.release_graves().await;
    flaky.set_error_rate(0.0);
    assert_eq!(memory.list("").await.unwrap().len(), 3);
    let given_up = user.given_up();
    assert_eq!(given_up.len(), 1, "a rebuild from the store must skip it");
    // The list survives a restart of the store.
    drop(user);
    store.close_idle().await;
    let user = store.user("alice").await.unwrap();
    assert_eq!(user.given_up(), given_up);
    let report = user.reconcile().await.unwrap();
    assert_eq!(report.removed, 1);
    assert!(user.given_up().is_empty());
    assert_eq!(memory.list("").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_over_every_user_lets_go_of_each_no_session_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = mailstore(
        dir.path(),
        Arc::new(MemoryBackend::new()),
        AckPolicy::SoftDone,
    );
    let held = store.user("alice").await.unwrap();
    let bob = store.user("bob").await.unwrap();
    bob.reconcile().await.unwrap();
    drop(bob);
    assert!(!store.close_if_idle("alice").await, "a session holds alice");
    assert!(store.close_if_idle("bob").await);
    assert!(!store.close_if_idle("bob").await, "already closed");
    let open: Vec<String> = store
        .open_users()
        .iter()
        .map(|u| u.name().to_string())
        .collect();
    assert_eq!(open, ["alice"]);
    // Closed cleanly: it opens again without recovery.
    let bob = store.user("bob").await.unwrap();
    assert!(!bob.recovery().unclean_shutdown);
    drop(held);
}
