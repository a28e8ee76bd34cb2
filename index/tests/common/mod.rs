//! Helpers shared by the index's integration tests.
#![allow(dead_code)]

use strata_index::*;

/// A content record whose id, size and body key are derived from `n`, so equal `n` means equal
/// content.
pub fn content(n: u64) -> ContentRecord {
    let mut guid = [0u8; 16];
    guid[..8].copy_from_slice(&n.to_be_bytes());
    guid[8] = 0xc0;
    ContentRecord {
        guid: Guid(guid),
        size: 1000 + n,
        location: BodyLocation {
            store: StoreId(1),
            key: format!("{:02x}/{n:016x}", n % 251),
        },
        parsed: ParsedMessage {
            envelope: Envelope {
                subject: Some(format!("message {n}").into_bytes()),
                from: vec![Address {
                    name: Some(b"Alice".to_vec()),
                    adl: None,
                    mailbox: Some(b"alice".to_vec()),
                    host: Some(b"example.org".to_vec()),
                }],
                message_id: Some(format!("<{n}@example.org>").into_bytes()),
                ..Envelope::default()
            },
            structure: MimePart {
                media_type: b"text".to_vec(),
                subtype: b"plain".to_vec(),
                params: vec![Param {
                    name: b"charset".to_vec(),
                    value: b"utf-8".to_vec(),
                }],
                header_offset: 0,
                body_offset: 200,
                end_offset: 1000 + n,
                lines: Some(20),
                ..MimePart::default()
            },
            headers: vec![HeaderField {
                name: "Subject".into(),
                value: format!("message {n}").into_bytes(),
                unspaced: false,
            }],
            preview: format!("preview of message {n}"),
        },
    }
}

/// A new message with content `n` and the given system flags.
pub fn message(n: u64, system: SystemFlags) -> NewMessage {
    NewMessage {
        content: content(n),
        flags: Flags::system(system),
        internal_date: Timestamp {
            unix: 1_700_000_000 + n as i64,
            offset_minutes: 60,
        },
    }
}

/// A top-level mailbox to create.
pub fn top(name: &str) -> NewMailbox {
    NewMailbox {
        parent: None,
        name: name.into(),
        special_use: None,
    }
}

/// A multi-threaded runtime for tests that drive the index from synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends messages with contents `range`, 500 per MULTIAPPEND; returns their UIDs.
pub async fn fill(index: &UserIndex, mb: MailboxId, range: std::ops::Range<u64>) -> Vec<Uid> {
    let all: Vec<u64> = range.collect();
    let mut uids = Vec::new();
    for chunk in all.chunks(500) {
        let msgs = chunk
            .iter()
            .map(|&n| message(n, SystemFlags::empty()))
            .collect();
        uids.extend(index.append(mb, msgs).await.unwrap());
    }
    uids
}

/// Applies a STORE of system flags and returns what it did.
pub async fn store_system(
    index: &UserIndex,
    mb: MailboxId,
    uids: Vec<Uid>,
    op: StoreOp,
    flags: SystemFlags,
) -> StoreOutcome {
    index
        .store(mb, uids, op, Flags::system(flags), None)
        .await
        .unwrap()
}
