//! Helpers shared by the mail store's tests.
#![allow(dead_code)]

use std::sync::Arc;

use strata_index::{Flags, Guid, IndexOptions, Parts, Snapshot};
use strata_mailstore::{
    AckPolicy, Appended, BodyRead, BodyStores, Mailstore, MailstoreOptions, UserStore,
};

/// A mail store in `dir` whose every user has `stores`, answering APPEND at soft-done, with
/// `read_concurrency` reads in flight per request.
pub fn mailstore(dir: &std::path::Path, stores: BodyStores, read_concurrency: usize) -> Mailstore {
    Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: AckPolicy::SoftDone,
            read_concurrency,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        Arc::new(move |_| Ok(stores.clone())),
    )
}

/// Appends the messages to INBOX; the reads of their whole bodies, in order.
pub async fn append(user: &UserStore, raws: &[Vec<u8>]) -> Vec<BodyRead> {
    let snap = user.snapshot().unwrap();
    let inbox = user.find(&snap, &["INBOX".into()]).unwrap().id;
    let msgs = raws
        .iter()
        .map(|raw| Appended {
            raw: raw.clone().into(),
            flags: Flags::default(),
            internal_date: None,
        })
        .collect();
    let (_, uids) = user.append(inbox, msgs).await.unwrap();
    let snap = user.snapshot().unwrap();
    let messages = snap.messages(inbox).unwrap();
    uids.iter()
        .map(|uid| {
            let m = messages.iter().find(|m| m.uid == *uid).unwrap();
            read_of(&snap, m.guid)
        })
        .collect()
}

/// The read of a content's whole body where `snap` says it is.
pub fn read_of(snap: &Snapshot, guid: Guid) -> BodyRead {
    let c = snap
        .content_parts(&guid, Parts::default())
        .unwrap()
        .unwrap();
    BodyRead {
        guid,
        location: c.location,
        range: None,
        size: c.size,
    }
}
