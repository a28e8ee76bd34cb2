//! A Maildir that other mail programs share: each folder holds one mailbox's mail, file names
//! carry the flags and keywords, file times the INTERNALDATE, so that the tree read back into a
//! new index (`strata index rebuild`) has the same messages, flags, keywords and dates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_integration_tests::TestServer;

fn message(subject: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n").into_bytes()
}

/// Every message file of alice's Maildir, by folder directory name ("" for INBOX).
fn files(s: &TestServer) -> BTreeMap<String, Vec<PathBuf>> {
    let root = s.data_dir.join("mail").join("alice");
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut dirs = vec![(String::new(), root.clone())];
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && e.path().is_dir() {
            dirs.push((name, e.path()));
        }
    }
    for (name, dir) in dirs {
        for sub in ["cur", "new"] {
            for f in std::fs::read_dir(dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                out.entry(name.clone()).or_default().push(f.path());
            }
        }
    }
    out
}

/// The subject of a message file; empty if it was renamed since it was listed (its flags
/// changed), so the next listing finds it.
fn subject_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_two_mailboxes_share_a_folder() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    let mut put =
        async |c: &mut strata_integration_tests::Client, mailbox: &'static str, subject: String| {
            let r = c
                .append(&format!("\"{mailbox}\""), "", &message(&subject))
                .await;
            assert!(r.is_ok(), "{r:?}");
            owner.insert(subject, mailbox);
        };
    c.ok("CREATE Work").await;
    put(&mut c, "Work", "work 1".into()).await;
    c.ok("RENAME Work Old").await;
    put(&mut c, "Old", "old 1".into()).await;
    // The name is free again; the old bodies are still where they were written.
    c.ok("CREATE Work").await;
    put(&mut c, "Work", "work 2".into()).await;
    // A name that is not a plain folder name, and a plain name that looks like an id folder.
    c.ok("CREATE \"x y\"").await;
    put(&mut c, "x y", "spaced".into()).await;
    for n in 1..12 {
        let name = format!("m{n}");
        c.ok(&format!("CREATE {name}")).await;
        let mailbox: &'static str = Box::leak(name.into_boxed_str());
        put(&mut c, mailbox, format!("in {mailbox}")).await;
    }
    c.ok("CREATE \"=7\"").await;
    put(&mut c, "=7", "equals seven".into()).await;
    // "work 1" was appended while its mailbox was called Work: it belongs to Old now.
    owner.insert("work 1".into(), "Old");
    for (folder, paths) in files(&s) {
        let mailboxes: BTreeSet<&str> = paths.iter().map(|p| owner[&subject_of(p)]).collect();
        assert_eq!(mailboxes.len(), 1, "folder {folder:?} mixes {mailboxes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_the_maildir_keeps_flags_keywords_and_dates() {
    rebuild_keeps_flags_keywords_and_dates(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_a_maildir_behind_the_journal_keeps_flags_keywords_and_dates() {
    rebuild_keeps_flags_keywords_and_dates(true).await;
}

/// Flags, keywords, dates and mailboxes (a MOVE's included) survive an index rebuild from
/// the Maildir, with the Maildir written directly or behind the journal.
async fn rebuild_keeps_flags_keywords_and_dates(journal: bool) {
    let mut s = TestServer::start_with(|c| {
        c.storage.main.journal.enabled = journal;
        c.storage.main.journal.dir = c.data_dir.join("journal");
    })
    .await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Work").await;
    let flags = [
        "\\Seen",
        "\\Flagged \\Seen",
        "",
        "\\Answered $Important",
        "\\Draft",
    ];
    for (i, f) in flags.iter().enumerate() {
        let mailbox = if i % 2 == 0 { "INBOX" } else { "Work" };
        let tag = c.tag();
        let raw = message(&format!("m{i}"));
        c.send_raw(
            format!(
                "{tag} APPEND {mailbox} ({f}) \"0{}-Mar-2021 10:00:0{i} +0000\" {{{}+}}\r\n",
                i + 1,
                raw.len()
            )
            .as_bytes(),
        )
        .await;
        c.send_raw(&raw).await;
        c.send_raw(b"\r\n").await;
        assert!(c.until_tagged(&tag).await.is_ok());
    }
    c.ok("SELECT INBOX").await;
    c.ok("STORE 1 +FLAGS ($Label1 \\Deleted)").await;
    c.ok("STORE 2 -FLAGS (\\Seen)").await;
    // A MOVE takes the message's file to its new folder; a session that still numbers it in
    // INBOX reads it from the old one until it is told.
    let mut d = s.login("alice").await;
    d.ok("SELECT INBOX").await;
    c.ok("MOVE 3 Work").await;
    let listing = async |c: &mut strata_integration_tests::Client| {
        let mut out = BTreeMap::new();
        for mailbox in ["INBOX", "Work"] {
            c.ok(&format!("EXAMINE {mailbox}")).await;
            let r = c
                .ok("FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                .await;
            for l in r.untagged.iter().filter(|l| l.contains("FETCH")) {
                let subject = l.split("Subject: ").nth(1).unwrap().trim().to_string();
                let flags = l
                    .split("FLAGS (")
                    .nth(1)
                    .unwrap()
                    .split(')')
                    .next()
                    .unwrap();
                let flags: BTreeSet<&str> = flags
                    .split(' ')
                    .filter(|f| !f.is_empty() && *f != "\\Recent")
                    .collect();
                let date = l
                    .split("INTERNALDATE \"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                out.insert(
                    subject,
                    (mailbox.to_string(), format!("{flags:?}"), date.to_string()),
                );
            }
        }
        out
    };
    let before = listing(&mut c).await;
    assert_eq!(before.len(), flags.len());
    // The file names follow the flags a moment after they change.
    // Keyword letters are per folder (Dovecot's dovecot-keywords).
    let want_names = [("m0", ":2,STa"), ("m3", ":2,Ra"), ("m4", ":2,D")];
    let r = d.ok("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert!(r.has("Subject: m4"), "{r:?}");
    d.ok("NOOP").await;
    d.ok("LOGOUT").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let by_folder = files(&s);
        let all: Vec<PathBuf> = by_folder.values().flatten().cloned().collect();
        let labelled = want_names.iter().all(|(subject, suffix)| {
            all.iter()
                .any(|p| subject_of(p) == *subject && p.to_string_lossy().ends_with(suffix))
        });
        let moved: Vec<&PathBuf> = all.iter().filter(|p| subject_of(p) == "m4").collect();
        let refiled = moved.len() == 1
            && by_folder
                .get(".Work")
                .is_some_and(|f| f.iter().any(|p| subject_of(p) == "m4"));
        if labelled && refiled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "files not labelled: {all:?}"
        );
        tokio::task::yield_now().await;
    }
    drop(c);

    s.stop().await;
    let index = strata_server::index_path(&s.data_dir, "alice");
    strata_server::import::retire_index(&index, "rebuild")
        .await
        .unwrap();
    let (store, backends) = strata_server::serve::mailstore(&s.config).await.unwrap();
    backends.drain_journals().await.unwrap();
    let user = store.user("alice").await.unwrap();
    let root = s.data_dir.join("mail").join("alice");
    let report = strata_server::import::adopt_maildir(&user, &root, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.messages, flags.len() as u64);
    drop(user);
    store.close_idle().await;
    drop(store);
    drop(backends);
    s.restart().await;
    let mut c = s.login("alice").await;
    let after = listing(&mut c).await;
    assert_eq!(after, before);
}
