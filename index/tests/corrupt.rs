//! Damaged files: zero-length, truncated, garbage, flipped bytes, a newer schema version. Each
//! must give a clear error naming the file, never a panic and never a wrong answer.

mod common;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use strata_index::*;

/// Everything the index answers, as one comparable value.
fn dump(snap: &Snapshot) -> Result<String> {
    let mut out = String::new();
    for mb in snap.mailboxes()? {
        out += &format!("{mb:?}\n");
        let found = snap.lookup(mb.parent, &mb.name)?;
        out += &format!("lookup {found:?}\n");
        for m in snap.messages(mb.id)? {
            out += &format!("{m:?}\n");
            out += &format!("point {:?}\n", snap.message(mb.id, m.uid)?);
            out += &format!(
                "content {:?} refs {}\n",
                snap.content(&m.guid)?,
                snap.content_refs(&m.guid)?
            );
        }
    }
    out += &format!("{:?}\n{:?}\n", snap.keywords()?, snap.subscriptions()?);
    out += &format!("{:?}\n", snap.changes_since(Modseq(0))?);
    Ok(out)
}

/// Builds an index with a few mailboxes, messages, flags, keywords and expunges.
fn build(path: &Path, n: u32) -> String {
    common::runtime().block_on(async {
        let (index, _) = UserIndex::open(path, IndexOptions::default())
            .await
            .unwrap();
        let inbox = index.create_mailbox(common::top("INBOX")).await.unwrap().id;
        let arch = index
            .create_mailbox(common::top("Archive"))
            .await
            .unwrap()
            .id;
        for i in 0..u64::from(n) {
            index
                .append(inbox, vec![common::message(i, SystemFlags::empty())])
                .await
                .unwrap();
        }
        index
            .write(Durability::Immediate, move |t| {
                let k = t.intern_keyword("$label1")?;
                let flags = Flags {
                    system: SystemFlags::SEEN,
                    keywords: vec![k],
                };
                let uids: Vec<Uid> = (1..n / 2).map(Uid).collect();
                t.store(inbox, &uids, StoreOp::Add, &flags, None)?;
                t.subscribe("INBOX")
            })
            .await
            .unwrap();
        index
            .copy(inbox, (1..n / 6).map(Uid).collect(), arch)
            .await
            .unwrap();
        index
            .expunge(inbox, (n / 3..2 * n / 3).map(Uid).collect())
            .await
            .unwrap();
        let d = dump(&index.snapshot().unwrap()).unwrap();
        index.close().await;
        d
    })
}

fn copy_of(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(src, &p).unwrap();
    p
}

/// Opens a damaged file every way there is; returns the dump if every step succeeded, or the
/// first error. A panic fails the test.
fn answers(path: &Path) -> std::result::Result<String, IndexError> {
    let writable = common::runtime().block_on(async {
        let (index, _) = UserIndex::open(path, IndexOptions::default()).await?;
        let snap = index.snapshot()?;
        let d = dump(&snap);
        drop(snap);
        index.close().await;
        d
    });
    let checked = check_file(path);
    let read_only = ReadOnlyIndex::open(path).and_then(|r| dump(&r.snapshot()?));
    let d = writable?;
    checked?;
    let r = read_only?;
    assert_eq!(d, r, "read-only and writable opens disagree");
    Ok(d)
}

fn assert_names_file(e: &IndexError, path: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
}

/// Opening and reading a damaged file may make the engine panic inside; the index turns that
/// into an error, but the default hook would still print every panic. Keep the output readable.
fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|l| l.file().contains("redb")) {
            default(info);
        }
    }));
}

#[test]
fn zero_length_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.redb");
    std::fs::write(&path, b"").unwrap();
    let e = answers(&path).unwrap_err();
    assert!(matches!(e, IndexError::Corrupt { .. }), "{e}");
    assert_names_file(&e, &path);
    assert!(e.to_string().contains("zero length"));
    // The empty file was not replaced by a fresh index.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn garbage_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let bytes: Vec<u8> = (0..64 * 1024).map(|_| rng.random()).collect();
    std::fs::write(&path, &bytes).unwrap();
    let e = answers(&path).unwrap_err();
    assert!(e.is_file_error(), "{e}");
    assert_names_file(&e, &path);
}

#[test]
fn truncated_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.redb");
    let original = build(&good, 300);
    let len = std::fs::metadata(&good).unwrap().len();
    for cut in [1, 100, 512, 4096, len / 3, len / 2, len - 4096, len - 1] {
        let p = copy_of(&good, dir.path(), &format!("cut{cut}.redb"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(cut)
            .unwrap();
        match answers(&p) {
            Err(e) => {
                assert!(e.is_file_error(), "cut at {cut}: {e}");
                assert_names_file(&e, &p);
            }
            Ok(d) => assert_eq!(d, original, "cut at {cut}: answers changed"),
        }
    }
}

#[test]
fn flipped_bytes_give_errors_or_the_right_answers() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.redb");
    let original = build(&good, 300);
    let bytes = std::fs::read(&good).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    quiet_panics();
    let (mut errors, mut same) = (0, 0);
    for i in 0..150 {
        let mut damaged = bytes.clone();
        let at = rng.random_range(0..damaged.len());
        damaged[at] ^= 1 << rng.random_range(0..8);
        let p = dir.path().join(format!("flip{i}.redb"));
        std::fs::write(&p, &damaged).unwrap();
        match answers(&p) {
            Err(e) => {
                assert!(e.is_file_error(), "flip at {at}: {e}");
                assert_names_file(&e, &p);
                errors += 1;
            }
            Ok(d) => {
                assert_eq!(d, original, "flip at byte {at} changed an answer");
                same += 1;
            }
        }
        std::fs::remove_file(&p).unwrap();
        let _ = std::fs::remove_file(p.with_extension("redb.owner"));
    }
    println!("150 flipped bits: {errors} refused with an error, {same} in unused space");
    assert!(errors > 0, "no flip was ever detected");
}

/// Writes a meta row the way the format document describes it: postcard value, then CRC-32 over
/// key length (u32 LE), key and value.
fn set_meta_raw(path: &Path, key: &[u8], value: &[u8], good_crc: bool) {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(path)
        .unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w
            .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("meta"))
            .unwrap();
        let mut h = crc32fast::Hasher::new();
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key);
        h.update(value);
        let crc = h.finalize() ^ if good_crc { 0 } else { 1 };
        let mut row = value.to_vec();
        row.extend_from_slice(&crc.to_le_bytes());
        t.insert(key, row.as_slice()).unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn newer_schema_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.redb");
    build(&path, 30);
    // postcard encodes 99u32 as the single varint byte 99.
    set_meta_raw(&path, b"schema_version", &[99], true);
    let e = answers(&path).unwrap_err();
    match &e {
        IndexError::UnsupportedVersion {
            found, supported, ..
        } => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected UnsupportedVersion, got {other}"),
    }
    assert_names_file(&e, &path);
}

#[test]
fn damaged_row_checksum_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("badcrc.redb");
    build(&path, 30);
    set_meta_raw(&path, b"schema_version", &[1], false);
    let e = answers(&path).unwrap_err();
    assert!(matches!(e, IndexError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_names_file(&e, &path);
}

#[test]
fn file_without_strata_tables_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(redb::TableDefinition::<u64, u64>::new("something"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        w.commit().unwrap();
    }
    let e = answers(&path).unwrap_err();
    assert!(e.to_string().contains("not a Strata index"), "{e}");
    assert_names_file(&e, &path);
}

/// Opens a committed fixture of schema version `v` and compares its answers with its dump;
/// `STRATA_WRITE_FIXTURE=1` regenerates the fixture of the version this build writes.
fn fixture_opens(v: u32) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{v}.redb"));
    if std::env::var_os("STRATA_WRITE_FIXTURE").is_some() && SCHEMA_VERSION == v {
        let _ = std::fs::remove_file(&fixture);
        let d = build(&fixture, 24);
        std::fs::write(fixture.with_extension("dump"), d).unwrap();
        let _ = std::fs::remove_file(fixture.with_extension("redb.owner"));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = copy_of(&fixture, dir.path(), &format!("v{v}.redb"));
    let want = std::fs::read_to_string(fixture.with_extension("dump")).unwrap();
    let upgraded = common::runtime().block_on(async {
        let (index, report) = UserIndex::open(&p, IndexOptions::default()).await.unwrap();
        // Every message has a thread, however old its file (version 3 threads them).
        let snap = index.snapshot().unwrap();
        for mb in snap.mailboxes().unwrap() {
            for m in snap.messages(mb.id).unwrap() {
                assert!(snap.thread(&m.guid).unwrap().is_some(), "{m:?}");
            }
        }
        drop(snap);
        index.close().await;
        report.upgraded_from
    });
    assert_eq!(upgraded, (v != SCHEMA_VERSION).then_some(v));
    assert_eq!(answers(&p).unwrap(), want);
}

/// Version 1 (content records in one piece) upgrades and answers as it did.
#[test]
fn schema_v1_fixture_opens() {
    fixture_opens(1);
}

/// Version 2 (content records with their parsed parts apart).
#[test]
fn schema_v2_fixture_opens() {
    fixture_opens(2);
}

/// Version 3 (every content with its thread, and the Message-IDs threads are found by).
#[test]
fn schema_v3_fixture_opens() {
    fixture_opens(3);
}
