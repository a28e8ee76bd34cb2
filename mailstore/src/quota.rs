//! Quotas (RFC 9208): one quota root per user, over two resources, STORAGE (the octets of every
//! message in every mailbox, a copy counted again) and MESSAGE. Usage is the sum of the index's
//! per-mailbox counters, so nothing is scanned to learn it; the limits come from the server (its
//! configured default and each account's own) through a [`QuotaSource`], read when the user is
//! opened and again when the server says the account changed.
//!
//! Not here: the IMAP and LMTP answers (protocol, lmtp) or where limits are kept (server).

use strata_backend_api::BackendError;
pub use strata_index::Usage;

/// The quota root every user has: the empty name, as GETQUOTAROOT reports it.
pub const ROOT: &str = "";

/// A user's limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Octets.
    pub storage: Option<u64>,
    /// Messages.
    pub messages: Option<u64>,
}

/// A resource a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Octets of mail.
    Storage,
    /// Messages.
    Message,
}

impl Resource {
    /// Its name in RFC 9208.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Storage => "STORAGE",
            Resource::Message => "MESSAGE",
        }
    }
}

/// A change refused because it would take a user past a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct OverQuota {
    /// The resource.
    pub resource: Resource,
    /// What is used now.
    pub usage: u64,
    /// What the change adds.
    pub adding: u64,
    /// The limit.
    pub limit: u64,
}

impl OverQuota {
    fn describe(&self) -> String {
        match self.resource {
            Resource::Storage => format!(
                "over quota: {} of {} used, {} more does not fit",
                octets(self.usage),
                octets(self.limit),
                octets(self.adding)
            ),
            Resource::Message => format!(
                "over quota: {} of {} messages, {} more do not fit",
                self.usage, self.limit, self.adding
            ),
        }
    }
}

/// Octets as an admin reads them (`12.5 MiB`).
pub fn octets(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Limits {
    /// No limit on anything.
    pub fn is_unlimited(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }

    /// Whether `adding` fits beside `usage`. A change that adds nothing always fits (a user
    /// over a lowered limit can still move, flag and expunge).
    pub fn check(&self, usage: Usage, adding: Usage) -> Result<(), OverQuota> {
        let over = |resource, usage: u64, adding: u64, limit: Option<u64>| match limit {
            Some(limit) if adding > 0 && usage.saturating_add(adding) > limit => Err(OverQuota {
                resource,
                usage,
                adding,
                limit,
            }),
            _ => Ok(()),
        };
        over(
            Resource::Storage,
            usage.storage,
            adding.storage,
            self.storage,
        )?;
        over(
            Resource::Message,
            usage.messages,
            adding.messages,
            self.messages,
        )
    }

    /// Each limited resource with its usage and limit, STORAGE in units of 1024 octets (usage
    /// rounded up, limit down), as a QUOTA response lists them.
    pub fn report(&self, usage: Usage) -> Vec<(Resource, u64, u64)> {
        let mut out = Vec::new();
        if let Some(l) = self.storage {
            out.push((Resource::Storage, usage.storage.div_ceil(1024), l / 1024));
        }
        if let Some(l) = self.messages {
            out.push((Resource::Message, usage.messages, l));
        }
        out
    }
}

/// Where a user's limits come from.
#[async_trait::async_trait]
pub trait QuotaSource: Send + Sync {
    /// `user`'s limits now; `Err` when they cannot be read (the user is not opened then).
    async fn limits(&self, user: &str) -> Result<Limits, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(messages: u64, storage: u64) -> Usage {
        Usage { messages, storage }
    }

    #[test]
    fn a_change_fits_up_to_the_limit_and_not_past_it() {
        let l = Limits {
            storage: Some(1000),
            messages: Some(3),
        };
        assert!(l.check(u(2, 900), u(1, 100)).is_ok());
        let e = l.check(u(2, 900), u(1, 101)).unwrap_err();
        assert_eq!(
            (e.resource, e.usage, e.adding, e.limit),
            (Resource::Storage, 900, 101, 1000)
        );
        let e = l.check(u(3, 10), u(1, 1)).unwrap_err();
        assert_eq!(e.resource, Resource::Message);
        assert!(e.to_string().contains("3 of 3 messages"), "{e}");
    }

    #[test]
    fn over_a_lowered_limit_nothing_new_fits_but_a_change_adding_nothing_does() {
        let l = Limits {
            storage: Some(100),
            messages: None,
        };
        assert!(l.check(u(5, 500), u(1, 1)).is_err());
        assert!(l.check(u(5, 500), u(0, 0)).is_ok());
        assert!(
            Limits::default()
                .check(u(u64::MAX, u64::MAX), u(1, 1))
                .is_ok()
        );
    }

    #[test]
    fn storage_is_reported_in_kibibytes_usage_rounded_up() {
        let l = Limits {
            storage: Some(10 * 1024 + 1000),
            messages: Some(7),
        };
        assert_eq!(
            l.report(u(2, 1025)),
            vec![(Resource::Storage, 2, 10), (Resource::Message, 2, 7)]
        );
        assert!(Limits::default().report(u(1, 1)).is_empty());
    }

    #[test]
    fn octets_read_as_an_admin_would() {
        assert_eq!(octets(512), "512 bytes");
        assert_eq!(octets(1536), "1.5 KiB");
        assert_eq!(octets(2 << 30), "2.0 GiB");
    }
}
