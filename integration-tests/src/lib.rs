//! # strata-integration-tests
//!
//! What Strata's end-to-end tests share: [`TestServer`] starts a real server on port 0 in a
//! temporary data directory with two accounts, and [`Client`] speaks IMAP to it over TCP, TLS or
//! STARTTLS, reading responses (literals included) until the tagged status.
//!
//! The tests themselves are the modules of `tests/suite/` (one binary); real clients (Python's
//! imaplib, mbsync) are driven from there too. [`bench`] is the IMAP benchmark behind the
//! `imap-bench` binary of `tools/`.

pub mod bench;
pub mod process;
pub mod s3server;
pub mod stores;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use strata_config::Config;
use strata_server::serve::Running;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The accounts every test server has.
pub const USERS: &[(&str, &str)] = &[("alice", "alice-password"), ("bob", "bob-password")];

/// Waits until `done` holds (checked every few milliseconds), failing after `limit`: for the
/// tests that wait on something only visible from outside (files, another process).
pub async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never {what}");
        tick.tick().await;
    }
}

/// The delay backend injecting `read` (with `jitter`) into every read and nothing else: the
/// tests that count store reads wrap the store in it.
pub fn read_delay(read: Duration, jitter: Duration) -> strata_config::Delay {
    strata_config::Delay {
        seed: 7,
        read,
        read_jitter: jitter,
        write: Duration::ZERO,
        write_jitter: Duration::ZERO,
        error_rate: 0.0,
        stall_rate: 0.0,
        stall: Duration::ZERO,
        ack: Duration::ZERO,
        ack_jitter: Duration::ZERO,
    }
}

/// A server on loopback with its own data directory.
pub struct TestServer {
    /// The data directory (inside [`TestServer::root`]).
    pub data_dir: PathBuf,
    /// The temporary directory holding everything the server may write.
    pub root: tempfile::TempDir,
    /// The configuration it runs on.
    pub config: Config,
    /// The running server, until [`TestServer::stop`].
    pub running: Option<Running>,
    /// The body store it runs on (`STRATA_TEST_BACKEND`).
    pub store: stores::Store,
    /// What the store needs kept alive (an S3 server, a scratch database).
    pub resources: stores::Resources,
}

impl TestServer {
    /// Starts a server with the default configuration on port 0.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts its configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on(stores::Store::from_env(), tweak).await
    }

    /// Starts a server on `store` after `tweak` adjusts its configuration.
    pub async fn start_on(store: stores::Store, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let root = tempfile::tempdir().expect("temporary directory");
        let data_dir = root.path().join("data");
        let mut config = Config {
            data_dir: data_dir.clone(),
            ..Config::default()
        };
        let resources = stores::configure(store, &mut config, root.path()).await;
        stores::layers_from_env(&mut config);
        config.imap.starttls = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.imap.tls = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.imap.failed_login_delay = Duration::from_millis(10);
        config.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        tweak(&mut config);
        let db = strata_server::users::UserDb::new(data_dir.join("users"));
        std::fs::create_dir_all(&data_dir).expect("data directory");
        for (name, password) in USERS {
            db.add(name, password).expect("add user");
        }
        let running = strata_server::serve::start(config.clone())
            .await
            .expect("server starts");
        TestServer {
            data_dir,
            root,
            config,
            running: Some(running),
            store,
            resources,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    /// The STARTTLS listener.
    pub fn imap_addr(&self) -> SocketAddr {
        self.running().imap.expect("STARTTLS listener")
    }

    /// The implicit-TLS listener.
    pub fn imaps_addr(&self) -> SocketAddr {
        self.running().imaps.expect("TLS listener")
    }

    /// The running server.
    pub fn server(&self) -> &Running {
        self.running()
    }

    /// A plaintext connection to the STARTTLS port, greeting read.
    pub async fn connect(&self) -> Client {
        Client::plain(self.imap_addr()).await
    }

    /// A connection to the TLS port, trusting the server's self-signed certificate.
    pub async fn connect_tls(&self) -> Client {
        Client::tls(self.imaps_addr(), &self.certificate()).await
    }

    /// A plaintext connection, logged in as `user`.
    pub async fn login(&self, user: &str) -> Client {
        let mut c = self.connect().await;
        let password = USERS.iter().find(|u| u.0 == user).expect("known user").1;
        c.ok(&format!("LOGIN {user} {password}")).await;
        c
    }

    /// The messages in `user`'s `mailbox`, whole, in UID order (none in an empty mailbox).
    pub async fn messages(&self, user: &str, mailbox: &str) -> Vec<String> {
        let mut c = self.login(user).await;
        c.ok(&format!("SELECT {mailbox}")).await;
        // `1:*` of an empty mailbox names no message: the answer is BAD, with no FETCH lines.
        let r = c.cmd("UID FETCH 1:* BODY.PEEK[]").await;
        r.with("")
            .into_iter()
            .filter(|l| l.contains(" FETCH "))
            .map(|l| String::from_utf8_lossy(&literal_of(l)).into_owned())
            .collect()
    }

    /// GETs `path` from the server's metrics endpoint: (status, body).
    pub async fn scrape(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.running().metrics.expect("the metrics endpoint");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("send");
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(20), tcp.read_to_string(&mut raw))
            .await
            .expect("an answer in time")
            .expect("read");
        let status = raw[9..12].parse().expect("a status code");
        let body = raw
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// The server's certificate.
    pub fn certificate(&self) -> PathBuf {
        self.data_dir.join("tls").join("self-signed.pem")
    }

    /// Waits until the server counts exactly `n` open connections (it lets go of a closed
    /// one a moment after the client sees the close).
    pub async fn wait_for_connections(&self, n: u32) {
        until(
            &format!("{n} connections open"),
            Duration::from_secs(10),
            || self.running().open_connections() == n,
        )
        .await;
    }

    /// Waits until `user`'s full-text index holds every message (its indexer reads bodies in
    /// the background, which tests that count store reads must let finish first).
    pub async fn fts_caught_up(&self, user: &str) {
        let store = self.running().store.clone();
        until(
            &format!("{user}'s full-text index caught up"),
            Duration::from_secs(60),
            || {
                store
                    .open_users()
                    .iter()
                    .find(|u| u.name() == user)
                    .and_then(|u| u.fts_unindexed().ok().flatten())
                    .is_none_or(|n| n == 0)
            },
        )
        .await;
    }

    /// Shuts the server down gracefully.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Starts the server again on the same data directory (new ports).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = strata_server::serve::start(self.config.clone())
            .await
            .expect("server restarts");
        self.running = Some(running);
    }

    /// Every file under the temporary root, relative to it.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One response: its lines joined, literals inline.
pub type Line = String;

/// The answer to one command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses and continuation requests, in order, without the leading `* `.
    pub untagged: Vec<Line>,
    /// The tagged status line without the tag (`OK [...] text`).
    pub status: Line,
}

impl Reply {
    /// Whether the status is OK.
    pub fn is_ok(&self) -> bool {
        self.status.starts_with("OK")
    }

    /// The untagged responses that start with `prefix`.
    pub fn with(&self, prefix: &str) -> Vec<&Line> {
        self.untagged
            .iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// Whether any untagged response contains `text`.
    pub fn has(&self, text: &str) -> bool {
        self.untagged.iter().any(|l| l.contains(text))
    }
}

/// The bytes of the literal in a one-item FETCH response line (`* 1 FETCH (BODY[] {3}\r\nabc)`).
pub fn literal_of(line: &str) -> Vec<u8> {
    let at = line.find("}\r\n").expect("a literal") + 3;
    let mut v = line.as_bytes()[at..].to_vec();
    v.pop(); // the closing parenthesis
    v
}

/// The number after `key` (and any spaces or an opening parenthesis) in `line`: the value of
/// `UIDVALIDITY 7`, `MODSEQ (12)`, `HIGHESTMODSEQ 40`.
pub fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    line[at..]
        .trim_start_matches([' ', '('])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// An IMAP client that sends commands and reads their responses.
pub struct Client {
    io: BufReader<Box<dyn Io>>,
    next_tag: u32,
    /// The greeting line.
    pub greeting: Line,
}

impl Client {
    /// Connects without TLS and reads the greeting.
    pub async fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        // Commands are small writes answered at once: Nagle's delay would dominate.
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        Self::over(Box::new(tcp)).await
    }

    /// Connects without TLS from the loopback address `source` (any of 127.0.0.0/8), so that
    /// tests can be several clients' addresses.
    pub async fn plain_from(addr: SocketAddr, source: std::net::Ipv4Addr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind the source address");
        let tcp = socket.connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        Self::over(Box::new(tcp)).await
    }

    /// Connects with TLS, trusting the certificate at `ca`.
    pub async fn tls(addr: SocketAddr, ca: &Path) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let tls = tls_connector(ca)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        Self::over(Box::new(tls)).await
    }

    async fn over(io: Box<dyn Io>) -> Client {
        let mut c = Client {
            io: BufReader::new(io),
            next_tag: 1,
            greeting: String::new(),
        };
        c.greeting = c.read_response().await.expect("greeting");
        c
    }

    /// Sends STARTTLS and upgrades the connection.
    pub async fn starttls(mut self, ca: &Path) -> Client {
        let r = self.cmd("STARTTLS").await;
        assert!(r.is_ok(), "STARTTLS: {r:?}");
        let inner = self.io.into_inner();
        let tls = tls_connector(ca)
            .connect(ServerName::try_from("localhost").expect("name"), inner)
            .await
            .expect("TLS handshake after STARTTLS");
        Client {
            io: BufReader::new(Box::new(tls)),
            next_tag: self.next_tag,
            greeting: self.greeting,
        }
    }

    /// Sends COMPRESS DEFLATE and, once it is answered OK, deflates what it sends and inflates
    /// what it reads (RFC 4978).
    pub async fn compress(mut self) -> Client {
        let r = self.cmd("COMPRESS DEFLATE").await;
        assert!(r.is_ok(), "COMPRESS: {r:?}");
        let inner = self.io.into_inner();
        let (rd, wr) = tokio::io::split(inner);
        let z = tokio::io::join(
            async_compression::tokio::bufread::DeflateDecoder::new(BufReader::new(rd)),
            async_compression::tokio::write::DeflateEncoder::new(wr),
        );
        Client {
            io: BufReader::new(Box::new(z)),
            next_tag: self.next_tag,
            greeting: self.greeting,
        }
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.expect("write");
        self.io.get_mut().flush().await.expect("flush");
    }

    /// Reads one response (a line plus any literals it announces); `None` at end of stream.
    pub async fn read_response(&mut self) -> Option<Line> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.io.read_until(b'\n', &mut line).await.ok()?;
            if n == 0 {
                return if out.is_empty() {
                    None
                } else {
                    Some(lossy(&out))
                };
            }
            out.extend_from_slice(&line);
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            match literal_len(trimmed) {
                Some(len) => {
                    let mut buf = vec![0; len];
                    self.io.read_exact(&mut buf).await.ok()?;
                    out.extend_from_slice(&buf);
                }
                None => {
                    let text = out.strip_suffix(b"\r\n").unwrap_or(&out);
                    return Some(lossy(text));
                }
            }
        }
    }

    /// Reads a response with a deadline.
    pub async fn read_response_within(&mut self, t: Duration) -> Option<Line> {
        tokio::time::timeout(t, self.read_response())
            .await
            .ok()
            .flatten()
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> String {
        let t = format!("a{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends `text` with a new tag and reads until its tagged status.
    pub async fn cmd(&mut self, text: &str) -> Reply {
        let tag = self.tag();
        self.send_raw(format!("{tag} {text}\r\n").as_bytes()).await;
        self.until_tagged(&tag).await
    }

    /// Sends `text` with a new tag and reads until its tagged status, keeping each response's
    /// lines but only counting its literals' bytes: what a benchmark of large FETCHes uses, so
    /// that copying bodies into strings in the client is not what it measures. Returns the reply
    /// and the literal bytes read.
    pub async fn cmd_counting(&mut self, text: &str) -> (Reply, u64) {
        let tag = self.tag();
        self.send_raw(format!("{tag} {text}\r\n").as_bytes()).await;
        let mut scratch = vec![0u8; 256 * 1024];
        let mut untagged = Vec::new();
        let mut counted = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.io.read_until(b'\n', &mut line).await.expect("read");
            assert!(n > 0, "connection closed before {tag} completed");
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            if let Some(mut left) = literal_len(trimmed) {
                counted += left as u64;
                while left > 0 {
                    let want = left.min(scratch.len());
                    let got = self.io.read(&mut scratch[..want]).await.expect("read");
                    assert!(got > 0, "connection closed inside a literal");
                    left -= got;
                }
                continue;
            }
            let text = lossy(trimmed);
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                let status = rest.to_string();
                return (Reply { untagged, status }, counted);
            }
            untagged.push(text.strip_prefix("* ").map(str::to_string).unwrap_or(text));
        }
    }

    /// Reads until the tagged status of `tag`.
    pub async fn until_tagged(&mut self, tag: &str) -> Reply {
        let mut untagged = Vec::new();
        loop {
            let Some(line) = self.read_response_within(Duration::from_secs(60)).await else {
                panic!("connection closed or silent before {tag} completed; got {untagged:?}");
            };
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return Reply {
                    untagged,
                    status: rest.to_string(),
                };
            }
            untagged.push(line.strip_prefix("* ").map(str::to_string).unwrap_or(line));
        }
    }

    /// Runs a command that must succeed.
    pub async fn ok(&mut self, text: &str) -> Reply {
        let r = self.cmd(text).await;
        assert!(r.is_ok(), "{text}: {r:?}");
        r
    }

    /// APPENDs plain messages 1..=`count` (see [`plain_message`]) to `mailbox`, each of which
    /// must succeed.
    pub async fn fill(&mut self, mailbox: &str, count: u32, subject: &str) {
        for i in 1..=count {
            let r = self.append(mailbox, "", &plain_message(i, subject)).await;
            assert!(r.is_ok(), "APPEND {i} to {mailbox}: {r:?}");
        }
    }

    /// APPENDs a message with a synchronizing literal; returns the reply.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Reply {
        let tag = self.tag();
        self.send_raw(
            format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes(),
        )
        .await;
        let cont = self.read_response().await.expect("continuation");
        if !cont.starts_with('+') {
            return Reply {
                untagged: Vec::new(),
                status: cont
                    .strip_prefix(&format!("{tag} "))
                    .unwrap_or(&cont)
                    .to_string(),
            };
        }
        self.send_raw(message).await;
        self.send_raw(b"\r\n").await;
        self.until_tagged(&tag).await
    }

    /// APPENDs a message with an INTERNALDATE (`"01-Jan-2020 10:00:00 +0000"`) and a
    /// non-synchronizing literal; returns the reply.
    pub async fn append_dated(&mut self, mailbox: &str, date: &str, message: &[u8]) -> Reply {
        let tag = self.tag();
        let head = format!(
            "{tag} APPEND {mailbox} \"{date}\" {{{}+}}\r\n",
            message.len()
        );
        self.send_raw(head.as_bytes()).await;
        self.send_raw(message).await;
        self.send_raw(b"\r\n").await;
        self.until_tagged(&tag).await
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn tls_connector(ca: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("certificate file") {
        roots.add(cert.expect("certificate")).expect("trusted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A multipart test message: text and HTML alternatives, a PDF attachment and a forwarded
/// message, with an encoded-word subject.
pub fn multipart_message(n: u32) -> Vec<u8> {
    format!(
        "From: Bob Sender <bob@example.org>\r\n\
To: Alice <alice@example.org>\r\n\
Cc: carol@example.org\r\n\
Subject: =?UTF-8?B?w6l0w6k=?= report {n}\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Message-ID: <m{n}@example.org>\r\n\
X-Custom: custom-{n}\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Quarterly figures attached, number {n}. Caf=C3=A9.\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Quarterly figures attached, number {n}.</p>\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
Subject: Forwarded {n}\r\n\
\r\n\
inner body {n}\r\n\
--outer--\r\n"
    )
    .into_bytes()
}

/// A small plain message.
pub fn plain_message(n: u32, subject: &str) -> Vec<u8> {
    format!(
        "From: sender{n}@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
Date: Wed, 2 Jul 2003 0{}:00:00 +0000\r\nMessage-ID: <p{n}@example.org>\r\n\r\nbody of message {n}\r\n",
        n % 10
    )
    .into_bytes()
}
