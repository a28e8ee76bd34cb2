//! Wiring the configured storage to the mail store: one backend per user, opened once and
//! reused. A store shared by every user (SQL, S3) is connected at start, wrapped in the delay
//! backend when the configuration injects latency, and put behind the staging journal; each
//! user sees it under a prefix of their name. A Maildir is opened per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_backend_api::{Backend, BackendError, ErrorKind, Prefixed};
use strata_backend_delay::{DelayBackend, DelayConfig, DelayStats, Latency};
use strata_backend_journal::{Journal, JournalOptions, JournalStats};
use strata_backend_maildir::MaildirBackend;
use strata_backend_s3::{S3Backend, S3Options};
use strata_backend_sql::{SqlBackend, SqlOptions};
use strata_config::{Backend as BackendConfig, Delay, S3, Storage};
use strata_mailstore::BackendFactory;

/// A backend wrapped in injected latency.
type Delayed = Arc<DelayBackend<Arc<dyn Backend>>>;

/// The backends opened so far, by user.
#[derive(Default)]
pub struct Backends {
    open: Mutex<HashMap<String, Arc<dyn Backend>>>,
    delayed: Mutex<Vec<Delayed>>,
    /// The store every user shares (SQL, S3), each under a prefix of their name.
    shared: Option<Arc<dyn Backend>>,
    /// The journal in front of the shared store, when there is one.
    journal: Option<Arc<Journal>>,
}

/// The S3 backend's options from the configuration.
pub fn s3_options(c: &S3) -> S3Options {
    let mut o = S3Options::new(c.bucket.clone());
    o.endpoint = c.endpoint.clone();
    o.prefix = c.prefix.clone();
    o.region = c.region.clone();
    if let Some((ak, sk)) = &c.credentials {
        o.access_key = Some(ak.clone());
        o.secret_key = Some(sk.0.clone());
    }
    o.path_style = c.path_style;
    o.max_requests = c.max_requests as usize;
    o.attempts = c.attempts;
    o.connect_timeout = c.connect_timeout;
    o.request_timeout = c.request_timeout;
    o
}

/// Connects the store every user shares (none for Maildir): a wrong URL, wrong credentials,
/// a missing bucket or an unreachable server are errors here.
pub async fn reach(storage: &Storage) -> Result<Option<Arc<dyn Backend>>, BackendError> {
    Ok(match &storage.backend {
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
        BackendConfig::S3(c) => Some(Arc::new(S3Backend::connect(&s3_options(c)).await?)),
    })
}

fn delay_config(d: &Delay) -> DelayConfig {
    DelayConfig {
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
    }
}

impl Backends {
    /// Connects the shared store and opens the journal in front of it (uploading whatever a
    /// previous run left unacked).
    pub async fn connect(storage: &Storage) -> Result<Backends, BackendError> {
        let backends = Backends::default();
        let Some(store) = reach(storage).await? else {
            return Ok(backends);
        };
        let store = backends.delayed(store, storage);
        let (shared, journal) = if storage.journal.enabled {
            let j = &storage.journal;
            let opts = JournalOptions {
                dir: j.dir.clone(),
                max_bytes: j.max_bytes,
                segment_bytes: j.segment_bytes,
                uploads: j.uploads as usize,
            };
            let journal = Arc::new(Journal::open(store, opts).await?);
            (journal.clone() as Arc<dyn Backend>, Some(journal))
        } else {
            (store, None)
        };
        Ok(Backends {
            shared: Some(shared),
            journal,
            ..backends
        })
    }

    /// `store` in the configured latency injection, if any (kept for its statistics).
    fn delayed(&self, store: Arc<dyn Backend>, storage: &Storage) -> Arc<dyn Backend> {
        match &storage.delay {
            None => store,
            Some(d) => {
                let delayed = Arc::new(DelayBackend::new(store, delay_config(d)));
                self.delayed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(delayed.clone());
                delayed
            }
        }
    }

    /// The journal's lag and totals, when there is a journal.
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.journal.as_ref().map(|j| j.stats())
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
        let backend: Arc<dyn Backend> = match (&storage.backend, &self.shared) {
            (BackendConfig::Maildir { root }, _) => {
                let maildir: Arc<dyn Backend> = Arc::new(MaildirBackend::open(root.join(user))?);
                self.delayed(maildir, storage)
            }
            (_, Some(shared)) => Arc::new(Prefixed::new(shared.clone(), user)?),
            (_, None) => {
                return Err(BackendError::new(
                    "server",
                    ErrorKind::Unavailable,
                    "the shared store was not connected at start",
                ));
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
