//! QRESYNC's expunge history: which UIDs left a mailbox since a MODSEQ, from the change log,
//! and an honest "unknown" once the log was trimmed past it.

use std::sync::Arc;

use strata_backend_api::MemoryBackend;
use strata_index::{Flags, IndexOptions, Modseq, StoreId};
use strata_mailstore::{AckPolicy, Appended, BodyStores, Mailstore, MailstoreOptions, Vanished};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunges_since_a_modseq_until_the_log_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let store = Mailstore::new(
        MailstoreOptions {
            index_dir: dir.path().to_path_buf(),
            append_ack: AckPolicy::SoftDone,
            read_concurrency: 8,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        Arc::new(move |_| Ok(BodyStores::new(StoreId(0), backend.clone()))),
    );
    let user = store.user("alice").await.unwrap();
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".to_string()]).unwrap().id;
    let junk = user.find(&snap, &["Junk".to_string()]).unwrap().id;
    let message = |i: usize| Appended {
        raw: format!("Subject: m{i}\r\n\r\nbody {i}\r\n")
            .into_bytes()
            .into(),
        flags: Flags::default(),
        internal_date: None,
    };
    let (_, uids) = user
        .append(inbox, (0..5).map(message).collect())
        .await
        .unwrap();
    let before = user.snapshot().unwrap().modseq();
    user.expunge(inbox, vec![uids[3], uids[1]]).await.unwrap();
    // A MOVE expunges from its source too; another mailbox's expunges are not INBOX's.
    user.move_messages(inbox, vec![uids[4]], junk)
        .await
        .unwrap();
    let (_, other) = user.append(junk, vec![message(9)]).await.unwrap();
    user.expunge(junk, other).await.unwrap();
    assert_eq!(
        user.vanished_since(inbox, before).unwrap(),
        Vanished::Exactly(vec![uids[1], uids[3], uids[4]])
    );
    let now = user.snapshot().unwrap().modseq();
    assert_eq!(
        user.vanished_since(inbox, now).unwrap(),
        Vanished::Exactly(vec![])
    );
    // Keep no history: what happened before now can no longer be told exactly.
    strata_index::repack(user.index(), Some(0)).await.unwrap();
    assert_eq!(
        user.vanished_since(inbox, before).unwrap(),
        Vanished::Unknown
    );
    assert_eq!(
        user.vanished_since(inbox, Modseq(now.0)).unwrap(),
        Vanished::Exactly(vec![])
    );
}
