//! Wiring the configured storage to the mail store: one backend per user, opened once and
//! reused, wrapped in the delay backend when the configuration asks for injected latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_backend_api::{Backend, BackendError, ErrorKind, Prefixed};
use strata_backend_delay::{DelayBackend, DelayConfig, DelayStats, Latency};
use strata_backend_maildir::MaildirBackend;
use strata_backend_sql::{SqlBackend, SqlOptions};
use strata_config::{Backend as BackendConfig, Storage};
use strata_mailstore::BackendFactory;

/// A user's backend wrapped in injected latency.
type Delayed = Arc<DelayBackend<Arc<dyn Backend>>>;

/// The backends opened so far, by user.
#[derive(Default)]
pub struct Backends {
    open: Mutex<HashMap<String, Arc<dyn Backend>>>,
    delayed: Mutex<Vec<Delayed>>,
    /// The store every user shares (SQL), each under a prefix of their name.
    shared: Option<Arc<dyn Backend>>,
}

impl Backends {
    /// Connects the stores that are shared by every user (an SQL database); a wrong URL,
    /// wrong credentials or an unreachable server are errors here, at start.
    pub async fn connect(storage: &Storage) -> Result<Backends, BackendError> {
        let shared: Option<Arc<dyn Backend>> = match &storage.backend {
            BackendConfig::Maildir { .. } => None,
            BackendConfig::Sql {
                url,
                max_connections,
                chunk_bytes,
                connect_timeout,
            } => {
                let opts = SqlOptions {
                    url: url.clone(),
                    max_connections: *max_connections,
                    chunk_bytes: *chunk_bytes as usize,
                    connect_timeout: *connect_timeout,
                };
                Some(Arc::new(SqlBackend::connect(&opts).await?))
            }
        };
        Ok(Backends {
            shared,
            ..Backends::default()
        })
    }

    /// The factory the mail store calls at each user's first login.
    pub fn factory(self: &Arc<Self>, storage: Storage) -> BackendFactory {
        let me = self.clone();
        Arc::new(move |user: &str| me.open(&storage, user))
    }

    fn open(&self, storage: &Storage, user: &str) -> Result<Arc<dyn Backend>, BackendError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = open.get(user) {
            return Ok(b.clone());
        }
        if crate::users::check_name(user).is_err() {
            return Err(BackendError::new(
                "server",
                ErrorKind::InvalidKey,
                format!("bad user name {user:?}"),
            ));
        }
        let base: Arc<dyn Backend> = match (&storage.backend, &self.shared) {
            (BackendConfig::Maildir { root }, _) => {
                Arc::new(MaildirBackend::open(root.join(user))?)
            }
            (BackendConfig::Sql { .. }, Some(shared)) => {
                Arc::new(Prefixed::new(shared.clone(), user)?)
            }
            (BackendConfig::Sql { .. }, None) => {
                return Err(BackendError::new(
                    "server",
                    ErrorKind::Unavailable,
                    "the SQL backend was not connected at start",
                ));
            }
        };
        let backend: Arc<dyn Backend> = match &storage.delay {
            None => base,
            Some(d) => {
                let cfg = DelayConfig {
                    seed: d.seed,
                    read: Latency {
                        fixed: d.read,
                        jitter: d.read_jitter,
                    },
                    write: Latency {
                        fixed: d.write,
                        jitter: d.write_jitter,
                    },
                    error_rate: d.error_rate,
                    stall_rate: d.stall_rate,
                    stall: d.stall,
                    ack: Latency {
                        fixed: d.ack,
                        jitter: d.ack_jitter,
                    },
                    ..DelayConfig::default()
                };
                let delayed = Arc::new(DelayBackend::new(base, cfg));
                self.delayed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(delayed.clone());
                delayed
            }
        };
        open.insert(user.to_string(), backend.clone());
        Ok(backend)
    }

    /// What the delay backends have seen, summed (reads and commits) and maximised (reads in
    /// flight), for the latency harness and its tests.
    pub fn delay_stats(&self) -> DelayStats {
        let mut total = DelayStats::default();
        for d in self
            .delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let s = d.stats();
            total.reads += s.reads;
            total.commits += s.commits;
            total.errors += s.errors;
            total.stalls += s.stalls;
            total.bytes_read += s.bytes_read;
            total.max_reads_in_flight = total.max_reads_in_flight.max(s.max_reads_in_flight);
        }
        total
    }

    /// Every backend opened, to flush at shutdown.
    pub fn all(&self) -> Vec<Arc<dyn Backend>> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
