//! The IMAP service: listeners for STARTTLS and implicit TLS, connection limits, one task per
//! connection running a protocol session, and graceful shutdown (stop accepting, let in-flight
//! commands finish within a deadline, say BYE, flush the backends). The LMTP listeners are
//! started with it ([`crate::lmtp`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_config::{AppendAck, Config, PlaintextAuth};
use strata_index::{IndexOptions, Maintenance, MaintenanceOptions};
use strata_mailstore::{AckPolicy, Mailstore, MailstoreOptions};
use strata_protocol::{Exit, Limits, Session, SessionOptions};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{LoginLimits, PasswordAuth};
use crate::backends::Backends;
use crate::quota::AccountLimits;
use crate::reconciler::ReconcileTotals;

/// How often indexes that no session uses are closed.
pub const IDLE_INDEX_SWEEP: Duration = Duration::from_secs(300);

/// How long shutdown waits for connections to finish their command.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The data directory could not be prepared.
    #[error("{path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage backend could not be reached or set up.
    #[error("storage: {0}")]
    Storage(#[from] strata_backend_api::BackendError),
    /// The accounts could not be opened.
    #[error("accounts: {0}")]
    Accounts(#[from] crate::users::UserError),
    /// An LMTP listener could not be bound.
    #[error("LMTP: cannot listen: {0}")]
    Lmtp(std::io::Error),
}

/// A running server.
pub struct Running {
    /// The STARTTLS listener's address, if any.
    pub imap: Option<SocketAddr>,
    /// The implicit-TLS listener's address, if any.
    pub imaps: Option<SocketAddr>,
    /// The LMTP TCP listener's address, if any.
    pub lmtp: Option<SocketAddr>,
    /// The metrics endpoint's address, if any.
    pub metrics: Option<SocketAddr>,
    /// The backends opened, with their statistics.
    pub backends: Arc<Backends>,
    /// The mail store.
    pub store: Arc<Mailstore>,
    /// What the reconciler has removed since start.
    pub reconciled: Arc<ReconcileTotals>,
    shutdown: watch::Sender<bool>,
    conns: Arc<Connections>,
    control: std::path::PathBuf,
    /// What every listener and connection holds; the last reference is this one at the end of
    /// a shutdown, so the stores (and their journals' locks) are released when it returns.
    shared: Arc<Shared>,
    /// The listeners, the index sweeper and the control socket, which end at shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Connection counts, total and per address.
#[derive(Default)]
struct Connections {
    total: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    idle: Notify,
}

/// One counted connection; uncounted when dropped.
struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, ip: IpAddr, max_total: u32, max_ip: u32) -> Option<Slot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max_ip || self.total.load(Ordering::SeqCst) >= max_total {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            conns: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.conns.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        if self.conns.total.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.conns.idle.notify_waiters();
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    /// What a reload replaces; a connection keeps the one it was accepted under.
    pub(crate) live: std::sync::RwLock<Arc<Live>>,
    pub(crate) store: Arc<Mailstore>,
    pub(crate) auth: Arc<PasswordAuth>,
    pub(crate) quotas: Arc<AccountLimits>,
    pub(crate) lmtp: crate::lmtp::LiveOptions,
    conns: Arc<Connections>,
}

/// The configuration a connection is served under, with what is built from it.
pub(crate) struct Live {
    pub(crate) cfg: Config,
    tls: TlsAcceptor,
    limits: Limits,
}

impl Shared {
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The mail store the configuration describes, and its backends (connected: a shared store
/// that cannot be reached is an error here). Starts the server-wide index maintenance worker.
pub async fn mailstore(
    cfg: &Config,
) -> Result<(Arc<Mailstore>, Arc<Backends>), strata_backend_api::BackendError> {
    let (store, backends, _) = open_store(cfg).await?;
    Ok((store, backends))
}

/// [`mailstore`], and the quota limits it asks (whose default a reload changes).
async fn open_store(
    cfg: &Config,
) -> Result<(Arc<Mailstore>, Arc<Backends>, Arc<AccountLimits>), strata_backend_api::BackendError> {
    let maintenance = Maintenance::spawn(MaintenanceOptions {
        sparse_ratio: cfg.index.repack_ratio,
        log_retention: Some(cfg.index.log_retention),
        ..MaintenanceOptions::default()
    });
    let backends = Arc::new(Backends::connect_all(cfg).await?);
    let quotas = AccountLimits::new(
        crate::accounts::Accounts::open(cfg, &backends).map_err(|e| match e {
            crate::users::UserError::Store(e) => e,
            e => strata_backend_api::BackendError::new(
                "accounts",
                strata_backend_api::ErrorKind::Unsupported,
                e.to_string(),
            ),
        })?,
        cfg.quota,
    );
    let store = Arc::new(
        Mailstore::new(
            MailstoreOptions {
                index_dir: cfg.data_dir.join("index"),
                append_ack: match cfg.storage.append_ack {
                    AppendAck::SoftDone => AckPolicy::SoftDone,
                    AppendAck::Acked => AckPolicy::Acked,
                },
                read_concurrency: cfg.storage.read_concurrency as usize,
                index: IndexOptions {
                    group_commit_window: cfg.index.group_commit_window,
                    deferred_flags: Some(cfg.index.flag_sync_delay).filter(|d| !d.is_zero()),
                    cache_bytes: cfg.index.cache_bytes as usize,
                    maintenance: Some(maintenance),
                    observer: Some(Arc::new(crate::metered::IndexMetrics)),
                    ..IndexOptions::default()
                },
                ship: ship_options(cfg),
                fts: cfg.index.fts.enabled.then(|| strata_mailstore::FtsOptions {
                    dir: cfg.data_dir.join("fts"),
                    writer_memory: cfg.index.fts.writer_memory_bytes as usize,
                }),
            },
            backends.factory(),
        )
        .with_quotas(quotas.clone()),
    );
    Ok((store, backends, quotas))
}

/// How indexes are shipped to the main store, if they are.
pub fn ship_options(cfg: &Config) -> Option<strata_mailstore::ship::ShipOptions> {
    let s = &cfg.index.ship;
    s.enabled.then_some(strata_mailstore::ship::ShipOptions {
        max_lag: s.max_lag,
        max_changes: s.max_changes,
        compact_ratio: s.compact_ratio,
        max_diffs: s.max_diffs,
        read_concurrency: cfg.storage.read_concurrency as usize,
    })
}

/// Starts the IMAP service on the configured addresses (port 0 picks a free port).
pub async fn start(cfg: Config) -> Result<Running, ServeError> {
    let dir_err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ServeError::DataDir { path, source }
    };
    let index_dir = cfg.data_dir.join("index");
    std::fs::create_dir_all(&index_dir).map_err(dir_err(&index_dir))?;
    let live = Live::new(cfg.clone())?;
    let (store, backends, quotas) = open_store(&cfg).await?;
    let accounts = Arc::new(crate::accounts::Accounts::open(&cfg, &backends)?);
    let auth = Arc::new(PasswordAuth::new(accounts.clone(), login_limits(&cfg)));
    let conns = Arc::new(Connections::default());
    let (shutdown, rx) = watch::channel(false);
    let lmtp_options = crate::lmtp::live_options(&cfg);
    let shared = Arc::new(Shared {
        live: std::sync::RwLock::new(Arc::new(live)),
        store: store.clone(),
        auth,
        quotas,
        lmtp: lmtp_options.clone(),
        conns: conns.clone(),
    });
    // Indexes no session uses are closed now and then, releasing their memory and file.
    let sweeper_store = store.clone();
    let mut sweeper_stop = rx.clone();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(IDLE_INDEX_SWEEP) => {}
                _ = sweeper_stop.changed() => return,
            }
            let closed = sweeper_store.close_idle().await;
            if closed > 0 {
                tracing::debug!(closed, "closed indexes no session uses");
            }
        }
    }));
    // Bodies a crash left (an APPEND never answered, an expunge not yet deleted): now, then
    // now and then.
    let reconciled = Arc::new(ReconcileTotals::default());
    tasks.push(crate::reconciler::spawn(
        store.clone(),
        backends.clone(),
        index_dir.clone(),
        cfg.storage.reconcile_interval,
        reconciled.clone(),
        rx.clone(),
    ));
    // Parts stored once that nothing refers to any more, after their grace period.
    tasks.extend(crate::parts::spawn(&backends, rx.clone()));
    // Cold bodies to the cold store, now and then.
    tasks.extend(crate::tiering::spawn(store.clone(), &backends, rx.clone()));
    let control = crate::control::bind(&cfg.data_dir)
        .await
        .map_err(dir_err(&crate::control::socket_path(&cfg.data_dir)))?;
    tasks.push(tokio::spawn(crate::control::serve(
        control,
        store.clone(),
        backends.clone(),
        accounts.clone(),
        shared.auth.clone(),
        rx.clone(),
    )));
    let lmtp = crate::lmtp::start(&cfg, lmtp_options, accounts, store.clone(), rx.clone())
        .await
        .map_err(ServeError::Lmtp)?;
    tasks.extend(lmtp.tasks);
    let metrics = match cfg.metrics.listen {
        None => None,
        Some(addr) => {
            let (listener, local) = bind(addr).await?;
            tracing::info!(%local, "metrics endpoint listening");
            tasks.push(tokio::spawn(crate::monitor::serve(
                listener,
                backends.clone(),
                rx.clone(),
            )));
            Some(local)
        }
    };
    let mut running = Running {
        imap: None,
        imaps: None,
        lmtp: lmtp.tcp,
        metrics,
        backends,
        store,
        reconciled,
        shutdown,
        conns,
        control: crate::control::socket_path(&cfg.data_dir),
        shared: shared.clone(),
        tasks,
    };
    for (addr, implicit) in [(cfg.imap.starttls, false), (cfg.imap.tls, true)] {
        let Some(addr) = addr else { continue };
        let (listener, local) = bind(addr).await?;
        tracing::info!(%local, tls = implicit, "listening");
        if implicit {
            running.imaps = Some(local);
        } else {
            running.imap = Some(local);
        }
        let accept = tokio::spawn(accept_loop(listener, implicit, shared.clone(), rx.clone()));
        running.tasks.push(accept);
    }
    Ok(running)
}

impl Running {
    /// What the listeners and connections share.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> u32 {
        self.conns.total.load(Ordering::SeqCst)
    }

    /// A receiver that turns true when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops accepting, lets connections finish their command and say BYE (waiting at most
    /// [`SHUTDOWN_DEADLINE`]), then flushes every backend.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let wait = async {
            loop {
                let notified = self.conns.idle.notified();
                if self.conns.total.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, wait).await.is_err() {
            tracing::warn!(
                open = self.conns.total.load(Ordering::SeqCst),
                "connections still open at the shutdown deadline"
            );
        }
        // The journal is durable: what the store has not acked by the deadline is uploaded
        // at the next start, so a store that is down does not hold the shutdown.
        let flush = async {
            for user in self.store.open_users() {
                if let Err(e) = user.flush().await {
                    tracing::warn!(user = user.name(), error = %e, "flush at shutdown failed");
                }
            }
            for backend in self.backends.all() {
                let _ = backend.flush(u64::MAX).await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, flush)
            .await
            .is_err()
            && let Some(lag) = self.backends.journal_stats()
        {
            tracing::warn!(
                batches = lag.pending_batches,
                bytes = lag.pending_bytes,
                "the store has not acked everything by the shutdown deadline; the journal keeps it for the next start"
            );
        }
        // Wait for every task to let go of the stores, then close every user, so that the
        // journal's directory lock is free once shutdown returns (a restart in the same
        // process opens it again).
        let released = async {
            for task in self.tasks {
                let _ = task.await;
            }
            while Arc::strong_count(&self.shared) > 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            self.store.close_idle().await;
        };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, released)
            .await
            .is_err()
        {
            tracing::warn!("a task still holds the stores at the shutdown deadline");
        }
        let _ = std::fs::remove_file(&self.control);
        tracing::info!("stopped");
    }
}

async fn accept_loop(
    listener: TcpListener,
    implicit: bool,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let rx = shutdown.clone();
        // Every log line of the connection carries its id (and the user, once logged in).
        let span = tracing::info_span!(
            "session",
            id = next_session_id(),
            user = tracing::field::Empty
        );
        let task = async move {
            let live = shared.live();
            let imap = &live.cfg.imap;
            let Some(slot) =
                shared
                    .conns
                    .admit(peer.ip(), imap.max_connections, imap.max_connections_per_ip)
            else {
                tracing::info!(%peer, "connection refused: too many connections");
                let mut tcp = tcp;
                let _ = tcp
                    .write_all(b"* BYE [UNAVAILABLE] too many connections\r\n")
                    .await;
                return;
            };
            tracing::info!(%peer, tls = implicit, "connection");
            let open =
                strata_metrics::metrics().connection(if implicit { "imaps" } else { "imap" });
            if let Err(e) = connection(tcp, peer, implicit, &shared, &live, rx).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            tracing::info!(%peer, "disconnected");
            drop((open, slot));
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }
}

/// A listener on `addr`, and the address it got (a port 0 is chosen by the system).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// A new connection's id for the logs: unique in this process, in order of arrival.
pub fn next_session_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit: bool,
    shared: &Shared,
    live: &Live,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let imap = &live.cfg.imap;
    let plaintext_auth = match imap.plaintext_auth {
        PlaintextAuth::Always => true,
        PlaintextAuth::Loopback => peer.ip().is_loopback(),
        PlaintextAuth::Never => false,
    };
    let opts = SessionOptions {
        starttls_available: !implicit,
        tls_active: implicit,
        plaintext_auth,
        failed_login_delay: imap.failed_login_delay,
        peer: peer.ip(),
        append_limit: live.limits.max_literal_bytes,
    };
    let mut session = Session::new(opts, shared.store.clone(), shared.auth.clone());
    // Handshakes count against the login deadline too: a client cannot stall one forever.
    let login_deadline = tokio::time::Instant::now() + imap.login_timeout;
    if implicit {
        let handshake = tokio::time::timeout_at(login_deadline, live.tls.accept(tcp)).await;
        let mut tls = handshake.map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        serve(&mut tls, &mut session, live, &mut shutdown).await?;
        let _ = tls.shutdown().await;
        return Ok(());
    }
    let mut tcp = tcp;
    if serve(&mut tcp, &mut session, live, &mut shutdown).await? != Exit::StartTls {
        return Ok(());
    }
    // Bytes the client pipelined after STARTTLS were read in plaintext and are dropped.
    let handshake = tokio::time::timeout_at(login_deadline, live.tls.accept(tcp)).await;
    let mut tls = handshake.map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let o = session.options_mut();
    o.tls_active = true;
    o.starttls_available = false;
    serve_more(&mut tls, &mut session, live, &mut shutdown).await?;
    let _ = tls.shutdown().await;
    Ok(())
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    session: &mut Session,
    live: &Live,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Exit> {
    stream
        .write_all(strata_protocol::greeting(session).as_bytes())
        .await?;
    serve_more(stream, session, live, shutdown).await
}

async fn serve_more<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut S,
    session: &mut Session,
    live: &Live,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Exit> {
    strata_protocol::run(stream, session, &live.limits, shutdown).await
}

impl Live {
    /// What `cfg` makes; fails on certificate files that do not make a TLS setup.
    pub(crate) fn new(cfg: Config) -> Result<Live, crate::tls::TlsError> {
        let tls = TlsAcceptor::from(crate::tls::server_config(&cfg.tls, &cfg.data_dir)?);
        let limits = Limits {
            max_command_bytes: cfg.imap.max_command_bytes,
            max_literal_bytes: u32::try_from(cfg.imap.max_literal_bytes)
                .unwrap_or(u32::MAX - (1 << 20)),
            max_command_bytes_before_login: cfg.imap.max_command_bytes_before_login,
            max_literal_bytes_before_login: cfg.imap.max_literal_bytes_before_login,
            login_timeout: cfg.imap.login_timeout,
            command_timeout: cfg.imap.command_timeout,
            idle_timeout: cfg.imap.idle_timeout,
        };
        Ok(Live { cfg, tls, limits })
    }
}

/// The login limits `cfg` sets.
pub(crate) fn login_limits(cfg: &Config) -> LoginLimits {
    LoginLimits {
        failures_per_ip: cfg.imap.max_failed_logins_per_ip,
        failures_per_account: cfg.imap.max_failed_logins_per_account,
        checks_per_ip: cfg.imap.max_login_checks_per_ip,
        cache_entries: cfg.auth.cache_entries as usize,
        cache_ttl: cfg.auth.cache_ttl,
    }
}
