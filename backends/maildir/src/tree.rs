//! Every user's Maildir under one root, as one backend: a key is `<user>/<maildir key>`, and
//! `<root>/<user>` is that user's Maildir++ tree. This is what lets the staging journal front
//! Maildir the way it fronts a shared database or bucket (each user sees it through
//! `Prefixed`), so that one fdatasync of the journal answers concurrent APPENDs of every user
//! while the files are written behind it. It is not a second layout: the files are exactly
//! those [`MaildirBackend`] writes for that user alone.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, Capabilities, ErrorKind, Key, Label, Listed, Op,
    Precondition, Read, Receipt,
};

use crate::{CAPABILITIES, MaildirBackend, NAME, err};

/// The Maildirs of all users under one root.
pub struct MaildirTree {
    root: PathBuf,
    users: Mutex<HashMap<String, Arc<MaildirBackend>>>,
    acks: AckTracker,
}

/// A key's user and the key inside that user's Maildir.
fn split(key: &Key) -> Result<(&str, Key), BackendError> {
    match key.as_str().split_once('/') {
        Some((user, rest)) => Ok((user, Key::new(rest)?)),
        None => Err(err(
            ErrorKind::InvalidKey,
            format!("{key}: a key of the Maildir tree is <user>/<maildir key>"),
        )),
    }
}

impl MaildirTree {
    /// The tree at `root` (created if missing); each user's Maildir is opened when first used.
    pub fn open(root: impl Into<PathBuf>) -> Result<MaildirTree, BackendError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| crate::io_err("creating", &root, e))?;
        Ok(MaildirTree {
            root,
            users: Mutex::new(HashMap::new()),
            acks: AckTracker::new(NAME),
        })
    }

    fn user(&self, name: &str) -> Result<Arc<MaildirBackend>, BackendError> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = users.get(name) {
            return Ok(m.clone());
        }
        let m = Arc::new(MaildirBackend::open(self.root.join(name))?);
        users.insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// `batch` cut into one batch per user, in the order users first appear. A copy from one
    /// user's Maildir to another's becomes, in the receiving user's batch, a copy from a
    /// placeholder key (one no Maildir key can be) that names the source: [`Foreign`].
    fn per_user(batch: Batch) -> Result<Vec<(String, Batch, Foreign)>, BackendError> {
        let order = Self::first_appearance(&batch)?;
        let mut out: Vec<(String, Batch, Foreign)> = order
            .iter()
            .map(|u| (u.clone(), Batch::new(), Vec::new()))
            .collect();
        let slot = |user: &str| order.iter().position(|u| u == user).unwrap_or(0);
        for p in batch.preconditions {
            let (user, p) = match &p {
                Precondition::Absent(k) => {
                    let (u, k) = split(k)?;
                    (u.to_string(), Precondition::Absent(k))
                }
                Precondition::Exists(k) => {
                    let (u, k) = split(k)?;
                    (u.to_string(), Precondition::Exists(k))
                }
            };
            out[slot(&user)].1.preconditions.push(p);
        }
        // Where each key is written, to check that a copy between users sees its source as
        // the batch leaves it at that point.
        let mut writes: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, op) in batch.ops.iter().enumerate() {
            if let Op::Put { key, .. } | Op::Delete { key } | Op::Copy { to: key, .. } = op {
                writes.entry(key.clone()).or_default().push(i);
            }
        }
        for (i, op) in batch.ops.into_iter().enumerate() {
            let (user, op) = match op {
                Op::Put { key, data } => {
                    let (u, key) = split(&key)?;
                    (u.to_string(), Op::Put { key, data })
                }
                Op::Delete { key } => {
                    let (u, key) = split(&key)?;
                    (u.to_string(), Op::Delete { key })
                }
                Op::Copy { from, to } => {
                    let (u, source) = split(&from)?;
                    let (v, to) = split(&to)?;
                    if u == v {
                        (u.to_string(), Op::Copy { from: source, to })
                    } else {
                        // The source user's part is committed whole before or after the
                        // receiving user's: it must not write the source after the copy, nor
                        // before it unless it goes first.
                        let at = writes.get(&from).map(Vec::as_slice).unwrap_or_default();
                        let later = at.iter().any(|&j| j > i);
                        let earlier = at.iter().any(|&j| j < i);
                        if later || (earlier && slot(u) > slot(v)) {
                            return Err(err(
                                ErrorKind::Unsupported,
                                format!(
                                    "a copy from {from} that the batch also writes out of order"
                                ),
                            ));
                        }
                        let foreign = &mut out[slot(v)].2;
                        let placeholder = Key::new(format!("+from/{}", foreign.len()))?;
                        foreign.push((placeholder.clone(), u.to_string(), source));
                        (
                            v.to_string(),
                            Op::Copy {
                                from: placeholder,
                                to,
                            },
                        )
                    }
                }
                // A Maildir keeps no metadata: its folders and names are what it records.
                Op::Meta { .. } => continue,
            };
            out[slot(&user)].1.ops.push(op);
        }
        Ok(out
            .into_iter()
            .filter(|(_, b, _)| !b.ops.is_empty() || !b.preconditions.is_empty())
            .collect())
    }

    /// The users a batch touches, in the order they first appear in it.
    fn first_appearance(batch: &Batch) -> Result<Vec<String>, BackendError> {
        let mut users: Vec<String> = Vec::new();
        let mut saw = |k: &Key| -> Result<(), BackendError> {
            let (u, _) = split(k)?;
            if !users.iter().any(|x| x == u) {
                users.push(u.to_string());
            }
            Ok(())
        };
        for p in &batch.preconditions {
            saw(p.key())?;
        }
        for op in &batch.ops {
            match op {
                Op::Put { key, .. } | Op::Delete { key } => saw(key)?,
                Op::Copy { from, to } => {
                    saw(from)?;
                    saw(to)?;
                }
                Op::Meta { .. } => {}
            }
        }
        Ok(users)
    }
}

impl MaildirTree {
    /// Commits one user's part of a batch, linking the files its copies from other users name.
    async fn commit_part(
        &self,
        (user, part, foreign): (String, Batch, Foreign),
    ) -> Result<(), BackendError> {
        let foreign = foreign
            .into_iter()
            .map(|(here, u, there)| Ok((here, self.user(&u)?, there)))
            .collect::<Result<Vec<_>, BackendError>>()?;
        self.user(&user)?.commit_from(part, foreign).await
    }
}

/// Copies from other users' Maildirs in one user's part of a batch: placeholder key, source
/// user, source key.
type Foreign = Vec<(Key, String, Key)>;

#[async_trait]
impl Backend for MaildirTree {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// Each user's part of the batch is one Maildir commit. Users write through `Prefixed`,
    /// so a batch holds one user's keys; one spanning users (a delivery to many) is applied
    /// user by user, and a copy between users is a hard link.
    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let parts = Self::per_user(batch)?;
        // Users' Maildirs are apart, so their parts commit at once (each its own fsyncs): first
        // those that copy from no other user, then those that do. A source that itself copies
        // from another user makes the order matter: then one part after another.
        let copying: Vec<&str> = parts
            .iter()
            .filter(|(_, _, f)| !f.is_empty())
            .map(|(u, _, _)| u.as_str())
            .collect();
        let chained = parts
            .iter()
            .flat_map(|(_, _, f)| f.iter())
            .any(|(_, source, _)| copying.contains(&source.as_str()));
        let (first, second): (Vec<_>, Vec<_>) =
            parts.into_iter().partition(|(_, _, f)| f.is_empty());
        if chained {
            for part in first.into_iter().chain(second) {
                self.commit_part(part).await?;
            }
        } else {
            for wave in [first, second] {
                futures::future::try_join_all(wave.into_iter().map(|p| self.commit_part(p)))
                    .await?;
            }
        }
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let (user, key) = split(key)?;
        self.user(user)?.get(&key, range).await
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let (user, key) = split(key)?;
        self.user(user)?.size(&key).await
    }

    /// Reads of one user's Maildir (what a user's request holds) are that Maildir's grouped
    /// reads; a mix of users is read one by one.
    fn get_many(
        &self,
        reads: Vec<Read>,
        concurrency: usize,
    ) -> BoxStream<'_, Result<Bytes, BackendError>> {
        let one_user = reads
            .first()
            .and_then(|r| split(&r.key).ok())
            .map(|(u, _)| u.to_string())
            .filter(|u| {
                reads
                    .iter()
                    .all(|r| split(&r.key).is_ok_and(|(v, _)| v == u))
            });
        let maildir = one_user.and_then(|u| self.user(&u).ok());
        match maildir {
            Some(m) => {
                let inner: Vec<Read> = reads
                    .into_iter()
                    .map(|r| Read {
                        key: split(&r.key).expect("checked").1,
                        range: r.range,
                    })
                    .collect();
                m.read_grouped(inner, concurrency)
            }
            None => stream::iter(reads)
                .map(move |r| async move { self.get(&r.key, r.range).await })
                .buffered(concurrency.max(1))
                .boxed(),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        // The users the prefix can reach: the one it names, or every one it begins.
        let users: Vec<String> = match prefix.split_once('/') {
            Some((user, _)) => vec![user.to_string()],
            None => match std::fs::read_dir(&self.root) {
                Ok(entries) => entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|u| u.starts_with(prefix) && Key::new(u.as_str()).is_ok())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(err(
                        ErrorKind::Io,
                        format!("reading {}: {e}", self.root.display()),
                    ));
                }
            },
        };
        let mut out = Vec::new();
        for user in users {
            let inner = prefix.strip_prefix(&format!("{user}/")).unwrap_or("");
            for l in self.user(&user)?.list(inner).await? {
                out.push(Listed {
                    key: Key::new(format!("{user}/{}", l.key.as_str()))?,
                    size: l.size,
                });
            }
        }
        Ok(out)
    }

    async fn clean_partial(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        let mut removed = 0;
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let user = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && Key::new(user.as_str()).is_ok() {
                    removed += self.user(&user)?.clean_partial(older_than).await?;
                }
            }
        }
        Ok(removed)
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        let mut per_user: Vec<(String, Vec<(Key, Label)>)> = Vec::new();
        for (key, label) in labels {
            let (user, key) = split(&key)?;
            match per_user.iter_mut().find(|(u, _)| u == user) {
                Some((_, v)) => v.push((key, label)),
                None => per_user.push((user.to_string(), vec![(key, label)])),
            }
        }
        for (user, labels) in per_user {
            self.user(&user)?.set_labels(labels).await?;
        }
        Ok(())
    }
}
