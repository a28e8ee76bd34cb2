//! Hostile clients, as an IMAP compliance suite or an attacker would be: what a client sends,
//! before or after logging in, neither ends the server nor makes it hold more than its limits
//! say, and the other sessions go on.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_integration_tests::process::ServerProcess;
use strata_integration_tests::{Client, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn nested_multiparts(levels: usize) -> Vec<u8> {
    let mut raw = b"From: deep@example.org\r\nSubject: deep multipart\r\n".to_vec();
    for i in 0..levels {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\nthe bottom\r\n");
    for i in (0..levels).rev() {
        raw.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    raw
}

fn nested_messages(levels: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for i in 0..levels {
        raw.extend_from_slice(
            format!("Subject: deep message {i}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"Subject: the bottom\r\n\r\nthe bottom\r\n");
    raw
}

/// What a FETCH of everything structural about the selected messages must answer.
async fn fetch_structure(c: &mut Client, count: usize) {
    let r = c
        .ok("FETCH 1:* (BODYSTRUCTURE BODY ENVELOPE BODY.PEEK[1.1.1.1] BODY.PEEK[1.MIME] BODY.PEEK[TEXT]<0.100>)")
        .await;
    assert_eq!(
        r.with("").iter().filter(|l| l.contains(" FETCH (")).count(),
        count,
        "{r:?}"
    );
    c.ok("SEARCH BODY bottom").await;
    c.ok("SEARCH TEXT deep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_mime_appended_or_imported_leaves_the_server_up_and_answering() {
    let mut s = TestServer::start().await;
    let mut bob = s.login("bob").await;
    bob.ok("SELECT INBOX").await;
    let mut c = s.login("alice").await;
    let deep = [
        nested_multiparts(10_000),
        nested_messages(2_000),
        nested_multiparts(1_500),
    ];
    for raw in &deep {
        let r = c.append("INBOX", "", raw).await;
        assert!(r.is_ok(), "{r:?}");
    }
    c.ok("SELECT INBOX").await;
    fetch_structure(&mut c, deep.len()).await;
    // Everyone else was served throughout.
    bob.ok("NOOP").await;
    c.ok("LOGOUT").await;
    drop(bob);

    // The same messages brought in by `strata import maildir`, then fetched after a restart.
    s.stop().await;
    let src = s.root.path().join("deep-maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    for (i, raw) in deep.iter().enumerate() {
        std::fs::write(
            src.join("cur").join(format!("170000000{i}.deep.host:2,S")),
            raw,
        )
        .unwrap();
    }
    let (store, _) = strata_server::serve::mailstore(&s.config).await.unwrap();
    let user = store.user("bob").await.unwrap();
    let report = strata_server::import::import_maildir(&user, &src, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.messages, deep.len() as u64);
    drop(user);
    store.close_idle().await;
    drop(store);
    s.restart().await;
    let mut bob = s.login("bob").await;
    bob.ok("SELECT INBOX").await;
    fetch_structure(&mut bob, deep.len()).await;
}

/// Reads lines until one starts with `prefix`; the line, or `None` at end of stream.
async fn line_starting(r: &mut (impl AsyncBufReadExt + Unpin), prefix: &str) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line.starts_with(prefix) {
            return Some(line.trim_end().to_string());
        }
    }
}

/// Sends `total` bytes of `fill` in 1 MiB writes; stops early if the server closes.
async fn send_bulk(w: &mut (impl AsyncWriteExt + Unpin), total: usize, chunk: &[u8]) {
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        if w.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        sent += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_sending_60_mb_before_login_leave_the_server_small() {
    const CLIENTS: usize = 50;
    const BYTES: usize = 60_000_000;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    strata_server::users::UserDb::new(data.join("users"))
        .add("alice", "alice-password")
        .unwrap();
    let config = root.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\nmax_connections_per_ip = 100\nlogin_timeout_secs = 600\n[log]\nlevel = \"warn\"\n",
            data.display()
        ),
    )
    .unwrap();
    let server = Arc::new(ServerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_strata-process")),
        &config,
    ));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let before = server.rss();

    // Watch the server's memory while the flood lasts.
    let highest = Arc::new(AtomicU64::new(before));
    let watch = {
        let (server, highest) = (server.clone(), highest.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            loop {
                every.tick().await;
                highest.fetch_max(server.rss(), Ordering::Relaxed);
            }
        })
    };
    let chunk: Arc<Vec<u8>> = Arc::new(vec![b'x'; 1 << 20]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                line_starting(&mut r, "* OK").await.expect("greeting");
                let answer = match i % 3 {
                    // A synchronizing literal far over the limit, sent anyway after the NO.
                    0 => {
                        w.write_all(b"a LOGIN {60000000}\r\n").await.unwrap();
                        let no = line_starting(&mut r, "a ").await;
                        send_bulk(&mut w, BYTES, &chunk).await;
                        let _ = w.write_all(b"\r\nb NOOP\r\n").await;
                        assert!(
                            no.as_deref()
                                .is_some_and(|l| l.starts_with("a NO [TOOBIG]")),
                            "{no:?}"
                        );
                        line_starting(&mut r, "b ").await
                    }
                    // A line that never ends.
                    1 => {
                        w.write_all(b"b LOGIN ").await.unwrap();
                        send_bulk(&mut w, BYTES, &chunk).await;
                        let _ = w.write_all(b"\r\n").await;
                        line_starting(&mut r, "b ").await
                    }
                    // A non-synchronizing literal far over the limit.
                    _ => {
                        w.write_all(b"b LOGIN {60000000+}\r\n").await.unwrap();
                        send_bulk(&mut w, BYTES, &chunk).await;
                        let _ = w.write_all(b" x\r\n").await;
                        line_starting(&mut r, "b ").await
                    }
                };
                let answer = answer.expect("an answer before the connection ends");
                assert!(
                    answer.starts_with("b BAD [TOOBIG]")
                        || answer.starts_with("b NO [TOOBIG]")
                        || answer.starts_with("b OK"),
                    "client {i}: {answer}"
                );
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    watch.abort();
    let peak = highest.load(Ordering::Relaxed).max(server.peak_rss());
    eprintln!(
        "server RSS: {} MiB before, {} MiB at most while {CLIENTS} clients sent {} MB each before login",
        before >> 20,
        peak >> 20,
        BYTES / 1_000_000
    );
    assert!(
        peak < 200 << 20,
        "the server's RSS reached {} MiB",
        peak >> 20
    );
    // And it still serves.
    let mut c = Client::plain(addr).await;
    c.ok("LOGIN alice alice-password").await;
    c.ok("SELECT INBOX").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_bytes_cannot_hold_a_connection() {
    let s = TestServer::start_with(|c| {
        c.imap.login_timeout = Duration::from_secs(1);
        c.imap.command_timeout = Duration::from_secs(1);
    })
    .await;
    // Before login, one byte at a time (as many complete commands as it likes, too): the
    // login deadline counts from the connection, not from the last byte.
    let trickle = |tcp: TcpStream, first: &'static [u8], each: &'static [u8]| async move {
        let (r, mut w) = tcp.into_split();
        let writer = tokio::spawn(async move {
            let _ = w.write_all(first).await;
            // A slow client: a few bytes every tenth of a second, for as long as it may.
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                if w.write_all(each).await.is_err() {
                    return;
                }
            }
        });
        let mut r = BufReader::new(r);
        let bye = line_starting(&mut r, "* BYE").await;
        writer.abort();
        bye
    };
    let tcp = TcpStream::connect(s.imap_addr()).await.unwrap();
    let bye = tokio::time::timeout(Duration::from_secs(30), trickle(tcp, b"", b"x"))
        .await
        .expect("the connection was cut");
    assert_eq!(bye.as_deref(), Some("* BYE login took too long"));
    let tcp = TcpStream::connect(s.imap_addr()).await.unwrap();
    let bye = tokio::time::timeout(Duration::from_secs(30), trickle(tcp, b"", b"a NOOP\r\n"))
        .await
        .expect("the connection was cut");
    assert_eq!(bye.as_deref(), Some("* BYE login took too long"));

    // After login, a command that has begun must arrive within its own deadline.
    let tcp = TcpStream::connect(s.imap_addr()).await.unwrap();
    let bye = tokio::time::timeout(
        Duration::from_secs(30),
        trickle(
            tcp,
            b"a LOGIN alice alice-password\r\nb SELECT INBOX\r\nc NOOP",
            b" ",
        ),
    )
    .await
    .expect("the connection was cut");
    assert_eq!(
        bye.as_deref(),
        Some("* BYE command took too long to arrive")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_counted_before_they_are_checked() {
    let s = TestServer::start_with(|c| {
        c.imap.max_failed_logins_per_ip = 5;
        c.imap.max_connections_per_ip = 100;
    })
    .await;
    let addr = s.imap_addr();
    let guesses: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = Client::plain(addr).await;
                c.cmd(&format!("LOGIN alice guess{i}")).await.status
            })
        })
        .collect();
    let mut checked = 0;
    for g in guesses {
        let status = g.await.unwrap();
        if status.starts_with("NO [AUTHENTICATIONFAILED]") {
            checked += 1;
        } else {
            assert!(status.starts_with("NO [UNAVAILABLE]"), "{status}");
        }
    }
    assert_eq!(checked, 5, "{checked} of 50 parallel guesses were checked");
    // The address stays refused, even with the right password...
    let mut c = Client::plain(addr).await;
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("NO [UNAVAILABLE]"), "{r:?}");
    // ...while another address logs in, and that does not lift the first one's limit.
    let mut c = Client::plain_from(addr, Ipv4Addr::new(127, 0, 0, 2)).await;
    c.ok("LOGIN alice alice-password").await;
    let mut c = Client::plain(addr).await;
    let r = c.cmd("LOGIN alice alice-password").await;
    assert!(r.status.starts_with("NO [UNAVAILABLE]"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_or_huge_commands_get_an_answer_and_the_session_goes_on() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.append("INBOX", "", b"Subject: one\r\n\r\nbody\r\n").await;
    c.ok("SELECT INBOX").await;
    let deep = 20_000;
    let commands = [
        format!("SEARCH {}ALL{}", "(".repeat(deep), ")".repeat(deep)),
        format!("SEARCH {}ALL", "NOT ".repeat(deep)),
        format!(
            "SEARCH {}ALL{}",
            "OR ALL ".repeat(deep),
            " ALL".repeat(deep)
        ),
        format!("FETCH 1 (BODY.PEEK[{}1])", "1.".repeat(deep)),
        format!("FETCH 1 ({}FLAGS{})", "(".repeat(deep), ")".repeat(deep)),
        format!(
            "STORE 1 +FLAGS ({}\\Seen{})",
            "(".repeat(deep),
            ")".repeat(deep)
        ),
        format!(
            "FETCH {} FLAGS",
            (1..6000)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("SEARCH {}", "SUBJECT x ".repeat(5000)),
        // Extension syntax cut out before imap-codec sees the command.
        format!("SEARCH RETURN ({}) ALL", "(".repeat(deep)),
        format!(
            "SEARCH RETURN (SAVE) {}ALL{}",
            "(".repeat(deep),
            ")".repeat(deep)
        ),
        format!("SEARCH {}", "$ ".repeat(deep)),
        format!("LIST ({}) \"\" *", "(".repeat(deep)),
        format!("LIST \"\" ({})", "* ".repeat(deep)),
        format!(
            "LIST \"\" * RETURN (STATUS ({}MESSAGES{}))",
            "(".repeat(deep),
            ")".repeat(deep)
        ),
        format!("CREATE x (USE ({}))", "\\Sent ".repeat(deep)),
    ];
    for command in &commands {
        let r = c.cmd(command).await;
        assert!(
            r.status.starts_with("OK") || r.status.starts_with("BAD"),
            "{}...: {r:?}",
            &command[..40]
        );
        // The session is in step and answers the next command.
        c.ok("NOOP").await;
    }
    // Too deep is refused; as deep as a client nests in practice is answered.
    let r = c.cmd(&commands[0]).await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("SEARCH ((((ALL))))").await;
    c.ok("SEARCH OR OR SUBJECT a SUBJECT b SUBJECT c").await;
    c.ok("FETCH 1 (BODY.PEEK[1.1.1.1.1.1.1.1])").await;
    // A saved result of every other message, used often, is refused as too large a command.
    for i in 2..=2000 {
        let r = c
            .append("INBOX", "", format!("Subject: {i}\r\n\r\nx\r\n").as_bytes())
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    c.ok("NOOP").await;
    let mut odd: Vec<String> = (1..=2000).step_by(2).map(|n| n.to_string()).collect();
    odd.truncate(1000);
    c.ok(&format!("SEARCH RETURN (SAVE) {}", odd.join(",")))
        .await;
    let r = c.cmd(&format!("SEARCH {}", "$ ".repeat(2000))).await;
    assert!(r.status.starts_with("BAD [LIMIT]"), "{r:?}");
    c.ok("SEARCH $ $").await;
}
