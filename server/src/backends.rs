//! Wiring the configured storage to the mail store: one backend per user, opened once and
//! reused, wrapped in the delay backend when the configuration asks for injected latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_backend_api::{Backend, BackendError, ErrorKind};
use strata_backend_delay::{DelayBackend, DelayConfig, DelayStats, Latency};
use strata_backend_maildir::MaildirBackend;
use strata_config::{Backend as BackendConfig, Storage};
use strata_mailstore::BackendFactory;

/// The backends opened so far, by user.
#[derive(Default)]
pub struct Backends {
    open: Mutex<HashMap<String, Arc<dyn Backend>>>,
    delayed: Mutex<Vec<Arc<DelayBackend<MaildirBackend>>>>,
}

impl Backends {
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
        let BackendConfig::Maildir { root } = &storage.backend;
        let maildir = MaildirBackend::open(root.join(user))?;
        let backend: Arc<dyn Backend> = match &storage.delay {
            None => Arc::new(maildir),
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
                let delayed = Arc::new(DelayBackend::new(maildir, cfg));
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
