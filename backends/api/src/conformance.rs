//! The contract every backend keeps, as checks any backend's tests can run:
//! `conformance::run_all(|| async { Arc::new(MyBackend::new(..)) as Arc<dyn Backend> }).await`.
//! Each check is named after the rule it checks and gets a fresh, empty backend.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::backend::{Backend, Read};
use crate::batch::Batch;
use crate::error::ErrorKind;
use crate::key::Key;

type Outcome = Result<(), String>;
type Check = fn(Arc<dyn Backend>) -> BoxFuture<'static, Outcome>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The suite's keys are `name` or `.folder/name`, the shapes every backend accepts (Maildir
/// keeps folders as Maildir++ `.Folder` directories).
fn k(s: &str) -> Key {
    Key::new(s).expect("the suite's keys are valid")
}

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn read(b: &Arc<dyn Backend>, key: &str) -> Result<Bytes, String> {
    b.get(&k(key), None).await.map_err(fail)
}

async fn missing(b: &Arc<dyn Backend>, key: &str) -> Outcome {
    match b.get(&k(key), None).await {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{key}: expected NotFound, got {e}")),
        Ok(_) => Err(format!("{key} exists")),
    }
}

async fn put_then_get_returns_the_bytes(b: Arc<dyn Backend>) -> Outcome {
    b.commit(Batch::new().put(k(".a/1"), "hello"))
        .await
        .map_err(fail)?;
    ensure!(read(&b, ".a/1").await? == "hello", "wrong bytes");
    ensure!(b.size(&k(".a/1")).await.map_err(fail)? == 5, "wrong size");
    Ok(())
}

async fn labels_never_change_what_is_read(b: Arc<dyn Backend>) -> Outcome {
    b.commit(
        Batch::new()
            .put(k(".a/1700000000.x"), "labelled")
            .put(k("top"), "t"),
    )
    .await
    .map_err(fail)?;
    let label = |flags: &str, kw: &[&str]| crate::Label {
        flags: flags.into(),
        keywords: kw.iter().map(|s| s.to_string()).collect(),
    };
    b.set_labels(vec![
        (k(".a/1700000000.x"), label("FS", &["$Important"])),
        (k("top"), label("T", &[])),
        (k(".a/never-stored"), label("S", &[])),
    ])
    .await
    .map_err(fail)?;
    ensure!(
        read(&b, ".a/1700000000.x").await? == "labelled",
        "bytes changed"
    );
    ensure!(read(&b, "top").await? == "t", "bytes changed");
    missing(&b, ".a/never-stored").await?;
    // Labelled again, then replaced and deleted as any object.
    b.set_labels(vec![(k(".a/1700000000.x"), label("", &[]))])
        .await
        .map_err(fail)?;
    b.commit(Batch::new().put(k(".a/1700000000.x"), "again"))
        .await
        .map_err(fail)?;
    ensure!(
        read(&b, ".a/1700000000.x").await? == "again",
        "not replaced"
    );
    b.commit(Batch::new().delete(k(".a/1700000000.x")))
        .await
        .map_err(fail)?;
    missing(&b, ".a/1700000000.x").await
}

fn sample_meta(mailbox: u64, name: &str) -> crate::BodyMeta {
    crate::BodyMeta {
        user: "u@example.org".into(),
        mailbox,
        mailbox_name: name.into(),
        guid: "0123456789abcdef0123456789abcdef".into(),
        internal_date: 1_700_000_000,
        zone_minutes: 60,
        saved: 1_700_000_500,
        size: 4,
    }
}

async fn metadata_is_kept_beside_the_object(b: Arc<dyn Backend>) -> Outcome {
    let keeps = b.capabilities().metadata;
    let want = |m: crate::BodyMeta| if keeps { Some(m) } else { None };
    let first = sample_meta(3, "Grüße/Sent 100%");
    b.commit(
        Batch::new()
            .put(k(".a/m1"), "body")
            .meta(k(".a/m1"), first.clone())
            .put(k("plain"), "p"),
    )
    .await
    .map_err(fail)?;
    ensure!(
        read(&b, ".a/m1").await? == "body",
        "metadata changed the bytes"
    );
    let got = b.meta(&k(".a/m1")).await.map_err(fail)?;
    ensure!(got == want(first), "after a put with metadata: {got:?}");
    let got = b.meta(&k("plain")).await.map_err(fail)?;
    ensure!(got.is_none(), "an object put without metadata has {got:?}");
    // Recorded again on the stored object (a MOVE), and skipped for a key not stored.
    let moved = sample_meta(9, "Archive");
    b.commit(
        Batch::new()
            .meta(k(".a/m1"), moved.clone())
            .meta(k(".a/never-stored"), moved.clone()),
    )
    .await
    .map_err(fail)?;
    ensure!(
        read(&b, ".a/m1").await? == "body",
        "metadata changed the bytes"
    );
    let got = b.meta(&k(".a/m1")).await.map_err(fail)?;
    ensure!(got == want(moved), "after a later Meta: {got:?}");
    missing(&b, ".a/never-stored").await?;
    match b.meta(&k(".a/never-stored")).await {
        Err(e) if e.kind == ErrorKind::NotFound => {}
        other => return Err(format!("meta of a missing key: {other:?}")),
    }
    // A put replaces the object, metadata and all.
    b.commit(Batch::new().put(k(".a/m1"), "new"))
        .await
        .map_err(fail)?;
    let got = b.meta(&k(".a/m1")).await.map_err(fail)?;
    ensure!(got.is_none(), "a replaced object kept {got:?}");
    // One object put and copied in the same batch, each copy with metadata of its own (one
    // message delivered to many users), and a copy onto itself.
    let owners: Vec<crate::BodyMeta> = (0..4).map(|i| sample_meta(i, "INBOX")).collect();
    let mut batch = Batch::new()
        .put(k(".d/0"), "body")
        .meta(k(".d/0"), owners[0].clone());
    for (i, m) in owners.iter().enumerate().skip(1) {
        batch = batch
            .copy(k(".d/0"), k(&format!(".d/{i}")))
            .meta(k(&format!(".d/{i}")), m.clone());
    }
    b.commit(batch.copy(k(".d/0"), k(".d/0")))
        .await
        .map_err(fail)?;
    for (i, m) in owners.into_iter().enumerate() {
        let key = format!(".d/{i}");
        ensure!(read(&b, &key).await? == "body", "{key} after the copies");
        let got = b.meta(&k(&key)).await.map_err(fail)?;
        ensure!(got == want(m), "{key} copied with metadata: {got:?}");
    }
    Ok(())
}

async fn listing_names_every_key_with_its_size(b: Arc<dyn Backend>) -> Outcome {
    b.commit(
        Batch::new()
            .put(k("top1"), "1")
            .put(k(".a/x1"), "22")
            .put(k(".a/x2"), "333")
            .put(k(".b/y"), "4444")
            .put(k(".a/gone"), "5"),
    )
    .await
    .map_err(fail)?;
    b.commit(Batch::new().delete(k(".a/gone")).put(k("top1"), "one"))
        .await
        .map_err(fail)?;
    let names = |l: Vec<crate::Listed>| {
        let mut v: Vec<(String, u64)> =
            l.into_iter().map(|l| (l.key.to_string(), l.size)).collect();
        v.sort();
        v
    };
    let all = names(b.list("").await.map_err(fail)?);
    let want: Vec<(String, u64)> = vec![
        (".a/x1".into(), 2),
        (".a/x2".into(), 3),
        (".b/y".into(), 4),
        ("top1".into(), 3),
    ];
    ensure!(all == want, "listed {all:?}, not {want:?}");
    let a = names(b.list(".a/").await.map_err(fail)?);
    ensure!(a == want[..2], "under .a/: {a:?}");
    let x = names(b.list(".a/x2").await.map_err(fail)?);
    ensure!(x == want[1..2], "under .a/x2: {x:?}");
    ensure!(
        b.list(".zz/").await.map_err(fail)?.is_empty(),
        "listed what is not there"
    );
    Ok(())
}

async fn a_put_replaces_what_was_there(b: Arc<dyn Backend>) -> Outcome {
    b.commit(Batch::new().put(k("x"), "one"))
        .await
        .map_err(fail)?;
    b.commit(Batch::new().put(k("x"), "two!"))
        .await
        .map_err(fail)?;
    ensure!(read(&b, "x").await? == "two!", "not replaced");
    Ok(())
}

async fn a_missing_key_is_not_found_and_not_retryable(b: Arc<dyn Backend>) -> Outcome {
    missing(&b, "nope").await?;
    match b.size(&k("nope")).await {
        Err(e) if e.kind == ErrorKind::NotFound && !e.is_retryable() => Ok(()),
        other => Err(format!("size of a missing key: {other:?}")),
    }
}

async fn delete_removes_and_a_missing_key_is_no_error(b: Arc<dyn Backend>) -> Outcome {
    b.commit(Batch::new().put(k("d"), "x"))
        .await
        .map_err(fail)?;
    b.commit(Batch::new().delete(k("d")).delete(k("never")))
        .await
        .map_err(fail)?;
    missing(&b, "d").await
}

async fn a_batch_is_all_or_nothing(b: Arc<dyn Backend>) -> Outcome {
    b.commit(Batch::new().put(k("c"), "here"))
        .await
        .map_err(fail)?;
    let failed = b
        .commit(
            Batch::new()
                .put(k("p1"), "1")
                .put(k("p2"), "2")
                .require_absent(k("c")),
        )
        .await;
    ensure!(
        matches!(&failed, Err(e) if e.kind == ErrorKind::Conflict),
        "a failed precondition gave {failed:?}"
    );
    missing(&b, "p1").await?;
    missing(&b, "p2").await?;
    let failed = b
        .commit(Batch::new().put(k("p3"), "3").copy(k("ghost"), k("p4")))
        .await;
    ensure!(
        matches!(&failed, Err(e) if e.kind == ErrorKind::NotFound),
        "a copy of a missing key gave {failed:?}"
    );
    missing(&b, "p3").await?;
    missing(&b, "p4").await?;
    b.commit(
        Batch::new()
            .put(k("p5"), "5")
            .require_exists(k("c"))
            .require_absent(k("p5")),
    )
    .await
    .map_err(fail)?;
    ensure!(
        read(&b, "p5").await? == "5",
        "a batch whose preconditions held was not applied"
    );
    Ok(())
}

async fn ops_apply_in_order(b: Arc<dyn Backend>) -> Outcome {
    b.commit(
        Batch::new()
            .put(k(".o/a"), "1")
            .copy(k(".o/a"), k(".o/b"))
            .put(k(".o/a"), "2")
            .put(k(".o/c"), "3")
            .delete(k(".o/c")),
    )
    .await
    .map_err(fail)?;
    ensure!(read(&b, ".o/a").await? == "2", "o/a");
    ensure!(
        read(&b, ".o/b").await? == "1",
        "the copy did not see the earlier put"
    );
    missing(&b, ".o/c").await
}

async fn range_reads_return_the_range_clamped_to_the_end(b: Arc<dyn Backend>) -> Outcome {
    b.commit(Batch::new().put(k("r"), "0123456789"))
        .await
        .map_err(fail)?;
    let r = |a: u64, z: u64| {
        let b = b.clone();
        async move { b.get(&k("r"), Some(a..z)).await.map_err(fail) }
    };
    ensure!(r(2, 5).await? == "234", "2..5");
    ensure!(r(7, 100).await? == "789", "7..100");
    ensure!(r(10, 12).await?.is_empty(), "10..12");
    ensure!(r(50, 60).await?.is_empty(), "50..60");
    Ok(())
}

async fn get_many_answers_in_request_order(b: Arc<dyn Backend>) -> Outcome {
    let mut batch = Batch::new();
    for i in 0..60 {
        batch = batch.put(k(&format!(".m/{i}")), format!("body {i}"));
    }
    b.commit(batch).await.map_err(fail)?;
    let mut reads: Vec<Read> = (0..60)
        .rev()
        .map(|i| Read::whole(k(&format!(".m/{i}"))))
        .collect();
    reads.insert(30, Read::whole(k(".m/missing")));
    reads.push(Read {
        key: k(".m/7"),
        range: Some(5..6),
    });
    let answers: Vec<_> = b.get_many(reads, 8).collect().await;
    ensure!(
        answers.len() == 62,
        "{} answers for 62 reads",
        answers.len()
    );
    for (i, a) in answers.iter().enumerate() {
        let want = match i {
            30 => {
                ensure!(
                    matches!(a, Err(e) if e.kind == ErrorKind::NotFound),
                    "answer 30: {a:?}"
                );
                continue;
            }
            61 => "7".to_string(),
            i if i < 30 => format!("body {}", 59 - i),
            i => format!("body {}", 60 - i),
        };
        ensure!(
            a.as_ref().map_err(fail)? == want.as_bytes(),
            "answer {i} is {a:?}, not {want}"
        );
    }
    Ok(())
}

async fn receipts_are_numbered_and_acked_in_commit_order(b: Arc<dyn Backend>) -> Outcome {
    let mut receipts = Vec::new();
    for i in 0..5 {
        receipts.push(
            b.commit(Batch::new().put(k(&format!(".s/{i}")), "x"))
                .await
                .map_err(fail)?,
        );
    }
    ensure!(
        receipts.windows(2).all(|w| w[0].seq() < w[1].seq()),
        "sequence numbers do not increase"
    );
    receipts.last().unwrap().acked().await.map_err(fail)?;
    ensure!(
        receipts.iter().all(|r| r.is_acked()),
        "a later batch was acked before an earlier one"
    );
    Ok(())
}

async fn flush_waits_for_everything_committed(b: Arc<dyn Backend>) -> Outcome {
    let mut last = 0;
    for i in 0..3 {
        last = b
            .commit(Batch::new().put(k(&format!(".f/{i}")), "x"))
            .await
            .map_err(fail)?
            .seq();
    }
    b.flush(last).await.map_err(fail)?;
    for i in 0..3 {
        ensure!(read(&b, &format!(".f/{i}")).await? == "x", "f/{i}");
    }
    Ok(())
}

async fn large_objects_round_trip(b: Arc<dyn Backend>) -> Outcome {
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    b.commit(Batch::new().put(k("big"), data.clone()))
        .await
        .map_err(fail)?;
    ensure!(read(&b, "big").await? == data, "4 MiB object changed");
    ensure!(
        b.get(&k("big"), Some(1_000_000..1_000_010))
            .await
            .map_err(fail)?
            == data[1_000_000..1_000_010],
        "range of a large object"
    );
    Ok(())
}

async fn concurrent_commits_all_land(b: Arc<dyn Backend>) -> Outcome {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                b.commit(Batch::new().put(k(&format!(".cc/{i}")), format!("{i}")))
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.map_err(fail)?.map_err(fail)?.seq());
    }
    seqs.sort_unstable();
    seqs.dedup();
    ensure!(seqs.len() == 20, "sequence numbers were reused");
    for i in 0..20 {
        ensure!(
            read(&b, &format!(".cc/{i}")).await? == format!("{i}").as_bytes(),
            "cc/{i}"
        );
    }
    Ok(())
}

/// Random batches (puts, deletes, copies, preconditions) checked against a map after each one.
async fn random_batches_match_a_map(b: Arc<dyn Backend>) -> Outcome {
    use rand::{Rng, SeedableRng};
    const KEYS: [&str; 6] = ["a", "b", "c", ".Sent/a", ".Sent/d", ".Trash/e"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut model: std::collections::BTreeMap<usize, Bytes> = std::collections::BTreeMap::new();
    for round in 0..150 {
        let mut batch = Batch::new();
        let mut next = Some(model.clone());
        if rng.random_bool(0.15) {
            let i = rng.random_range(0..KEYS.len());
            batch = batch.require_absent(k(KEYS[i]));
            if model.contains_key(&i) {
                next = None;
            }
        }
        if rng.random_bool(0.15) {
            let i = rng.random_range(0..KEYS.len());
            batch = batch.require_exists(k(KEYS[i]));
            if !model.contains_key(&i) {
                next = None;
            }
        }
        for _ in 0..rng.random_range(1..5) {
            let i = rng.random_range(0..KEYS.len());
            match rng.random_range(0..6) {
                0..3 => {
                    let data = Bytes::from(format!("round {round} key {i}"));
                    if let Some(m) = next.as_mut() {
                        m.insert(i, data.clone());
                    }
                    batch = batch.put(k(KEYS[i]), data);
                }
                3 => {
                    if let Some(m) = next.as_mut() {
                        m.remove(&i);
                    }
                    batch = batch.delete(k(KEYS[i]));
                }
                _ => {
                    let to = rng.random_range(0..KEYS.len());
                    next = next.and_then(|mut m| {
                        let data = m.get(&i)?.clone();
                        m.insert(to, data);
                        Some(m)
                    });
                    batch = batch.copy(k(KEYS[i]), k(KEYS[to]));
                }
            }
        }
        let got = b.commit(batch.clone()).await;
        ensure!(
            got.is_ok() == next.is_some(),
            "round {round}: {batch:?} gave {:?}",
            got.err()
        );
        if let Some(m) = next {
            model = m;
        }
        for (i, key) in KEYS.iter().enumerate() {
            let stored = b.get(&k(key), None).await.ok();
            ensure!(
                stored.as_ref() == model.get(&i),
                "round {round}: {key} is {stored:?}"
            );
        }
    }
    Ok(())
}

/// Every rule, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("put_then_get_returns_the_bytes", |b| {
        Box::pin(put_then_get_returns_the_bytes(b))
    }),
    ("a_put_replaces_what_was_there", |b| {
        Box::pin(a_put_replaces_what_was_there(b))
    }),
    ("a_missing_key_is_not_found_and_not_retryable", |b| {
        Box::pin(a_missing_key_is_not_found_and_not_retryable(b))
    }),
    ("delete_removes_and_a_missing_key_is_no_error", |b| {
        Box::pin(delete_removes_and_a_missing_key_is_no_error(b))
    }),
    ("a_batch_is_all_or_nothing", |b| {
        Box::pin(a_batch_is_all_or_nothing(b))
    }),
    ("ops_apply_in_order", |b| Box::pin(ops_apply_in_order(b))),
    ("range_reads_return_the_range_clamped_to_the_end", |b| {
        Box::pin(range_reads_return_the_range_clamped_to_the_end(b))
    }),
    ("get_many_answers_in_request_order", |b| {
        Box::pin(get_many_answers_in_request_order(b))
    }),
    ("receipts_are_numbered_and_acked_in_commit_order", |b| {
        Box::pin(receipts_are_numbered_and_acked_in_commit_order(b))
    }),
    ("flush_waits_for_everything_committed", |b| {
        Box::pin(flush_waits_for_everything_committed(b))
    }),
    ("large_objects_round_trip", |b| {
        Box::pin(large_objects_round_trip(b))
    }),
    ("concurrent_commits_all_land", |b| {
        Box::pin(concurrent_commits_all_land(b))
    }),
    ("random_batches_match_a_map", |b| {
        Box::pin(random_batches_match_a_map(b))
    }),
    ("labels_never_change_what_is_read", |b| {
        Box::pin(labels_never_change_what_is_read(b))
    }),
    ("listing_names_every_key_with_its_size", |b| {
        Box::pin(listing_names_every_key_with_its_size(b))
    }),
    ("metadata_is_kept_beside_the_object", |b| {
        Box::pin(metadata_is_kept_beside_the_object(b))
    }),
];

/// Runs every check, each on a fresh backend from `make`, and panics listing every rule broken.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Backend>>,
{
    let mut broken = Vec::new();
    for (name, check) in CHECKS {
        let backend = make().await;
        let who = backend.name().to_string();
        if let Err(e) = check(backend).await {
            broken.push(format!("{who}: {name}: {e}"));
        }
    }
    assert!(
        broken.is_empty(),
        "backend contract broken:\n{}",
        broken.join("\n")
    );
}
