//! Where accounts live: this node's users file ([`UserDb`]), or objects in the main store that
//! every node using that store reads (`[auth] backend = "store"`): one object per account,
//! `.accounts/<name>`, holding its argon2id hash and its own quota limits ([`Account`]). No user's keys can collide with them (a user
//! name never starts with a dot). A new account is created only if absent, which the store
//! itself enforces, so two nodes never both create one name.
//!
//! It is not the password check's rate limiting (see `auth`), only where hashes are kept.

use std::sync::Arc;

use strata_backend_api::{Backend, Batch, ErrorKind, Key, Prefixed};
use strata_config::{AccountsIn, Config};

use crate::backends::Backends;
use crate::users::{Account, QuotaOverride, UserDb, UserError, check_name};

const PREFIX: &str = ".accounts";
/// Why `[auth] backend = "store"` has nowhere to keep accounts.
const NEEDS_A_STORE: &str =
    "[auth] backend = \"store\" needs an SQL or S3 main store, or [index.ship] dir";

/// The accounts the configuration names.
pub enum Accounts {
    /// `<data_dir>/users`.
    File(Arc<UserDb>),
    /// Objects in the main store.
    Store(Arc<dyn Backend>),
}

type Result<T> = std::result::Result<T, UserError>;

impl Accounts {
    /// The configured accounts; `backends` is needed (connected) when they are in the store.
    pub fn open(cfg: &Config, backends: &Backends) -> Result<Accounts> {
        match cfg.auth.backend {
            AccountsIn::File => Ok(Accounts::File(Arc::new(UserDb::new(
                cfg.data_dir.join("users"),
            )))),
            AccountsIn::Store => {
                // A Maildir is no place for them (even behind a journal): the ship directory is.
                let maildir = matches!(
                    cfg.storage.main.backend,
                    strata_config::Backend::Maildir { .. }
                );
                let shared = if maildir {
                    backends.index_store()
                } else {
                    backends.shared_main()
                };
                let shared = shared.ok_or_else(|| {
                    UserError::Store(strata_backend_api::BackendError::new(
                        "accounts",
                        ErrorKind::Unsupported,
                        NEEDS_A_STORE,
                    ))
                })?;
                Ok(Accounts::Store(Arc::new(Prefixed::new(shared, PREFIX)?)))
            }
        }
    }

    /// The configured accounts for an admin command beside a running server: the store is
    /// reached directly, not through the journal the server holds. Every change to an account
    /// carries a precondition, so it goes straight to the store either way.
    pub async fn open_direct(cfg: &Config) -> Result<Accounts> {
        match cfg.auth.backend {
            AccountsIn::File => Ok(Accounts::File(Arc::new(UserDb::new(
                cfg.data_dir.join("users"),
            )))),
            AccountsIn::Store => {
                let store = match crate::backends::reach(&cfg.storage.main).await? {
                    Some(s) => s,
                    None => match &cfg.index.ship.dir {
                        Some(dir) => Arc::new(strata_backend_files::FilesBackend::open(dir)?),
                        None => {
                            return Err(UserError::Store(strata_backend_api::BackendError::new(
                                "accounts",
                                ErrorKind::Unsupported,
                                NEEDS_A_STORE,
                            )));
                        }
                    },
                };
                Ok(Accounts::Store(Arc::new(Prefixed::new(store, PREFIX)?)))
            }
        }
    }

    /// Where they are, for messages.
    pub fn describe(&self) -> String {
        match self {
            Accounts::File(db) => db.path().display().to_string(),
            Accounts::Store(s) => format!("the store {:?}", s.name()),
        }
    }

    fn key(name: &str) -> Result<Key> {
        check_name(name)?;
        Ok(Key::new(name)?)
    }

    /// Adds an account.
    pub async fn add(&self, name: &str, password: &str) -> Result<()> {
        check_name(name)?;
        match self {
            Accounts::File(db) => {
                blocking({
                    let (db, name, password) = (db.clone(), name.to_string(), password.to_string());
                    move || db.add(&name, &password)
                })
                .await
            }
            Accounts::Store(s) => {
                let key = Self::key(name)?;
                let account = Account::new(password)?.encode();
                let batch = Batch::new().require_absent(key.clone()).put(key, account);
                match s.commit(batch).await {
                    Ok(r) => Ok(r.acked().await?),
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        Err(UserError::Exists(name.to_string()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Changes an account's password.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        match self {
            Accounts::File(db) => {
                blocking({
                    let (db, name, password) = (db.clone(), name.to_string(), password.to_string());
                    move || db.set_password(&name, &password)
                })
                .await
            }
            Accounts::Store(_) => {
                let mut new = Account::new(password)?;
                self.change(name, move |a| {
                    a.hash = new.hash;
                    a.scram = new.scram.take();
                })
                .await
            }
        }
    }

    /// Sets an account's own quota limits.
    pub async fn set_quota(&self, name: &str, quota: QuotaOverride) -> Result<()> {
        match self {
            Accounts::File(db) => {
                blocking({
                    let (db, name) = (db.clone(), name.to_string());
                    move || db.set_quota(&name, quota)
                })
                .await
            }
            Accounts::Store(_) => self.change(name, move |a| a.quota = quota).await,
        }
    }

    /// Rewrites a stored account's object with `f` applied, keeping what `f` leaves alone.
    async fn change(&self, name: &str, f: impl FnOnce(&mut Account)) -> Result<()> {
        let Accounts::Store(s) = self else {
            unreachable!("only stored accounts are changed object by object")
        };
        let mut account = self
            .account(name)
            .await?
            .ok_or_else(|| UserError::NoSuchUser(name.to_string()))?;
        f(&mut account);
        let key = Self::key(name)?;
        let batch = Batch::new()
            .require_exists(key.clone())
            .put(key, account.encode());
        match s.commit(batch).await {
            Ok(r) => Ok(r.acked().await?),
            Err(e) if e.kind == ErrorKind::Conflict => Err(UserError::NoSuchUser(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an account (its mail and index are left for the admin).
    pub async fn remove(&self, name: &str) -> Result<()> {
        match self {
            Accounts::File(db) => {
                blocking({
                    let (db, name) = (db.clone(), name.to_string());
                    move || db.remove(&name)
                })
                .await
            }
            Accounts::Store(s) => {
                let key = Self::key(name)?;
                let batch = Batch::new().require_exists(key.clone()).delete(key);
                match s.commit(batch).await {
                    Ok(r) => Ok(r.acked().await?),
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        Err(UserError::NoSuchUser(name.to_string()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Every account name, sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        match self {
            Accounts::File(db) => {
                blocking({
                    let db = db.clone();
                    move || db.list()
                })
                .await
            }
            Accounts::Store(s) => {
                let mut names: Vec<String> = s
                    .list("")
                    .await?
                    .into_iter()
                    .map(|l| l.key.as_str().to_string())
                    .filter(|n| check_name(n).is_ok())
                    .collect();
                names.sort();
                Ok(names)
            }
        }
    }

    /// `name`'s password hash, if the account exists.
    pub async fn hash_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self.account(name).await?.map(|a| a.hash))
    }

    /// `name`'s account, if it exists.
    pub async fn account(&self, name: &str) -> Result<Option<Account>> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        match self {
            Accounts::File(db) => {
                blocking({
                    let (db, name) = (db.clone(), name.to_string());
                    move || db.account(&name)
                })
                .await
            }
            Accounts::Store(s) => match s.get(&Self::key(name)?, None).await {
                Ok(raw) => {
                    let text = String::from_utf8_lossy(&raw);
                    Account::parse(text.trim()).map(Some).map_err(|why| {
                        UserError::Store(strata_backend_api::BackendError::new(
                            "accounts",
                            ErrorKind::Corrupt,
                            format!("the account object of {name:?}: {why}"),
                        ))
                    })
                }
                Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UserError::Io {
            path: "users".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
