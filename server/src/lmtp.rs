//! The LMTP service: the `[lmtp]` listeners (TCP and a Unix socket), a bound on connections,
//! one task per connection running a `strata_lmtp` session, and the account directory those
//! sessions look recipients up in.

use std::sync::Arc;

use strata_config::Config;
use strata_lmtp::{AddressRules, Directory, Options};
use strata_mailstore::Mailstore;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};

use crate::accounts::Accounts;

/// Recipients are accounts.
struct AccountDirectory(Arc<Accounts>);

#[async_trait::async_trait]
impl Directory for AccountDirectory {
    async fn exists(&self, name: &str) -> Result<bool, String> {
        self.0
            .hash_of(name)
            .await
            .map(|h| h.is_some())
            .map_err(|e| e.to_string())
    }
}

/// The options a new LMTP connection is served under; a reload replaces them.
pub type LiveOptions = Arc<std::sync::RwLock<Arc<Options>>>;

/// The session options `[lmtp]` sets.
pub fn options(cfg: &Config) -> Options {
    let l = &cfg.lmtp;
    Options {
        hostname: l.hostname.clone(),
        rules: AddressRules {
            domains: l.domains.clone(),
            detail_delimiter: l.detail_delimiter,
        },
        detail_mailbox: l.detail_mailbox,
        max_message_bytes: usize::try_from(l.max_message_bytes).unwrap_or(usize::MAX),
        max_recipients: l.max_recipients as usize,
        timeout: l.timeout,
    }
}

/// [`options`], replaceable.
pub fn live_options(cfg: &Config) -> LiveOptions {
    Arc::new(std::sync::RwLock::new(Arc::new(options(cfg))))
}

/// What every LMTP connection shares.
struct Shared {
    opts: LiveOptions,
    directory: AccountDirectory,
    store: Arc<Mailstore>,
    slots: Arc<Semaphore>,
}

/// The listeners `[lmtp]` asks for.
pub struct Listeners {
    /// The TCP listener's address, if any.
    pub tcp: Option<std::net::SocketAddr>,
    /// Their accept loops, which end at shutdown.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the configured listeners and starts accepting.
pub async fn start(
    cfg: &Config,
    opts: LiveOptions,
    accounts: Arc<Accounts>,
    store: Arc<Mailstore>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Listeners> {
    let l = &cfg.lmtp;
    let shared = Arc::new(Shared {
        opts,
        directory: AccountDirectory(accounts),
        store,
        slots: Arc::new(Semaphore::new(l.max_connections as usize)),
    });
    let mut out = Listeners {
        tcp: None,
        tasks: Vec::new(),
    };
    if let Some(addr) = l.listen {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "LMTP listening");
        out.tcp = Some(local);
        let (shared, mut stop) = (shared.clone(), shutdown.clone());
        out.tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tracing::info!(%peer, "LMTP connection");
                        connection(tcp, shared.clone(), stop.clone());
                    }
                    Err(e) => accept_failed(e).await,
                }
            }
        }));
    }
    if let Some(path) = &l.socket {
        // A socket left by a previous run would make bind fail.
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        // Any local user may deliver, as with sendmail; the MTA needs no shared group.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        tracing::info!(path = %path.display(), "LMTP listening");
        let (shared, mut stop, path) = (shared.clone(), shutdown.clone(), path.clone());
        out.tasks.push(tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => break,
                };
                match accepted {
                    Ok((unix, _)) => connection(unix, shared.clone(), stop.clone()),
                    Err(e) => accept_failed(e).await,
                }
            }
            let _ = std::fs::remove_file(&path);
        }));
    }
    Ok(out)
}

async fn accept_failed(e: std::io::Error) {
    // Out of descriptors and the like: wait a little rather than spin.
    tracing::warn!(error = %e, "LMTP accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// Serves one connection on its own task, if a slot is free.
fn connection<S>(mut stream: S, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::info_span!("lmtp", id = crate::serve::next_session_id());
    let task = async move {
        let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
            let _ = stream
                .write_all(b"421 4.3.2 too many connections, try again later\r\n")
                .await;
            return;
        };
        let _open = strata_metrics::metrics().connection("lmtp");
        let s = &*shared;
        let opts = s.opts.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) =
            strata_lmtp::run(&mut stream, &opts, &s.directory, &s.store, &mut stop).await
        {
            tracing::debug!(error = %e, "LMTP connection ended with an error");
        }
    };
    tokio::spawn(tracing::Instrument::instrument(task, span));
}
