//! Recent successful password checks, so that a client logging in again (a phone that
//! reconnects every few minutes) costs a keyed hash instead of an argon2 run. An entry holds
//! neither the password nor an unkeyed hash of it: it is HMAC-SHA-256, under a key drawn at
//! start and kept only in this process's memory, of the user name and password. One entry per
//! user (the last password that worked), at most `capacity` of them, each good for `ttl`; an
//! account change that the server is told of (`strata user passwd`, `del`) forgets the user.
//!
//! It is not the password check (see `auth`) and never says a password is wrong: a miss goes to
//! argon2.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type Tag = [u8; 32];

struct Entry {
    tag: Tag,
    at: Instant,
}

/// The cache.
pub struct LoginCache {
    key: [u8; 32],
    inner: Mutex<Inner>,
}

/// The entries and the bounds they are kept within (a reload may change the bounds).
struct Inner {
    entries: HashMap<String, Entry>,
    capacity: usize,
    ttl: Duration,
}

impl LoginCache {
    /// An empty cache of at most `capacity` users whose entries last `ttl`; a capacity or ttl
    /// of zero keeps nothing.
    pub fn new(capacity: usize, ttl: Duration) -> LoginCache {
        LoginCache {
            key: rand::random(),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                capacity,
                ttl,
            }),
        }
    }

    /// Empties the cache and keeps at most `capacity` users for `ttl` from now on (the
    /// configuration was reloaded, and the accounts with it).
    pub fn reset(&self, capacity: usize, ttl: Duration) {
        *self.inner() = Inner {
            entries: HashMap::new(),
            capacity,
            ttl,
        };
    }

    fn mac(&self, user: &str, password: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        // The name's length first, so no (user, password) pair reads as another.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `password` is the one `user` last logged in with, within the ttl.
    pub fn hit(&self, user: &str, password: &[u8]) -> bool {
        let tag = {
            let inner = self.inner();
            match inner.entries.get(user) {
                Some(e) if e.at.elapsed() < inner.ttl => e.tag,
                _ => return false,
            }
        };
        // Compared in constant time.
        self.mac(user, password).verify_slice(&tag).is_ok()
    }

    /// Records that `password` is `user`'s, as argon2 just said.
    pub fn remember(&self, user: &str, password: &[u8]) {
        let tag: Tag = self.mac(user, password).finalize().into_bytes().into();
        let mut inner = self.inner();
        let Inner {
            entries,
            capacity,
            ttl,
        } = &mut *inner;
        if *capacity == 0 || ttl.is_zero() {
            return;
        }
        if entries.len() >= *capacity && !entries.contains_key(user) {
            // Full: the expired go, else the oldest one.
            entries.retain(|_, e| e.at.elapsed() < *ttl);
            if entries.len() >= *capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(u, _)| u.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            user.to_string(),
            Entry {
                tag,
                at: Instant::now(),
            },
        );
    }

    /// Forgets `user` (the account changed or is gone).
    pub fn forget(&self, user: &str) {
        self.inner().entries.remove(user);
    }

    /// Users held now.
    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    /// Whether it holds nobody.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_that_worked_hits_and_forget_or_time_ends_it() {
        let c = LoginCache::new(10, Duration::from_secs(60));
        assert!(!c.hit("alice", b"right"));
        c.remember("alice", b"right");
        assert!(c.hit("alice", b"right"));
        assert!(!c.hit("alice", b"wrong"));
        assert!(!c.hit("alicex", b"right"));
        // Name and password are not merely concatenated.
        c.remember("ab", b"c");
        assert!(!c.hit("a", b"bc"));
        c.forget("alice");
        assert!(!c.hit("alice", b"right"));
        let brief = LoginCache::new(10, Duration::ZERO);
        brief.remember("alice", b"right");
        assert!(!brief.hit("alice", b"right"));
    }

    #[test]
    fn it_holds_at_most_its_capacity_dropping_the_oldest() {
        let c = LoginCache::new(3, Duration::from_secs(60));
        for u in ["a", "b", "c", "d"] {
            c.remember(u, b"pw");
        }
        assert_eq!(c.len(), 3);
        assert!(!c.hit("a", b"pw"));
        assert!(c.hit("d", b"pw"));
    }

    #[test]
    fn a_reset_empties_it_and_applies_the_new_bounds() {
        let c = LoginCache::new(3, Duration::from_secs(60));
        c.remember("alice", b"pw");
        c.reset(1, Duration::from_secs(60));
        assert!(!c.hit("alice", b"pw"));
        c.remember("alice", b"pw");
        c.remember("bob", b"pw");
        assert_eq!(c.len(), 1);
        c.reset(10, Duration::ZERO);
        c.remember("alice", b"pw");
        assert!(c.is_empty());
    }

    #[test]
    fn an_entry_holds_no_password_bytes() {
        let c = LoginCache::new(3, Duration::from_secs(60));
        c.remember("alice", b"correct horse battery staple");
        let inner = c.inner();
        let e = &inner.entries["alice"];
        assert!(!e.tag.windows(7).any(|w| w == b"correct"));
        // Not the unkeyed hash either: the key is this process's own.
        let plain = Hmac::<Sha256>::new_from_slice(&[0u8; 32])
            .unwrap()
            .chain_update(5u64.to_be_bytes())
            .chain_update(b"alice")
            .chain_update(b"correct horse battery staple")
            .finalize()
            .into_bytes();
        assert_ne!(e.tag[..], plain[..]);
    }
}
