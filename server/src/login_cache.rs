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
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    ttl: Duration,
}

impl LoginCache {
    /// An empty cache of at most `capacity` users whose entries last `ttl`; a capacity or ttl
    /// of zero keeps nothing.
    pub fn new(capacity: usize, ttl: Duration) -> LoginCache {
        LoginCache {
            key: rand::random(),
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    fn mac(&self, user: &str, password: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        // The name's length first, so no (user, password) pair reads as another.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `password` is the one `user` last logged in with, within the ttl.
    pub fn hit(&self, user: &str, password: &[u8]) -> bool {
        let tag = {
            let entries = self.entries();
            match entries.get(user) {
                Some(e) if e.at.elapsed() < self.ttl => e.tag,
                _ => return false,
            }
        };
        // Compared in constant time.
        self.mac(user, password).verify_slice(&tag).is_ok()
    }

    /// Records that `password` is `user`'s, as argon2 just said.
    pub fn remember(&self, user: &str, password: &[u8]) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let tag: Tag = self.mac(user, password).finalize().into_bytes().into();
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(user) {
            // Full: the expired go, else the oldest one.
            let ttl = self.ttl;
            entries.retain(|_, e| e.at.elapsed() < ttl);
            if entries.len() >= self.capacity
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
        self.entries().remove(user);
    }

    /// Users held now.
    pub fn len(&self) -> usize {
        self.entries().len()
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
    fn an_entry_holds_no_password_bytes() {
        let c = LoginCache::new(3, Duration::from_secs(60));
        c.remember("alice", b"correct horse battery staple");
        let entries = c.entries();
        let e = &entries["alice"];
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
