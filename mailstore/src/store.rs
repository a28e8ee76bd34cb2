//! The mail store: one [`UserStore`] per logged-in user, shared by all of that user's sessions,
//! tying the user's index to the backend that holds the bodies.
//!
//! APPEND writes the body to the backend first (waiting for soft-done or acked, as the policy
//! says) and records it in the index second, so the index never points at a body that is not
//! there. Expunge removes index records first and bodies second; a crash in between leaves an
//! unreferenced body, never a dangling record.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use strata_backend_api::{Backend, BackendError, Batch, Key};
use strata_index::{
    BodyLocation, ContentRecord, Durability, Flags, Guid, IndexOptions, KeywordId, MailboxId,
    MailboxRecord, Modseq, NewMailbox, NewMessage, Parts, RecoveryReport, Snapshot, SpecialUse,
    StoreId, Timestamp, Uid, UserIndex, ViewEntry,
};
use tokio::sync::{Mutex as AsyncMutex, RwLock};

use crate::bodies::{BodyRead, BodyStores};
use crate::error::{Result, StoreError};
use crate::fts::{Fts, FtsOptions};
use crate::graves::{Grave, Graves, Mark};
use crate::names::join_name;
use crate::quota::{Limits, QuotaSource, Usage};
use crate::ship::{ShipOptions, Shipper};

/// When APPEND may answer OK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckPolicy {
    /// Once the body is durable locally (soft-done).
    #[default]
    SoftDone,
    /// Once the authoritative store confirmed it (acked).
    Acked,
}

/// Opens the stores that hold one user's bodies.
pub type BackendFactory =
    Arc<dyn Fn(&str) -> std::result::Result<BodyStores, BackendError> + Send + Sync>;

/// How the mail store runs.
#[derive(Clone)]
pub struct MailstoreOptions {
    /// Where user indexes live (`<dir>/<user>.redb`).
    pub index_dir: PathBuf,
    /// When APPEND answers.
    pub append_ack: AckPolicy,
    /// Body reads in flight per FETCH.
    pub read_concurrency: usize,
    /// Index options applied to every user.
    pub index: IndexOptions,
    /// Shipping each user's index to their main store (and restoring it from there).
    pub ship: Option<ShipOptions>,
    /// Each user's full-text index, when on.
    pub fts: Option<FtsOptions>,
}

/// The mailboxes every user has from the first login, with their special use (RFC 6154).
pub const DEFAULT_MAILBOXES: &[(&str, Option<SpecialUse>)] = &[
    ("INBOX", None),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Sent", Some(SpecialUse::Sent)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

/// The server-wide mail store.
pub struct Mailstore {
    opts: MailstoreOptions,
    backends: BackendFactory,
    // Open stores stay here until `close_idle` closes the ones no session holds: an index is
    // always closed (not merely dropped), so the next open never races a closing writer.
    users: Mutex<HashMap<String, Arc<UserStore>>>,
    // Opening and closing take turns, so two logins of one user share one index and a login
    // waits for a close in progress.
    opening: AsyncMutex<()>,
    // One user's full-text batch at a time, so indexing memory does not grow with users.
    fts_turn: Arc<tokio::sync::Semaphore>,
    // Each user's quota limits, read at open; none: no limits.
    quotas: Option<Arc<dyn QuotaSource>>,
}

impl Mailstore {
    /// A mail store over `backends`.
    pub fn new(opts: MailstoreOptions, backends: BackendFactory) -> Self {
        Mailstore {
            opts,
            backends,
            users: Mutex::new(HashMap::new()),
            opening: AsyncMutex::new(()),
            fts_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            quotas: None,
        }
    }

    /// The same store, reading each user's quota limits from `source`.
    pub fn with_quotas(mut self, source: Arc<dyn QuotaSource>) -> Self {
        self.quotas = Some(source);
        self
    }

    /// Reads `user`'s limits again if the user is open (an admin changed the account).
    pub async fn refresh_limits(&self, user: &str) -> Result<()> {
        if let (Some(u), Some(source)) = (self.live(user), &self.quotas) {
            u.set_limits(source.limits(user).await?);
        }
        Ok(())
    }

    /// The options.
    pub fn options(&self) -> &MailstoreOptions {
        &self.opts
    }

    /// The store of `user`, opened (and its index recovered) on first use and shared by every
    /// session until [`Mailstore::close_idle`]. A new user gets INBOX and the special-use
    /// mailboxes.
    ///
    /// A user another node took over is opened again (taking it back) once no session of this
    /// node holds it; until then this is refused.
    pub async fn user(&self, user: &str) -> Result<Arc<UserStore>> {
        if let Some(u) = self.live(user)
            && u.fenced().is_none()
        {
            return Ok(u);
        }
        let _guard = self.opening.lock().await;
        if let Some(u) = self.live(user) {
            match u.fenced() {
                None => return Ok(u),
                Some(why) => {
                    drop(u);
                    if !self.close_one(user).await {
                        return Err(crate::ship::NotShipped(format!(
                            "{why}; sessions of this server still hold the user"
                        ))
                        .into());
                    }
                }
            }
        }
        let limits = match &self.quotas {
            Some(source) => source.limits(user).await?,
            None => Limits::default(),
        };
        let stores = (self.backends)(user)?;
        let path = self.index_path(user);
        let (index, report, taken) = self.open_index(user, &path, &stores).await?;
        tracing::info!(
            user,
            created = report.created,
            unclean = report.unclean_shutdown,
            ms = report.duration.as_secs_f64() * 1000.0,
            "index opened"
        );
        let expunging = self.opts.index_dir.join(format!("{user}.expunging"));
        let index_handle = index.clone();
        let ship_to = stores.index_store().clone();
        let store = Arc::new(UserStore {
            name: user.to_string(),
            index,
            stores,
            moves: self.opts.index_dir.join(format!("{user}.moving")),
            relocating: RwLock::new(()),
            migration: AsyncMutex::new(()),
            append_ack: self.opts.append_ack,
            read_concurrency: self.opts.read_concurrency.max(1),
            report,
            graves: Graves::default(),
            folders: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            given_up: Mutex::new(
                crate::intents::read(&expunging)?
                    .into_iter()
                    .map(|(_, l)| l)
                    .collect(),
            ),
            expunging,
            releasing: tokio::sync::Mutex::new(()),
            background: Arc::new(RwLock::new(())),
            labeller: Mutex::new(None),
            shipper: match (self.opts.ship.clone(), taken) {
                (Some(o), Some(t)) => Some(Shipper::start(user, index_handle, ship_to, o, t)),
                _ => None,
            },
            kept_views: Mutex::new(std::collections::VecDeque::new()),
            fts: self.opts.fts.as_ref().and_then(|o| Fts::open(o, user)),
            limits: Mutex::new(limits),
        });
        store.ensure_default_mailboxes().await?;
        *store.labeller.lock().unwrap_or_else(|p| p.into_inner()) = crate::labels::spawn(&store);
        crate::fts::spawn(&store, self.fts_turn.clone());
        self.map().insert(user.to_string(), store.clone());
        Ok(store)
    }

    /// Where `user`'s index file is.
    pub fn index_path(&self, user: &str) -> PathBuf {
        self.opts.index_dir.join(format!("{user}.redb"))
    }

    /// Opens `user`'s index; with shipping on, this node takes the user for writing (see
    /// `ship::open_for_writing`): a missing or stale index is restored from the main store, a
    /// damaged one set aside and restored.
    async fn open_index(
        &self,
        user: &str,
        path: &std::path::Path,
        stores: &BodyStores,
    ) -> Result<(UserIndex, RecoveryReport, Option<crate::ship::Taken>)> {
        let Some(ship) = &self.opts.ship else {
            let (i, r) = UserIndex::open(path, self.opts.index.clone()).await?;
            return Ok((i, r, None));
        };
        let mut local_modseq = None;
        if path.exists() {
            match UserIndex::open(path, self.opts.index.clone()).await {
                Err(e) if e.is_damage() => {
                    let aside = crate::ship::set_aside(path).map_err(|io| {
                        strata_index::IndexError::Io {
                            path: path.to_path_buf(),
                            source: io,
                        }
                    })?;
                    tracing::error!(user, error = %e, aside = %aside.display(), "the index is damaged; set aside, restoring it from the store");
                }
                Err(e) => return Err(e.into()),
                Ok((index, _)) => {
                    local_modseq = index.snapshot().ok().map(|s| s.modseq());
                    index.close().await;
                }
            }
        }
        let opts = self.opts.index.clone();
        let (index, report, taken) = crate::ship::open_for_writing(
            user,
            path,
            local_modseq,
            &**stores.index_store(),
            ship,
            || UserIndex::open(path, opts.clone()),
        )
        .await?;
        Ok((index, report, Some(taken)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UserStore>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, user: &str) -> Option<Arc<UserStore>> {
        self.map().get(user).cloned()
    }

    /// Closes every user's index that no session holds (periodically, and at shutdown, so
    /// that the next open finds no unclean-shutdown label); returns how many were closed.
    /// Background work on a user (labelling, releasing graves) finishes first, so a closed
    /// user's stores are let go of once this returns.
    pub async fn close_idle(&self) -> usize {
        let _guard = self.opening.lock().await;
        let names: Vec<String> = self.map().keys().cloned().collect();
        let mut closed = 0;
        for name in names {
            closed += usize::from(self.close_one(&name).await);
        }
        closed
    }

    /// Closes `user`'s index if no session holds it (as [`Mailstore::close_idle`] does for
    /// all): work that opens users one after another lets go of each when done.
    pub async fn close_if_idle(&self, user: &str) -> bool {
        let _guard = self.opening.lock().await;
        self.close_one(user).await
    }

    /// Closes one user if only the map holds it; the caller holds `opening`.
    async fn close_one(&self, name: &str) -> bool {
        let Some(gate) = self.map().get(name).map(|u| u.background.clone()) else {
            return false;
        };
        // No background task can take the user while this is held.
        let _quiet = gate.clone().write_owned().await;
        let idle = {
            let mut map = self.map();
            match map.get(name) {
                Some(u) if Arc::strong_count(u) == 1 && Arc::ptr_eq(&u.background, &gate) => {
                    map.remove(name)
                }
                _ => None,
            }
        };
        // Removed from the map while only the map held it: nobody else can hold it now.
        match idle.map(Arc::try_unwrap) {
            Some(Ok(u)) => {
                u.close().await;
                true
            }
            _ => false,
        }
    }

    /// Every user store still open, to flush at shutdown.
    pub fn open_users(&self) -> Vec<Arc<UserStore>> {
        self.map().values().cloned().collect()
    }
}

/// One message to append.
pub struct Appended {
    /// The raw message.
    pub raw: Bytes,
    /// Flags to set.
    pub flags: Flags,
    /// INTERNALDATE; now if absent.
    pub internal_date: Option<Timestamp>,
}

/// A message parsed once, to be appended to any number of mailboxes.
#[derive(Clone)]
pub struct Prepared {
    raw: Bytes,
    parsed: strata_index::ParsedMessage,
}

impl Prepared {
    /// Parses `raw` (on a blocking thread when it is large).
    pub async fn parse(raw: Bytes) -> Prepared {
        let (raw, parsed) = parse_off_thread(raw).await;
        Prepared { raw, parsed }
    }

    /// The message's size in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the message has no bytes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// A body already stored under `key`, to record in the index.
pub struct Adopted {
    /// The backend key.
    pub key: String,
    /// The message, to parse.
    pub raw: Vec<u8>,
    /// Flags.
    pub flags: Flags,
    /// INTERNALDATE.
    pub internal_date: Timestamp,
    /// The GUID the store records for it (a new one if `None`).
    pub guid: Option<Guid>,
}

/// One user's mail: the index and the stores holding the bodies.
pub struct UserStore {
    name: String,
    index: UserIndex,
    pub(crate) stores: BodyStores,
    /// The intent file of a migration in progress (see `relocate`).
    pub(crate) moves: PathBuf,
    // Expunges hold it shared from their snapshot to their body deletes, a migration holds it
    // exclusively while it switches locations: an expunge never deletes a body's old copy
    // while its new one leaks.
    pub(crate) relocating: RwLock<()>,
    // One migration per user at a time.
    pub(crate) migration: AsyncMutex<()>,
    append_ack: AckPolicy,
    read_concurrency: usize,
    report: RecoveryReport,
    /// Expunged messages sessions may still name (RFC 2180 4.1).
    pub(crate) graves: Graves,
    /// The folder each mailbox's new bodies go to, once decided (cleared when names change).
    folders: Mutex<HashMap<MailboxId, String>>,
    /// Bodies written by an APPEND that has not recorded them yet (the reconciler keeps them).
    in_flight: Mutex<HashSet<(StoreId, String)>>,
    /// The intent file of expunges (see `intents`): bodies given up but maybe not yet deleted.
    expunging: PathBuf,
    /// What it lists.
    given_up: Mutex<Vec<BodyLocation>>,
    /// Held while graves are released: one release at a time, and waiting for it waits for
    /// the ones started before.
    releasing: tokio::sync::Mutex<()>,
    /// Held shared by background work on the user, exclusively by closing it.
    pub(crate) background: Arc<RwLock<()>>,
    /// Keeps a Maildir's file names in step with flags (see `labels`).
    labeller: Mutex<Option<crate::labels::Labeller>>,
    /// Ships the index to the main store (see `ship`), when configured.
    shipper: Option<Shipper>,
    /// The views of the mailboxes selected last, kept (and kept current by the index) after
    /// their sessions end, so a client that comes back does not wait for one to be built.
    pub(crate) kept_views: Mutex<std::collections::VecDeque<Arc<strata_index::MailboxView>>>,
    /// The full-text index and the task that keeps it (see `fts`), when on.
    pub(crate) fts: Option<Fts>,
    /// Quota limits (see `quota`).
    limits: Mutex<Limits>,
}

/// An APPEND prepared but not yet recorded: the batch that writes its bodies, and what the
/// index records once they are stored.
pub(crate) struct PendingAppend {
    mailbox: MailboxId,
    uid_validity: u32,
    /// Puts of the bodies, with their metadata; taken by whoever commits it.
    pub(crate) batch: Batch,
    news: Vec<NewMessage>,
    limits: Limits,
    adding: Usage,
}

impl PendingAppend {
    /// Where its bodies go.
    fn locations(&self) -> Vec<(StoreId, String)> {
        self.news
            .iter()
            .map(|n| (n.content.location.store, n.content.location.key.clone()))
            .collect()
    }
}

/// Keys of an APPEND in flight, forgotten when it ends however it ends.
pub(crate) struct InFlight<'a> {
    user: &'a UserStore,
    keys: Vec<(StoreId, String)>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = self
            .user
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            set.remove(k);
        }
    }
}

/// At most this many expunged messages are kept for sessions not yet told (per user); past
/// it the oldest go, and a FETCH of them answers without their data.
pub const MAX_GRAVES: usize = 10_000;

/// A session's watch over its selected mailbox: while it lasts, messages expunged by others
/// stay readable for the session until it has told its client (see [`UserStore::expunged`]).
pub struct Watch {
    user: Arc<UserStore>,
    mark: Option<Arc<Mark>>,
}

impl Watch {
    /// The session has told its client of every expunge up to `modseq`.
    pub fn told(&self, modseq: Modseq) {
        if let Some(m) = &self.mark {
            Graves::told(m, modseq);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.mark = None;
        // The session is gone: what only it could name can go too.
        self.user.release_graves_soon();
    }
}

impl UserStore {
    /// Ends the user's background work, labels what it had not, releases every grave (no
    /// session is left to name an expunged message) and closes the index.
    async fn close(self) {
        let labeller = self
            .labeller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(l) = labeller {
            let pending = l.stop().await;
            if !pending.is_empty()
                && let Err(e) = self.label(pending).await
            {
                tracing::warn!(user = self.name, error = %e, "could not label message files");
            }
        }
        if let Some(f) = &self.fts {
            f.stop().await;
        }
        self.release_graves().await;
        if let Some(s) = &self.shipper {
            s.stop().await;
        }
        self.index.close().await;
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's index.
    pub fn index(&self) -> &UserIndex {
        &self.index
    }

    /// The store new bodies go to.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.stores.main()
    }

    /// Every store the user's bodies may be in.
    pub fn stores(&self) -> &BodyStores {
        &self.stores
    }

    /// What opening the index found.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.report
    }

    /// A consistent read of the index.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.index.snapshot()?)
    }

    async fn ensure_default_mailboxes(&self) -> Result<()> {
        if self.snapshot()?.lookup(None, "INBOX")?.is_some() {
            return Ok(());
        }
        self.index
            .write(Durability::Immediate, |t| {
                for (name, special_use) in DEFAULT_MAILBOXES {
                    if t.find_mailbox(None, name)?.is_none() {
                        t.create_mailbox(NewMailbox {
                            parent: None,
                            name: (*name).to_string(),
                            special_use: *special_use,
                        })?;
                    }
                    t.subscribe(name)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The mailbox at `path`.
    pub fn find(&self, snap: &Snapshot, path: &[String]) -> Result<MailboxRecord> {
        let id = snap
            .lookup_path(path)?
            .ok_or_else(|| StoreError::NoSuchMailbox(join_name(path)))?;
        snap.mailbox(id)?
            .ok_or_else(|| StoreError::NoSuchMailbox(join_name(path)))
    }

    /// The mailbox at `path`, created with any missing parents if it does not exist.
    pub async fn ensure(&self, path: Vec<String>) -> Result<MailboxRecord> {
        match self.find(&self.snapshot()?, &path) {
            Err(StoreError::NoSuchMailbox(_)) => self.create(path).await,
            other => other,
        }
    }

    /// Creates the mailbox at `path`, and any missing parents (RFC 3501 CREATE).
    pub async fn create(&self, path: Vec<String>) -> Result<MailboxRecord> {
        self.create_special(path, None).await
    }

    /// Creates the mailbox at `path` with a special use (RFC 6154 CREATE ... USE), and any
    /// missing parents (which get none).
    pub async fn create_special(
        &self,
        path: Vec<String>,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxRecord> {
        let name = join_name(&path);
        if path.len() == 1 && path[0] == "INBOX" {
            return Err(StoreError::MailboxExists(name));
        }
        self.index
            .write(Durability::Immediate, move |t| {
                let mut parent = None;
                let last = path.len() - 1;
                for (i, part) in path.iter().enumerate() {
                    match t.find_mailbox(parent, part)? {
                        Some(_) if i == last => {
                            return Ok(Err(StoreError::MailboxExists(join_name(&path))));
                        }
                        Some(id) => parent = Some(id),
                        None => {
                            let rec = t.create_mailbox(NewMailbox {
                                parent,
                                name: part.clone(),
                                special_use: special_use.filter(|_| i == last),
                            })?;
                            if i == last {
                                return Ok(Ok(rec));
                            }
                            parent = Some(rec.id);
                        }
                    }
                }
                unreachable!("the loop returns at the last component")
            })
            .await?
    }

    /// Deletes a mailbox (RFC 3501 DELETE: a mailbox with children may not be deleted) and its
    /// messages' bodies.
    pub async fn delete(&self, path: Vec<String>) -> Result<()> {
        let name = join_name(&path);
        if path.len() == 1 && path[0] == "INBOX" {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted".into()));
        }
        let snap = self.snapshot()?;
        let rec = self.find(&snap, &path)?;
        if !snap.children(Some(rec.id))?.is_empty() {
            return Err(StoreError::HasChildren(name));
        }
        let guids: Vec<Guid> = snap.messages(rec.id)?.iter().map(|m| m.guid).collect();
        let _moving = self.relocating.read().await;
        let snap = self.snapshot()?;
        self.index.delete_mailbox(rec.id).await?;
        self.release_bodies(&snap, guids).await;
        Ok(())
    }

    /// Renames a mailbox, creating missing parents; renaming INBOX moves its messages to the new
    /// mailbox and leaves INBOX empty (RFC 3501).
    pub async fn rename(&self, from: Vec<String>, to: Vec<String>) -> Result<()> {
        let snap = self.snapshot()?;
        let src = self.find(&snap, &from)?;
        if snap.lookup_path(&to)?.is_some() {
            return Err(StoreError::MailboxExists(join_name(&to)));
        }
        if to.starts_with(&from) {
            return Err(StoreError::NotAllowed(
                "a mailbox cannot be moved under itself".into(),
            ));
        }
        if to.len() == 1 && to[0] == "INBOX" {
            return Err(StoreError::MailboxExists("INBOX".into()));
        }
        let is_inbox = from.len() == 1 && from[0] == "INBOX";
        let to_path = to.clone();
        self.index
            .write(Durability::Immediate, move |t| {
                let mut parent = None;
                for part in &to[..to.len() - 1] {
                    parent = Some(match t.find_mailbox(parent, part)? {
                        Some(id) => id,
                        None => {
                            t.create_mailbox(NewMailbox {
                                parent,
                                name: part.clone(),
                                special_use: None,
                            })?
                            .id
                        }
                    });
                }
                let leaf = to[to.len() - 1].clone();
                if is_inbox {
                    let dest = t.create_mailbox(NewMailbox {
                        parent,
                        name: leaf,
                        special_use: None,
                    })?;
                    let uids: Vec<Uid> = t.uids(src.id)?;
                    t.move_messages(src.id, &uids, dest.id)?;
                } else {
                    t.rename_mailbox(src.id, parent, &leaf)?;
                }
                Ok(())
            })
            .await?;
        // Paths changed: each folder is decided again from the new ones.
        self.folders().clear();
        self.rename_meta(&to_path).await;
        Ok(())
    }

    /// Interns keyword names and returns their ids, in order.
    pub async fn keywords(&self, names: Vec<String>) -> Result<Vec<KeywordId>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let known: HashMap<String, KeywordId> = self
            .snapshot()?
            .keywords()?
            .into_iter()
            .map(|(id, n)| (n.to_ascii_lowercase(), id))
            .collect();
        if let Some(ids) = names
            .iter()
            .map(|n| known.get(&n.to_ascii_lowercase()).copied())
            .collect::<Option<Vec<_>>>()
        {
            return Ok(ids);
        }
        Ok(self
            .index
            .write(Durability::Immediate, move |t| {
                names.iter().map(|n| t.intern_keyword(n)).collect()
            })
            .await?)
    }

    /// Appends messages to a mailbox all-or-nothing: bodies to the backend in one batch, then
    /// records to the index. Returns the mailbox's UIDVALIDITY and the new UIDs.
    pub async fn append(
        &self,
        mailbox: MailboxId,
        messages: Vec<Appended>,
    ) -> Result<(u32, Vec<Uid>)> {
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            prepared.push((Prepared::parse(m.raw).await, m.flags, m.internal_date));
        }
        self.append_prepared(mailbox, prepared).await
    }

    /// [`UserStore::append`] of messages already parsed (one delivery to many users parses
    /// once): each with its flags and INTERNALDATE (now if absent).
    pub async fn append_prepared(
        &self,
        mailbox: MailboxId,
        messages: Vec<(Prepared, Flags, Option<Timestamp>)>,
    ) -> Result<(u32, Vec<Uid>)> {
        let mut pending = self.prepare_append(mailbox, messages)?;
        let batch = std::mem::take(&mut pending.batch);
        // Named as in flight before they are written, until the index names them.
        let _in_flight = self.in_flight_now(pending.locations());
        let receipt = self.stores.main().commit(batch).await?;
        if self.append_ack == AckPolicy::Acked {
            receipt.acked().await?;
        }
        self.record_append(pending).await
    }

    /// An APPEND up to its commit: the quota checked, keys chosen, and the batch that writes
    /// the bodies to the main store (puts, and metadata where the store keeps it).
    pub(crate) fn prepare_append(
        &self,
        mailbox: MailboxId,
        messages: Vec<(Prepared, Flags, Option<Timestamp>)>,
    ) -> Result<PendingAppend> {
        let snap = self.snapshot()?;
        let rec = snap
            .mailbox(mailbox)?
            .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.to_string()))?;
        let folder = self.folder_of(&snap, mailbox)?;
        let meta_name = self
            .stores
            .main()
            .capabilities()
            .metadata
            .then(|| Self::meta_name(&snap, mailbox))
            .transpose()?;
        let limits = self.limits();
        let adding = Usage {
            messages: messages.len() as u64,
            storage: messages.iter().map(|(m, ..)| m.raw.len() as u64).sum(),
        };
        if !limits.is_unlimited() {
            // Refused before any body is written; checked again where it is recorded.
            limits.check(snap.usage()?, adding)?;
        }
        drop(snap);
        let mut batch = Batch::new();
        let mut news = Vec::with_capacity(messages.len());
        for (message, flags, internal_date) in messages {
            let guid = Guid(rand::random());
            let date = internal_date.unwrap_or_else(Timestamp::now);
            let key = body_key(&folder, &guid, date);
            let size = message.raw.len() as u64;
            batch = batch.put(Key::new(key.clone())?, message.raw);
            if let Some(name) = &meta_name {
                let meta = self.body_meta(mailbox, name, &guid, date, size);
                batch = batch.meta(Key::new(key.clone())?, meta);
            }
            news.push(NewMessage {
                content: ContentRecord {
                    guid,
                    size,
                    location: BodyLocation {
                        store: self.stores.main_id(),
                        key,
                    },
                    parsed: message.parsed,
                },
                flags,
                internal_date: date,
            });
        }
        Ok(PendingAppend {
            mailbox,
            uid_validity: rec.uid_validity,
            batch,
            news,
            limits,
            adding,
        })
    }

    /// Marks an APPEND's bodies as in flight (the reconciler keeps them) until the guard drops.
    pub(crate) fn in_flight_for(&self, pending: &PendingAppend) -> InFlight<'_> {
        self.in_flight_now(pending.locations())
    }

    /// Whether APPENDs wait for the store's ack before they are recorded.
    pub(crate) fn waits_for_ack(&self) -> bool {
        self.append_ack == AckPolicy::Acked
    }

    /// An APPEND after its bodies are committed: records them in the index (the quota checked
    /// again, against concurrent APPENDs), or deletes them if the quota is now full. Returns
    /// the mailbox's UIDVALIDITY and the new UIDs.
    pub(crate) async fn record_append(&self, pending: PendingAppend) -> Result<(u32, Vec<Uid>)> {
        let PendingAppend {
            mailbox,
            uid_validity,
            news,
            limits,
            adding,
            ..
        } = pending;
        let keys: Vec<String> = news
            .iter()
            .map(|n| n.content.location.key.clone())
            .collect();
        let recorded = self
            .index
            .write(Durability::Immediate, move |t| {
                // Concurrent APPENDs all passed the first check: only one of them may fill the
                // last of the quota.
                if !limits.is_unlimited()
                    && let Err(over) = limits.check(t.usage()?, adding)
                {
                    return Ok(Err(over));
                }
                let uids: strata_index::Result<Vec<Uid>> =
                    news.into_iter().map(|m| t.append(mailbox, m)).collect();
                uids.map(Ok)
            })
            .await?;
        let uids = match recorded {
            Ok(uids) => uids,
            Err(over) => {
                self.forget_bodies(keys).await;
                return Err(over.into());
            }
        };
        if self.append_ack == AckPolicy::Acked {
            self.shipped().await?;
        }
        Ok((uid_validity, uids))
    }

    /// Deletes bodies written for an APPEND that was then refused; one that stays (the store
    /// failed) is deleted by the next reconciliation, as nothing names it.
    async fn forget_bodies(&self, keys: Vec<String>) {
        let mut batch = Batch::new();
        for k in keys {
            match Key::new(k) {
                Ok(k) => batch = batch.delete(k),
                Err(_) => return,
            }
        }
        if let Err(e) = self.stores.main().commit(batch).await {
            tracing::warn!(user = %self.name, error = %e, "a refused APPEND's bodies stay for the reconciler");
        }
    }

    /// The user's quota limits.
    pub fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the user's quota limits (an admin changed them).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// What the user's mail takes up now.
    pub fn usage(&self) -> Result<Usage> {
        Ok(self.snapshot()?.usage()?)
    }

    /// Whether `octets` more, in one message, fit the user's quota now.
    pub fn fits(&self, octets: u64) -> Result<std::result::Result<(), crate::quota::OverQuota>> {
        let limits = self.limits();
        if limits.is_unlimited() {
            return Ok(Ok(()));
        }
        let adding = Usage {
            messages: 1,
            storage: octets,
        };
        Ok(limits.check(self.usage()?, adding))
    }

    /// Records bodies that are already in the backend (an index rebuild), all-or-nothing;
    /// returns their new UIDs.
    pub async fn adopt(&self, mailbox: MailboxId, found: Vec<Adopted>) -> Result<Vec<Uid>> {
        let news = found
            .into_iter()
            .map(|a| NewMessage {
                content: ContentRecord {
                    guid: a.guid.unwrap_or_else(|| Guid(rand::random())),
                    size: a.raw.len() as u64,
                    location: BodyLocation {
                        store: self.stores.main_id(),
                        key: a.key,
                    },
                    parsed: crate::parse(&a.raw),
                },
                flags: a.flags,
                internal_date: a.internal_date,
            })
            .collect();
        Ok(self.index.append(mailbox, news).await?)
    }

    /// Expunges `uids` from a mailbox and deletes bodies no longer referenced; returns the UIDs
    /// expunged. Sessions that still number them keep reading them until told (see
    /// [`UserStore::watch`]); their bodies go then.
    pub async fn expunge(self: &Arc<Self>, mailbox: MailboxId, uids: Vec<Uid>) -> Result<Vec<Uid>> {
        // Held from the snapshot to the burial: no migration switches a location in between,
        // so each grave names the copy that is left.
        let moving = self.relocating.read().await;
        let dying = self.leaving(mailbox, &uids)?;
        // Before the index lets go of them: a crash after the commit leaves bodies that a
        // rebuild must not bring back and the next reconciliation deletes.
        self.give_up(dying.iter().map(|(_, c)| c.location.clone()).collect())?;
        let done = self.index.expunge(mailbox, uids).await?;
        self.bury(mailbox, dying, &done)?;
        drop(moving);
        // The intent file names what is given up, so the answer need not wait for the store
        // to delete it (unlinking a thousand files costs more than the commit).
        self.release_graves_soon();
        Ok(done)
    }

    /// Moves messages to `dest` (RFC 6851); returns (source UID, new UID) pairs. Sessions that
    /// still number a moved message in `mailbox` read it until told, as after an expunge.
    pub async fn move_messages(
        self: &Arc<Self>,
        mailbox: MailboxId,
        uids: Vec<Uid>,
        dest: MailboxId,
    ) -> Result<Vec<(Uid, Uid)>> {
        let moving = self.relocating.read().await;
        let leaving = self.leaving(mailbox, &uids)?;
        let pairs = self.index.move_messages(mailbox, uids, dest).await?;
        let gone: Vec<Uid> = pairs.iter().map(|p| p.0).collect();
        let guids: HashMap<Uid, Guid> = leaving.iter().map(|(e, c)| (e.uid, c.guid)).collect();
        let moved: Vec<(Guid, Uid)> = pairs
            .iter()
            .filter_map(|(old, new)| Some((*guids.get(old)?, *new)))
            .collect();
        self.bury(mailbox, leaving, &gone)?;
        self.refile_meta(dest, &moved).await;
        drop(moving);
        self.release_graves_soon();
        Ok(pairs)
    }

    /// The view entries and contents of `uids` in `mailbox`, before they leave it.
    fn leaving(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<(ViewEntry, ContentRecord)>> {
        let snap = self.snapshot()?;
        let mut out = Vec::new();
        for &uid in uids {
            if let Some(m) = snap.message(mailbox, uid)?
                && let Some(c) = snap.content_parts(&m.guid, Parts::ALL)?
            {
                out.push((ViewEntry::from(&m), c));
            }
        }
        Ok(out)
    }

    /// Keeps what left `mailbox` (the UIDs in `gone`) readable for sessions not yet told.
    fn bury(
        &self,
        mailbox: MailboxId,
        leaving: Vec<(ViewEntry, ContentRecord)>,
        gone: &[Uid],
    ) -> Result<()> {
        let modseq = self.snapshot()?.modseq();
        self.graves.bury(
            leaving
                .into_iter()
                .filter(|(e, _)| gone.contains(&e.uid))
                .map(|(entry, content)| Grave {
                    mailbox,
                    entry,
                    content,
                    modseq,
                })
                .collect(),
            MAX_GRAVES,
        );
        Ok(())
    }

    /// The folder new bodies of `mailbox` go to: the one its path names, unless bodies of
    /// another mailbox are there (it had this name before a RENAME), then the one its id
    /// names; so no two mailboxes ever share a folder. Decided once per mailbox and process.
    pub(crate) fn folder_of(&self, snap: &Snapshot, mailbox: MailboxId) -> Result<String> {
        if let Some(f) = self.folders().get(&mailbox) {
            return Ok(f.clone());
        }
        let Some(path) = snap.path_of(mailbox)? else {
            return Ok(id_folder(mailbox));
        };
        let mut folder = folder_segment(&path, mailbox);
        if !folder.is_empty() {
            let prefix = format!("{folder}/");
            'scan: for mb in snap.mailboxes()? {
                if mb.id == mailbox {
                    continue;
                }
                for m in snap.messages(mb.id)? {
                    if let Some(c) = snap.content_parts(&m.guid, Parts::default())?
                        && c.location.store == self.stores.main_id()
                        && c.location.key.starts_with(&prefix)
                    {
                        folder = id_folder(mailbox);
                        break 'scan;
                    }
                }
            }
        }
        self.folders().insert(mailbox, folder.clone());
        Ok(folder)
    }

    fn folders(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, String>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session's watch over `mailbox`, before it takes its view (see [`Watch`]).
    pub fn watch(self: &Arc<Self>, mailbox: MailboxId) -> Watch {
        Watch {
            user: self.clone(),
            mark: Some(self.graves.watch(mailbox)),
        }
    }

    /// A message expunged by another session that a watching session may still name: its
    /// entry and content as they were.
    pub fn expunged(&self, mailbox: MailboxId, uid: Uid) -> Option<(ViewEntry, ContentRecord)> {
        self.graves.find(mailbox, uid)
    }

    /// [`Self::release_graves`] in a background task (holding the user open as other
    /// background work does), when there are graves; a command's answer does not wait for the
    /// store's deletes, which the expunge intent file covers should the process stop first.
    pub fn release_graves_soon(self: &Arc<Self>) {
        if !self.graves.any() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let user = Arc::downgrade(self);
        let gate = self.background.clone();
        rt.spawn(async move {
            let _held = gate.read_owned().await;
            if let Some(user) = user.upgrade() {
                user.release_graves().await;
            }
        });
    }

    /// Deletes the bodies of expunged messages every session has been told of (and whose
    /// content no other message shares), once any release already under way has finished.
    pub async fn release_graves(&self) {
        let _one = self.releasing.lock().await;
        let gone = self.graves.released();
        if gone.is_empty() {
            return;
        }
        // Shared: a migration must not switch a body's location between this snapshot and
        // the deletes.
        let _moving = self.relocating.read().await;
        let Ok(now) = self.snapshot() else { return };
        // Every released grave's body is dealt with: deleted here, or kept by another message.
        let released: Vec<BodyLocation> = gone.iter().map(|g| g.content.location.clone()).collect();
        let mut locations: Vec<BodyLocation> = Vec::new();
        for g in gone {
            // Gone, or its body moved since (a MOVE refiled it, a migration switched it).
            let elsewhere = matches!(
                now.content_parts(&g.content.guid, Parts::default()),
                Ok(c) if c.as_ref().is_none_or(|c| c.location != g.content.location)
            );
            if elsewhere
                && !locations.contains(&g.content.location)
                && !self.graves.holds(&g.content.location)
            {
                locations.push(g.content.location);
            }
        }
        let gone: Vec<BodyLocation> = released.clone();
        match self.delete_bodies(locations).await {
            Ok(()) => {
                if let Err(e) = self.deleted(Some(&gone)) {
                    tracing::warn!(user = %self.name, error = %e, "could not update the expunge intents");
                }
            }
            // The index no longer refers to these bodies; a failed delete leaks space, not
            // mail, and the next reconciliation deletes them.
            Err(e) => {
                tracing::warn!(user = %self.name, error = %e, "could not delete expunged bodies")
            }
        }
    }

    /// Records bodies an expunge is about to give up, before the index lets go of them; the
    /// file lists every body given up and not yet known deleted.
    pub(crate) fn give_up(&self, bodies: Vec<BodyLocation>) -> Result<()> {
        let mut g = self.given_up.lock().unwrap_or_else(|p| p.into_inner());
        for b in bodies {
            if !g.contains(&b) {
                g.push(b);
            }
        }
        write_given_up(&self.expunging, &g)
    }

    /// Forgets bodies now deleted (all of them with `None`).
    pub(crate) fn deleted(&self, bodies: Option<&[BodyLocation]>) -> Result<()> {
        let mut g = self.given_up.lock().unwrap_or_else(|p| p.into_inner());
        match bodies {
            Some(b) => g.retain(|l| !b.contains(l)),
            None => g.clear(),
        }
        write_given_up(&self.expunging, &g)
    }

    /// Bodies an expunge gave up that may still be in the stores (after a crash): a rebuild
    /// from the stores must skip them.
    pub fn given_up(&self) -> Vec<BodyLocation> {
        self.given_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets every body given up: they are deleted (a rebuild did it).
    pub fn forget_given_up(&self) -> Result<()> {
        self.deleted(None)
    }

    fn in_flight_now(&self, keys: Vec<(StoreId, String)>) -> InFlight<'_> {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        set.extend(keys.iter().cloned());
        InFlight { user: self, keys }
    }

    /// The bodies of APPENDs in flight.
    pub(crate) fn in_flight(&self) -> Vec<(StoreId, String)> {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Deletes the bodies of `guids` whose content records are gone from the index.
    async fn release_bodies(&self, before: &Snapshot, guids: Vec<Guid>) {
        let Ok(now) = self.snapshot() else { return };
        let mut gone = Vec::new();
        for g in guids {
            if matches!(now.content(&g), Ok(None))
                && let Ok(Some(c)) = before.content_parts(&g, Parts::default())
            {
                gone.push(c.location);
            }
        }
        if let Err(e) = self.delete_bodies(gone).await {
            // The index no longer refers to these bodies; a failed delete leaks space, not mail.
            tracing::warn!(user = %self.name, error = %e, "could not delete expunged bodies");
        }
    }

    /// Waits until the store holds the index as it is now (at once when it is not shipped).
    pub async fn shipped(&self) -> Result<()> {
        if let Some(s) = &self.shipper {
            s.wait_acked(self.snapshot()?.modseq()).await?;
        }
        Ok(())
    }

    /// With `append_ack = "acked"`, waits until the store holds every change made so far, so
    /// that a command's OK means it survives the node (at once otherwise).
    pub async fn settle(&self) -> Result<()> {
        if self.append_ack == AckPolicy::Acked {
            self.shipped().await?;
        }
        Ok(())
    }

    /// Whether a command's OK waits for the store to hold its change ([`UserStore::settle`]).
    pub fn settles(&self) -> bool {
        self.append_ack == AckPolicy::Acked && self.shipper.is_some()
    }

    /// Why this node may no longer serve the user (another node took it over), once it is so.
    pub fn fenced(&self) -> Option<String> {
        self.shipper.as_ref().and_then(|s| s.progress().fenced)
    }

    /// Follows the shipping progress, to learn of fencing as it happens (`None` when the index
    /// is not shipped).
    pub fn fence_watch(&self) -> Option<tokio::sync::watch::Receiver<crate::ship::Progress>> {
        self.shipper.as_ref().map(Shipper::watch)
    }

    /// How far the index is shipped, when it is.
    pub fn ship_progress(&self) -> Option<crate::ship::Progress> {
        self.shipper.as_ref().map(Shipper::progress)
    }

    /// Deletes bodies, one batch per store; returns once every store has them soft-done. The
    /// shipped index stops naming them first, so a restore never points at a deleted body.
    pub(crate) async fn delete_bodies(&self, locations: Vec<BodyLocation>) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        self.shipped().await?;
        let mut per_store: Vec<(StoreId, Batch)> = Vec::new();
        for loc in locations {
            let key = Key::new(loc.key)?;
            match per_store.iter_mut().find(|(id, _)| *id == loc.store) {
                Some((_, batch)) => *batch = std::mem::take(batch).delete(key),
                None => per_store.push((loc.store, Batch::new().delete(key))),
            }
        }
        for (id, batch) in per_store {
            self.stores.get(id)?.commit(batch).await?;
        }
        Ok(())
    }

    /// Reads bodies (or byte ranges of them) concurrently, answering in request order.
    pub fn bodies(&self, reads: Vec<BodyRead>) -> BoxStream<'_, Result<Bytes>> {
        self.bodies_at_most(reads, self.read_concurrency)
    }

    /// [`Self::bodies`] with at most `at_once` in flight (background work takes fewer), within
    /// [`READ_BUDGET`](crate::READ_BUDGET) bytes (one larger body is read alone), so a FETCH of many large bodies
    /// pins a bounded amount of memory.
    pub(crate) fn bodies_at_most(
        &self,
        reads: Vec<BodyRead>,
        at_once: usize,
    ) -> BoxStream<'_, Result<Bytes>> {
        crate::reads::in_order(self, reads, at_once.clamp(1, self.read_concurrency))
    }

    /// Waits until every body written so far is acked by its store (shutdown).
    pub async fn flush(&self) -> Result<()> {
        // Flushing is bounded by the last receipt issued, so this means "everything so far".
        for (_, b) in self.stores.all() {
            b.flush(u64::MAX).await?;
        }
        self.shipped().await
    }
}

/// The backend folder a mailbox's bodies go to by its path: Maildir++ style (`.Sent`, `.a.b`)
/// when every component is a plain name (starting with a letter or digit), `.=<id>` otherwise,
/// which no plain name can be; INBOX is the root.
fn folder_segment(path: &[String], id: MailboxId) -> String {
    if path.len() == 1 && path[0] == "INBOX" {
        return String::new();
    }
    let plain = path.iter().all(|p| {
        p.len() <= 64
            && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-+=,".contains(&b))
    });
    if plain {
        format!(".{}", path.join("."))
    } else {
        id_folder(id)
    }
}

/// The folder named after a mailbox's id.
fn id_folder(id: MailboxId) -> String {
    format!(".={id}")
}

/// Messages at least this large are parsed on a blocking thread, so that one large APPEND
/// does not hold up the other sessions on its worker; smaller ones cost less than the hand-off.
const PARSE_OFF_THREAD_BYTES: usize = 1 << 20;

/// Parses a message, on a blocking thread when it is large.
async fn parse_off_thread(raw: Bytes) -> (Bytes, strata_index::ParsedMessage) {
    if raw.len() < PARSE_OFF_THREAD_BYTES {
        let parsed = crate::parse(&raw);
        return (raw, parsed);
    }
    match tokio::task::spawn_blocking(move || {
        let parsed = crate::parse(&raw);
        (raw, parsed)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A Maildir-style unique name: seconds, then the GUID, then the host part.
fn body_key(folder: &str, guid: &Guid, date: Timestamp) -> String {
    let unique = format!("{}.G{guid}.strata", date.unix.max(0));
    if folder.is_empty() {
        unique
    } else {
        format!("{folder}/{unique}")
    }
}

/// Writes the expunge intent file; a body's content id is not needed to delete it.
fn write_given_up(path: &std::path::Path, bodies: &[BodyLocation]) -> Result<()> {
    let listed: Vec<(Guid, BodyLocation)> =
        bodies.iter().map(|b| (Guid([0; 16]), b.clone())).collect();
    crate::intents::write(path, &listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_follow_maildir_plus_plus_when_they_can() {
        let id = MailboxId(7);
        assert_eq!(folder_segment(&["INBOX".into()], id), "");
        assert_eq!(folder_segment(&["Sent".into()], id), ".Sent");
        assert_eq!(folder_segment(&["a".into(), "b".into()], id), ".a.b");
        assert_eq!(folder_segment(&["x y".into()], id), ".=7");
        assert_eq!(folder_segment(&["a.b".into()], id), ".=7");
        // No plain name can be another mailbox's id folder.
        assert_eq!(folder_segment(&["=7".into()], MailboxId(8)), ".=8");
        assert_eq!(folder_segment(&["m7".into()], MailboxId(8)), ".m7");
        let k = body_key(
            ".Sent",
            &Guid([1; 16]),
            Timestamp {
                unix: 5,
                offset_minutes: 0,
            },
        );
        assert!(Key::new(k).is_ok());
    }
}
