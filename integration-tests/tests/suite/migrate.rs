//! `strata migrate`: a user's bodies move from Maildir to S3 through the running server's
//! control socket while the user keeps reading and writing, and a migration killed with SIGKILL
//! again and again, run once more, ends with every body in the target and none left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_config::{Backend, Config, Store};
use strata_integration_tests::s3server::S3Server;
use strata_integration_tests::stores::s3_backend;
use strata_integration_tests::{Client, Reply, TestServer, plain_message};

/// Message files under a Maildir root (bodies, not the folder skeleton).
fn maildir_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d == "cur" || d == "new")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// The FETCH responses of a reply.
fn fetched(r: &Reply) -> Vec<&str> {
    r.untagged
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .map(String::as_str)
        .collect()
}

/// The bodies of every message of `mailbox`, by UID, as one reply text.
async fn all_bodies(c: &mut Client, mailbox: &str) -> String {
    c.ok(&format!("EXAMINE {mailbox}")).await;
    let r = c.ok("UID FETCH 1:* (BODY.PEEK[])").await;
    fetched(&r).join("\n")
}

/// The main store on Maildir (id 0), as before a migration.
fn on_maildir(c: &mut Config) {
    c.storage.main.backend = Backend::Maildir {
        root: c.data_dir.join("mail"),
    };
    c.storage.main.journal.enabled = false;
}

/// After: new bodies go to S3 (id 1); the Maildir stays as store `old` (id 0).
fn on_s3_with_old_maildir(c: &mut Config, s3: &S3Server) {
    let old = Store {
        name: "old".into(),
        ..c.storage.main.clone()
    };
    c.storage.main.id = 1;
    c.storage.main.backend = s3_backend(s3);
    c.storage.main.journal.enabled = true;
    c.storage.main.journal.dir = c.data_dir.join("journal");
    c.storage.others = vec![old];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_moves_from_maildir_to_s3_while_reading_and_writing() {
    let mut t = TestServer::start_with(on_maildir).await;
    let mut c = t.login("alice").await;
    c.fill("INBOX", 150, "before").await;
    c.ok("CREATE Work").await;
    c.fill("Work", 30, "work").await;
    c.ok("SELECT INBOX").await;
    c.ok("COPY 1:20 Work").await;
    c.ok("STORE 5 +FLAGS (\\Flagged)").await;
    let inbox = all_bodies(&mut c, "INBOX").await;
    let work = all_bodies(&mut c, "Work").await;
    assert_eq!(inbox.matches("body of message").count(), 150);
    drop(c);
    let mail = t.data_dir.join("mail");
    assert_eq!(maildir_files(&mail).len(), 180);

    t.stop().await;
    let s3 = S3Server::start(&t.root.path().join("s3"), "strata")
        .await
        .unwrap();
    on_s3_with_old_maildir(&mut t.config, &s3);
    t.restart().await;

    // Before the migration, old bodies are read from the Maildir, new ones go to S3.
    let mut c = t.login("alice").await;
    assert_eq!(all_bodies(&mut c, "INBOX").await, inbox);
    c.ok("SELECT INBOX").await;
    let r = c
        .append("INBOX", "\\Seen", &plain_message(999, "during"))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(maildir_files(&mail).len(), 180);

    // A second session of the same user reads every body again and again meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = t.login("alice").await;
    let reading = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rounds = 0;
            reader.ok("EXAMINE INBOX").await;
            while !stop.load(Ordering::SeqCst) || rounds == 0 {
                let r = reader.cmd("FETCH 1:* (BODY.PEEK[])").await;
                assert!(r.is_ok(), "a FETCH during the migration failed: {r:?}");
                assert_eq!(fetched(&r).len(), 151);
                rounds += 1;
            }
            rounds
        })
    };
    let mut lines = Vec::new();
    let done = strata_server::control::request(&t.data_dir, "migrate main alice 16", &mut |l| {
        lines.push(l.to_string())
    })
    .await
    .unwrap()
    .expect("the running server answers on its control socket");
    stop.store(true, Ordering::SeqCst);
    let rounds = reading.await.unwrap();
    assert!(done.contains("180/180 moved"), "{done}");
    assert!(!lines.is_empty());
    assert!(rounds >= 1);

    assert!(
        maildir_files(&mail).is_empty(),
        "the Maildir keeps nothing: {:?}",
        maildir_files(&mail)
    );
    // Each moved body records where it is filed, for a rebuild from S3 alone.
    let s3_store = strata_server::backends::reach(&t.config.storage.main)
        .await
        .unwrap()
        .unwrap();
    let bodies = s3_store.list("alice/").await.unwrap();
    assert_eq!(
        bodies.len(),
        181,
        "the 180 moved and the one APPENDed to S3"
    );
    for b in &bodies {
        let meta = s3_store.meta(&b.key).await.unwrap().expect("metadata");
        assert_eq!(meta.user, "alice");
        assert!(
            ["INBOX", "Work"].contains(&meta.mailbox_name.as_str()),
            "{meta:?}"
        );
        assert_eq!(meta.size, b.size, "{meta:?}");
    }
    // Flags, copies and bodies as before, all read from S3 now.
    assert_eq!(all_bodies(&mut c, "Work").await, work);
    let now = all_bodies(&mut c, "INBOX").await;
    assert!(now.starts_with(&inbox), "old bodies unchanged");
    assert!(now.contains("body of message 999"));
    let r = c.ok("FETCH 5 (FLAGS)").await;
    assert!(r.has("\\Flagged"), "{r:?}");

    // Again: nothing to do. A store nobody configured: an error naming the ones there are.
    let again = strata_server::control::request(&t.data_dir, "migrate main alice", &mut |_| {})
        .await
        .unwrap()
        .unwrap();
    assert!(again.contains("0/0 moved"), "{again}");
    let err = strata_server::control::request(&t.data_dir, "migrate tape alice", &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no store is named \"tape\"") && err.contains("main, old"),
        "{err}"
    );
    let err = strata_server::control::request(&t.data_dir, "migrate main ../x", &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a user name"), "{err}");

    // After a restart, with the Maildir store still configured but empty, all is in place.
    t.restart().await;
    let mut c = t.login("alice").await;
    assert_eq!(all_bodies(&mut c, "Work").await, work);
    t.stop().await;
}

fn config_text(root: &Path, s3: &S3Server) -> String {
    format!(
        r#"data_dir = "{data}"
[imap]
starttls = "127.0.0.1:0"
tls = ""
[storage]
name = "s3"
id = 1
backend = "s3"
[storage.s3]
{s3}[storage.delay]
write_ms = 60
read_ms = 5
[stores.old]
id = 0
backend = "maildir"
[log]
level = "warn"
"#,
        data = root.join("data").display(),
        s3 = s3.toml_table("bodies/"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_again_and_again_finishes_and_loses_nothing() {
    let mut t = TestServer::start_with(on_maildir).await;
    let mut c = t.login("alice").await;
    for i in 1..=300 {
        let r = c
            .append("INBOX", "", &plain_message(i, &format!("kill {i}")))
            .await;
        assert!(r.is_ok());
    }
    let before = all_bodies(&mut c, "INBOX").await;
    drop(c);
    t.stop().await;
    let mail = t.data_dir.join("mail");
    assert_eq!(maildir_files(&mail).len(), 300);

    let s3 = S3Server::start(&t.root.path().join("s3"), "strata")
        .await
        .unwrap();
    let cfg_path = t.root.path().join("strata.toml");
    std::fs::write(&cfg_path, config_text(t.root.path(), &s3)).unwrap();
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_strata-process"))
            .args([
                "migrate",
                cfg_path.to_str().unwrap(),
                "s3",
                "alice",
                "--batch",
                "10",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("migration process")
    };
    let mut interrupted = 0;
    for round in 0..5usize {
        let mut child = migrate();
        // Killed once it has moved a little more than the round before.
        let until_left = 300 - 40 * (round + 1);
        strata_integration_tests::until("moved enough", Duration::from_secs(120), || {
            maildir_files(&mail).len() <= until_left
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let left = maildir_files(&mail).len();
        if left > 0 && left < 300 {
            interrupted += 1;
        }
    }
    assert!(interrupted >= 2, "the kills landed mid-way");
    let out = migrate().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 damaged"), "{text}");
    assert!(maildir_files(&mail).is_empty(), "{text}");
    assert!(!t.data_dir.join("index").join("alice.moving").exists());

    // The server on the same configuration answers every body, from S3.
    t.config = strata_config::load(&cfg_path).unwrap();
    t.restart().await;
    let mut c = t.login("alice").await;
    assert_eq!(all_bodies(&mut c, "INBOX").await, before);
    t.stop().await;
}

/// The stores of a migration into and out of compression: `to` is the main store, `from` the
/// store bodies are still in.
/// A store of the migration: its id, backend, and layers (`z` compressed, `e` encrypted with
/// the keyring in the data directory).
type Stage = (u16, Backend, &'static str);

fn compression_moves(c: &mut Config, to: Stage, from: Stage) {
    let keys = c.data_dir.join("keyring");
    let store = |(id, backend, layers): Stage, name: &str| Store {
        name: name.into(),
        id,
        backend,
        compression: layers.contains('z').then_some(strata_config::Compression {
            level: 3,
            frame_bytes: 4096,
        }),
        encryption: layers.contains('e').then(|| strata_config::Encryption {
            keys: keys.clone(),
            key_id: None,
        }),
        ..c.storage.main.clone()
    };
    let (main, old) = (store(to, "main"), store(from, "old"));
    c.storage.main = main;
    c.storage.main.journal.enabled = false;
    c.storage.others = vec![old];
}

/// Restarts `t` on its configuration, moves all of alice's `n` bodies to the main store through
/// the control socket, and logs her in.
async fn restart_and_migrate(t: &mut TestServer, n: usize) -> Client {
    t.restart().await;
    let done = strata_server::control::request(&t.data_dir, "migrate main alice 8", &mut |_| {})
        .await
        .unwrap()
        .unwrap();
    assert!(done.contains(&format!("{n}/{n} moved")), "{done}");
    t.login("alice").await
}

/// Checks that alice's bodies, and a range of the large one, read as `before` and `part`; returns
/// the main store without its layers and what it lists of hers (all 46).
async fn same_bodies_and_what_the_store_holds(
    t: &mut TestServer,
    c: &mut Client,
    before: &str,
    part: &Reply,
) -> (
    Arc<dyn strata_backend_api::Backend>,
    Vec<strata_backend_api::Listed>,
) {
    assert_eq!(all_bodies(c, "INBOX").await, before);
    assert_eq!(
        c.ok("FETCH 46 (BODY.PEEK[]<700000.5000>)").await.untagged,
        part.untagged
    );
    let raw = strata_server::backends::reach_raw(&t.config.storage.main)
        .await
        .unwrap()
        .unwrap();
    let listed = raw.list("alice/").await.unwrap();
    assert_eq!(listed.len(), 46);
    (raw, listed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_move_into_compressed_and_encrypted_stores_and_out_again_byte_for_byte() {
    // Plain S3 first, with text, multipart, binary and large messages.
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3_root.path(), "strata").await.unwrap();
    let s3_plain: Stage = (1, s3_backend(&s3), "");
    let mut t = TestServer::start_with(|c| {
        c.storage.main.id = 1;
        c.storage.main.backend = s3_backend(&s3);
        c.storage.main.journal.enabled = false;
        // Plain whatever layers STRATA_TEST_LAYERS asks for: each stage says its own.
        c.storage.main.compression = None;
        c.storage.main.encryption = None;
    })
    .await;
    let sqlite = strata_integration_tests::stores::sql_backend(format!(
        "sqlite:{}",
        t.data_dir.join("compressed.db").display()
    ));
    let mut c = t.login("alice").await;
    c.fill("INBOX", 40, "plain").await;
    for n in 0..5 {
        c.append("INBOX", "", &strata_integration_tests::multipart_message(n))
            .await;
    }
    // Every octet but NUL, which a plain literal cannot carry.
    let binary: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes())
        .map(|b| b.max(1))
        .collect();
    let mut big = b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    big.extend_from_slice(&binary);
    assert!(c.append("INBOX", "", &big).await.is_ok());
    let before = all_bodies(&mut c, "INBOX").await;
    let part = c.ok("FETCH 46 (BODY.PEEK[]<700000.5000>)").await;
    drop(c);

    // Into compressed SQLite: every body byte for byte, a range of the large one too, and
    // what SQLite keeps is compressed.
    t.stop().await;
    let sqlite_z: Stage = (2, sqlite.clone(), "z");
    compression_moves(&mut t.config, sqlite_z.clone(), s3_plain.clone());
    let mut c = restart_and_migrate(&mut t, 46).await;
    let (raw, listed) = same_bodies_and_what_the_store_holds(&mut t, &mut c, &before, &part).await;
    let layered = strata_server::backends::reach(&t.config.storage.main)
        .await
        .unwrap()
        .unwrap();
    let original: std::collections::HashMap<_, _> = layered
        .list("alice/")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    // Text shrinks (little, for messages of a few hundred bytes); the near-random one never
    // grows (what would not shrink is kept as it is).
    let (mut text_stored, mut text_original) = (0, 0);
    for l in &listed {
        let size = original[&l.key];
        if size > 1_000_000 {
            assert!(l.size <= size, "{} stored for {size}", l.size);
        } else {
            text_stored += l.size;
            text_original += size;
        }
    }
    assert!(
        text_stored < text_original * 9 / 10,
        "{text_stored} bytes stored for {text_original}"
    );
    let mut compressed = 0;
    for l in &listed {
        compressed += usize::from(&raw.get(&l.key, Some(0..6)).await.unwrap()[..] == b"\0STRZ1");
    }
    // The multipart messages and the large one; the shortest may not shrink and stay plain.
    assert!(compressed >= 6, "{compressed} of 46 compressed");
    drop(c);

    // On to S3 compressed and encrypted: the store holds no plaintext, every object sealed.
    t.stop().await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let keyring = format!("1:{}\n", b64.encode([7u8; 32]));
    std::fs::write(t.data_dir.join("keyring"), keyring).unwrap();
    let mut sealed_s3 = s3_backend(&s3);
    if let Backend::S3(s) = &mut sealed_s3 {
        s.prefix = "sealed/".into();
    }
    let s3_ze: Stage = (3, sealed_s3, "ze");
    compression_moves(&mut t.config, s3_ze.clone(), sqlite_z);
    let mut c = restart_and_migrate(&mut t, 46).await;
    let (raw, listed) = same_bodies_and_what_the_store_holds(&mut t, &mut c, &before, &part).await;
    for l in &listed {
        let object = raw.get(&l.key, None).await.unwrap();
        assert!(object.starts_with(b"\0STRE1"), "{} is not sealed", l.key);
        assert!(
            !object.windows(15).any(|w| w == b"body of message"),
            "{} holds plaintext",
            l.key
        );
    }
    drop(c);

    // And out again, to plain S3: the same bytes.
    t.stop().await;
    compression_moves(&mut t.config, (4, s3_backend(&s3), ""), s3_ze);
    if let Backend::S3(s) = &mut t.config.storage.main.backend {
        s.prefix = "again/".into();
    }
    let mut c = restart_and_migrate(&mut t, 46).await;
    assert_eq!(all_bodies(&mut c, "INBOX").await, before);
    t.stop().await;
}
