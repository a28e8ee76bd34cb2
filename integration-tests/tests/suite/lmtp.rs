//! LMTP delivery (RFC 2033) against a real server over TCP and its Unix socket: the messages
//! appear in the recipients' mailboxes as IMAP sees them, one reply per recipient, and bad
//! input (bare LF, oversize, too many recipients, a client gone mid-DATA) gets a clear answer
//! and leaves nothing half-delivered.

use std::net::SocketAddr;
use std::time::Duration;

use strata_integration_tests::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// An LMTP client: sends lines, reads replies (a reply is its lines up to the one whose code
/// is followed by a space).
struct Lmtp<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lmtp<S> {
    async fn greeted(io: S) -> Lmtp<S> {
        let mut c = Lmtp {
            io: BufReader::new(io),
        };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.expect("send");
    }

    /// The next reply, its lines joined by `\n`; empty at end of input.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.io.read_line(&mut line))
                .await
                .expect("a reply in time")
                .expect("read");
            if n == 0 {
                return lines.join("\n");
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// LHLO, MAIL and the RCPTs, each expected to be accepted.
    async fn envelope(&mut self, from: &str, to: &[&str]) {
        let lhlo = self.cmd("LHLO mta.example.org").await;
        assert!(
            lhlo.contains("PIPELINING") && lhlo.contains("CHUNKING"),
            "{lhlo}"
        );
        assert!(
            self.cmd(&format!("MAIL FROM:<{from}>"))
                .await
                .starts_with("250 ")
        );
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250 2.1.5"), "{t}: {r}");
        }
    }
}

async fn tcp(addr: SocketAddr) -> Lmtp<TcpStream> {
    Lmtp::greeted(TcpStream::connect(addr).await.expect("connect")).await
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.lmtp.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.lmtp.domains = vec!["example.org".into()];
        c.lmtp.max_message_bytes = 100_000;
        c.lmtp.max_recipients = 5;
    })
    .await
}

fn lmtp_addr(s: &TestServer) -> SocketAddr {
    s.server().lmtp.expect("LMTP listener")
}

#[tokio::test]
async fn a_message_for_two_users_is_in_both_inboxes_with_a_reply_each() {
    let s = server().await;
    let mut c = tcp(lmtp_addr(&s)).await;
    c.envelope(
        "sender@remote.example",
        &["alice@example.org", "bob@example.org"],
    )
    .await;
    // Pipelined: an unknown user and a domain not served are refused, the others stand.
    c.send(b"RCPT TO:<nobody@example.org>\r\nRCPT TO:<alice@elsewhere.org>\r\n")
        .await;
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert!(c.reply().await.starts_with("550 5.1.2"));
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(
        b"Subject: hello\r\nFrom: sender@remote.example\r\n\r\nfirst line\r\n..dot line\r\n.\r\n",
    )
    .await;
    let alice = c.reply().await;
    let bob = c.reply().await;
    assert!(
        alice.starts_with("250 2.0.0 <alice@example.org>"),
        "{alice}"
    );
    assert!(bob.starts_with("250 2.0.0 <bob@example.org>"), "{bob}");
    assert!(c.cmd("QUIT").await.starts_with("221 "));
    for user in ["alice", "bob"] {
        let got = s.messages(user, "INBOX").await;
        assert_eq!(got.len(), 1, "{user}");
        assert_eq!(
            got[0],
            "Return-Path: <sender@remote.example>\r\nSubject: hello\r\nFrom: sender@remote.example\r\n\r\nfirst line\r\n.dot line\r\n"
        );
    }
}

#[tokio::test]
async fn detail_files_into_its_mailbox_and_delivered_to_names_the_one_recipient() {
    let s = server().await;
    let mut imap = s.login("alice").await;
    imap.ok("CREATE lists").await;
    let mut c = tcp(lmtp_addr(&s)).await;
    c.envelope("", &["alice+lists@example.org"]).await;
    c.cmd("DATA").await;
    c.send(b"Subject: to lists\r\n\r\nbody\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.contains("delivered to lists"), "{r}");
    // A detail with no mailbox of that name goes to INBOX (BDAT this time).
    c.envelope("", &["alice+nosuch@example.org"]).await;
    let body = b"Subject: to inbox\r\n\r\nbody\r\n";
    c.send(format!("BDAT {} LAST\r\n", body.len()).as_bytes())
        .await;
    c.send(body).await;
    let r = c.reply().await;
    assert!(r.contains("delivered to INBOX"), "{r}");
    let lists = s.messages("alice", "lists").await;
    assert_eq!(
        lists,
        [
            "Return-Path: <>\r\nDelivered-To: alice+lists@example.org\r\nSubject: to lists\r\n\r\nbody\r\n"
        ]
    );
    let inbox = s.messages("alice", "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].ends_with("Subject: to inbox\r\n\r\nbody\r\n"));
}

#[tokio::test]
async fn bad_input_gets_clear_replies_and_nothing_half_delivered() {
    let s = server().await;
    let addr = lmtp_addr(&s);
    let mut c = tcp(addr).await;
    // Commands out of order, and SMTP's greeting.
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("503 5.5.1"));
    assert!(c.cmd("EHLO x").await.starts_with("500 5.5.1"));
    assert!(c.cmd("LHLO x").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    // An oversize SIZE is refused at MAIL; an oversize message after DATA, per recipient.
    assert!(
        c.cmd("MAIL FROM:<a@b> SIZE=1000000")
            .await
            .starts_with("552 5.3.4")
    );
    c.envelope("a@b", &["alice@example.org", "bob@example.org"])
        .await;
    c.cmd("DATA").await;
    let big = "x".repeat(998) + "\r\n";
    for _ in 0..150 {
        c.send(big.as_bytes()).await;
    }
    c.send(b".\r\n").await;
    assert!(c.reply().await.starts_with("552 5.3.4 <alice@example.org>"));
    assert!(c.reply().await.starts_with("552 5.3.4 <bob@example.org>"));
    // Too many recipients: the sixth and later get 452; the accepted ones still get mail.
    c.envelope("a@b", &["alice@example.org"]).await;
    for _ in 0..999 {
        c.send(b"RCPT TO:<bob@example.org>\r\n").await;
    }
    let mut replies = Vec::new();
    for _ in 0..999 {
        replies.push(c.reply().await);
    }
    assert!(replies[..4].iter().all(|r| r.starts_with("250 ")));
    assert!(
        replies[4..].iter().all(|r| r.starts_with("452 4.5.3")),
        "{}",
        replies[4]
    );
    c.cmd("DATA").await;
    // Bare LFs in the message are stored as CRLF; a bare-LF dot does not end it.
    c.send(b"Subject: lf\n\nline\n.\nstill the message\r\n.\r\n")
        .await;
    for _ in 0..5 {
        assert!(c.reply().await.starts_with("250 2.0.0"));
    }
    let alice = s.messages("alice", "INBOX").await;
    assert_eq!(alice.len(), 1, "only the last transaction delivered");
    assert!(
        alice[0].ends_with("Subject: lf\r\n\r\nline\r\n.\r\nstill the message\r\n"),
        "{:?}",
        alice[0]
    );
    // A line longer than any command is refused once, and the session goes on.
    c.send(format!("NOOP {}\r\n", "y".repeat(10_000)).as_bytes())
        .await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").await.starts_with("250"));

    // A client that goes away in the middle of DATA delivers nothing.
    let mut gone = tcp(addr).await;
    gone.envelope("a@b", &["bob@example.org"]).await;
    gone.cmd("DATA").await;
    gone.send(b"Subject: cut\r\n\r\nhalf a mess").await;
    drop(gone);
    // The next session's mail arrives after it: had the cut one been filed, it would be first.
    let mut next = tcp(addr).await;
    next.envelope("a@b", &["bob@example.org"]).await;
    next.cmd("DATA").await;
    next.send(b"Subject: whole\r\n\r\nbody\r\n.\r\n").await;
    assert!(next.reply().await.starts_with("250 2.0.0"));
    let bob = s.messages("bob", "INBOX").await;
    assert_eq!(
        bob.len(),
        5,
        "the 4 copies of the last message, then 'whole'"
    );
    assert!(bob.iter().all(|m| !m.contains("half a mess")));
}

#[tokio::test]
async fn the_unix_socket_delivers_too() {
    let socket = tempfile::tempdir().expect("dir");
    let path = socket.path().join("lmtp.sock");
    let p = path.clone();
    let s = TestServer::start_with(move |c| c.lmtp.socket = Some(p)).await;
    let io = UnixStream::connect(&path)
        .await
        .expect("connect to the socket");
    let mut c = Lmtp::greeted(io).await;
    // No domains configured: any domain, and a bare local part, name the account.
    c.envelope("a@b", &["bob@anywhere.example"]).await;
    c.cmd("DATA").await;
    c.send(b"Subject: by socket\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    let got = s.messages("bob", "INBOX").await;
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Delivered-To: bob@anywhere.example\r\n"));
}

#[tokio::test]
async fn a_full_mailbox_is_refused_at_rcpt_or_after_data_and_the_others_still_get_theirs() {
    let s = TestServer::start_with(|c| {
        c.lmtp.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.quota.storage = Some(4 * 1024);
    })
    .await;
    // bob's own limit: none.
    let db = strata_server::users::UserDb::new(s.data_dir.join("users"));
    let unlimited = strata_server::users::QuotaOverride {
        storage: Some(strata_server::users::Limit::Unlimited),
        messages: None,
    };
    db.set_quota("bob", unlimited).unwrap();
    s.server().store.refresh_limits("bob").await.unwrap();
    let message = |kib: usize| {
        let mut m = b"Subject: sized\r\n\r\n".to_vec();
        for _ in 0..kib * 16 {
            m.extend_from_slice(&[b'y'; 62]);
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b".\r\n");
        m
    };
    let mut c = tcp(lmtp_addr(&s)).await;
    c.envelope("a@b", &["alice@example.org", "bob@example.org"])
        .await;
    c.cmd("DATA").await;
    c.send(&message(3)).await;
    assert!(c.reply().await.starts_with("250 2.0.0 <alice@"));
    assert!(c.reply().await.starts_with("250 2.0.0 <bob@"));
    // A declared size that cannot fit is refused at RCPT, before the message is sent.
    assert!(c.cmd("MAIL FROM:<a@b> SIZE=2048").await.starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@example.org>").await;
    assert!(
        r.starts_with("552 5.2.2 <alice@example.org>: mailbox full"),
        "{r}"
    );
    assert!(c.cmd("RCPT TO:<bob@example.org>").await.starts_with("250"));
    c.cmd("DATA").await;
    c.send(&message(2)).await;
    assert!(c.reply().await.starts_with("250 2.0.0 <bob@"));
    // Undeclared: refused for alice once the message is in; bob's copy stands.
    c.envelope("a@b", &["alice@example.org", "bob@example.org"])
        .await;
    c.cmd("DATA").await;
    c.send(&message(2)).await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.2.2 <alice@example.org>"), "{r}");
    assert!(c.reply().await.starts_with("250 2.0.0 <bob@"));
    assert_eq!(s.messages("alice", "INBOX").await.len(), 1);
    assert_eq!(s.messages("bob", "INBOX").await.len(), 3);
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_message_for_several_users_is_written_to_the_store_once() {
    use std::os::unix::fs::MetadataExt;
    let s = TestServer::start_with(|c| {
        c.lmtp.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.lmtp.domains = vec!["example.org".into()];
    })
    .await;
    let journal = s.config.storage.main.journal.clone();
    let before = bytes_under(&journal.dir);
    let body = "attachment line of base64-like text, 0123456789abcdefghij\r\n".repeat(5_000);
    let message = format!("Subject: for both\r\nFrom: sender@remote.example\r\n\r\n{body}");
    let mut c = tcp(lmtp_addr(&s)).await;
    c.envelope(
        "sender@remote.example",
        &["alice@example.org", "bob@example.org"],
    )
    .await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(format!("{message}.\r\n").as_bytes()).await;
    for who in ["alice", "bob"] {
        let r = c.reply().await;
        assert!(r.starts_with(&format!("250 2.0.0 <{who}@")), "{r}");
    }
    let delivered = format!("Return-Path: <sender@remote.example>\r\n{message}");
    for user in ["alice", "bob"] {
        assert_eq!(
            s.messages(user, "INBOX").await,
            std::slice::from_ref(&delivered),
            "{user}"
        );
    }
    // Behind a journal, the bytes were journaled once (not once per user).
    if journal.enabled {
        let grew = bytes_under(&journal.dir) - before;
        assert!(
            grew < delivered.len() as u64 * 3 / 2,
            "the journal grew by {grew} bytes for a {} byte message to two users",
            delivered.len()
        );
    }
    // In Maildirs, the two users' files are one file.
    if let strata_config::Backend::Maildir { root } = &s.config.storage.main.backend {
        s.server().backends.drain_journals().await.unwrap();
        let file = |user: &str| {
            let cur = root.join(user).join("cur");
            let files: Vec<_> = std::fs::read_dir(&cur).unwrap().flatten().collect();
            assert_eq!(files.len(), 1, "{}", cur.display());
            let m = files[0].metadata().unwrap();
            (m.ino(), m.nlink())
        };
        let (alice, bob) = (file("alice"), file("bob"));
        assert_eq!(alice.0, bob.0, "one inode");
        assert_eq!(alice.1, 2, "two links");
    }
}
