//! Password checks for IMAP sessions over the user database, with the per-address failed-login
//! limit: after too many failures from one address in a window, logins from it are refused
//! without checking the password until the window passes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_protocol::Authenticator;

use crate::users::UserDb;

/// How long failures from one address are remembered.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The server's [`Authenticator`].
pub struct PasswordAuth {
    db: Arc<UserDb>,
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl PasswordAuth {
    /// Checks against `db`, refusing an address after `max_failures` failures in the window.
    pub fn new(db: Arc<UserDb>, max_failures: u32) -> Self {
        PasswordAuth {
            db,
            max_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Authenticator for PasswordAuth {
    async fn verify(&self, user: &str, password: &[u8], peer: IpAddr) -> Result<bool, String> {
        {
            let mut f = self.failures();
            f.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if f.get(&peer).is_some_and(|(n, _)| *n >= self.max_failures) {
                return Err("too many failed logins from this address; try again later".into());
            }
        }
        let db = self.db.clone();
        let (user, password) = (
            user.to_string(),
            String::from_utf8_lossy(password).into_owned(),
        );
        // argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || db.verify(&user, &password))
            .await
            .map_err(|e| format!("password check failed: {e}"))?
            .map_err(|e| format!("user database unavailable: {e}"))?;
        let mut f = self.failures();
        if ok {
            f.remove(&peer);
        } else {
            let e = f.entry(peer).or_insert((0, Instant::now()));
            e.0 += 1;
        }
        Ok(ok)
    }
}
