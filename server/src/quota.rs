//! Each user's quota limits as the mail store asks for them: the account's own limits where it
//! sets them, else `[quota]`'s; and `strata user quota`, which shows and sets them.

use std::sync::Arc;

use strata_backend_api::{BackendError, ErrorKind};
use strata_mailstore::quota::{Limits, QuotaSource, Usage, octets};

use crate::accounts::Accounts;
use crate::users::{Limit, QuotaOverride, UserError};

/// Limits read from the accounts, with the configured default.
pub struct AccountLimits {
    accounts: Accounts,
    default: std::sync::Mutex<strata_config::Quota>,
}

impl AccountLimits {
    /// Limits from `accounts`, `default` where an account sets none.
    pub fn new(accounts: Accounts, default: strata_config::Quota) -> Arc<AccountLimits> {
        Arc::new(AccountLimits {
            accounts,
            default: std::sync::Mutex::new(default),
        })
    }

    /// The limits of accounts that set none, from now on (a reload).
    pub fn set_default(&self, default: strata_config::Quota) {
        *self.default.lock().unwrap_or_else(|p| p.into_inner()) = default;
    }

    fn default(&self) -> strata_config::Quota {
        *self.default.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl QuotaSource for AccountLimits {
    async fn limits(&self, user: &str) -> Result<Limits, BackendError> {
        match self.accounts.account(user).await {
            Ok(account) => Ok(account
                .map(|a| a.quota)
                .unwrap_or_default()
                .limits(self.default())),
            Err(UserError::Store(e)) => Err(e),
            Err(e) => Err(BackendError::new(
                "accounts",
                ErrorKind::Io,
                format!("reading the quota of {user:?}: {e}"),
            )),
        }
    }
}

/// `--storage` or `--messages` of `strata user quota`: `default` (the configured one),
/// `unlimited`, or a limit (a size like `2G` for storage).
pub fn parse_limit(text: &str, storage: bool) -> Result<Option<Limit>, String> {
    if text.trim().eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    let parsed = if storage {
        strata_config::parse_size(text)?
    } else {
        strata_config::parse_count(text)?
    };
    Ok(Some(parsed.map_or(Limit::Unlimited, Limit::At)))
}

/// What `strata user quota NAME` prints: each limit, where it comes from, and the usage when
/// it could be read.
pub fn describe(own: QuotaOverride, default: strata_config::Quota, usage: Option<Usage>) -> String {
    let limits = own.limits(default);
    let line = |what: &str,
                own: Option<Limit>,
                limit: Option<u64>,
                used: Option<u64>,
                show: fn(u64) -> String| {
        let limit_text = limit.map_or_else(|| "unlimited".to_string(), show);
        let from = if own.is_some() {
            "this account's own"
        } else {
            "the default, [quota]"
        };
        let used = used.map_or_else(String::new, |u| format!(", {} used", show(u)));
        format!("{what}: {limit_text} ({from}){used}\n")
    };
    let mut out = line(
        "storage",
        own.storage,
        limits.storage,
        usage.map(|u| u.storage),
        octets,
    );
    out.push_str(&line(
        "messages",
        own.messages,
        limits.messages,
        usage.map(|u| u.messages),
        |n| n.to_string(),
    ));
    out
}
