//! A running server's configuration read again (SIGHUP). Certificates and keys, the IMAP and
//! login limits, the login cache, the default quota, the LMTP options and the accounts take
//! effect at once: connections accepted from then on are served under the new configuration,
//! open ones keep the one they began with, and none is dropped. Every cached login is
//! forgotten and open users' quota limits are read again, so an account edited by hand counts
//! from the reload. Listeners, the data directory, stores, index and log format are bound at
//! start: a change to them is reported and waits for a restart. A configuration whose files or
//! certificates do not check out is refused whole, and the running one kept.
//!
//! It is not the reading of the file, nor the log level: `strata serve` does those (the
//! subscriber is its own), around [`Running::reload`].

use std::sync::Arc;

use strata_config::{Config, ConfigError};

use crate::serve::Running;

/// Why a new configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Files it names are missing or unusable.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Files(Vec<ConfigError>),
    /// Its certificate and key do not make a TLS setup.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Settings that changed but are bound at start, kept as they run until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Running {
    /// Serves connections accepted from now on under `cfg`, or refuses it and changes nothing.
    pub async fn reload(&self, mut cfg: Config) -> Result<Reloaded, ReloadError> {
        let shared = self.shared();
        let running = shared.live();
        let needs_restart = keep_running(&running.cfg, &mut cfg);
        let problems = strata_config::check_files(&cfg);
        if !problems.is_empty() {
            return Err(ReloadError::Files(problems));
        }
        let live = crate::serve::Live::new(cfg)?;
        let cfg = live.cfg.clone();
        *shared.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        shared.auth.reconfigure(crate::serve::login_limits(&cfg));
        *shared.lmtp.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(crate::lmtp::options(&cfg));
        shared.quotas.set_default(cfg.quota);
        for user in shared.store.open_users() {
            if let Err(e) = shared.store.refresh_limits(user.name()).await {
                tracing::warn!(user = user.name(), error = %e, "quota limits not read again");
            }
        }
        Ok(Reloaded { needs_restart })
    }
}

/// Puts back in `new` what is bound at start, naming each setting that differed.
fn keep_running(running: &Config, new: &mut Config) -> Vec<&'static str> {
    fn keep<T: PartialEq + Clone>(
        name: &'static str,
        running: &T,
        new: &mut T,
        changed: &mut Vec<&'static str>,
    ) {
        if running != new {
            changed.push(name);
            *new = running.clone();
        }
    }
    let mut changed = Vec::new();
    let c = &mut changed;
    keep("data_dir", &running.data_dir, &mut new.data_dir, c);
    keep(
        "imap.starttls",
        &running.imap.starttls,
        &mut new.imap.starttls,
        c,
    );
    keep("imap.tls", &running.imap.tls, &mut new.imap.tls, c);
    keep("storage", &running.storage, &mut new.storage, c);
    keep("index", &running.index, &mut new.index, c);
    keep(
        "auth.backend",
        &running.auth.backend,
        &mut new.auth.backend,
        c,
    );
    keep("log.format", &running.log.format, &mut new.log.format, c);
    keep("lmtp.listen", &running.lmtp.listen, &mut new.lmtp.listen, c);
    keep("lmtp.socket", &running.lmtp.socket, &mut new.lmtp.socket, c);
    let (old, new_max) = (&running.lmtp.max_connections, &mut new.lmtp.max_connections);
    keep("lmtp.max_connections", old, new_max, c);
    keep(
        "metrics.listen",
        &running.metrics.listen,
        &mut new.metrics.listen,
        c,
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_bound_at_start_is_kept_and_named_and_the_rest_goes_through() {
        let running = Config::default();
        let mut new = Config {
            data_dir: "/elsewhere".into(),
            ..Config::default()
        };
        new.imap.tls = None;
        new.lmtp.max_connections += 1;
        new.imap.max_connections += 1;
        new.quota.messages = Some(5);
        let changed = keep_running(&running, &mut new);
        assert_eq!(changed, ["data_dir", "imap.tls", "lmtp.max_connections"]);
        assert_eq!(new.data_dir, running.data_dir);
        assert_eq!(new.imap.tls, running.imap.tls);
        assert_eq!(new.lmtp.max_connections, running.lmtp.max_connections);
        assert_eq!(new.imap.max_connections, running.imap.max_connections + 1);
        assert_eq!(new.quota.messages, Some(5));
        assert!(keep_running(&running, &mut running.clone()).is_empty());
    }
}
