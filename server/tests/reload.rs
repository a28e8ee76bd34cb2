//! `strata serve` reloads its configuration on SIGHUP: a new certificate is what new
//! connections get while open ones keep working, new limits and quotas apply, hand-edited
//! accounts count, the log level changes, and a broken configuration is refused with its
//! errors logged while the running one is kept.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// How long a test waits for a line the server is expected to log.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `strata serve` whose standard error is read line by line.
struct Server {
    child: Child,
    lines: Receiver<String>,
    imaps: String,
}

impl Server {
    fn start(config: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            imaps: String::new(),
        };
        let line = server.wait_for("strata: IMAPS on ").pop().unwrap();
        server.imaps = line.trim().trim_start_matches("strata: IMAPS on ").into();
        server
    }

    /// The lines logged from now through the first that contains `needle`.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {needle:?} in {seen:#?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before {needle:?}: {seen:#?}")
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP and returns what was logged through the reload's outcome.
    fn hup(&self, outcome: &str) -> Vec<String> {
        self.signal("HUP");
        self.wait_for(outcome)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
    }
}

/// An IMAPS connection that trusts every certificate the test made.
struct Conn {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    /// The certificate the server presented.
    cert: Vec<u8>,
    next: u32,
}

impl Conn {
    fn open(addr: &str, trust: &Arc<ClientConfig>) -> Conn {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = ClientConnection::new(trust.clone(), name).unwrap();
        let mut stream = BufReader::new(StreamOwned::new(tls, tcp));
        let mut greeting = String::new();
        stream.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let cert = stream.get_ref().conn.peer_certificates().unwrap()[0].to_vec();
        Conn {
            stream,
            cert,
            next: 1,
        }
    }

    /// Sends `command` and returns every line through its tagged answer.
    fn cmd(&mut self, command: &str) -> String {
        let tag = format!("t{}", self.next);
        self.next += 1;
        let s = self.stream.get_mut();
        s.write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        s.flush().unwrap();
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(self.stream.read_line(&mut line).unwrap() > 0, "{seen}");
            seen.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                return seen;
            }
        }
    }
}

/// A self-signed certificate for localhost: its PEM, its key's PEM and its DER.
fn certificate() -> (String, String, Vec<u8>) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        pair.cert.pem(),
        pair.signing_key.serialize_pem(),
        pair.cert.der().to_vec(),
    )
}

fn trusting(certs: &[&str]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in certs {
        roots
            .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(client)
}

/// Where the test keeps the server's files.
struct Files {
    config: PathBuf,
    data: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    /// Writes the configuration: IMAPS only, APPEND up to `append_limit`, and `extra` tables.
    fn configure(&self, append_limit: u64, extra: &str) {
        let Files {
            data, cert, key, ..
        } = self;
        let text = format!(
            "data_dir = {data:?}\n{extra}\n[imap]\nstarttls = \"\"\ntls = \"127.0.0.1:0\"\n\
             max_literal_bytes = {append_limit}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n"
        );
        std::fs::write(&self.config, text).unwrap();
    }
}

/// Replaces a file at once, as an admin's tools would.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_rereads_certificates_limits_accounts_and_log_level_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let files = Files {
        config: at("strata.toml"),
        data: at("data"),
        cert: at("cert.pem"),
        key: at("key.pem"),
    };
    let Files {
        config,
        data,
        cert,
        key,
    } = &files;
    let (a_pem, a_key, a_der) = certificate();
    let (b_pem, b_key, b_der) = certificate();
    replace(cert, &a_pem);
    replace(key, &a_key);
    files.configure(1_000_000, "");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--config", config.to_str().unwrap(), "user", "add", "alice"])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"alice-pw\n")?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    let trust = trusting(&[&a_pem, &b_pem]);
    let server = Server::start(config);

    let mut first = Conn::open(&server.imaps, &trust);
    assert_eq!(first.cert, a_der);
    assert!(first.cmd("LOGIN alice alice-pw").contains("OK"));
    assert!(first.cmd("CAPABILITY").contains("APPENDLIMIT=1000000"));

    // A new certificate, a larger APPEND limit and a message quota.
    replace(cert, &b_pem);
    replace(key, &b_key);
    files.configure(2_000_000, "[quota]\nmessages = 7");
    server.hup("configuration reloaded");
    let mut second = Conn::open(&server.imaps, &trust);
    assert_eq!(
        second.cert, b_der,
        "a new connection has the new certificate"
    );
    assert!(second.cmd("LOGIN alice alice-pw").contains("OK"));
    assert!(second.cmd("CAPABILITY").contains("APPENDLIMIT=2000000"));
    // The open connection goes on under what it began with, and sees the new quota.
    assert!(first.cmd("NOOP").contains("t3 OK"));
    assert!(first.cmd("CAPABILITY").contains("APPENDLIMIT=1000000"));
    let quota = first.cmd("GETQUOTAROOT INBOX");
    assert!(quota.contains("MESSAGE 0 7"), "{quota}");

    // A broken file is refused, naming the file and the key; nothing changes.
    std::fs::write(
        config,
        std::fs::read_to_string(config).unwrap().replace(
            "max_literal_bytes = 2000000",
            "max_literal_bytes = \"lots\"",
        ),
    )
    .unwrap();
    let refused = server.hup("reload refused").pop().unwrap();
    assert!(refused.contains(config.to_str().unwrap()), "{refused}");
    assert!(refused.contains("imap.max_literal_bytes"), "{refused}");
    let mut third = Conn::open(&server.imaps, &trust);
    assert_eq!(third.cert, b_der);
    assert!(third.cmd("LOGIN alice alice-pw").contains("OK"));
    assert!(third.cmd("CAPABILITY").contains("APPENDLIMIT=2000000"));
    // So is a key that is not one, by the key file's name.
    files.configure(2_000_000, "[quota]\nmessages = 7");
    replace(key, "not a key\n");
    let refused = server.hup("reload refused").pop().unwrap();
    assert!(refused.contains(key.to_str().unwrap()), "{refused}");
    assert_eq!(Conn::open(&server.imaps, &trust).cert, b_der);
    assert!(
        first.cmd("NOOP").contains("OK"),
        "the first connection still works"
    );
    replace(key, &b_key);

    // An account removed from the users file by hand: the cache knows nothing of it until
    // the reload, which forgets every cached login.
    let users = data.join("users");
    let kept: String = std::fs::read_to_string(&users)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    replace(&users, &kept);
    let mut cached = Conn::open(&server.imaps, &trust);
    assert!(cached.cmd("LOGIN alice alice-pw").contains("OK"));
    server.hup("configuration reloaded");
    let mut gone = Conn::open(&server.imaps, &trust);
    assert!(gone.cmd("LOGIN alice alice-pw").contains("NO"));

    // The log level: with the IMAP service's lines silenced, a connection logs nothing.
    files.configure(
        2_000_000,
        "[log]\nlevel = \"info,strata_server::serve=warn\"",
    );
    server.hup("configuration reloaded");
    assert!(
        Conn::open(&server.imaps, &trust)
            .cmd("LOGOUT")
            .contains("OK")
    );
    files.configure(2_000_000, "");
    let meanwhile = server.hup("configuration reloaded");
    assert!(
        !meanwhile.iter().any(|l| l.contains("connection peer=")),
        "{meanwhile:#?}"
    );
    assert!(
        Conn::open(&server.imaps, &trust)
            .cmd("LOGOUT")
            .contains("OK")
    );
    server.wait_for("connection peer=");
    assert!(first.cmd("LOGOUT").contains("OK"));
}
