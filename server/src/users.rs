//! The account database: one line per user, `name:argon2id-PHC-string[:attributes]`, in a file
//! under the data directory (the attributes are the account's own quota limits, see
//! [`Account`]). Readable by an admin, replaced atomically on every change (write, fsync, rename,
//! fsync the directory), and serialised between processes (`strata user ...` and the running
//! server) with an exclusive lock on a companion `.lock` file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use strata_protocol::scram::ScramKeys;

/// Longest user name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest password, in bytes (argon2 takes any length; this bounds the work an attacker can ask).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What went wrong with the account database.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name cannot be an account name.
    #[error(
        "invalid user name {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - + @, not starting with a dot"
    )]
    InvalidName(String),
    /// The password is empty or too long.
    #[error("the password must be 1 to {MAX_PASSWORD_BYTES} bytes")]
    InvalidPassword,
    /// The account exists already.
    #[error("user {0:?} exists already")]
    Exists(String),
    /// No such account.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// The file is not in the expected form.
    #[error("{path}:{line}: {problem}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The store that keeps the accounts failed.
    #[error("the account store: {0}")]
    Store(#[from] strata_backend_api::BackendError),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, UserError>;

/// Checks that a name can be an account (it becomes a file and directory name).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.chars().take(80).collect()))
    }
}

/// The account database at one path.
pub struct UserDb {
    path: PathBuf,
}

struct Entry {
    name: String,
    account: Account,
}

/// What is kept of an account besides its name: its password hash, its SCRAM-SHA-256 keys and
/// its own quota limits. Written `hash` or `hash:scram=KEYS,storage=N,messages=N` (a PHC
/// string holds no `:`, SCRAM keys no `,`), each limit a number or `unlimited`; a limit not
/// written is the configured default. An account made before SCRAM was has no keys until its
/// password is set again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The argon2id PHC string.
    pub hash: String,
    /// The account's own limits.
    pub quota: QuotaOverride,
    /// What SCRAM-SHA-256 checks a proof against.
    pub scram: Option<ScramKeys>,
}

/// An account's own quota limits; a field that is `None` takes the configured default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    /// Octets.
    pub storage: Option<Limit>,
    /// Messages.
    pub messages: Option<Limit>,
}

/// One limit an account sets for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// No limit, whatever the default.
    Unlimited,
    /// At most this much.
    At(u64),
}

impl Limit {
    fn text(self) -> String {
        match self {
            Limit::Unlimited => "unlimited".into(),
            Limit::At(n) => n.to_string(),
        }
    }
}

impl QuotaOverride {
    /// The limits that apply, given the configured default.
    pub fn limits(&self, default: strata_config::Quota) -> strata_mailstore::quota::Limits {
        let pick = |own: Option<Limit>, default: Option<u64>| match own {
            None => default,
            Some(Limit::Unlimited) => None,
            Some(Limit::At(n)) => Some(n),
        };
        strata_mailstore::quota::Limits {
            storage: pick(self.storage, default.storage),
            messages: pick(self.messages, default.messages),
        }
    }
}

impl Account {
    /// Reads `hash[:attributes]`.
    pub fn parse(text: &str) -> std::result::Result<Account, String> {
        let (hash, attrs) = match text.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (text, None),
        };
        PasswordHash::new(hash).map_err(|_| "not a password hash".to_string())?;
        let mut quota = QuotaOverride::default();
        let mut scram = None;
        for attr in attrs.into_iter().flat_map(|a| a.split(',')) {
            let (key, value) = attr
                .split_once('=')
                .ok_or_else(|| format!("{attr:?}: expected key=value"))?;
            if key == "scram" {
                let keys = ScramKeys::parse(value).ok_or("scram: not SCRAM-SHA-256 keys")?;
                scram = Some(keys);
                continue;
            }
            let limit = if value == "unlimited" {
                Limit::Unlimited
            } else {
                Limit::At(
                    value
                        .parse()
                        .map_err(|_| format!("{key}={value:?}: not a number"))?,
                )
            };
            match key {
                "storage" => quota.storage = Some(limit),
                "messages" => quota.messages = Some(limit),
                _ => return Err(format!("unknown attribute {key:?}")),
            }
        }
        Ok(Account {
            hash: hash.to_string(),
            quota,
            scram,
        })
    }

    /// A new account's record: `password`'s hash and keys, the configured quota.
    pub fn new(password: &str) -> Result<Account> {
        Ok(Account {
            hash: UserDb::hash(password)?,
            quota: QuotaOverride::default(),
            scram: Some(ScramKeys::new(password)),
        })
    }

    /// Writes it back in the form [`Account::parse`] reads.
    pub fn encode(&self) -> String {
        let mut attrs = Vec::new();
        if let Some(keys) = &self.scram {
            attrs.push(format!("scram={}", keys.encode()));
        }
        if let Some(l) = self.quota.storage {
            attrs.push(format!("storage={}", l.text()));
        }
        if let Some(l) = self.quota.messages {
            attrs.push(format!("messages={}", l.text()));
        }
        if attrs.is_empty() {
            self.hash.clone()
        } else {
            format!("{}:{}", self.hash, attrs.join(","))
        }
    }
}

impl UserDb {
    /// The database in `path` (created on the first `add`).
    pub fn new(path: impl Into<PathBuf>) -> UserDb {
        UserDb { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path, source: std::io::Error) -> UserError {
        UserError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Holds the database's lock for a change (or a consistent read).
    fn lock(&self) -> Result<File> {
        let lock_path = self.path.with_extension("lock");
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io(&lock_path, e))?;
        f.lock().map_err(|e| self.io(&lock_path, e))?;
        Ok(f)
    }

    fn read(&self) -> Result<Vec<Entry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let mut out: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let malformed = |problem: &str| UserError::Malformed {
                path: self.path.clone(),
                line: i + 1,
                problem: problem.to_string(),
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| malformed("expected name:hash"))?;
            check_name(name).map_err(|_| malformed("invalid user name"))?;
            let account = Account::parse(rest).map_err(|why| malformed(&why))?;
            if out.iter().any(|e| e.name == name) {
                return Err(malformed("user listed twice"));
            }
            out.push(Entry {
                name: name.to_string(),
                account,
            });
        }
        Ok(out)
    }

    fn write(&self, entries: &[Entry]) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = String::from(
            "# Strata accounts: name:argon2id hash[:scram=keys,quota]. Edit with `strata user`.\n",
        );
        for e in entries {
            text.push_str(&format!("{}:{}\n", e.name, e.account.encode()));
        }
        let mut f = File::create(&tmp).map_err(|e| self.io(&tmp, e))?;
        f.write_all(text.as_bytes()).map_err(|e| self.io(&tmp, e))?;
        f.sync_all().map_err(|e| self.io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(&self.path, e))?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(dir, e))
    }

    /// The argon2id hash of a new password.
    pub fn hash(password: &str) -> Result<String> {
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(UserError::InvalidPassword);
        }
        Ok(Argon2::default()
            .hash_password(password.as_bytes())
            .expect("argon2 with default parameters and a generated salt cannot fail")
            .to_string())
    }

    /// Adds an account.
    pub fn add(&self, name: &str, password: &str) -> Result<()> {
        check_name(name)?;
        let account = Account::new(password)?;
        let _lock = self.lock()?;
        let mut entries = self.read()?;
        if entries.iter().any(|e| e.name == name) {
            return Err(UserError::Exists(name.to_string()));
        }
        entries.push(Entry {
            name: name.to_string(),
            account,
        });
        self.write(&entries)
    }

    /// Changes an account's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let mut new = Account::new(password)?;
        self.change(name, |a| {
            a.hash = new.hash;
            a.scram = new.scram.take();
        })
    }

    /// Sets an account's own quota limits.
    pub fn set_quota(&self, name: &str, quota: QuotaOverride) -> Result<()> {
        self.change(name, |a| a.quota = quota)
    }

    /// Rewrites the file with `f` applied to `name`'s account.
    fn change(&self, name: &str, f: impl FnOnce(&mut Account)) -> Result<()> {
        let _lock = self.lock()?;
        let mut entries = self.read()?;
        let e = entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| UserError::NoSuchUser(name.to_string()))?;
        f(&mut e.account);
        self.write(&entries)
    }

    /// Removes an account (its mail and index are left for the admin to archive or delete).
    pub fn remove(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut entries = self.read()?;
        let before = entries.len();
        entries.retain(|e| e.name != name);
        if entries.len() == before {
            return Err(UserError::NoSuchUser(name.to_string()));
        }
        self.write(&entries)
    }

    /// Every account name, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut names: Vec<String> = self.read()?.into_iter().map(|e| e.name).collect();
        names.sort();
        Ok(names)
    }

    /// `name`'s password hash, if the account exists.
    pub fn hash_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self.account(name)?.map(|a| a.hash))
    }

    /// `name`'s account, if it exists.
    pub fn account(&self, name: &str) -> Result<Option<Account>> {
        let _lock = self.lock()?;
        Ok(self
            .read()?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.account))
    }

    /// Whether `password` is `name`'s.
    pub fn verify(&self, name: &str, password: &str) -> Result<bool> {
        Ok(verify_hash(self.hash_of(name)?.as_deref(), password))
    }
}

/// Whether `password` matches `hash` (argon2id, PHC string). No account (or an unreadable
/// hash) costs a hash too, so that timing does not tell which accounts exist.
pub fn verify_hash(hash: Option<&str>, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let argon = Argon2::default();
    match hash.and_then(|h| PasswordHash::new(h).ok()) {
        Some(parsed) => argon.verify_password(password.as_bytes(), &parsed).is_ok(),
        None => {
            let _ = argon.hash_password(password.as_bytes());
            false
        }
    }
}
