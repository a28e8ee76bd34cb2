//! Password checks for IMAP sessions over the accounts (see `accounts`), behind the login limits: failures
//! per address and per account name over a window, and checks in progress per address (more
//! wait their turn). A check is counted before it runs, so guesses sent in parallel cannot get
//! past a limit, and a successful login does not clear what failed before it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use strata_protocol::scram::ScramKeys;
use strata_protocol::{Authenticator, LoginAttempt};

use crate::accounts::Accounts;
use crate::login_cache::LoginCache;
use crate::users::verify_hash;

/// How long failures are remembered, from the first one.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The limits the server applies to logins.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Failed logins from one address per window.
    pub failures_per_ip: u32,
    /// Failed logins for one account name per window, from anywhere.
    pub failures_per_account: u32,
    /// Checks in progress at once for one address; more wait.
    pub checks_per_ip: u32,
    /// Users whose last successful login is remembered (see `login_cache`).
    pub cache_entries: usize,
    /// How long one is remembered.
    pub cache_ttl: Duration,
}

/// The server's [`Authenticator`].
pub struct PasswordAuth {
    accounts: Arc<Accounts>,
    checks: std::sync::mpsc::SyncSender<Check>,
    limits: Mutex<LoginLimits>,
    counts: Arc<Mutex<Counts>>,
    cache: LoginCache,
    /// Keys the salts that SCRAM shows for users without keys, so each looks like an account.
    decoy: [u8; 32],
}

/// One password to check, and where the answer goes.
struct Check {
    /// The account's hash (`None`: no such account, which costs a hash all the same).
    hash: Option<String>,
    password: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// Failures and checks in progress of one address or one account.
#[derive(Default)]
struct Counter {
    failures: u32,
    in_flight: u32,
    /// When the first failure of the window was.
    since: Option<Instant>,
    /// An address's turns to check (accounts have none).
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Counter {
    fn expire(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|s| now.duration_since(s) >= FAILURE_WINDOW)
        {
            self.failures = 0;
            self.since = None;
        }
    }

    fn idle(&self) -> bool {
        self.failures == 0
            && self.in_flight == 0
            && self.gate.as_ref().is_none_or(|g| Arc::strong_count(g) == 1)
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.since.get_or_insert(now);
    }
}

/// The counters, by address and by a keyed hash of the account name (so that names a client
/// makes up cost a few bytes each, whatever their length).
#[derive(Default)]
struct Counts {
    ips: HashMap<IpAddr, Counter>,
    accounts: HashMap<u64, Counter>,
    hasher: RandomState,
    /// Calls since the maps were last swept of idle counters.
    since_sweep: u32,
}

impl Counts {
    fn sweep(&mut self, now: Instant) {
        self.since_sweep += 1;
        if self.since_sweep < 256 {
            return;
        }
        self.since_sweep = 0;
        for c in self.ips.values_mut().chain(self.accounts.values_mut()) {
            c.expire(now);
        }
        self.ips.retain(|_, c| !c.idle());
        self.accounts.retain(|_, c| !c.idle());
    }
}

impl PasswordAuth {
    /// Checks against `db` within `limits`.
    ///
    /// Checks run on one thread per core and no more: argon2 takes tens of MiB per check, and
    /// each thread's allocator keeps what it freed, so a pool of any size (the blocking pool
    /// grows to hundreds) would hold that much per thread, and a login flood would check
    /// passwords on every thread at once.
    pub fn new(accounts: Arc<Accounts>, limits: LoginLimits) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Check>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("strata-auth-{i}"))
                .spawn(move || {
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(c) = next else {
                            return; // the authenticator is gone
                        };
                        let _ = c.reply.send(verify_hash(c.hash.as_deref(), &c.password));
                    }
                })
                .expect("starting a password-check thread");
        }
        PasswordAuth {
            accounts,
            checks: tx,
            cache: LoginCache::new(limits.cache_entries, limits.cache_ttl),
            limits: Mutex::new(limits),
            counts: Arc::new(Mutex::new(Counts::default())),
            decoy: rand::random(),
        }
    }

    /// Forgets what the login cache holds of `user` (the account changed or is gone).
    pub fn forget(&self, user: &str) {
        self.cache.forget(user);
    }

    /// Applies reloaded limits and forgets every cached login (the accounts were reread too).
    /// An address's turns already handed out keep their number until it has been idle.
    pub fn reconfigure(&self, limits: LoginLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
        self.cache.reset(limits.cache_entries, limits.cache_ttl);
    }

    fn limits(&self) -> LoginLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        lock(&self.counts)
    }

    /// An address's turns to check.
    fn gate(&self, peer: IpAddr) -> Arc<tokio::sync::Semaphore> {
        let turns = self.limits().checks_per_ip as usize;
        self.counts()
            .ips
            .entry(peer)
            .or_default()
            .gate
            .get_or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(turns)))
            .clone()
    }

    /// Counts a check about to run, or says why it may not.
    fn begin(&self, peer: IpAddr, account: u64) -> Result<(), String> {
        let now = Instant::now();
        let mut c = self.counts();
        c.sweep(now);
        let l = self.limits();
        let ip = c.ips.entry(peer).or_default();
        ip.expire(now);
        if ip.failures + ip.in_flight >= l.failures_per_ip {
            return Err("too many failed logins from this address; try again later".into());
        }
        let acct = c.accounts.entry(account).or_default();
        acct.expire(now);
        if acct.failures + acct.in_flight >= l.failures_per_account {
            return Err("too many failed logins for this account; try again later".into());
        }
        acct.in_flight += 1;
        c.ips.get_mut(&peer).expect("just inserted").in_flight += 1;
        Ok(())
    }

    /// Ends a counted check; a failure stays counted for the window.
    fn end(&self, peer: IpAddr, account: u64, failed: bool) {
        end(&self.counts, peer, account, failed);
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`PasswordAuth::end`], for a check that outlives the call that began it.
fn end(counts: &Mutex<Counts>, peer: IpAddr, account: u64, failed: bool) {
    let now = Instant::now();
    let mut c = lock(counts);
    let Counts { ips, accounts, .. } = &mut *c;
    for counter in [ips.get_mut(&peer), accounts.get_mut(&account)]
        .into_iter()
        .flatten()
    {
        counter.in_flight -= 1;
        if failed {
            counter.fail(now);
        }
    }
}

#[async_trait]
impl Authenticator for PasswordAuth {
    async fn verify(&self, user: &str, password: &[u8], peer: IpAddr) -> Result<bool, String> {
        let answer = self.check(user, password, peer).await;
        strata_metrics::metrics().login(match &answer {
            Ok(true) => "ok",
            Ok(false) => "failed",
            Err(why) if why.starts_with(UNAVAILABLE) => "unavailable",
            Err(_) => "throttled",
        });
        answer
    }

    async fn scram(
        &self,
        user: &str,
        peer: IpAddr,
    ) -> Result<(ScramKeys, Box<dyn LoginAttempt>), String> {
        let account = self.counts().hasher.hash_one(user.as_bytes());
        if let Err(why) = self.begin(peer, account) {
            strata_metrics::metrics().login("throttled");
            return Err(why);
        }
        // Counted from here, whatever happens to the exchange.
        let mut attempt = Box::new(ScramAttempt {
            counts: self.counts.clone(),
            peer,
            account,
            result: "failed",
        });
        let keys = match self.accounts.account(user).await {
            Ok(a) => a.and_then(|a| {
                if a.scram.is_none() {
                    tracing::info!(%user, "SCRAM-SHA-256 for an account without keys: setting its password again makes them");
                }
                a.scram
            }),
            Err(e) => {
                attempt.result = "unavailable";
                return Err(format!("{UNAVAILABLE}: {e}"));
            }
        };
        Ok((keys.unwrap_or_else(|| self.decoy_keys(user)), attempt))
    }
}

/// A SCRAM exchange in progress, counted against the limits as a check until it ends.
struct ScramAttempt {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
    account: u64,
    /// For the metrics: `failed` unless told otherwise.
    result: &'static str,
}

impl LoginAttempt for ScramAttempt {
    fn succeeded(mut self: Box<Self>) {
        self.result = "ok";
    }
}

impl Drop for ScramAttempt {
    fn drop(&mut self) {
        end(
            &self.counts,
            self.peer,
            self.account,
            self.result == "failed",
        );
        strata_metrics::metrics().login(self.result);
    }
}

impl PasswordAuth {
    /// Keys no proof matches, under a salt that is the same for `user` at every attempt (as an
    /// account's is), so the exchange does not tell that there is no such account.
    fn decoy_keys(&self, user: &str) -> ScramKeys {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.decoy).expect("HMAC takes any key");
        mac.update(user.as_bytes());
        let salt = mac.finalize().into_bytes();
        ScramKeys {
            iterations: strata_protocol::scram::ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: rand::random(),
            server_key: rand::random(),
        }
    }
}

/// How a check that could not read the accounts begins its answer.
const UNAVAILABLE: &str = "user database unavailable";

impl PasswordAuth {
    /// [`Authenticator::verify`], uncounted.
    async fn check(&self, user: &str, password: &[u8], peer: IpAddr) -> Result<bool, String> {
        let account = self.counts().hasher.hash_one(user.as_bytes());
        // One address checks a few passwords at a time; the others wait their turn.
        let _turn = self
            .gate(peer)
            .acquire_owned()
            .await
            .map_err(|_| "password checks are closed".to_string())?;
        self.begin(peer, account)?;
        // Counted until the answer, whatever happens to this task meanwhile.
        struct Counted<'a> {
            auth: &'a PasswordAuth,
            peer: IpAddr,
            account: u64,
            failed: bool,
        }
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.auth.end(self.peer, self.account, self.failed);
            }
        }
        let mut counted = Counted {
            auth: self,
            peer,
            account,
            failed: false,
        };
        // Counted as any check, so guesses cost the same against it.
        if self.cache.hit(user, password) {
            return Ok(true);
        }
        let hash = self
            .accounts
            .hash_of(user)
            .await
            .map_err(|e| format!("{UNAVAILABLE}: {e}"))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let check = Check {
            hash,
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
            .map_err(|_| "password check failed".to_string())?;
        counted.failed = !ok;
        if ok {
            self.cache.remember(user, password);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(limits: LoginLimits) -> (tempfile::TempDir, PasswordAuth) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::users::UserDb::new(dir.path().join("users"));
        db.add("alice", "right").unwrap();
        (
            dir,
            PasswordAuth::new(Arc::new(Accounts::File(Arc::new(db))), limits),
        )
    }

    const LIMITS: LoginLimits = LoginLimits {
        failures_per_ip: 3,
        failures_per_account: 5,
        checks_per_ip: 2,
        cache_entries: 0,
        cache_ttl: Duration::ZERO,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_limited_per_address_and_a_success_does_not_clear_them() {
        let (_d, a) = auth(LIMITS);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(a.verify("alice", b"wrong", ip).await, Ok(false));
        }
        assert!(
            a.verify("alice", b"right", ip).await.is_err(),
            "refused now"
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(a.verify("alice", b"right", other).await, Ok(true));
        // The success from elsewhere changed nothing for the first address.
        assert!(a.verify("alice", b"right", ip).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_are_counted_before_they_are_checked() {
        let (_d, a) = auth(LIMITS);
        let a = Arc::new(a);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let tries: Vec<_> = (0..50)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(
                    async move { a.verify("alice", format!("guess{i}").as_bytes(), ip).await },
                )
            })
            .collect();
        let mut checked = 0;
        for t in tries {
            if t.await.unwrap().is_ok() {
                checked += 1;
            }
        }
        assert_eq!(checked, 3, "{checked} of 50 parallel guesses were checked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_limited_per_account_across_addresses() {
        let (_d, a) = auth(LIMITS);
        for i in 0..5u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            assert_eq!(a.verify("alice", b"wrong", ip).await, Ok(false));
        }
        let fresh = IpAddr::from([203, 0, 113, 1]);
        let refused = a.verify("alice", b"right", fresh).await.unwrap_err();
        assert!(refused.contains("account"), "{refused}");
        // Other accounts are not affected.
        assert_eq!(a.verify("bob", b"x", fresh).await, Ok(false));
    }
}
