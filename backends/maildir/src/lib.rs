//! # strata-backend-maildir
//!
//! Message bodies as files in a standard Maildir++ tree, readable by other Maildir tools. A key
//! is either `<unique>` (a message of the top-level Maildir, INBOX) or `.<Folder>/<unique>` (a
//! Maildir++ folder). A stored message is `<maildir>/cur/<unique>:2,`; one that another tool
//! delivered to `new/` or renamed to carry flags (`:2,S`) is found all the same.
//!
//! A commit writes every new file into `tmp/` and fsyncs it, then renames the files into
//! `cur/` and fsyncs the directories; the receipt is acked at once, since the files are the
//! store. Errors found before the renames (a failed precondition, a missing copy source, a full
//! disk) leave nothing behind. A crash in the middle of the renames can leave part of a batch
//! applied: `Capabilities::atomic_batch` is false, and the index, which records a body's
//! location only after its commit returned, never points at a file that is not there.
//!
//! Flags live in Strata's index; a copy of them is kept where other Maildir programs read
//! flags, in the file name (`<unique>:2,FRS` plus Dovecot's keyword letters, named in each
//! Maildir's `dovecot-keywords`), by [`Backend::set_labels`]. A file's modification time is the
//! delivery time its unique name starts with (Strata's keys start with the INTERNALDATE), as
//! Maildir programs read it. So a tree can be read back into an index with its flags,
//! keywords and dates.
//!
//! [`MaildirTree`] is every user's Maildir under one root as one backend, for the staging
//! journal to front.

use std::collections::HashMap;
use std::io::{Read as _, Seek, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Label, Listed, Op,
    Read, Receipt, read_buffers,
};

mod tree;

pub use tree::MaildirTree;

const NAME: &str = "maildir";

/// Not atomic against crashes (see above); ranges and copies (hard links) are the file system's.
const CAPABILITIES: Capabilities = Capabilities {
    atomic_batch: false,
    range_reads: true,
    server_side_copy: true,
    deferred_ack: false,
    labels: true,
    metadata: false,
    local_reads: true,
};

/// Reads [`Backend::get_many`] hands one blocking task at most.
const READ_GROUP: usize = 8;

/// The Maildir backend.
pub struct MaildirBackend {
    inner: Arc<Inner>,
    /// Commits are serialised: preconditions are checked against what earlier commits wrote.
    commit_lock: tokio::sync::Mutex<()>,
    acks: AckTracker,
}

struct Inner {
    root: PathBuf,
    tmp_counter: AtomicU64,
    /// `cur/` directory → its listing, for keys whose files carry other tools' flags.
    listings: std::sync::Mutex<HashMap<PathBuf, Listing>>,
}

/// The names in one `cur/` directory by unique part, as of the directory's mtime.
struct Listing {
    mtime: SystemTime,
    names: HashMap<String, String>,
}

fn mtime_of(dir: &Path) -> Result<Option<SystemTime>, BackendError> {
    match std::fs::metadata(dir).and_then(|m| m.modified()) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", dir, e)),
    }
}

fn err(kind: ErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(NAME, kind, message)
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    err(kind, format!("{what} {}: {e}", path.display())).with_source(e)
}

/// What a batch leaves under one key.
enum Final {
    Data(Bytes),
    LinkOf(PathBuf),
    Gone,
}

impl Inner {
    /// The Maildir directory and unique name a key stands for.
    fn locate(&self, key: &Key) -> Result<(PathBuf, String), BackendError> {
        let segments: Vec<&str> = key.segments().collect();
        match segments.as_slice() {
            [unique] => Ok((self.root.clone(), (*unique).to_string())),
            [folder, unique] if folder.starts_with('.') && folder.len() > 1 => {
                Ok((self.root.join(folder), (*unique).to_string()))
            }
            _ => Err(err(
                ErrorKind::InvalidKey,
                format!("{key}: a Maildir key is <unique> or .<Folder>/<unique>"),
            )),
        }
    }

    /// The file holding `key`, wherever Maildir tools may have put it. A name another tool
    /// gave it (`<unique>:2,S`) is looked up in a listing of `cur/` kept while the directory's
    /// mtime stays what it was, so that a commit does not read the whole directory per key.
    fn find(&self, key: &Key) -> Result<Option<PathBuf>, BackendError> {
        self.find_in(key, false)
    }

    /// [`Self::find`]; `fresh` reads `cur/` again even if its listing looks current (reads do,
    /// when the listing says a key is missing).
    fn find_in(&self, key: &Key, fresh: bool) -> Result<Option<PathBuf>, BackendError> {
        let (dir, unique) = self.locate(key)?;
        let exact = dir.join("cur").join(format!("{unique}:2,"));
        if exact.exists() {
            return Ok(Some(exact));
        }
        let delivered = dir.join("new").join(&unique);
        if delivered.exists() {
            return Ok(Some(delivered));
        }
        let cur = dir.join("cur");
        let Some(mtime) = mtime_of(&cur)? else {
            return Ok(None);
        };
        let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh
            && let Some(l) = listings.get(&cur)
            && l.mtime == mtime
        {
            match l.names.get(&unique).map(|n| cur.join(n)) {
                None => return Ok(None),
                Some(p) if p.exists() => return Ok(Some(p)),
                Some(_) => {} // renamed again within one mtime tick: read the directory
            }
        }
        let entries = match std::fs::read_dir(&cur) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &cur, e)),
        };
        // Listed under the mtime read before the scan: a change during it forces another.
        let mut names = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("reading", &cur, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((u, _)) = name.split_once(':') {
                names.insert(u.to_string(), name.clone());
            }
        }
        let found = names.get(&unique).map(|n| cur.join(n));
        listings.insert(cur, Listing { mtime, names });
        Ok(found)
    }

    /// Keeps `cur/`'s listing current across this process's own change of one name (`None`:
    /// removed), `before` being the directory's mtime just before it; a listing that was
    /// already stale then is dropped, to be read again.
    fn note(&self, cur: &Path, unique: &str, name: Option<String>, before: Option<SystemTime>) {
        let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        let Some(l) = listings.get_mut(cur) else {
            return;
        };
        let after = mtime_of(cur).ok().flatten();
        match (before, after) {
            (Some(b), Some(a)) if b == l.mtime => {
                match name {
                    Some(n) => l.names.insert(unique.to_string(), n),
                    None => l.names.remove(unique),
                };
                l.mtime = a;
            }
            _ => {
                listings.remove(cur);
            }
        }
    }

    /// [`Self::find`] for a read, which re-reads `cur/` before it says a key is missing.
    fn find_read(&self, key: &Key) -> Result<Option<PathBuf>, BackendError> {
        match self.find(key)? {
            Some(p) => Ok(Some(p)),
            None => self.find_in(key, true),
        }
    }

    /// Opens the file holding `key` for reading. A file renamed between the lookup and the
    /// open (a flag change relabelling it, another Maildir tool) is looked up afresh, a few
    /// times, before the key is said to be missing.
    fn open_read(&self, key: &Key) -> Result<(PathBuf, std::fs::File), BackendError> {
        let mut found = self.find_read(key)?;
        for _ in 0..4 {
            let Some(path) = found else { break };
            match std::fs::File::open(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    found = self.find_in(key, true)?;
                }
                Err(e) => return Err(io_err("opening", &path, e)),
            }
        }
        Err(err(ErrorKind::NotFound, format!("{key} does not exist")))
    }

    /// Creates `dir/{tmp,new,cur}` if missing, durably.
    fn ensure_maildir(&self, dir: &Path) -> Result<(), BackendError> {
        if dir.join("cur").is_dir() && dir.join("tmp").is_dir() && dir.join("new").is_dir() {
            return Ok(());
        }
        for sub in ["tmp", "new", "cur"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| io_err("creating", &p, e))?;
        }
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Applies `batch`; a copy whose source is a key of `foreign` links the file named there
    /// (another user's Maildir, for [`MaildirTree`]).
    fn commit(&self, batch: Batch, foreign: &HashMap<Key, PathBuf>) -> Result<(), BackendError> {
        for p in &batch.preconditions {
            if !p.holds(self.find(p.key())?.is_some()) {
                return Err(p.failed(NAME));
            }
        }
        // What each key ends up as, resolving copies against earlier ops of the same batch.
        let mut finals: Vec<(Key, Final)> = Vec::new();
        let mut index: HashMap<Key, usize> = HashMap::new();
        for op in batch.ops {
            let (key, f) = match op {
                Op::Put { key, data } => (key, Final::Data(data)),
                Op::Delete { key } => (key, Final::Gone),
                Op::Copy { from, to } => {
                    let source = match index.get(&from).map(|&i| &finals[i].1) {
                        Some(Final::Data(d)) => Final::Data(d.clone()),
                        Some(Final::LinkOf(p)) => Final::LinkOf(p.clone()),
                        Some(Final::Gone) => {
                            return Err(err(
                                ErrorKind::NotFound,
                                format!("copy source {from} is deleted in this batch"),
                            ));
                        }
                        None => match foreign.get(&from) {
                            Some(path) => Final::LinkOf(path.clone()),
                            None => Final::LinkOf(self.find(&from)?.ok_or_else(|| {
                                err(
                                    ErrorKind::NotFound,
                                    format!("copy source {from} does not exist"),
                                )
                            })?),
                        },
                    };
                    (to, source)
                }
                // Its folders and file names are the Maildir's only metadata.
                Op::Meta { .. } => continue,
            };
            self.locate(&key)?;
            match index.get(&key) {
                Some(&i) => finals[i].1 = f,
                None => {
                    index.insert(key.clone(), finals.len());
                    finals.push((key, f));
                }
            }
        }
        // Stage every new file in tmp/, fsynced; on any failure remove what was staged.
        let mut staged: Vec<(PathBuf, PathBuf, Option<PathBuf>)> = Vec::new();
        let mut deletes: Vec<PathBuf> = Vec::new();
        let stage = |staged: &mut Vec<(PathBuf, PathBuf, Option<PathBuf>)>,
                     deletes: &mut Vec<PathBuf>|
         -> Result<(), BackendError> {
            for (key, f) in &finals {
                let (dir, unique) = self.locate(key)?;
                let existing = self.find(key)?;
                match f {
                    Final::Gone => deletes.extend(existing),
                    Final::Data(_) | Final::LinkOf(_) => {
                        self.ensure_maildir(&dir)?;
                        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
                        let tmp = dir
                            .join("tmp")
                            .join(format!("{unique}.{}.{n}", std::process::id()));
                        match f {
                            Final::Data(data) => write_synced(&tmp, data, delivered_at(&unique))?,
                            Final::LinkOf(src) => {
                                if std::fs::hard_link(src, &tmp).is_err() {
                                    let data = std::fs::read(src)
                                        .map_err(|e| io_err("reading", src, e))?;
                                    write_synced(&tmp, &data, delivered_at(&unique))?;
                                }
                            }
                            Final::Gone => unreachable!("handled above"),
                        }
                        // A put over a key keeps its label: labels belong to the key, and a
                        // put the journal replays must not undo them.
                        let cur = dir.join("cur");
                        let dest = match &existing {
                            Some(e) if e.parent() == Some(cur.as_path()) => e.clone(),
                            _ => cur.join(format!("{unique}:2,")),
                        };
                        staged.push((tmp, dest.clone(), existing.filter(|e| *e != dest)));
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = stage(&mut staged, &mut deletes) {
            for (tmp, _, _) in &staged {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, dest, replaced) in staged {
            let cur = dest.parent().unwrap_or(Path::new("")).to_path_buf();
            let before = mtime_of(&cur)?;
            std::fs::rename(&tmp, &dest).map_err(|e| io_err("renaming into", &dest, e))?;
            if let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned())
                && let Some((unique, _)) = name.split_once(':')
            {
                self.note(&cur, unique, Some(name.clone()), before);
            }
            // Renaming a link onto another link of the same file does nothing and succeeds
            // (POSIX), leaving the staged link behind: a copy onto a key that already holds
            // those very bytes.
            if tmp.exists() {
                std::fs::remove_file(&tmp).map_err(|e| io_err("removing", &tmp, e))?;
            }
            if let Some(old) = replaced {
                deletes.push(old);
            }
            dirs.extend(dest.parent().map(Path::to_path_buf));
        }
        for path in deletes {
            let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let before = mtime_of(&dir)?;
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    if let Some((unique, _)) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.split_once(':'))
                    {
                        self.note(&dir, unique, None, before);
                    }
                    dirs.push(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &path, e)),
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            sync_dir(&d)?;
        }
        Ok(())
    }

    fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let (path, mut f) = self.open_read(key)?;
        let len = f.metadata().map_err(|e| io_err("reading", &path, e))?.len();
        // Sized once (growing by doubling copied the body and faulted its pages in again at
        // each step), from buffers earlier reads have given back.
        let pool = read_buffers();
        let mut out = match range {
            None => {
                let mut out = pool.take(usize::try_from(len).unwrap_or(0));
                f.read_to_end(&mut out)
                    .map_err(|e| io_err("reading", &path, e))?;
                out
            }
            Some(r) => {
                let start = r.start.min(len);
                let end = r.end.clamp(start, len);
                f.seek(SeekFrom::Start(start))
                    .map_err(|e| io_err("reading", &path, e))?;
                let mut out = pool.take((end - start) as usize);
                out.resize((end - start) as usize, 0);
                f.read_exact(&mut out)
                    .map_err(|e| io_err("reading", &path, e))?;
                out
            }
        };
        // A small read in a large pooled buffer would pin the buffer for as long as the
        // bytes live; it is copied out instead.
        if out.capacity() > 2 * out.len().max(4096) {
            let copy = Bytes::copy_from_slice(&out);
            out.clear();
            drop(pool.bytes(out));
            return Ok(copy);
        }
        Ok(pool.bytes(out))
    }

    fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let (path, f) = self.open_read(key)?;
        Ok(f.metadata().map_err(|e| io_err("reading", &path, e))?.len())
    }
}

/// Writes a file and fsyncs it; its modification time is `mtime` when given.
fn write_synced(path: &Path, data: &[u8], mtime: Option<SystemTime>) -> Result<(), BackendError> {
    let mut f = std::fs::File::create(path).map_err(|e| io_err("creating", path, e))?;
    f.write_all(data).map_err(|e| io_err("writing", path, e))?;
    if let Some(t) = mtime {
        f.set_modified(t).map_err(|e| io_err("dating", path, e))?;
    }
    f.sync_all().map_err(|e| io_err("syncing", path, e))
}

/// The delivery time a Maildir unique name starts with (`1700000000.…`), if it does.
fn delivered_at(unique: &str) -> Option<SystemTime> {
    let digits = unique.split('.').next()?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(digits.parse().ok()?))
}

/// A Maildir's `dovecot-keywords`: keyword `n` is the letter `a + n` in file names.
struct Keywords {
    names: Vec<String>,
    changed: bool,
}

/// Maildir file names have room for 26 keyword letters.
const KEYWORD_LETTERS: usize = 26;

impl Keywords {
    fn read(dir: &Path) -> Keywords {
        let mut names: Vec<String> = Vec::new();
        if let Ok(text) = std::fs::read_to_string(dir.join("dovecot-keywords")) {
            for line in text.lines() {
                let Some((n, name)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(n) = n.parse::<usize>() else { continue };
                if n < KEYWORD_LETTERS && !name.is_empty() {
                    if names.len() <= n {
                        names.resize(n + 1, String::new());
                    }
                    names[n] = name.to_string();
                }
            }
        }
        Keywords {
            names,
            changed: false,
        }
    }

    /// The letter of `name`, given one if it has none and a letter is free.
    fn letter(&mut self, name: &str) -> Option<char> {
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                let i = match self.names.iter().position(String::is_empty) {
                    Some(free) => free,
                    None if self.names.len() < KEYWORD_LETTERS => {
                        self.names.push(String::new());
                        self.names.len() - 1
                    }
                    None => return None,
                };
                self.names[i] = name.to_string();
                self.changed = true;
                i
            }
        };
        Some((b'a' + i as u8) as char)
    }

    /// Writes the file if letters were given out (atomically: tmp, fsync, rename).
    fn save(&self, dir: &Path) -> Result<(), BackendError> {
        if !self.changed {
            return Ok(());
        }
        let mut text = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if !n.is_empty() {
                text.push_str(&format!("{i} {n}\n"));
            }
        }
        let tmp = dir
            .join("tmp")
            .join(format!("dovecot-keywords.{}", std::process::id()));
        write_synced(&tmp, text.as_bytes(), None)?;
        let path = dir.join("dovecot-keywords");
        std::fs::rename(&tmp, &path).map_err(|e| io_err("renaming into", &path, e))?;
        sync_dir(dir)
    }
}

impl Inner {
    /// The Maildirs of the tree: the top one (INBOX) and every `.Folder`, with the key prefix
    /// of each.
    fn maildirs(&self) -> Result<Vec<(PathBuf, String)>, BackendError> {
        let mut out = vec![(self.root.clone(), String::new())];
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("reading", &self.root, e)),
        };
        for e in entries {
            let e = e.map_err(|e| io_err("reading", &self.root, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.len() > 1 && e.path().is_dir() {
                out.push((e.path(), format!("{name}/")));
            }
        }
        Ok(out)
    }

    /// Every message file's key and size, under `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let mut out = Vec::new();
        for (dir, key_prefix) in self.maildirs()? {
            // Only the folders the prefix can reach.
            if !(key_prefix.starts_with(prefix) || prefix.starts_with(&key_prefix)) {
                continue;
            }
            for sub in ["cur", "new"] {
                let d = dir.join(sub);
                let entries = match std::fs::read_dir(&d) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("reading", &d, e)),
                };
                for e in entries {
                    let e = e.map_err(|e| io_err("reading", &d, e))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    let unique = name.split_once(':').map_or(name.as_str(), |(u, _)| u);
                    let key = format!("{key_prefix}{unique}");
                    if !key.starts_with(prefix) {
                        continue;
                    }
                    // A name Strata could not have written (another tool's) is not its to list.
                    let Ok(key) = Key::new(key) else { continue };
                    let size = e
                        .metadata()
                        .map_err(|x| io_err("reading", &e.path(), x))?
                        .len();
                    out.push(Listed { key, size });
                }
            }
        }
        Ok(out)
    }

    /// Removes `tmp/` files whose last status change is older than `older_than`: what a write
    /// interrupted by a crash left (live writes stay there for milliseconds).
    fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        use std::os::unix::fs::MetadataExt as _;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let mut removed = 0;
        for (dir, _) in self.maildirs()? {
            let tmp = dir.join("tmp");
            let Ok(entries) = std::fs::read_dir(&tmp) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                // The status change time, not the modification time: Strata dates a file by
                // the message's INTERNALDATE before it leaves tmp/.
                if meta.is_file() && meta.ctime() <= cutoff {
                    match std::fs::remove_file(e.path()) {
                        Ok(()) => removed += 1,
                        Err(x) if x.kind() == std::io::ErrorKind::NotFound => {}
                        Err(x) => return Err(io_err("removing", &e.path(), x)),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Renames each stored key's file to carry its label; keys not stored are skipped.
    fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        // Letters first, and the keyword files written, so no name uses a letter no file names.
        let mut keywords: HashMap<PathBuf, Keywords> = HashMap::new();
        let mut renames = Vec::with_capacity(labels.len());
        for (key, label) in labels {
            let (dir, unique) = self.locate(&key)?;
            let kw = keywords
                .entry(dir.clone())
                .or_insert_with(|| Keywords::read(&dir));
            let mut info: Vec<char> = label
                .flags
                .chars()
                .filter(|c| "DFRST".contains(*c))
                .collect();
            info.extend(label.keywords.iter().filter_map(|k| kw.letter(k)));
            info.sort_unstable();
            info.dedup();
            renames.push((key, dir, unique, info.into_iter().collect::<String>()));
        }
        for (dir, kw) in &keywords {
            if kw.changed {
                self.ensure_maildir(dir)?;
                kw.save(dir)?;
            }
        }
        for (key, dir, unique, info) in renames {
            let Some(path) = self.find(&key)? else {
                continue;
            };
            let name = format!("{unique}:2,{info}");
            let cur = dir.join("cur");
            let dest = cur.join(&name);
            if path == dest {
                continue;
            }
            let before = mtime_of(&cur)?;
            match std::fs::rename(&path, &dest) {
                Ok(()) => self.note(&cur, &unique, Some(name), before),
                // Deleted meanwhile: nothing to label.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("renaming", &path, e)),
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

impl MaildirBackend {
    /// A backend over the Maildir++ tree at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<MaildirBackend, BackendError> {
        let inner = Inner {
            root: root.into(),
            tmp_counter: AtomicU64::new(0),
            listings: std::sync::Mutex::new(HashMap::new()),
        };
        inner.ensure_maildir(&inner.root.clone())?;
        Ok(MaildirBackend {
            inner: Arc::new(inner),
            commit_lock: tokio::sync::Mutex::new(()),
            acks: AckTracker::new(NAME),
        })
    }

    /// The root of the tree.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Reads in groups of at most [`READ_GROUP`], each run in one blocking task one file after
    /// another (a task per file woke a thread per file, which cost more than reading it from
    /// the page cache), at most `concurrency` reads in flight, answered in request order. The
    /// stream holds the Maildir, not a borrow of this handle.
    pub(crate) fn read_grouped(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'static, Result<Bytes, BackendError>> {
        let tasks = concurrency.max(1).div_ceil(READ_GROUP);
        let group = reads.len().div_ceil(tasks).clamp(1, READ_GROUP);
        let mut groups = Vec::new();
        let mut reads = reads.into_iter().peekable();
        while reads.peek().is_some() {
            groups.push(reads.by_ref().take(group).collect::<Vec<_>>());
        }
        let inner = self.inner.clone();
        stream::iter(groups)
            .map(move |g| {
                let inner = inner.clone();
                async move {
                    let n = g.len();
                    let read = tokio::task::spawn_blocking(move || {
                        g.into_iter()
                            .map(|r| inner.get(&r.key, r.range))
                            .collect::<Vec<_>>()
                    });
                    match read.await {
                        Ok(answers) => answers,
                        Err(e) => {
                            let e = err(ErrorKind::Io, format!("file task failed: {e}"));
                            vec![Err(e); n]
                        }
                    }
                }
            })
            .buffered(tasks)
            .flat_map(stream::iter)
            .boxed()
    }

    /// Commits `batch`, in which a copy from a key of `foreign` links the file another
    /// Maildir holds under that key (`(key here, that Maildir, key there)`), so a message
    /// delivered to many users is one file.
    pub(crate) async fn commit_from(
        &self,
        batch: Batch,
        foreign: Vec<(Key, Arc<MaildirBackend>, Key)>,
    ) -> Result<(), BackendError> {
        let _serial = self.commit_lock.lock().await;
        let sources: Vec<(Key, Arc<Inner>, Key)> = foreign
            .into_iter()
            .map(|(here, m, there)| (here, m.inner.clone(), there))
            .collect();
        self.blocking(move |inner| {
            let mut foreign = HashMap::with_capacity(sources.len());
            for (here, other, there) in sources {
                let path = other.find(&there)?.ok_or_else(|| {
                    err(
                        ErrorKind::NotFound,
                        format!("copy source {there} does not exist"),
                    )
                })?;
                foreign.insert(here, path);
            }
            inner.commit(batch, &foreign)
        })
        .await
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R, BackendError> + Send + 'static,
    ) -> Result<R, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| err(ErrorKind::Io, format!("file task failed: {e}")))?
    }
}

#[async_trait]
impl Backend for MaildirBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        self.commit_from(batch, Vec::new()).await?;
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let key = key.clone();
        self.blocking(move |inner| inner.get(&key, range)).await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let key = key.clone();
        self.blocking(move |inner| inner.size(&key)).await
    }

    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        self.read_grouped(reads, concurrency)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let prefix = prefix.to_string();
        self.blocking(move |inner| inner.list(&prefix)).await
    }

    async fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        self.blocking(move |inner| inner.clean_partial(older_than))
            .await
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        if labels.is_empty() {
            return Ok(());
        }
        // Serialised with commits: a commit's renames and a label's rename never cross.
        let _serial = self.commit_lock.lock().await;
        self.blocking(move |inner| inner.set_labels(labels)).await
    }
}
