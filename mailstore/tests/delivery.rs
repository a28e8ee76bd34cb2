//! One message delivered to many users: users who share a store get it in one batch that puts
//! it once and copies it to the others, each with their own record, quota and metadata; a
//! user over quota is refused alone; a user on a store of their own gets a put of their own.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use strata_backend_api::{Backend, Batch, Key, MemoryBackend, Observed, Prefixed};
use strata_index::{IndexOptions, StoreId};
use strata_mailstore::quota::Limits;
use strata_mailstore::{
    AckPolicy, BodyStores, Mailstore, MailstoreOptions, Prepared, StoreError, UserStore, delivery,
};

const MAIN: StoreId = StoreId(0);

/// A mail store whose users share `shared`, except `loner`, who has a store of their own.
fn mailstore(dir: &std::path::Path, shared: Arc<Observed>, own: Arc<Observed>) -> Mailstore {
    Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: AckPolicy::Acked,
            read_concurrency: 8,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        Arc::new(move |user: &str| {
            if user == "loner" {
                return Ok(BodyStores::new(MAIN, own.clone() as Arc<dyn Backend>));
            }
            let view = Prefixed::new(shared.clone() as Arc<dyn Backend>, user)?;
            Ok(BodyStores::shared(MAIN, Arc::new(view)))
        }),
    )
}

/// The only message in `user`'s INBOX, read whole.
async fn only_message(user: &UserStore) -> Vec<u8> {
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let messages = snap.messages(inbox).unwrap();
    assert_eq!(messages.len(), 1);
    let read = common::read_of(&snap, messages[0].guid);
    let got: Vec<_> = user.bodies(vec![read]).collect().await;
    got[0].as_ref().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sharing_a_store_get_the_message_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    let own = Arc::new(Observed::new(Arc::new(MemoryBackend::new())));
    let store = mailstore(dir.path(), shared.clone(), own.clone());
    let mut names: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    names.push("loner".into());
    let mut targets = Vec::new();
    for name in &names {
        let user = store.user(name).await.unwrap();
        let inbox = user.ensure(vec!["INBOX".into()]).await.unwrap().id;
        targets.push((user, inbox));
    }
    // user3 has room for nothing more.
    targets[3].0.set_limits(Limits {
        storage: Some(10),
        messages: None,
    });
    shared.reset();
    let raw = format!("Subject: to all\r\n\r\n{}\r\n", "body ".repeat(20_000)).into_bytes();
    let message = Prepared::parse(raw.clone().into()).await;
    let outcomes = delivery::deliver(&targets, &message).await;

    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (3, Err(StoreError::OverQuota(_))) => {}
            (3, other) => panic!("user3 over quota got {other:?}"),
            (_, Ok((_, uid))) => assert_eq!(uid.0, 1, "{}", names[i]),
            (_, Err(e)) => panic!("{}: {e}", names[i]),
        }
    }
    // Nine users of the shared store: one batch, the bytes once, eight copies.
    let c = shared.committed();
    assert_eq!(
        (c.batches, c.puts, c.put_bytes, c.copies),
        (1, 1, raw.len() as u64, 8),
        "{c:?}"
    );
    // The one on a store of their own: a put there.
    assert_eq!(own.committed().puts, 1);
    for (i, (user, _)) in targets.iter().enumerate() {
        if i == 3 {
            let snap = user.snapshot().unwrap();
            let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
            assert!(snap.messages(inbox).unwrap().is_empty());
            continue;
        }
        assert_eq!(only_message(user).await, raw, "{}", names[i]);
    }
    let usage = targets[0].0.usage().unwrap();
    assert_eq!((usage.messages, usage.storage), (1, raw.len() as u64));
    // Each user's copy is an object of their own: deleting the one that was put leaves the
    // copies readable.
    let snap = targets[0].0.snapshot().unwrap();
    let guid = snap.messages(targets[0].1).unwrap()[0].guid;
    let put = common::read_of(&snap, guid).location.key;
    shared
        .commit(Batch::new().delete(Key::new(format!("user0/{put}")).unwrap()))
        .await
        .unwrap();
    assert!(
        targets[0]
            .0
            .bodies(vec![common::read_of(&snap, guid)])
            .next()
            .await
            .unwrap()
            .is_err()
    );
    for i in [1, 2, 4, 9] {
        assert_eq!(only_message(&targets[i].0).await, raw, "{}", names[i]);
    }
}
