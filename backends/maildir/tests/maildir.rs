//! The Maildir backend keeps the contract and leaves a tree other Maildir tools can read.

use std::sync::Arc;

use strata_backend_api::{Backend, Batch, ErrorKind, Key, conformance};
use strata_backend_maildir::MaildirBackend;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::run_all(|| {
        let root = dir.path().join(format!(
            "m{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        async move { Arc::new(MaildirBackend::open(root).unwrap()) as Arc<dyn Backend> }
    })
    .await;
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn messages_are_files_where_maildir_tools_look() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    b.commit(
        Batch::new()
            .put(key("1700000000.M1P2.host"), "Subject: one\r\n\r\nbody\r\n")
            .put(key(".Sent/1700000001.M3P4.host"), "Subject: two\r\n\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(names(&root.join("cur")), ["1700000000.M1P2.host:2,"]);
    assert_eq!(names(&root.join(".Sent/cur")), ["1700000001.M3P4.host:2,"]);
    assert!(names(&root.join("tmp")).is_empty());
    assert!(names(&root.join(".Sent/tmp")).is_empty());
    assert_eq!(
        std::fs::read_to_string(root.join("cur/1700000000.M1P2.host:2,")).unwrap(),
        "Subject: one\r\n\r\nbody\r\n"
    );
    // A copy is a second file with the same bytes.
    b.commit(Batch::new().copy(key("1700000000.M1P2.host"), key(".Archive/copy1")))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join(".Archive/cur/copy1:2,")).unwrap(),
        "Subject: one\r\n\r\nbody\r\n"
    );
}

#[tokio::test]
async fn files_other_tools_delivered_or_renamed_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    // An MDA delivered to new/; a mail reader marked another one seen by renaming it.
    std::fs::write(root.join("new/delivered.M9.host"), "From: mda\r\n\r\n").unwrap();
    b.commit(Batch::new().put(key("read.M8.host"), "From: me\r\n\r\n"))
        .await
        .unwrap();
    std::fs::rename(
        root.join("cur/read.M8.host:2,"),
        root.join("cur/read.M8.host:2,S"),
    )
    .unwrap();
    assert_eq!(
        b.get(&key("delivered.M9.host"), None).await.unwrap(),
        "From: mda\r\n\r\n"
    );
    assert_eq!(
        b.get(&key("read.M8.host"), Some(0..4)).await.unwrap(),
        "From"
    );
    assert_eq!(b.size(&key("read.M8.host")).await.unwrap(), 12);
    // Writing the key again replaces the renamed file instead of leaving two, and keeps its
    // flags: they belong to the key, and a journal replaying a put must not undo them.
    b.commit(Batch::new().put(key("read.M8.host"), "new"))
        .await
        .unwrap();
    assert_eq!(names(&root.join("cur")), ["read.M8.host:2,S"]);
    assert_eq!(b.get(&key("read.M8.host"), None).await.unwrap(), "new");
    b.commit(
        Batch::new()
            .delete(key("read.M8.host"))
            .delete(key("delivered.M9.host")),
    )
    .await
    .unwrap();
    assert!(names(&root.join("cur")).is_empty());
    assert!(names(&root.join("new")).is_empty());
}

/// `cur/` is listed once and kept current across Strata's own commits; renames by other tools
/// after that, even a second rename of the same file, are still found.
#[tokio::test]
async fn renames_after_the_listing_is_kept_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    for i in 0..50 {
        b.commit(Batch::new().put(key(&format!("m{i}")), format!("body {i}")))
            .await
            .unwrap();
    }
    std::fs::rename(root.join("cur/m7:2,"), root.join("cur/m7:2,S")).unwrap();
    assert_eq!(b.get(&key("m7"), None).await.unwrap(), "body 7");
    // Listed now; more commits of our own keep the listing.
    for i in 50..60 {
        b.commit(Batch::new().put(key(&format!("m{i}")), format!("body {i}")))
            .await
            .unwrap();
    }
    assert_eq!(b.get(&key("m7"), None).await.unwrap(), "body 7");
    std::fs::rename(root.join("cur/m7:2,S"), root.join("cur/m7:2,RS")).unwrap();
    std::fs::rename(root.join("cur/m55:2,"), root.join("cur/m55:2,F")).unwrap();
    assert_eq!(b.get(&key("m7"), None).await.unwrap(), "body 7");
    assert_eq!(b.size(&key("m55")).await.unwrap(), 7);
    b.commit(Batch::new().delete(key("m7")).delete(key("m55")))
        .await
        .unwrap();
    let left = names(&root.join("cur"));
    assert_eq!(left.len(), 58);
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("m7:") || n.starts_with("m55:"))
    );
    assert!(b.get(&key("m7"), None).await.is_err());
}

#[tokio::test]
async fn keys_that_are_not_maildir_shaped_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    for bad in ["a/b", "a/b/c", ".Sent/x/y"] {
        let e = b
            .commit(Batch::new().put(key("fine"), "x").put(key(bad), "y"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidKey, "{bad}: {e}");
    }
    assert!(names(&root.join("cur")).is_empty());
    assert!(names(&root.join("tmp")).is_empty());
    assert_eq!(names(&root), ["cur", "new", "tmp"]);
}

/// Regression: renaming a staged hard link onto another link of the same file is a no-op that
/// succeeds, which left the staged link in tmp/.
#[tokio::test]
async fn copying_a_key_onto_itself_leaves_nothing_in_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    b.commit(Batch::new().put(key("m"), "body")).await.unwrap();
    b.commit(Batch::new().copy(key("m"), key("m")))
        .await
        .unwrap();
    b.commit(Batch::new().copy(key("m"), key("n")))
        .await
        .unwrap();
    b.commit(Batch::new().copy(key("n"), key("m")))
        .await
        .unwrap();
    assert!(names(&root.join("tmp")).is_empty());
    assert_eq!(names(&root.join("cur")), ["m:2,", "n:2,"]);
    assert_eq!(b.get(&key("m"), None).await.unwrap(), "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_flag_letters_and_keyword_letters_and_dates_are_mtimes() {
    use strata_backend_api::Label;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    b.commit(
        Batch::new()
            .put(key(".Work/1600000000.G1.strata"), "one")
            .put(key(".Work/1600000001.G2.strata"), "two"),
    )
    .await
    .unwrap();
    let work = root.join(".Work");
    let mtime = std::fs::metadata(work.join("cur/1600000000.G1.strata:2,"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
        "a file's time is the delivery time its name starts with"
    );
    let label = |flags: &str, kw: &[&str]| Label {
        flags: flags.into(),
        keywords: kw.iter().map(|s| s.to_string()).collect(),
    };
    b.set_labels(vec![
        (
            key(".Work/1600000000.G1.strata"),
            label("SF", &["$Important", "$Later"]),
        ),
        (key(".Work/1600000001.G2.strata"), label("R", &["$Later"])),
    ])
    .await
    .unwrap();
    assert_eq!(
        names(&work.join("cur")),
        ["1600000000.G1.strata:2,FSab", "1600000001.G2.strata:2,Rb"]
    );
    assert_eq!(
        std::fs::read_to_string(work.join("dovecot-keywords")).unwrap(),
        "0 $Important\n1 $Later\n"
    );
    // Found under its new name, and labelled again as flags change.
    assert_eq!(
        b.get(&key(".Work/1600000000.G1.strata"), None)
            .await
            .unwrap(),
        "one"
    );
    b.set_labels(vec![(
        key(".Work/1600000000.G1.strata"),
        label("", &["$Later"]),
    )])
    .await
    .unwrap();
    assert_eq!(
        names(&work.join("cur")),
        ["1600000000.G1.strata:2,b", "1600000001.G2.strata:2,Rb"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_crash_interrupted_are_removed_once_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let b = MaildirBackend::open(&root).unwrap();
    b.commit(Batch::new().put(key(".Work/1.G1.strata"), "kept"))
        .await
        .unwrap();
    // As a write leaves it when the process dies between tmp/ and cur/.
    std::fs::write(root.join("tmp/1.G2.strata.99.0"), "half").unwrap();
    std::fs::write(root.join(".Work/tmp/1.G3.strata.99.1"), "half").unwrap();
    let day_and_a_half = std::time::Duration::from_secs(36 * 3600);
    assert_eq!(
        b.clean_partial(day_and_a_half).await.unwrap(),
        0,
        "too young"
    );
    assert_eq!(b.clean_partial(std::time::Duration::ZERO).await.unwrap(), 2);
    assert!(names(&root.join("tmp")).is_empty());
    assert_eq!(
        b.get(&key(".Work/1.G1.strata"), None).await.unwrap(),
        "kept"
    );
    let listed: Vec<String> = b
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key.to_string())
        .collect();
    assert_eq!(listed, [".Work/1.G1.strata"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_miss_a_file_relabelled_while_they_look_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MaildirBackend::open(dir.path()).unwrap());
    let k = Key::new("1700000000.Gab.strata").unwrap();
    store
        .commit(Batch::new().put(k.clone(), "body"))
        .await
        .unwrap();
    // One task renames the file back and forth (flag changes), another reads it meanwhile.
    let relabel = {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                let flags = if i % 2 == 0 { "S" } else { "FS" };
                let label = strata_backend_api::Label {
                    flags: flags.into(),
                    keywords: Vec::new(),
                };
                store.set_labels(vec![(k.clone(), label)]).await.unwrap();
            }
        })
    };
    while !relabel.is_finished() {
        assert_eq!(store.get(&k, None).await.unwrap(), "body");
        assert_eq!(store.size(&k).await.unwrap(), 4);
    }
    relabel.await.unwrap();
}
