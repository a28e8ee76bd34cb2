//! Any bytes from a client, before and after login: the session never panics, never hangs
//! past the end of its input, and answers every byte it was sent with well-framed lines.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use strata_backend_api::MemoryBackend;
use strata_index::{IndexOptions, StoreId};
use strata_mailstore::{AckPolicy, BodyStores, Mailstore, MailstoreOptions};
use strata_protocol::scram::ScramKeys;
use strata_protocol::{Authenticator, Limits, LoginAttempt, Session, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Passwords;

/// A SCRAM attempt that counts nothing.
struct Attempt;

impl LoginAttempt for Attempt {
    fn succeeded(self: Box<Self>) {}
}

#[async_trait]
impl Authenticator for Passwords {
    async fn verify(&self, _user: &str, password: &[u8], _peer: IpAddr) -> Result<bool, String> {
        Ok(password == b"pw")
    }

    /// Every user's password is `pw`, under one iteration so that exchanges stay cheap.
    async fn scram(
        &self,
        _user: &str,
        _peer: IpAddr,
    ) -> Result<(ScramKeys, Box<dyn LoginAttempt>), String> {
        Ok((ScramKeys::derive("pw", b"fuzz-salt", 1), Box::new(Attempt)))
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    store: Arc<Mailstore>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(MemoryBackend::new());
        let store = Arc::new(Mailstore::new(
            MailstoreOptions {
                index_dir: dir.path().to_path_buf(),
                append_ack: AckPolicy::SoftDone,
                read_concurrency: 4,
                index: IndexOptions::default(),
                ship: None,
                fts: None,
            },
            Arc::new(move |_| Ok(BodyStores::new(StoreId(0), backend.clone()))),
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        World {
            rt,
            store,
            _dir: dir,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let w = world();
    // Half the inputs are read after a login and a SELECT, so commands of every state run.
    let logged_in = input.first().is_some_and(|b| b & 1 == 1);
    let mut bytes = Vec::new();
    if logged_in {
        bytes.extend_from_slice(b"a LOGIN u pw\r\nb SELECT INBOX\r\n");
    }
    bytes.extend_from_slice(input.get(1..).unwrap_or_default());
    w.rt.block_on(async {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let store = w.store.clone();
        let serve = tokio::spawn(async move {
            let opts = SessionOptions {
                starttls_available: true,
                tls_active: false,
                plaintext_auth: true,
                failed_login_delay: Duration::ZERO,
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                append_limit: 1 << 16,
            };
            let limits = Limits {
                max_command_bytes: 4096,
                max_literal_bytes: 1 << 16,
                max_command_bytes_before_login: 256,
                max_literal_bytes_before_login: 256,
                login_timeout: Duration::from_secs(3600),
                command_timeout: Duration::from_secs(3600),
                idle_timeout: Duration::from_secs(3600),
            };
            let mut session = Session::new(opts, store, Arc::new(Passwords));
            let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
            let _ = strata_protocol::run(&mut server, &mut session, &limits, &mut shutdown).await;
        });
        let (mut r, mut wr) = tokio::io::split(&mut client);
        let write = async {
            let _ = wr.write_all(&bytes).await;
            let _ = wr.shutdown().await;
        };
        let mut out = Vec::new();
        let read = r.read_to_end(&mut out);
        let (_, read) = tokio::join!(write, read);
        let _ = read;
        serve.await.expect("the session did not panic");
        // Whatever it wrote is lines (a literal may hold anything, but ends its response).
        assert!(out.is_empty() || out.ends_with(b"\r\n"), "unframed output");
    });
});
