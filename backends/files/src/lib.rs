//! # strata-backend-files
//!
//! Objects as files under one directory: key `a/b/c` is the file `a/b/@c` (the `@`, which no
//! key holds, keeps an object and a directory of the same name apart). Every write goes to a
//! file in `~tmp/`, is fsynced, then renamed into place (or, for a key required absent,
//! hard-linked, which the file system refuses if the name exists, whoever wrote it), and the
//! directory is fsynced: a commit answered is durable, so soft-done and acked are one moment.
//!
//! It is where a Maildir deployment ships its indexes (`[index.ship] dir`), on a disk other
//! than the node's or a shared file system. A batch is not atomic across a crash (like S3):
//! its preconditions and copy sources are checked before anything is written, then its
//! operations applied in order. It keeps no labels and no body metadata.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read as _, Seek, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Listed, Op,
    Precondition, Receipt,
};

const NAME: &str = "files";
/// Where writes are staged; `~` is in no key, so no object can be named so.
const TMP: &str = "~tmp";

/// The store.
pub struct FilesBackend {
    inner: Arc<Inner>,
    acks: AckTracker,
    /// Commits from this process run one at a time, so a checked precondition still holds
    /// when the batch is applied (create-only writes hold against other processes as well).
    commits: tokio::sync::Mutex<()>,
}

struct Inner {
    root: PathBuf,
    next_tmp: AtomicU64,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(NAME, kind, message)
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    let kind = match e.kind() {
        IoKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    err(kind, format!("{what} {}: {e}", path.display())).with_source(e)
}

impl FilesBackend {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FilesBackend, BackendError> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP)).map_err(|e| io_err("cannot create", &root, e))?;
        Ok(FilesBackend {
            inner: Arc::new(Inner {
                root,
                next_tmp: AtomicU64::new(0),
            }),
            acks: AckTracker::new(NAME),
            commits: tokio::sync::Mutex::new(()),
        })
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Inner {
    /// The file of `key`.
    fn path(&self, key: &Key) -> PathBuf {
        let mut p = self.root.clone();
        let mut segments = key.segments().peekable();
        while let Some(s) = segments.next() {
            if segments.peek().is_some() {
                p.push(s);
            } else {
                p.push(format!("@{s}"));
            }
        }
        p
    }

    fn exists(&self, key: &Key) -> Result<bool, BackendError> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == IoKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot stat", &path, e)),
        }
    }

    /// Writes `data` to a new fsynced file in `~tmp/`.
    fn stage(&self, data: &[u8]) -> Result<PathBuf, BackendError> {
        // Unique among openers of one directory, in this process or on other nodes.
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(TMP)
            .join(format!("{:016x}.{n}", rand::random::<u64>()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_err("cannot create", &tmp, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
        Ok(tmp)
    }

    /// Puts `data` at `key`; with `create_only`, refuses (Conflict) if the name exists.
    fn put(&self, key: &Key, data: &[u8], create_only: bool) -> Result<(), BackendError> {
        let path = self.path(key);
        let dir = path.parent().expect("an object's file is under the root");
        fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        let tmp = self.stage(data)?;
        let placed = if create_only {
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Err(e) if e.kind() == IoKind::AlreadyExists => {
                    return Err(Precondition::Absent(key.clone()).failed(NAME));
                }
                other => other,
            }
        } else {
            fs::rename(&tmp, &path)
        };
        placed.map_err(|e| io_err("cannot write", &path, e))?;
        sync_dir(dir)
    }

    fn delete(&self, key: &Key) -> Result<(), BackendError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("under the root")),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot delete", &path, e)),
        }
    }

    fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let path = self.path(key);
        let not_found = |e: std::io::Error| match e.kind() {
            IoKind::NotFound => err(ErrorKind::NotFound, format!("{key} does not exist")),
            _ => io_err("cannot read", &path, e),
        };
        let mut f = File::open(&path).map_err(not_found)?;
        let len = f.metadata().map_err(not_found)?.len();
        let (start, end) = match range {
            None => (0, len),
            Some(r) => (r.start.min(len), r.end.clamp(r.start.min(len), len)),
        };
        let mut buf = vec![0; (end - start) as usize];
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| io_err("cannot read", &path, e))?;
        Ok(Bytes::from(buf))
    }

    /// Checks what must hold before anything is written: preconditions, and that each copy's
    /// source exists when the copy runs.
    fn check(&self, batch: &Batch) -> Result<(), BackendError> {
        for p in &batch.preconditions {
            if !p.holds(self.exists(p.key())?) {
                return Err(p.failed(NAME));
            }
        }
        let missing = |k: &Key| {
            err(
                ErrorKind::NotFound,
                format!("copy source {k} does not exist"),
            )
        };
        for from in batch.stored_copy_sources().map_err(missing)? {
            if !self.exists(from)? {
                return Err(missing(from));
            }
        }
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), BackendError> {
        self.check(&batch)?;
        // Only a key's first write is create-only: later ones in the batch replace it.
        let mut absent: std::collections::HashSet<Key> = batch
            .preconditions
            .iter()
            .filter_map(|p| match p {
                Precondition::Absent(k) => Some(k.clone()),
                Precondition::Exists(_) => None,
            })
            .collect();
        for op in batch.ops {
            match op {
                Op::Put { key, data } => {
                    let create_only = absent.remove(&key);
                    self.put(&key, &data, create_only)?;
                }
                Op::Delete { key } => {
                    absent.remove(&key);
                    self.delete(&key)?;
                }
                Op::Copy { from, to } => {
                    let data = self.read(&from, None)?;
                    let create_only = absent.remove(&to);
                    self.put(&to, &data, create_only)?;
                }
                Op::Meta { .. } => {}
            }
        }
        Ok(())
    }

    /// Every object whose key starts with `prefix`, walking directories with a stack.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let mut out = Vec::new();
        let mut todo = vec![(self.root.clone(), String::new())];
        while let Some((dir, at)) = todo.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(io_err("cannot list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let kind = entry
                    .file_type()
                    .map_err(|e| io_err("cannot list", &entry.path(), e))?;
                if kind.is_dir() && name != TMP {
                    let sub = format!("{at}{name}/");
                    // Only directories that can hold a key under the prefix.
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        todo.push((entry.path(), sub));
                    }
                } else if let Some(object) = name.strip_prefix('@')
                    && kind.is_file()
                {
                    let key = format!("{at}{object}");
                    if key.starts_with(prefix)
                        && let Ok(key) = Key::new(key)
                    {
                        let size = entry
                            .metadata()
                            .map_err(|e| io_err("cannot stat", &entry.path(), e))?
                            .len();
                        out.push(Listed { key, size });
                    }
                }
            }
        }
        Ok(out)
    }

    fn clean_partial(&self, older_than: Duration) -> Result<u64, BackendError> {
        let dir = self.root.join(TMP);
        let mut n = 0;
        let entries = fs::read_dir(&dir).map_err(|e| io_err("cannot list", &dir, e))?;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if old && fs::remove_file(entry.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Makes a directory's entries (a rename, a link, a removal) durable.
fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", dir, e))
}

#[async_trait]
impl Backend for FilesBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_batch: false,
            range_reads: true,
            server_side_copy: false,
            deferred_ack: false,
            labels: false,
            metadata: false,
            local_reads: false,
        }
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let _one = self.commits.lock().await;
        self.blocking(move |i| i.apply(batch)).await?;
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let key = key.clone();
        self.blocking(move |i| i.read(&key, range)).await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let key = key.clone();
        self.blocking(move |i| {
            let path = i.path(&key);
            match fs::metadata(&path) {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == IoKind::NotFound => {
                    Err(err(ErrorKind::NotFound, format!("{key} does not exist")))
                }
                Err(e) => Err(io_err("cannot stat", &path, e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let prefix = prefix.to_string();
        self.blocking(move |i| i.list(&prefix)).await
    }

    async fn clean_partial(&self, older_than: Duration) -> Result<u64, BackendError> {
        self.blocking(move |i| i.clean_partial(older_than)).await
    }
}
