//! # strata-backend-cache
//!
//! A backend that holds a slow store (a cold tier on S3) and keeps the whole objects read from
//! it in a local directory, so an object read twice pays the store once. The directory is
//! bounded in bytes and evicts the least recently read objects first; it survives restarts
//! (files are found again at open, and the order of their last reads is kept in their
//! modification times).
//!
//! It never answers stale or partial bytes:
//! - every file names its key, length and BLAKE3 hash ([`entry`]); a file that fails a check
//!   is deleted and the read goes to the store. A file found at open is checked whole at its
//!   first read, a file this process wrote is trusted for range reads;
//! - a commit that writes or deletes a key drops its file before and after the store commits,
//!   and a read of that key in flight meanwhile does not keep what it read (it may have read
//!   the old bytes);
//! - a whole read is kept whole; a range read from the start (a message's header) is kept as a
//!   prefix, in a file of its own, and answers later ranges within it. Other range reads of an
//!   object not cached go to the store.
//!
//! What it does not do: see writes other nodes make to the store. It is meant for objects
//! whose bytes never change under a key (message bodies: a key is written once, and moved
//! between stores with the same bytes); the `cacheable` predicate keeps other objects out.
//! It does not cache sizes, listings or metadata, and it keeps nothing on writes.

pub mod entry;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use strata_backend_api::{
    Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Listed, Op, Receipt,
};

/// Which keys may be cached.
pub type Cacheable = Arc<dyn Fn(&Key) -> bool + Send + Sync>;

/// How the cache is kept.
#[derive(Clone)]
pub struct CacheOptions {
    /// Its directory (made if missing).
    pub dir: PathBuf,
    /// The most bytes its files may take.
    pub max_bytes: u64,
    /// Objects larger than this are not kept (an eighth of `max_bytes` by default).
    pub max_object: u64,
    /// Which keys are kept.
    pub cacheable: Cacheable,
}

impl CacheOptions {
    /// A cache in `dir` of at most `max_bytes`, of every key.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        CacheOptions {
            dir: dir.into(),
            max_bytes,
            max_object: max_bytes / 8,
            cacheable: Arc::new(|_| true),
        }
    }
}

/// What the cache has done since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the directory.
    pub hits: u64,
    /// Reads that went to the store to be kept (whole, or a prefix).
    pub misses: u64,
    /// Objects kept.
    pub inserts: u64,
    /// Objects dropped to stay within the bound.
    pub evictions: u64,
    /// Files dropped because they failed a check.
    pub damaged: u64,
    /// Objects held now.
    pub objects: u64,
    /// Bytes their files take now.
    pub bytes: u64,
}

/// A file's name: the BLAKE3 hash of the key it holds.
type Id = [u8; 32];

struct Entry {
    /// The file's length.
    file_len: u64,
    /// When it was last read, in the cache's own clock.
    tick: u64,
    /// Checked whole by this process (written by it, or read and hashed).
    verified: bool,
}

/// A whole read in flight: how many, and whether a commit touched the key meanwhile.
#[derive(Default)]
struct Reading {
    count: u32,
    dirty: bool,
}

#[derive(Default)]
struct State {
    entries: HashMap<Id, Entry>,
    order: BTreeMap<u64, Id>,
    tick: u64,
    bytes: u64,
    reading: HashMap<Id, Reading>,
}

impl State {
    fn touch(&mut self, id: &Id) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(id) {
            self.order.remove(&e.tick);
            e.tick = tick;
            self.order.insert(tick, *id);
        }
    }

    /// A read of `id` from the store begins.
    fn begin_read(&mut self, id: Id) {
        self.reading.entry(id).or_default().count += 1;
    }

    /// A read of `id` from the store ends; whether a commit touched the key meanwhile.
    fn end_read(&mut self, id: &Id) -> bool {
        let Some(r) = self.reading.get_mut(id) else {
            return false;
        };
        r.count -= 1;
        let dirty = r.dirty;
        if r.count == 0 {
            self.reading.remove(id);
        }
        dirty
    }

    fn remove(&mut self, id: &Id) -> bool {
        match self.entries.remove(id) {
            Some(e) => {
                self.order.remove(&e.tick);
                self.bytes -= e.file_len;
                true
            }
            None => false,
        }
    }
}

/// The layer.
pub struct CacheBackend {
    inner: Arc<dyn Backend>,
    opts: CacheOptions,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
    /// Names temporary files uniquely.
    staged: AtomicU64,
}

fn io_error(e: std::io::Error, what: &str) -> BackendError {
    BackendError::new("cache", ErrorKind::Io, format!("{what}: {e}"))
}

fn hex(id: &Id) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(name: &str) -> Option<Id> {
    if name.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

impl CacheBackend {
    /// Keeps what is read from `inner` in `opts.dir`, finding what an earlier run kept there.
    pub fn open(inner: Arc<dyn Backend>, opts: CacheOptions) -> Result<Self, BackendError> {
        let dir = &opts.dir;
        let what = format!("cache directory {}", dir.display());
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| io_error(e, &what))?;
        // Files being written when the last run stopped.
        for f in std::fs::read_dir(dir.join("tmp")).map_err(|e| io_error(e, &what))? {
            let _ = std::fs::remove_file(f.map_err(|e| io_error(e, &what))?.path());
        }
        let mut found: Vec<(SystemTime, Id, u64)> = Vec::new();
        for shard in std::fs::read_dir(dir).map_err(|e| io_error(e, &what))? {
            let shard = shard.map_err(|e| io_error(e, &what))?;
            let name = shard.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path()).map_err(|e| io_error(e, &what))? {
                let f = f.map_err(|e| io_error(e, &what))?;
                let fname = f.file_name();
                let Some(id) = fname.to_str().and_then(unhex) else {
                    continue;
                };
                let Ok(meta) = f.metadata() else { continue };
                found.push((
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    id,
                    meta.len(),
                ));
            }
        }
        // Oldest read first, so the clock orders them as their last reads did.
        found.sort_by_key(|(t, ..)| *t);
        let mut state = State::default();
        for (_, id, file_len) in found {
            state.tick += 1;
            state.entries.insert(
                id,
                Entry {
                    file_len,
                    tick: state.tick,
                    verified: false,
                },
            );
            state.order.insert(state.tick, id);
            state.bytes += file_len;
        }
        let cache = CacheBackend {
            inner,
            opts,
            state: Mutex::new(state),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            staged: AtomicU64::new(0),
        };
        {
            let mut state = cache.lock();
            cache.evict(&mut state);
        }
        Ok(cache)
    }

    /// What it has done, and holds now.
    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            damaged: self.damaged.load(Ordering::Relaxed),
            objects: state.entries.len() as u64,
            bytes: state.bytes,
        }
    }

    /// The store it holds.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &Id) -> PathBuf {
        let h = hex(id);
        self.opts.dir.join(&h[..2]).join(h)
    }

    /// Drops the least recently read files until the bound holds.
    fn evict(&self, state: &mut State) {
        while state.bytes > self.opts.max_bytes {
            let Some((_, id)) = state.order.pop_first() else {
                break;
            };
            state.remove(&id);
            let _ = std::fs::remove_file(self.path(&id));
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops the files of the keys a commit writes, and marks their reads in flight.
    fn invalidate(&self, ids: &[Id]) {
        let mut state = self.lock();
        for id in ids {
            if let Some(r) = state.reading.get_mut(id) {
                r.dirty = true;
            }
            if state.remove(id) {
                // Under the lock: a read that checks the map then opens the file would
                // otherwise open a file that a later insert made.
                let _ = std::fs::remove_file(self.path(id));
            }
        }
    }

    /// A cached object's bytes (`range` of them) from file `id`, or `None` when it is not
    /// cached, holds fewer than `held` bytes, or failed a check (and is gone).
    async fn cached(
        &self,
        key: &Key,
        id: &Id,
        held: u64,
        range: Option<Range<u64>>,
    ) -> Result<Option<Bytes>, BackendError> {
        let verified = {
            let mut state = self.lock();
            match state.entries.get(id) {
                None => return Ok(None),
                Some(e) if e.file_len < entry::header_len(key.as_str()) + held => return Ok(None),
                Some(e) => {
                    let v = e.verified;
                    state.touch(id);
                    v
                }
            }
        };
        let path = self.path(id);
        let k = key.as_str().to_string();
        let whole = range.is_none() || !verified;
        let slice = range.clone();
        let read = tokio::task::spawn_blocking(move || {
            let data = match slice {
                Some(r) if !whole => entry::read_range(&path, &k, r),
                _ => entry::read_verified(&path, &k),
            };
            if data.is_ok() {
                // The last read's time, for the order of eviction after a restart.
                let _ = std::fs::File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            }
            data
        })
        .await
        .map_err(|e| BackendError::new("cache", ErrorKind::Io, e.to_string()))?;
        match read {
            Ok(data) => {
                if whole && let Some(e) = self.lock().entries.get_mut(id) {
                    e.verified = true;
                }
                self.hits.fetch_add(1, Ordering::Relaxed);
                let data = Bytes::from(data);
                Ok(Some(match range {
                    Some(r) if whole => strata_backend_api::slice_range(data, Some(r)),
                    _ => data,
                }))
            }
            Err(e) => {
                // Evicted or invalidated since the map was read (the file is gone), or damaged.
                let mut state = self.lock();
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(key = %key, error = %e, "cached copy failed its check; dropped");
                    self.damaged.fetch_add(1, Ordering::Relaxed);
                }
                if state.remove(id) {
                    let _ = std::fs::remove_file(self.path(id));
                }
                Ok(None)
            }
        }
    }

    /// Keeps `data`, read under `key` while no commit touched it (its reads counted under
    /// `reading`), in file `file`: the whole object's or its prefix's.
    async fn keep(&self, key: &Key, reading: Id, file: Id, data: Bytes) {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .opts
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let k = key.as_str().to_string();
        let staged = {
            let tmp = tmp.clone();
            tokio::task::spawn_blocking(move || entry::write(&tmp, &k, &data))
        }
        .await;
        let mut state = self.lock();
        let dirty = state.end_read(&reading);
        let kept = match staged {
            Ok(Ok(())) if !dirty => self.place(&mut state, &file, &tmp),
            Ok(Err(e)) => {
                tracing::warn!(key = %key, error = %e, "could not keep a copy in the cache");
                false
            }
            _ => false,
        };
        if !kept {
            let _ = std::fs::remove_file(&tmp);
        } else if file == reading {
            // The whole object answers every range its prefix did.
            let prefix = prefix_id(key);
            if state.remove(&prefix) {
                let _ = std::fs::remove_file(self.path(&prefix));
            }
        }
    }

    /// Reads `range` of `key` from the store, keeping it in the file `file` names from its
    /// length (none: kept nowhere). Reads of the key are counted under `id` meanwhile.
    async fn miss(
        &self,
        key: &Key,
        id: Id,
        range: Option<Range<u64>>,
        file: impl FnOnce(u64) -> Option<Id>,
    ) -> Result<Bytes, BackendError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.lock().begin_read(id);
        let read = self.inner.get(key, range).await;
        match read.as_ref().ok().and_then(|data| file(data.len() as u64)) {
            Some(f) => self.keep(key, id, f, read.clone()?).await,
            None => {
                self.lock().end_read(&id);
            }
        }
        read
    }

    /// Moves a staged file into place and records it (with the lock held).
    fn place(&self, state: &mut State, id: &Id, tmp: &Path) -> bool {
        let path = self.path(id);
        let placed = std::fs::rename(tmp, &path).or_else(|e| {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e);
            }
            std::fs::create_dir_all(path.parent().expect("a shard"))?;
            std::fs::rename(tmp, &path)
        });
        let file_len = match placed.and_then(|()| std::fs::metadata(&path)) {
            Ok(m) => m.len(),
            Err(e) => {
                tracing::warn!(error = %e, "could not keep a copy in the cache");
                return false;
            }
        };
        state.remove(id);
        state.tick += 1;
        let tick = state.tick;
        state.entries.insert(
            *id,
            Entry {
                file_len,
                tick,
                verified: true,
            },
        );
        state.order.insert(tick, *id);
        state.bytes += file_len;
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.evict(state);
        true
    }
}

fn id_of(key: &Key) -> Id {
    *blake3::hash(key.as_str().as_bytes()).as_bytes()
}

/// The name of the file that keeps a prefix of `key`'s object.
fn prefix_id(key: &Key) -> Id {
    *blake3::Hasher::new_derive_key("strata cache prefix")
        .update(key.as_str().as_bytes())
        .finalize()
        .as_bytes()
}

/// The files of the keys whose bytes a batch may change.
fn written(batch: &Batch) -> Vec<Id> {
    batch
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Put { key, .. } | Op::Delete { key } => Some(key),
            Op::Copy { to, .. } => Some(to),
            Op::Meta { .. } => None,
        })
        .flat_map(|key| [id_of(key), prefix_id(key)])
        .collect()
}

#[async_trait]
impl Backend for CacheBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Reads go one by one, through the cache.
            local_reads: false,
            ..self.inner.capabilities()
        }
    }

    fn below(&self) -> Option<&dyn Backend> {
        Some(&*self.inner)
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let ids = written(&batch);
        self.invalidate(&ids);
        let receipt = self.inner.commit(batch).await;
        // A read that went to the store before it committed may have kept the old bytes.
        self.invalidate(&ids);
        receipt
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.inner.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        if !(self.opts.cacheable)(key) {
            return self.inner.get(key, range).await;
        }
        let id = id_of(key);
        if let Some(data) = self.cached(key, &id, 0, range.clone()).await? {
            return Ok(data);
        }
        let Some(r) = range else {
            let max = self.opts.max_object;
            return self.miss(key, id, None, |n| (n <= max).then_some(id)).await;
        };
        let prefix = prefix_id(key);
        if let Some(data) = self.cached(key, &prefix, r.end, Some(r.clone())).await? {
            return Ok(data);
        }
        if r.start != 0 || r.end == 0 || r.end > self.opts.max_object {
            return self.inner.get(key, Some(r)).await;
        }
        // A read from the start (a message's header): kept as a prefix, or whole if the object
        // ended within it.
        let end = r.end;
        self.miss(key, id, Some(r), |n| {
            Some(if n < end { id } else { prefix })
        })
        .await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        self.inner.size(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        self.inner.list(prefix).await
    }
}
