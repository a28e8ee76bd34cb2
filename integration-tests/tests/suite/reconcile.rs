//! What a crash leaves in the store, and what becomes of it: the server, as a process of its
//! own on a Maildir (and on S3 behind the journal), takes APPENDs and EXPUNGEs and is killed
//! again and again. Restarted, its reconciler deletes every body no index entry names (no
//! file or object is left that no message names), nothing acknowledged is lost; and a rebuild
//! of the index from the Maildir after such a crash brings back no message whose EXPUNGE was
//! answered.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_backend_api::{Batch, Key};
use strata_integration_tests::process::ServerProcess;
use strata_integration_tests::s3server::S3Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Default)]
pub(crate) struct Seen {
    /// Subjects whose APPEND got OK.
    pub(crate) appended: BTreeSet<String>,
    /// Subjects whose EXPUNGE got OK.
    pub(crate) expunged: BTreeSet<String>,
    /// Subjects an EXPUNGE was sent for (its answer may have died with the server).
    pub(crate) expunging: BTreeSet<String>,
}

impl Seen {
    /// Every message acknowledged and not expunged is in `in_index`; none expunged is.
    pub(crate) fn assert_kept(&self, in_index: &BTreeSet<String>) {
        for id in self.appended.difference(&self.expunging) {
            assert!(
                in_index.contains(id),
                "{id} was acknowledged and is missing"
            );
        }
        for id in &self.expunged {
            assert!(!in_index.contains(id), "{id} was expunged and is back");
        }
    }
}

type Lines = tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>;

/// Reads until the line tagged `tag` (or a continuation, for `+`); its text, or None when the
/// connection ended.
async fn answer(lines: &mut Lines, tag: &str) -> Option<String> {
    while let Ok(Some(l)) = lines.next_line().await {
        if (tag == "+" && l.starts_with('+')) || l.starts_with(&format!("{tag} ")) {
            return Some(l);
        }
    }
    None
}

/// APPENDs, and now and then expunges the oldest of its own messages, until the server dies.
async fn work_until_killed(port: u16, client: usize, round: usize, seen: Arc<Mutex<Seen>>) {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let ok = |a: Option<String>, tag: &str| a.is_some_and(|l| l.starts_with(&format!("{tag} OK")));
    if answer(&mut lines, "*").await.is_none()
        || w.write_all(b"l LOGIN alice alice-password\r\ns SELECT INBOX\r\n")
            .await
            .is_err()
        || !ok(answer(&mut lines, "l").await, "l")
        || !ok(answer(&mut lines, "s").await, "s")
    {
        return;
    }
    let mine: Vec<String> = Vec::new();
    let mut mine = mine;
    for i in 0.. {
        // Ends with a dot, so that SEARCH SUBJECT (a substring match) finds this one only.
        let id = format!("r{round}c{client}m{i}.");
        // An attachment of 3 KB, one of four the clients share in each round: a store with
        // single-instance parts keeps each once.
        let shared = format!("{round}{}\r\n", (b'a' + (i % 4) as u8) as char).repeat(1000);
        let body = format!(
            "From: a@example.org\r\nSubject: {id}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\n\r\nbody of {id}\r\n{}\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n\
             {shared}--b--\r\n",
            "x".repeat(500)
        );
        if w.write_all(format!("a{i} APPEND INBOX {{{}}}\r\n", body.len()).as_bytes())
            .await
            .is_err()
            || answer(&mut lines, "+").await.is_none()
            || w.write_all(format!("{body}\r\n").as_bytes()).await.is_err()
            || !ok(answer(&mut lines, &format!("a{i}")).await, &format!("a{i}"))
        {
            return;
        }
        seen.lock().unwrap().appended.insert(id.clone());
        mine.push(id);
        if i % 3 == 2 {
            let victim = mine.remove(0);
            let cmd = format!("d{i} UID SEARCH SUBJECT {victim}\r\n");
            if w.write_all(cmd.as_bytes()).await.is_err() {
                return;
            }
            let mut uids = Vec::new();
            loop {
                let Ok(Some(l)) = lines.next_line().await else {
                    return;
                };
                if let Some(rest) = l.strip_prefix("* SEARCH") {
                    uids = rest.split_whitespace().map(str::to_string).collect();
                }
                if l.starts_with(&format!("d{i} ")) {
                    break;
                }
            }
            if uids.is_empty() {
                continue;
            }
            seen.lock().unwrap().expunging.insert(victim.clone());
            let set = uids.join(",");
            let cmd = format!(
                "x{i} UID STORE {set} +FLAGS.SILENT (\\Deleted)\r\ne{i} UID EXPUNGE {set}\r\n"
            );
            if w.write_all(cmd.as_bytes()).await.is_err()
                || !ok(answer(&mut lines, &format!("x{i}")).await, &format!("x{i}"))
                || !ok(answer(&mut lines, &format!("e{i}")).await, &format!("e{i}"))
            {
                return;
            }
            seen.lock().unwrap().expunged.insert(victim);
        }
    }
}

fn config(root: &Path) -> String {
    format!(
        "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\n[storage]\nreconcile_interval_secs = 0\n[log]\nlevel = \"warn\"\n",
        root.join("data").display()
    )
}

/// Kills the server `rounds` times while clients work.
pub(crate) async fn crash_loop(
    cfg: &Path,
    rounds: usize,
    first_round: usize,
    seen: &Arc<Mutex<Seen>>,
) {
    for round in first_round..first_round + rounds {
        let mut server = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_strata-process")), cfg);
        let port = server.port;
        let clients: Vec<_> = (0..3)
            .map(|c| tokio::spawn(work_until_killed(port, c, round, seen.clone())))
            .collect();
        let before = seen.lock().unwrap().appended.len();
        let wanted = before + 10 + 3 * (round % 4);
        strata_integration_tests::until("APPENDs answered", Duration::from_secs(60), || {
            seen.lock().unwrap().appended.len() >= wanted
        })
        .await;
        server.kill();
        for c in clients {
            c.await.unwrap();
        }
    }
}

/// Every message file in alice's Maildir, by subject.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(root.join("data/mail/alice").join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push(
                text.lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    out
}

/// A data directory under `root` whose only user is alice.
pub(crate) fn data_dir_with_alice(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    strata_server::users::UserDb::new(data.join("users"))
        .add("alice", "alice-password")
        .unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_leaves_nothing_behind_and_rebuild_brings_back_nothing_expunged() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir_with_alice(root.path());
    let cfg_path = root.path().join("strata.toml");
    std::fs::write(&cfg_path, config(root.path())).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    crash_loop(&cfg_path, 8, 0, &seen).await;

    // And what a crash between an APPEND's write and its record leaves, for certain: bodies
    // no index entry names.
    for n in 0..3 {
        std::fs::write(
            data.join(format!("mail/alice/cur/1700000000.G5{n:03x}.strata:2,")),
            format!("Subject: stray {n}\r\n\r\nnever recorded\r\n"),
        )
        .unwrap();
    }
    // And a message another program delivered: not Strata's to delete.
    std::fs::write(
        data.join("mail/alice/new/1700000000.M1P1.otherhost"),
        "Subject: foreign\r\n\r\ndelivered by another program\r\n",
    )
    .unwrap();

    // Restarted: the reconciler deletes what the crashes left; nothing acknowledged is lost.
    let cfg = strata_config::load(&cfg_path).unwrap();
    let running = strata_server::serve::start(cfg.clone()).await.unwrap();
    let reconciled = running.reconciled.clone();
    strata_integration_tests::until("a reconciler run", Duration::from_secs(60), || {
        reconciled.runs.load(Ordering::Relaxed) >= 1
    })
    .await;
    let removed = reconciled.removed.load(Ordering::Relaxed);
    assert!(removed >= 3, "the stray bodies were deleted: {removed}");
    let mut c = strata_integration_tests::Client::plain(running.imap.unwrap()).await;
    c.ok("LOGIN alice alice-password").await;
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    let in_index: BTreeSet<String> = r
        .untagged
        .iter()
        .filter_map(|l| {
            let s = l.split("Subject: ").nth(1)?;
            Some(s.split('\r').next()?.trim().to_string())
        })
        .collect();
    let mut on_disk = files(root.path());
    let foreign = on_disk.iter().position(|s| s == "foreign");
    on_disk.remove(foreign.expect("the foreign message is kept"));
    {
        let s = seen.lock().unwrap();
        eprintln!(
            "{} APPENDs and {} EXPUNGEs answered over 8 kills; the reconciler deleted {removed} bodies",
            s.appended.len(),
            s.expunged.len()
        );
        let missing: Vec<&String> = s
            .appended
            .difference(&s.expunging)
            .filter(|id| !in_index.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged and missing: {missing:?}\nexpunging: {:?}\nin the index: {in_index:?}",
            s.expunging
        );
        for id in &s.expunged {
            assert!(!in_index.contains(id), "{id} was expunged and is back");
        }
        let mut on_disk_sorted = on_disk.clone();
        on_disk_sorted.sort();
        let mut named: Vec<String> = in_index.iter().cloned().collect();
        named.sort();
        assert_eq!(
            on_disk_sorted, named,
            "every file on disk is a message, and only once"
        );
    }
    drop(c);
    running.shutdown().await;

    // Crashed again, then rebuilt offline from the Maildir: nothing expunged comes back.
    crash_loop(&cfg_path, 4, 100, &seen).await;
    let index = strata_server::index_path(&data, "alice");
    strata_server::import::retire_index(&index, "rebuild")
        .await
        .unwrap();
    let (store, backends) = strata_server::serve::mailstore(&cfg).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let report = strata_server::import::adopt_maildir(&user, &data.join("mail/alice"), &|_, _| {})
        .await
        .unwrap();
    drop(user);
    store.close_idle().await;
    drop(store);
    drop(backends);
    let rebuilt: BTreeSet<String> = files(root.path()).into_iter().collect();
    let s = seen.lock().unwrap();
    assert!(report.messages as usize >= s.appended.len() - s.expunging.len());
    for id in &s.expunged {
        assert!(
            !rebuilt.contains(id),
            "the rebuild brought back {id}, which was expunged"
        );
    }
}

/// Subjects of the messages in alice's INBOX, as a running server answers.
pub(crate) async fn subjects(c: &mut strata_integration_tests::Client) -> BTreeSet<String> {
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    r.untagged
        .iter()
        .filter_map(|l| {
            let s = l.split("Subject: ").nth(1)?;
            Some(s.split('\r').next()?.trim().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_behind_the_journal_a_crash_loop_leaves_no_object_nothing_names() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir_with_alice(root.path());
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .unwrap();
    let cfg_path = root.path().join("strata.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\n\
             [storage]\nbackend = \"s3\"\nreconcile_interval_secs = 0\n[storage.s3]\n{}\
             [storage.delay]\nwrite_ms = 20\n[log]\nlevel = \"warn\"\n",
            data.display(),
            s3.toml_table("reconcile/"),
        ),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    crash_loop(&cfg_path, 6, 0, &seen).await;

    // And, for certain, bodies written that nothing recorded.
    let cfg = strata_config::load(&cfg_path).unwrap();
    {
        let (store, backends) = strata_server::serve::mailstore(&cfg).await.unwrap();
        let user = store.user("alice").await.unwrap();
        let mut stray = Batch::new();
        for n in 0..3 {
            stray = stray.put(
                Key::new(format!("1700000000.G6{n:03x}.strata")).unwrap(),
                format!("Subject: stray {n}\r\n\r\nnever recorded\r\n"),
            );
        }
        user.backend().commit(stray).await.unwrap();
        drop(user);
        store.close_idle().await;
        drop(store);
        backends.drain_journals().await.unwrap();
    }

    let running = strata_server::serve::start(cfg.clone()).await.unwrap();
    let reconciled = running.reconciled.clone();
    strata_integration_tests::until("a reconciler run", Duration::from_secs(60), || {
        reconciled.runs.load(Ordering::Relaxed) >= 1
    })
    .await;
    let removed = reconciled.removed.load(Ordering::Relaxed);
    let mut c = strata_integration_tests::Client::plain(running.imap.unwrap()).await;
    c.ok("LOGIN alice alice-password").await;
    let in_index = subjects(&mut c).await;
    drop(c);
    running.shutdown().await;
    {
        let s = seen.lock().unwrap();
        eprintln!(
            "S3: {} APPENDs and {} EXPUNGEs answered over 6 kills; the reconciler deleted {removed} objects",
            s.appended.len(),
            s.expunged.len()
        );
        assert!(removed >= 3, "the stray bodies were deleted: {removed}");
        s.assert_kept(&in_index);
    }
    // Every object in the bucket is a message's, once.
    let (store, backends) = strata_server::serve::mailstore(&cfg).await.unwrap();
    backends.drain_journals().await.unwrap();
    let user = store.user("alice").await.unwrap();
    let mut listed = user.backend().list("").await.unwrap();
    // The shipped index lives beside the bodies.
    listed.retain(|l| !strata_mailstore::ship::chain::is_index_key(l.key.as_str()));
    assert_eq!(
        listed.len(),
        in_index.len(),
        "objects: {:?}",
        listed.iter().map(|l| l.key.as_str()).collect::<Vec<_>>()
    );
}
