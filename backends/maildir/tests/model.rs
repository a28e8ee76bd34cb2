//! Property test: random batches (puts, deletes, copies, preconditions) applied to the Maildir
//! backend and to a plain map, compared after every batch, across reopening the tree.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use strata_backend_api::{Backend, Batch, Key, Op, Precondition};
use strata_backend_maildir::MaildirBackend;

const KEYS: [&str; 6] = ["a", "b", "c", ".Sent/a", ".Sent/d", ".Trash/e"];

#[derive(Clone, Debug)]
enum MOp {
    Put(usize, u8),
    Delete(usize),
    Copy(usize, usize),
}

#[derive(Clone, Debug)]
struct MBatch {
    ops: Vec<MOp>,
    absent: Option<usize>,
    exists: Option<usize>,
    reopen: bool,
}

fn batch() -> impl Strategy<Value = MBatch> {
    let op = prop_oneof![
        3 => (0..KEYS.len(), any::<u8>()).prop_map(|(k, v)| MOp::Put(k, v)),
        1 => (0..KEYS.len()).prop_map(MOp::Delete),
        2 => (0..KEYS.len(), 0..KEYS.len()).prop_map(|(a, b)| MOp::Copy(a, b)),
    ];
    (
        prop::collection::vec(op, 1..5),
        prop::option::weighted(0.2, 0..KEYS.len()),
        prop::option::weighted(0.2, 0..KEYS.len()),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ops, absent, exists, reopen)| MBatch {
            ops,
            absent,
            exists,
            reopen,
        })
}

fn key(i: usize) -> Key {
    Key::new(KEYS[i]).unwrap()
}

fn body(v: u8) -> Bytes {
    Bytes::from(format!(
        "Subject: {v}\r\n\r\n{}\r\n",
        "x".repeat(v as usize)
    ))
}

/// What the batch does to the model: `None` if the whole batch must fail.
fn apply(model: &BTreeMap<usize, Bytes>, b: &MBatch) -> Option<BTreeMap<usize, Bytes>> {
    if b.absent.is_some_and(|k| model.contains_key(&k))
        || b.exists.is_some_and(|k| !model.contains_key(&k))
    {
        return None;
    }
    let mut m = model.clone();
    for op in &b.ops {
        match op {
            MOp::Put(k, v) => {
                m.insert(*k, body(*v));
            }
            MOp::Delete(k) => {
                m.remove(k);
            }
            MOp::Copy(from, to) => {
                let data = m.get(from)?.clone();
                m.insert(*to, data);
            }
        }
    }
    Some(m)
}

fn to_batch(b: &MBatch) -> Batch {
    let mut out = Batch::new();
    for op in &b.ops {
        out.ops.push(match op {
            MOp::Put(k, v) => Op::Put {
                key: key(*k),
                data: body(*v),
            },
            MOp::Delete(k) => Op::Delete { key: key(*k) },
            MOp::Copy(a, c) => Op::Copy {
                from: key(*a),
                to: key(*c),
            },
        });
    }
    out.preconditions
        .extend(b.absent.map(|k| Precondition::Absent(key(k))));
    out.preconditions
        .extend(b.exists.map(|k| Precondition::Exists(key(k))));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn maildir_matches_a_map(batches in prop::collection::vec(batch(), 1..15)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Maildir");
        rt.block_on(async {
            let mut backend = MaildirBackend::open(&root).unwrap();
            let mut model: BTreeMap<usize, Bytes> = BTreeMap::new();
            for b in &batches {
                if b.reopen {
                    backend = MaildirBackend::open(&root).unwrap();
                }
                let want = apply(&model, b);
                let got = backend.commit(to_batch(b)).await;
                prop_assert_eq!(got.is_ok(), want.is_some(), "{:?}: {:?}", b, got.err());
                if let Some(m) = want {
                    model = m;
                }
                for (i, _) in KEYS.iter().enumerate() {
                    let stored = backend.get(&key(i), None).await.ok();
                    prop_assert_eq!(stored.as_ref(), model.get(&i), "key {}", KEYS[i]);
                }
                // No staged file is ever left behind.
                for d in [root.clone(), root.join(".Sent"), root.join(".Trash")] {
                    if let Ok(entries) = std::fs::read_dir(d.join("tmp")) {
                        prop_assert_eq!(entries.count(), 0);
                    }
                }
            }
            Ok(())
        })?;
    }
}
