//! A node is lost with its disk: a server (a process of its own) on data directory A, its
//! accounts in the store (`[auth] backend = "store"`), runs a
//! mixed workload with `append_ack = "acked"`, an mbsync copy is made, the server is killed with
//! SIGKILL and A is deleted. A server on an empty data directory B with the same configuration
//! answers every mailbox, UID, flag and subscription as A did, and the mbsync copy resyncs
//! without fetching anything again. Once per shared store: SQLite (on a disk that survives),
//! PostgreSQL, MariaDB and S3, each on loopback, and a Maildir shipping to a directory
//! (`[index.ship] dir`). Then, on the shared stores, the shipped index is lost too and the
//! index rebuilt from the bodies' own metadata.

use std::path::{Path, PathBuf};

use strata_integration_tests::process::ServerProcess;
use strata_integration_tests::s3server::S3Server;
use strata_integration_tests::stores::{self, MARIADB_ADMIN, POSTGRES_ADMIN};
use strata_integration_tests::{Client, plain_message};

/// The store's part of the configuration, and what keeps it alive.
struct Store {
    toml: String,
    _s3: Option<S3Server>,
    _db: Option<stores::Resources>,
}

async fn store(kind: &str, root: &Path) -> Store {
    let sql = |url: &str| {
        format!(
            "[storage]\nbackend = \"sql\"\nappend_ack = \"acked\"\n[storage.sql]\nurl = \"{url}\"\nchunk_kb = 4\n"
        )
    };
    match kind {
        "sqlite" => Store {
            // The database file stands for a store that outlives the node: it is not in A.
            toml: sql(&format!("sqlite:{}", root.join("bodies.db").display())),
            _s3: None,
            _db: None,
        },
        "postgres" | "mariadb" => {
            let admin = if kind == "postgres" {
                POSTGRES_ADMIN
            } else {
                MARIADB_ADMIN
            };
            let (name, url) = stores::scratch_database(admin).await;
            Store {
                toml: sql(&url),
                _s3: None,
                _db: Some(stores::Resources {
                    s3: None,
                    database: Some((admin.to_string(), name)),
                }),
            }
        }
        "s3" => {
            let s3 = S3Server::start(&root.join("s3"), "strata").await.unwrap();
            Store {
                toml: format!(
                    "[storage]\nbackend = \"s3\"\nappend_ack = \"acked\"\n[storage.s3]\n{}",
                    s3.toml_table("node/")
                ),
                _s3: Some(s3),
                _db: None,
            }
        }
        // A Maildir on a disk that outlives the node, its indexes (and accounts) shipped to a
        // directory beside it.
        "maildir" => Store {
            toml: format!(
                "[storage]\nbackend = \"maildir\"\nappend_ack = \"acked\"\n[storage.maildir]\nroot = \"{}\"\n[index.ship]\ndir = \"{}\"\n",
                root.join("maildir").display(),
                root.join("shipped").display()
            ),
            _s3: None,
            _db: None,
        },
        other => panic!("no store {other}"),
    }
}

fn write_config(root: &Path, data: &Path, store: &Store) -> PathBuf {
    let path = root.join(format!(
        "{}.toml",
        data.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(data).unwrap();
    // Accounts live in the store too: a new node knows them with no step of its own.
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\n[auth]\nbackend = \"store\"\n{}[log]\nlevel = \"warn\"\n",
            data.display(),
            store.toml
        ),
    )
    .unwrap();
    path
}

/// Adds alice, once, where every node finds her: the store.
async fn add_alice(config: &Path) {
    let cfg = strata_config::load(config).unwrap();
    strata_server::accounts::Accounts::open_direct(&cfg)
        .await
        .unwrap()
        .add("alice", "alice-password")
        .await
        .unwrap();
}

fn spawn(config: &Path) -> ServerProcess {
    ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_strata-process")), config)
}

async fn login(port: u16) -> Client {
    let mut c = Client::plain(([127, 0, 0, 1], port).into()).await;
    c.ok("LOGIN alice alice-password").await;
    c
}

/// Every change a client can make, each answered OK.
async fn workload(c: &mut Client) {
    c.ok("CREATE Projects").await;
    c.ok("CREATE Old").await;
    c.ok("CREATE Tmp").await;
    for i in 1..=8 {
        let flags = if i % 2 == 0 { "\\Seen" } else { "" };
        let r = c
            .append("INBOX", flags, &plain_message(i, &format!("inbox {i}")))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    for i in 1..=3 {
        let r = c
            .append("Projects", "", &plain_message(i, &format!("project {i}")))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    c.ok("SELECT INBOX").await;
    c.ok("STORE 1:3 +FLAGS (\\Flagged $Important)").await;
    c.ok("STORE 2 -FLAGS (\\Seen)").await;
    c.ok("UID COPY 4:5 Projects").await;
    c.ok("UID MOVE 6 Old").await;
    c.ok("UID STORE 7 +FLAGS (\\Deleted)").await;
    c.ok("EXPUNGE").await;
    c.ok("RENAME Old Archived").await;
    c.ok("SUBSCRIBE Projects").await;
    c.ok("SUBSCRIBE Archived").await;
    c.ok("DELETE Tmp").await;
    c.ok("UNSUBSCRIBE Archived").await;
    c.ok("CLOSE").await;
}

/// What a client can learn of the account: mailboxes, subscriptions, and per mailbox its
/// UIDVALIDITY, UIDNEXT and MAILBOXID and every message's UID, flags, date, size, subject,
/// EMAILID and THREADID.
async fn state(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let mut list: Vec<String> = c.ok("LIST \"\" \"*\"").await.untagged;
    list.sort();
    let mut lsub: Vec<String> = c.ok("LSUB \"\" \"*\"").await.untagged;
    lsub.sort();
    out.extend(list.iter().cloned());
    out.extend(lsub);
    for line in list {
        let name = mailbox_of(&line);
        let status = c
            .ok(&format!(
                "STATUS {name} (MESSAGES UIDNEXT UIDVALIDITY UNSEEN MAILBOXID)"
            ))
            .await;
        out.extend(status.untagged);
        c.ok(&format!("EXAMINE {name}")).await;
        let r = c
            .cmd(
                "UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE EMAILID THREADID \
                 BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
            )
            .await;
        out.extend(r.untagged.into_iter().filter(|l| l.contains("FETCH")));
    }
    out
}

/// The mailbox a LIST line names (the names here are atoms or simple quoted strings).
fn mailbox_of(line: &str) -> String {
    line.rsplit(' ')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// What survives a rebuild from the bodies alone: each mailbox's messages by date, size and
/// subject (UIDs and flags are not in the store).
async fn contents(c: &mut Client) -> Vec<String> {
    let list: Vec<String> = c.ok("LIST \"\" \"*\"").await.untagged;
    let mut out = Vec::new();
    for line in list {
        let name = mailbox_of(&line);
        c.ok(&format!("EXAMINE {name}")).await;
        let r = c
            .cmd("FETCH 1:* (INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            .await;
        for l in r.untagged.iter().filter(|l| l.contains("FETCH")) {
            let at = l.find("INTERNALDATE").unwrap();
            out.push(format!("{name}: {}", &l[at..]));
        }
    }
    out.sort();
    out
}

fn mbsync_rc(dir: &Path, port: u16, cert: &Path, local: &Path) -> PathBuf {
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount strata\nHost localhost\nPort {port}\nUser alice\nPass alice-password\n\
SSLType STARTTLS\nCertificateFile {cert}\n\n\
IMAPStore remote\nAccount strata\n\n\
MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSyncState *\n",
            cert = cert.display(),
            local = local.display(),
        ),
    )
    .unwrap();
    rc
}

/// Runs mbsync; its output.
fn mbsync(rc: &Path) -> String {
    let out = std::process::Command::new("mbsync")
        .arg("-V")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        .output()
        .expect("mbsync runs (.ci/run installs isync)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed: {text}");
    text
}

/// Every file under a directory, by relative path.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains(".mbsyncstate") {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Node A (data directory `root/a`) on `store`, alice's account added, after the workload:
/// its data directory, configuration, process and alice's session.
async fn node_after_workload(
    root: &Path,
    store: &Store,
) -> (PathBuf, PathBuf, ServerProcess, Client) {
    let data_a = root.join("a");
    let config_a = write_config(root, &data_a, store);
    add_alice(&config_a).await;
    let a = spawn(&config_a);
    let mut c = login(a.port).await;
    workload(&mut c).await;
    (data_a, config_a, a, c)
}

async fn node_loss(kind: &str) {
    let root = tempfile::tempdir().unwrap();
    let store = store(kind, root.path()).await;
    let (data_a, _, mut a, mut c) = node_after_workload(root.path(), &store).await;
    let before = state(&mut c).await;
    let mut kept = contents(&mut c).await;
    assert!(
        before.iter().any(|l| l.contains("$Important")),
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .any(|l| l.contains("THREADID (T") && l.contains("EMAILID (M"))
            && before.iter().any(|l| l.contains("MAILBOXID (F")),
        "{before:?}"
    );

    // A client's copy, made before the node is lost.
    let local = root.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let cert_a = data_a.join("tls").join("self-signed.pem");
    mbsync(&mbsync_rc(root.path(), a.port, &cert_a, &local));
    let copied = files(&local);
    assert!(copied.len() >= 12, "mbsync copied the account: {copied:?}");

    // The node is lost, its disk with it.
    a.kill();
    drop(c);
    std::fs::remove_dir_all(&data_a).unwrap();

    let data_b = root.path().join("b");
    let config_b = write_config(root.path(), &data_b, &store);
    let b = spawn(&config_b);
    let mut c = login(b.port).await;
    let after = state(&mut c).await;
    assert_eq!(
        after, before,
        "{kind}: the new node answers as the lost one did"
    );
    // Bodies are there too.
    c.ok("EXAMINE Projects").await;
    let r = c.ok("UID FETCH 1:* BODY.PEEK[]").await;
    assert_eq!(
        r.with("").iter().filter(|l| l.contains("FETCH")).count(),
        5,
        "{r:?}"
    );

    // The client's copy resyncs against the new node and fetches nothing again.
    let cert_b = data_b.join("tls").join("self-signed.pem");
    let log = mbsync(&mbsync_rc(root.path(), b.port, &cert_b, &local));
    assert_eq!(
        files(&local),
        copied,
        "{kind}: nothing fetched again\n{log}"
    );
    drop(c);
    drop(b);
    if kind == "maildir" {
        // A Maildir's rebuild reads its folders and file names (tests/maildir.rs).
        return;
    }

    // The last resort: the shipped index is lost too, and the index is rebuilt from what the
    // bodies record of themselves. A COPY shares its original's body, which names only the
    // original's mailbox: the two copies in Projects are not found again.
    let cfg_b = strata_config::load(&config_b).unwrap();
    std::fs::remove_dir_all(data_b.join("index")).unwrap();
    let refused = strata_server::fill::fill(&cfg_b, "alice", None, false, &|_, _| {})
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("index restore"), "{refused}");
    let done = strata_server::fill::fill(&cfg_b, "alice", None, true, &|_, _| {})
        .await
        .unwrap();
    assert!(done.discarded > 0, "{done:?}");
    assert_eq!(
        (done.report.messages, done.report.folders),
        (10, 3),
        "{kind}: {done:?}"
    );
    kept.retain(|l| !(l.starts_with("Projects:") && l.contains("inbox ")));
    // The rebuilt index is shipped: a node without it restores it.
    std::fs::remove_dir_all(data_b.join("index")).unwrap();
    let b = spawn(&config_b);
    let mut c = login(b.port).await;
    assert_eq!(
        contents(&mut c).await,
        kept,
        "{kind}: every body in the mailbox it was last filed in, with its date and size"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_on_sqlite() {
    node_loss("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_on_postgres() {
    node_loss("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_on_mariadb() {
    node_loss("mariadb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_on_s3() {
    node_loss("s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loss_on_maildir_shipping_to_a_directory() {
    node_loss("maildir").await;
}

/// APPENDs until the server dies, recording the UID of each one answered OK.
async fn append_until_killed(port: u16, acked: std::sync::Arc<std::sync::Mutex<Vec<u32>>>) {
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (r, mut w) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    let Ok(Some(_greeting)) = lines.next_line().await else {
        return;
    };
    if w.write_all(b"l LOGIN alice alice-password\r\n")
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(l)) = lines.next_line().await {
        if l.starts_with("l ") {
            break;
        }
    }
    for i in 0.. {
        let body = plain_message(i, &format!("compaction {i}"));
        let cmd = format!("a{i} APPEND INBOX {{{}+}}\r\n", body.len());
        if w.write_all(cmd.as_bytes()).await.is_err()
            || w.write_all(&body).await.is_err()
            || w.write_all(b"\r\n").await.is_err()
        {
            return;
        }
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.starts_with(&format!("a{i} OK [APPENDUID ")) => {
                    let uid = l
                        .split(' ')
                        .nth(4)
                        .and_then(|u| u.trim_end_matches(']').parse().ok());
                    acked.lock().unwrap().push(uid.expect("APPENDUID"));
                    break;
                }
                Ok(Some(l)) if l.starts_with(&format!("a{i} ")) => return,
                Ok(Some(_)) => {}
                _ => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_always_leaves_a_restorable_chain() {
    let root = tempfile::tempdir().unwrap();
    let store = store("sqlite", root.path()).await;
    // Every APPEND ships a diff and every third a new base: kills land in every step.
    let store = Store {
        toml: format!(
            "{}[index.ship]\nmax_diffs = 3\ncompact_ratio = 0.05\nmax_lag_ms = 5\n",
            store.toml
        ),
        ..store
    };
    let data = root.path().join("a");
    let config = write_config(root.path(), &data, &store);
    add_alice(&config).await;
    let cfg = strata_config::load(&config).unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut bases = Vec::new();
    for round in 0..8 {
        let mut server = spawn(&config);
        let port = server.port;
        let clients: Vec<_> = (0..2)
            .map(|_| tokio::spawn(append_until_killed(port, acked.clone())))
            .collect();
        let wanted = acked.lock().unwrap().len() + 3 + round;
        strata_integration_tests::until(
            "APPENDs answered",
            std::time::Duration::from_secs(60),
            || acked.lock().unwrap().len() >= wanted,
        )
        .await;
        server.kill();
        for c in clients {
            c.await.unwrap();
        }
        // What the store holds now restores, and holds every APPEND answered OK.
        let backends = std::sync::Arc::new(
            strata_server::backends::Backends::connect(&cfg.storage)
                .await
                .unwrap(),
        );
        let main = backends.factory()("alice").unwrap().main().clone();
        let dest = root.path().join(format!("restored-{round}.redb"));
        let restored = strata_mailstore::ship::chain::restore(&*main, &dest, 8)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("a chain");
        bases.push(restored.head.base);
        let index = strata_index::ReadOnlyIndex::open(&dest).unwrap();
        let snap = index.snapshot().unwrap();
        let inbox = snap.lookup(None, "INBOX").unwrap().unwrap();
        for uid in acked.lock().unwrap().iter() {
            assert!(
                snap.message(inbox, strata_index::Uid(*uid))
                    .unwrap()
                    .is_some(),
                "round {round}: UID {uid} was answered OK but the chain at {restored:?} lacks it"
            );
        }
    }
    assert!(acked.lock().unwrap().len() >= 40, "the load ran");
    bases.dedup();
    assert!(
        bases.len() >= 6,
        "compactions ran between the kills: bases at {bases:?}"
    );
}

/// Reads until `BYE [UNAVAILABLE]` (the takeover reached this session); false if the
/// connection ends or goes silent first.
async fn told_unavailable(c: &mut Client) -> bool {
    while let Some(l) = c
        .read_response_within(std::time::Duration::from_secs(60))
        .await
    {
        if l.starts_with("* BYE [UNAVAILABLE]") {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_user_the_newer_takes_over_and_the_older_stops() {
    let root = tempfile::tempdir().unwrap();
    let store = store("postgres", root.path()).await;
    let config_a = write_config(root.path(), &root.path().join("a"), &store);
    let config_b = write_config(root.path(), &root.path().join("b"), &store);
    add_alice(&config_a).await;
    let a = spawn(&config_a);
    let b = spawn(&config_b);

    let mut on_a = login(a.port).await;
    on_a.ok("SELECT INBOX").await;
    let r = on_a
        .append("INBOX", "", &plain_message(1, "written on A"))
        .await;
    assert!(r.is_ok(), "{r:?}");

    // B takes alice over: it has what A wrote, and A's session is ended.
    let mut on_b = login(b.port).await;
    on_b.ok("SELECT INBOX").await;
    let r = on_b
        .ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(r.has("written on A"), "{r:?}");
    let r = on_b
        .append("INBOX", "", &plain_message(2, "written on B"))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(
        told_unavailable(&mut on_a).await,
        "A's session learns of the takeover"
    );

    // A login on A takes alice back (no session of A holds her any more), with B's mail;
    // B's session is ended in turn.
    let mut again = login(a.port).await;
    again.ok("SELECT INBOX").await;
    let r = again
        .ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(r.has("written on A") && r.has("written on B"), "{r:?}");
    assert!(
        told_unavailable(&mut on_b).await,
        "B's session learns of the takeover"
    );

    // The chain never interleaves: epochs only grow along it, and it restores what A answers.
    let cfg = strata_config::load(&config_a).unwrap();
    // The store itself, beside the servers (which hold their journals).
    let shared = strata_server::backends::reach(&cfg.storage.main)
        .await
        .unwrap()
        .unwrap();
    let main = strata_backend_api::Prefixed::new(shared, "alice").unwrap();
    let head = strata_mailstore::ship::chain::read_head(&main)
        .await
        .unwrap()
        .unwrap();
    let sizes = strata_mailstore::ship::chain::probe(&main, head.base)
        .await
        .unwrap();
    let mut epochs = Vec::new();
    for seq in head.base..head.base + sizes.len() as u64 {
        epochs.push(
            strata_mailstore::ship::chain::peek(&main, seq)
                .await
                .unwrap()
                .epoch,
        );
    }
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    again.ok("UNSELECT").await;
    let r = again.ok("STATUS INBOX (MESSAGES)").await;
    assert!(r.has("MESSAGES 2"), "{r:?}");
    drop((a, b));
}

/// The live shipping figures of alice from the server on `data`: (local MODSEQ, shipped
/// MODSEQ, operations between them).
async fn lag(data: &Path) -> (u64, u64, u64) {
    let mut lines = Vec::new();
    strata_server::control::request(data, "shipping alice", &mut |l| lines.push(l.to_string()))
        .await
        .unwrap()
        .expect("the server answers on its control socket");
    let line = lines.first().expect("alice is open");
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .parse()
            .unwrap()
    };
    (field("local"), field("shipped"), field("unshipped"))
}

/// With `append_ack = "soft-done"`, a node's loss loses exactly the operations its shipping
/// lag counted (`strata index status`, the control socket's `shipping`), and nothing before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_done_loses_only_what_the_lag_metric_counts() {
    let root = tempfile::tempdir().unwrap();
    let mut store = store("sqlite", root.path()).await;
    store.toml = store.toml.replace("\"acked\"", "\"soft-done\"");
    let (data_a, config_a, mut a, mut c) = node_after_workload(root.path(), &store).await;
    let shipped_state = state(&mut c).await;
    until_shipped(&data_a).await;
    drop(c);
    a.kill();

    // The same node again, now shipping only every 50 minutes: what it does next is the lag.
    let slow = format!(
        "{}[index.ship]\nmax_lag_ms = 3000000\nmax_changes = 100000\n",
        std::fs::read_to_string(&config_a).unwrap()
    );
    std::fs::write(&config_a, slow).unwrap();
    let mut a = spawn(&config_a);
    let mut c = login(a.port).await;
    c.ok("SELECT INBOX").await;
    let (_, _, before) = lag(&data_a).await;
    c.ok("UID STORE 1 +FLAGS (\\Answered)").await;
    let mut other = login(a.port).await;
    for i in 1..=4 {
        let r = other
            .append("Projects", "", &plain_message(i, &format!("late {i}")))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    let (local, shipped, unshipped) = lag(&data_a).await;
    assert_eq!(unshipped, local - shipped);
    assert_eq!(
        unshipped,
        before + 5,
        "one operation per command: a STORE and four APPENDs"
    );
    a.kill();
    drop((c, other));
    std::fs::remove_dir_all(&data_a).unwrap();

    let data_b = root.path().join("b");
    let config_b = write_config(root.path(), &data_b, &store);
    let b = spawn(&config_b);
    let mut c = login(b.port).await;
    // Everything shipped is there, and nothing of the five operations the lag counted.
    assert_eq!(state(&mut c).await, shipped_state);
    let (restored, _, _) = lag(&data_b).await;
    assert_eq!(
        restored, shipped,
        "restored at the MODSEQ the lag said was shipped"
    );
    drop(b);
}

/// Waits until the server on `data` has shipped all of alice's index (it answers then).
async fn until_shipped(data: &Path) {
    let done = strata_server::control::request(data, "shipped alice", &mut |_| {})
        .await
        .unwrap()
        .expect("the server answers on its control socket");
    assert!(done.contains("unshipped=0"), "{done}");
}
