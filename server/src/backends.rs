//! Wiring the configured stores to the mail store. A store shared by every user (SQL, S3) is
//! connected at start, wrapped in the delay backend when the configuration injects latency, in
//! the layers its configuration names (encryption, compression, single-instance parts), and
//! put behind its staging journal; each user sees it under a prefix of their name. A Maildir
//! store is every user's Maildir as one store too (`MaildirTree`), behind the journal when it
//! is configured, so a delivery to many users is one batch and one file. Every user gets every
//! configured store, keyed by its id, so bodies are read wherever the index says they are while
//! new ones go to the main store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_backend_api::{Backend, BackendError, ErrorKind, Key, Prefixed};
use strata_backend_cache::{CacheBackend, CacheOptions, CacheStats};
use strata_backend_compress::{CompressBackend, CompressOptions};
use strata_backend_delay::{DelayBackend, DelayConfig, DelayStats, Latency};
use strata_backend_encrypt::{EncryptBackend, Keyring};
use strata_backend_files::FilesBackend;
use strata_backend_journal::{Journal, JournalOptions, JournalStats};
use strata_backend_maildir::MaildirTree;
use strata_backend_s3::{S3Backend, S3Options};
use strata_backend_sis::{SisBackend, SisOptions};
use strata_backend_sql::{SqlBackend, SqlOptions};
use strata_config::{Backend as BackendConfig, Delay, S3, Storage, Store};
use strata_index::StoreId;
use strata_mailstore::{BackendFactory, BodyStores};

/// A backend wrapped in injected latency.
type Delayed = Arc<DelayBackend<Arc<dyn Backend>>>;

/// One configured store, connected.
struct Connected {
    cfg: Store,
    /// The store every user shares (SQL, S3), each under a prefix of their name.
    shared: Option<Arc<dyn Backend>>,
    /// The journal in front of the shared store, when there is one.
    journal: Option<Arc<Journal>>,
    /// The single-instance layer, when configured: what collection runs on.
    parts: Option<Arc<SisBackend>>,
    /// The read cache in front of it, when configured, and its bound.
    cache: Option<(Arc<CacheBackend>, u64)>,
}

/// The configured stores, and each user's view of them opened so far.
#[derive(Default)]
pub struct Backends {
    stores: Vec<Connected>,
    /// Where indexes are shipped when not to the main store (`[index.ship] dir`).
    index_store: Option<Arc<dyn Backend>>,
    open: Mutex<HashMap<String, BodyStores>>,
    delayed: Mutex<Vec<Delayed>>,
    /// Tiering, when configured.
    tierer: Option<Arc<crate::tiering::Tierer>>,
}

/// The S3 backend's options from the configuration.
pub fn s3_options(c: &S3) -> S3Options {
    let mut o = S3Options::new(c.bucket.clone());
    o.endpoint = c.endpoint.clone();
    o.prefix = c.prefix.clone();
    o.region = c.region.clone();
    if let Some((ak, sk)) = &c.credentials {
        o.access_key = Some(ak.clone());
        o.secret_key = Some(sk.0.clone());
    }
    o.path_style = c.path_style;
    o.max_requests = c.max_requests as usize;
    o.attempts = c.attempts;
    o.connect_timeout = c.connect_timeout;
    o.request_timeout = c.request_timeout;
    o
}

/// Connects a store every user shares (none for Maildir): a wrong URL, wrong credentials,
/// a missing bucket or an unreachable server are errors here.
pub async fn reach(store: &Store) -> Result<Option<Arc<dyn Backend>>, BackendError> {
    match reach_raw(store).await? {
        Some(reached) => {
            layers_kept(&reached, store).await?;
            let stored = compressed(encrypted(reached, store)?, store);
            let stored = single_instance(stored, store).0;
            Ok(Some(stored))
        }
        None => Ok(None),
    }
}

/// `store` in the encryption its configuration asks for, if any (never a Maildir, as for
/// compression), with its keyring read; an error names the keyring file.
pub fn encrypted(store: Arc<dyn Backend>, cfg: &Store) -> Result<Arc<dyn Backend>, BackendError> {
    let Some(e) = &cfg.encryption else {
        return Ok(store);
    };
    if matches!(cfg.backend, BackendConfig::Maildir { .. }) {
        return Ok(store);
    }
    let fail = |why: String| {
        BackendError::new(
            "encryption",
            ErrorKind::Io,
            format!("keyring {}: {why}", e.keys.display()),
        )
    };
    let text = std::fs::read_to_string(&e.keys).map_err(|err| fail(err.to_string()))?;
    let keys = Keyring::parse(&text, e.key_id).map_err(fail)?;
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(&e.keys)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            keyring = %e.keys.display(),
            "the keyring can be read by others than its owner: chmod 600 it"
        );
    }
    Ok(Arc::new(EncryptBackend::new(store, keys)))
}

/// `store` in the compression its configuration asks for, if any. Never a Maildir: other mail
/// programs, and a rebuild of the index, read its files as they are (the configuration
/// refuses it).
pub fn compressed(store: Arc<dyn Backend>, cfg: &Store) -> Arc<dyn Backend> {
    match cfg.compression {
        Some(_) if matches!(cfg.backend, BackendConfig::Maildir { .. }) => store,
        None => store,
        Some(c) => Arc::new(CompressBackend::new(
            store,
            CompressOptions {
                level: c.level,
                frame_size: c.frame_bytes,
            },
        )),
    }
}

/// `store` with the large parts of messages stored once, if its configuration asks (never a
/// Maildir, which the configuration refuses), and the layer itself for collection. It goes in
/// front of compression and encryption, which then work on skeletons and parts alike.
pub fn single_instance(
    store: Arc<dyn Backend>,
    cfg: &Store,
) -> (Arc<dyn Backend>, Option<Arc<SisBackend>>) {
    match cfg.single_instance {
        Some(_) if matches!(cfg.backend, BackendConfig::Maildir { .. }) => (store, None),
        None => (store, None),
        Some(si) => {
            let opts = SisOptions::new(si.min_part as usize, si.grace);
            let split = Arc::new(message_parts);
            let sis = Arc::new(SisBackend::new(store, split, opts));
            (sis.clone(), Some(sis))
        }
    }
}

/// Whether a shared store's key (`USER/KEY`) is an object of a user's shipped index, which
/// is not mail: its heads change under one key.
fn is_index_object(key: &Key) -> bool {
    let own = key
        .as_str()
        .split_once('/')
        .map_or(key.as_str(), |(_, k)| k);
    strata_mailstore::ship::chain::is_index_key(own)
}

/// The parts of a message stored apart: each MIME leaf's body; none of a user's shipped index,
/// which is not mail (keys are `USER/KEY` below each user's prefix).
pub fn message_parts(key: &Key, data: &[u8]) -> Vec<std::ops::Range<usize>> {
    if is_index_object(key) {
        return Vec::new();
    }
    strata_mailstore::mime::leaf_bodies(data)
}

/// The layers whose objects cannot be read without them: the object a store holding such
/// objects is marked with (empty, in the store itself, below every layer), and the table that
/// configures the layer.
const KEPT_LAYERS: [(&str, &str); 3] = [
    (".sis/in-use", "single_instance"),
    (".layers/compression", "compression"),
    (".layers/encryption", "encryption"),
];

/// A store is marked with each layer it is configured with, and must not be opened without a
/// layer it is marked with: its skeletons, frames or sealed objects would be answered as mail.
/// `raw` is the store below every layer.
async fn layers_kept(raw: &Arc<dyn Backend>, cfg: &Store) -> Result<(), BackendError> {
    if matches!(cfg.backend, BackendConfig::Maildir { .. }) {
        return Ok(());
    }
    let mut marks = strata_backend_api::Batch::new();
    for (mark, table) in KEPT_LAYERS {
        let configured = match table {
            "single_instance" => cfg.single_instance.is_some(),
            "compression" => cfg.compression.is_some(),
            _ => cfg.encryption.is_some(),
        };
        let key = Key::new(mark).expect("a valid key");
        let marked = match raw.size(&key).await {
            Ok(_) => true,
            Err(e) if e.kind == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        match (configured, marked) {
            (true, false) => marks = marks.put(key, bytes::Bytes::new()),
            (false, true) => {
                return Err(BackendError::new(
                    "server",
                    ErrorKind::Unsupported,
                    format!(
                        "it holds messages stored with {table}, which cannot be read without \
                         it: put the {table} table back (strata migrate can then move the mail \
                         to a store without it)"
                    ),
                ));
            }
            _ => {}
        }
    }
    if marks.ops.is_empty() {
        return Ok(());
    }
    raw.commit(marks).await?.acked().await
}

/// The store as it is, without the layers its configuration names and without checking their
/// marks: what it holds, byte for byte, to look at (tests and tools), never to read mail from.
pub async fn reach_raw(store: &Store) -> Result<Option<Arc<dyn Backend>>, BackendError> {
    Ok(match &store.backend {
        BackendConfig::Maildir { .. } => None,
        BackendConfig::Sql {
            url,
            max_connections,
            chunk_bytes,
            connect_timeout,
        } => {
            let opts = SqlOptions {
                url: url.clone(),
                max_connections: *max_connections,
                chunk_bytes: *chunk_bytes as usize,
                connect_timeout: *connect_timeout,
            };
            Some(Arc::new(SqlBackend::connect(&opts).await?))
        }
        BackendConfig::S3(c) => Some(Arc::new(S3Backend::connect(&s3_options(c)).await?)),
    })
}

fn delay_config(d: &Delay) -> DelayConfig {
    DelayConfig {
        seed: d.seed,
        read: Latency {
            fixed: d.read,
            jitter: d.read_jitter,
        },
        write: Latency {
            fixed: d.write,
            jitter: d.write_jitter,
        },
        error_rate: d.error_rate,
        stall_rate: d.stall_rate,
        stall: d.stall,
        ack: Latency {
            fixed: d.ack,
            jitter: d.ack_jitter,
        },
        ..DelayConfig::default()
    }
}

impl Backends {
    /// Connects every shared store and opens the journal in front of each (uploading whatever
    /// a previous run left unacked). An error names the store.
    pub async fn connect(storage: &Storage) -> Result<Backends, BackendError> {
        let mut backends = Backends::default();
        for cfg in storage.stores() {
            let mut connected = backends.connect_one(cfg).await.map_err(|mut e| {
                e.message = format!("store {:?}: {}", cfg.name, e.message);
                e
            })?;
            if let Some(c) = &storage.cache
                && c.stores.contains(&cfg.name)
                && let Some(shared) = connected.shared.take()
            {
                // The bound is shared out evenly among the stores it caches.
                let max_bytes = c.size / c.stores.len().max(1) as u64;
                let mut opts = CacheOptions::new(c.dir.join(&cfg.name), max_bytes);
                opts.cacheable = Arc::new(|key: &Key| !is_index_object(key));
                let cache = Arc::new(CacheBackend::open(shared, opts).map_err(|mut e| {
                    e.message = format!("store {:?}: {}", cfg.name, e.message);
                    e
                })?);
                connected.shared = Some(cache.clone());
                connected.cache = Some((cache, max_bytes));
            }
            backends.stores.push(connected);
        }
        backends.tierer = crate::tiering::Tierer::new(storage, &backends).map(Arc::new);
        Ok(backends)
    }

    /// Tiering, when configured.
    pub fn tierer(&self) -> Option<Arc<crate::tiering::Tierer>> {
        self.tierer.clone()
    }

    /// Each read cache, by the name of the store it caches: what it holds and has done, and
    /// its bound.
    pub fn caches(&self) -> Vec<(String, CacheStats, u64)> {
        self.stores
            .iter()
            .filter_map(|s| {
                let (c, max) = s.cache.as_ref()?;
                Some((s.cfg.name.clone(), c.stats(), *max))
            })
            .collect()
    }

    /// The name of the store with id `id`.
    pub fn store_name(&self, id: StoreId) -> Option<String> {
        self.stores
            .iter()
            .find(|s| s.cfg.id == id.0)
            .map(|s| s.cfg.name.clone())
    }

    /// Connects as [`Backends::connect`], and opens the directory indexes are shipped to
    /// when the configuration names one.
    pub async fn connect_all(cfg: &strata_config::Config) -> Result<Backends, BackendError> {
        let mut backends = Self::connect(&cfg.storage).await?;
        if cfg.index.ship.enabled
            && let Some(dir) = &cfg.index.ship.dir
        {
            let files = FilesBackend::open(dir).map_err(|mut e| {
                e.message = format!("index.ship.dir: {}", e.message);
                e
            })?;
            backends.index_store = Some(Arc::new(files));
        }
        Ok(backends)
    }

    async fn connect_one(&self, cfg: &Store) -> Result<Connected, BackendError> {
        let mut connected = Connected {
            cfg: cfg.clone(),
            shared: None,
            journal: None,
            parts: None,
            cache: None,
        };
        let store = match (&cfg.backend, cfg.journal.enabled) {
            // Every user's Maildir as one store: behind the journal, and so that a message
            // delivered to many users is one file (a copy between users is a hard link).
            (BackendConfig::Maildir { root }, _) => Arc::new(MaildirTree::open(root)?),
            _ => match reach_raw(cfg).await? {
                Some(store) => store,
                None => return Ok(connected),
            },
        };
        layers_kept(&store, cfg).await?;
        // Compressed, then encrypted (sealed bytes do not compress), in front of the store's
        // latency and metering (what they see is what the store keeps), behind the journal
        // (which keeps bodies as they are on this node's disk, to read recent ones fast).
        let store = compressed(
            encrypted(
                crate::metered::Metered::wrap(self.delayed(store, cfg.delay.as_ref()), &cfg.name),
                cfg,
            )?,
            cfg,
        );
        // Parts stored once above both, so each part is compressed and sealed like a body.
        let (store, parts) = single_instance(store, cfg);
        connected.parts = parts;
        if cfg.journal.enabled {
            let j = &cfg.journal;
            let opts = JournalOptions {
                dir: j.dir.clone(),
                max_bytes: j.max_bytes,
                segment_bytes: j.segment_bytes,
                uploads: j.uploads as usize,
            };
            let journal = Arc::new(Journal::open(store, opts).await?);
            connected.shared = Some(journal.clone());
            connected.journal = Some(journal);
        } else {
            connected.shared = Some(store);
        }
        Ok(connected)
    }

    /// `store` in the configured latency injection, if any (kept for its statistics).
    fn delayed(&self, store: Arc<dyn Backend>, delay: Option<&Delay>) -> Arc<dyn Backend> {
        match delay {
            None => store,
            Some(d) => {
                let delayed = Arc::new(DelayBackend::new(store, delay_config(d)));
                self.delayed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(delayed.clone());
                delayed
            }
        }
    }

    /// Each store whose large parts are stored once, by name, with its configuration.
    pub fn single_instance(&self) -> Vec<(String, Arc<SisBackend>, strata_config::SingleInstance)> {
        self.stores
            .iter()
            .filter_map(|s| Some((s.cfg.name.clone(), s.parts.clone()?, s.cfg.single_instance?)))
            .collect()
    }

    /// The main store as every user shares it (behind its journal), when it is shared (SQL, S3).
    pub fn shared_main(&self) -> Option<Arc<dyn Backend>> {
        self.stores.first().and_then(|s| s.shared.clone())
    }

    /// The directory indexes are shipped to (`[index.ship] dir`), when one is set.
    pub fn index_store(&self) -> Option<Arc<dyn Backend>> {
        self.index_store.clone()
    }

    /// The main store's journal lag and totals, when it has a journal.
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.stores
            .first()
            .and_then(|s| s.journal.as_ref())
            .map(|j| j.stats())
    }

    /// Waits until every journal has written all it holds to its store.
    pub async fn drain_journals(&self) -> Result<(), BackendError> {
        for s in &self.stores {
            if let Some(j) = &s.journal {
                j.flush(u64::MAX).await?;
            }
        }
        Ok(())
    }

    /// Every journal's lag, by store name.
    pub fn journals(&self) -> Vec<(String, JournalStats)> {
        self.stores
            .iter()
            .filter_map(|s| Some((s.cfg.name.clone(), s.journal.as_ref()?.stats())))
            .collect()
    }

    /// Whether each store answers now, by name: each is asked the size of an object that does
    /// not exist (any answer is fine; unreachable, failing or silent is not), within `within`,
    /// and a Maildir's root must be a directory it can make.
    pub async fn health(&self, within: std::time::Duration) -> Vec<(String, Result<(), String>)> {
        let probe = Key::new(".health-probe").expect("a valid key");
        let mut out = Vec::with_capacity(self.stores.len());
        for s in &self.stores {
            // A Maildir's root must be a directory it can make (made at the first delivery
            // otherwise).
            let root = match &s.cfg.backend {
                BackendConfig::Maildir { root } => {
                    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))
                }
                _ => Ok(()),
            };
            let answer = match (root, &s.shared) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(store)) => {
                    match tokio::time::timeout(within, store.size(&probe)).await {
                        // Any answer but a failure to reach or write it: a store that refuses
                        // the probe's key has answered.
                        Ok(Err(e))
                            if matches!(
                                e.kind,
                                ErrorKind::Unavailable | ErrorKind::Io | ErrorKind::Poisoned
                            ) =>
                        {
                            Err(e.to_string())
                        }
                        Ok(_) => Ok(()),
                        Err(_) => Err(format!("no answer within {within:?}")),
                    }
                }
                (Ok(()), None) => Err("not connected".to_string()),
            };
            out.push((s.cfg.name.clone(), answer));
        }
        out
    }

    /// The id of the store called `name`.
    pub fn store_id(&self, name: &str) -> Option<StoreId> {
        self.stores
            .iter()
            .find(|s| s.cfg.name == name)
            .map(|s| StoreId(s.cfg.id))
    }

    /// The configured stores' names, the main one first.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.iter().map(|s| s.cfg.name.clone()).collect()
    }

    /// The factory the mail store calls at each user's first login.
    pub fn factory(self: &Arc<Self>) -> BackendFactory {
        let me = self.clone();
        Arc::new(move |user: &str| me.open(user))
    }

    fn open(&self, user: &str) -> Result<BodyStores, BackendError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = open.get(user) {
            return Ok(b.clone());
        }
        if crate::users::check_name(user).is_err() {
            return Err(BackendError::new(
                "server",
                ErrorKind::InvalidKey,
                format!("bad user name {user:?}"),
            ));
        }
        let mut views = Vec::with_capacity(self.stores.len());
        for s in &self.stores {
            let Some(shared) = &s.shared else {
                return Err(BackendError::new(
                    "server",
                    ErrorKind::Unavailable,
                    format!("store {:?} was not connected at start", s.cfg.name),
                ));
            };
            views.push((
                StoreId(s.cfg.id),
                Arc::new(Prefixed::new(shared.clone(), user)?),
            ));
        }
        let mut views = views.into_iter();
        let (main, view) = views.next().ok_or_else(|| {
            BackendError::new("server", ErrorKind::Unavailable, "no store is configured")
        })?;
        let mut stores = views.fold(BodyStores::shared(main, view), |b, (id, v)| {
            b.with(id, v as Arc<dyn Backend>)
        });
        if let Some(shared) = &self.index_store {
            stores = stores.with_index_store(Arc::new(Prefixed::new(shared.clone(), user)?));
        }
        open.insert(user.to_string(), stores.clone());
        Ok(stores)
    }

    /// Makes every delay-wrapped store fail each operation with this probability from now on
    /// (1.0: the store is down; 0.0: it is back), for the latency harness and its tests.
    pub fn set_error_rate(&self, rate: f64) {
        for d in self
            .delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            d.set_error_rate(rate);
        }
    }

    /// What the delay backends have seen, summed (reads and commits) and maximised (reads in
    /// flight), for the latency harness and its tests.
    pub fn delay_stats(&self) -> DelayStats {
        let mut total = DelayStats::default();
        for d in self
            .delayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let s = d.stats();
            total.reads += s.reads;
            total.commits += s.commits;
            total.errors += s.errors;
            total.stalls += s.stalls;
            total.bytes_read += s.bytes_read;
            total.max_reads_in_flight = total.max_reads_in_flight.max(s.max_reads_in_flight);
        }
        total
    }

    /// Removes what interrupted writes left in every shared store (a Maildir tree's `tmp/`
    /// files) if older than `older_than`; per-user stores are cleaned through their users.
    pub async fn clean_shared(&self, older_than: std::time::Duration) -> u64 {
        let mut removed = 0;
        for s in &self.stores {
            let Some(store) = &s.shared else { continue };
            match store.clean_partial(older_than).await {
                Ok(n) => removed += n,
                Err(e) => {
                    tracing::warn!(store = s.cfg.name, error = %e, "could not clean partial writes")
                }
            }
        }
        removed
    }

    /// Every backend opened, to flush at shutdown.
    pub fn all(&self) -> Vec<Arc<dyn Backend>> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|b| b.all().map(|(_, b)| b.clone()).collect::<Vec<_>>())
            .collect()
    }
}
