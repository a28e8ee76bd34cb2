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
    checks: std::sync::mpsc::SyncSender<Check>,
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// One password to check, and where the answer goes.
struct Check {
    user: String,
    password: String,
    reply: tokio::sync::oneshot::Sender<Result<bool, crate::users::UserError>>,
}

impl PasswordAuth {
    /// Checks against `db`, refusing an address after `max_failures` failures in the window.
    ///
    /// Checks run on one thread per core and no more: argon2 takes tens of MiB per check, and
    /// each thread's allocator keeps what it freed, so a pool of any size (the blocking pool
    /// grows to hundreds) would hold that much per thread, and a login flood would check
    /// passwords on every thread at once.
    pub fn new(db: Arc<UserDb>, max_failures: u32) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Check>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let (db, rx) = (db.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("strata-auth-{i}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(c) = next else {
                            return; // the authenticator is gone
                        };
                        let _ = c.reply.send(db.verify(&c.user, &c.password));
                    }
                })
                .expect("starting a password-check thread");
        }
        PasswordAuth {
            checks: tx,
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        let check = Check {
            user: user.to_string(),
            password: String::from_utf8_lossy(password).into_owned(),
            reply,
        };
        // argon2 is deliberately slow: it runs on the check threads, off the async workers.
        // `try_send`: a full queue means a login flood, answered at once instead of queued.
        if self.checks.try_send(check).is_err() {
            return Err("too many logins in progress; try again later".into());
        }
        let ok = answer
            .await
            .map_err(|_| "password check failed".to_string())?
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
