//! The account database: one line per user, `name:argon2id-PHC-string`, in a file under the data
//! directory. Readable by an admin, replaced atomically on every change (write, fsync, rename,
//! fsync the directory), and serialised between processes (`strata user ...` and the running
//! server) with an exclusive lock on a companion `.lock` file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

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
    hash: String,
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
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| malformed("expected name:hash"))?;
            check_name(name).map_err(|_| malformed("invalid user name"))?;
            PasswordHash::new(hash).map_err(|_| malformed("not a password hash"))?;
            if out.iter().any(|e| e.name == name) {
                return Err(malformed("user listed twice"));
            }
            out.push(Entry {
                name: name.to_string(),
                hash: hash.to_string(),
            });
        }
        Ok(out)
    }

    fn write(&self, entries: &[Entry]) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text =
            String::from("# Strata accounts: name:argon2id hash. Edit with `strata user`.\n");
        for e in entries {
            text.push_str(&format!("{}:{}\n", e.name, e.hash));
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
        let hash = Self::hash(password)?;
        let _lock = self.lock()?;
        let mut entries = self.read()?;
        if entries.iter().any(|e| e.name == name) {
            return Err(UserError::Exists(name.to_string()));
        }
        entries.push(Entry {
            name: name.to_string(),
            hash,
        });
        self.write(&entries)
    }

    /// Changes an account's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = Self::hash(password)?;
        let _lock = self.lock()?;
        let mut entries = self.read()?;
        let e = entries
            .iter_mut()
            .find(|e| e.name == name)
            .ok_or_else(|| UserError::NoSuchUser(name.to_string()))?;
        e.hash = hash;
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
        let _lock = self.lock()?;
        Ok(self
            .read()?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.hash))
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
