//! The typed configuration the server runs on, with its embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where indexes, mail, TLS material and the user database live.
    pub data_dir: PathBuf,
    /// IMAP listeners and limits.
    pub imap: Imap,
    /// Certificates.
    pub tls: Tls,
    /// Where bodies are stored, and when APPEND answers.
    pub storage: Storage,
    /// The per-user index.
    pub index: Index,
    /// Where accounts live.
    pub auth: Auth,
    /// Logging.
    pub log: Log,
    /// LMTP delivery.
    pub lmtp: Lmtp,
    /// Every user's quota unless their account sets its own.
    pub quota: Quota,
    /// The metrics endpoint.
    pub metrics: Metrics,
}

/// Quota limits (RFC 9208) of every account that sets none of its own (`[quota]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Octets of mail; `None`: no limit.
    pub storage: Option<u64>,
    /// Messages; `None`: no limit.
    pub messages: Option<u64>,
}

/// LMTP (RFC 2033), for a mail server to deliver into (`[lmtp]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lmtp {
    /// A TCP listener; `None` disables it.
    pub listen: Option<SocketAddr>,
    /// A Unix socket path; `None` disables it.
    pub socket: Option<PathBuf>,
    /// The name given in the greeting and the LHLO answer.
    pub hostname: String,
    /// Recipient domains mail is accepted for (lowercase); empty: any.
    pub domains: Vec<String>,
    /// What separates a local part from its detail (`alice+lists@`); `None`: no details.
    pub detail_delimiter: Option<char>,
    /// `user+detail@` is filed into the mailbox `detail` when it exists.
    pub detail_mailbox: bool,
    /// Largest message, in bytes.
    pub max_message_bytes: u64,
    /// Recipients in one transaction.
    pub max_recipients: u32,
    /// LMTP connections at once.
    pub max_connections: u32,
    /// How long a client may take to send a command or the next part of a message.
    pub timeout: Duration,
}

/// Where accounts (names and password hashes) live (`[auth]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountsIn {
    /// The file `<data_dir>/users`, on this node.
    File,
    /// Objects in the main store (SQL or S3), shared by every node that uses it.
    Store,
}

/// Accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Where they live.
    pub backend: AccountsIn,
    /// Users whose last successful login is remembered (a keyed hash, never the password).
    pub cache_entries: u32,
    /// How long one is remembered; zero turns the cache off.
    pub cache_ttl: Duration,
}

/// When LOGIN and AUTHENTICATE PLAIN are allowed on a connection without TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaintextAuth {
    /// Never: clients must use STARTTLS or implicit TLS first.
    Never,
    /// Only from loopback addresses (local tools, tests).
    Loopback,
    /// Always (only behind a trusted network).
    Always,
}

/// IMAP listeners and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imap {
    /// Plain IMAP with STARTTLS; `None` disables it.
    pub starttls: Option<SocketAddr>,
    /// Implicit TLS (IMAPS); `None` disables it.
    pub tls: Option<SocketAddr>,
    /// Plaintext authentication policy.
    pub plaintext_auth: PlaintextAuth,
    /// Connections at once, in total.
    pub max_connections: u32,
    /// Connections at once from one IP address.
    pub max_connections_per_ip: u32,
    /// Longest command line, in bytes (without literals).
    pub max_command_bytes: u32,
    /// Largest literal, in bytes: bigger APPENDs are refused with `[TOOBIG]`.
    pub max_literal_bytes: u64,
    /// Longest command line before login: what a client that has not logged in may make the
    /// server hold.
    pub max_command_bytes_before_login: u32,
    /// Largest literal before login (a user name or a password).
    pub max_literal_bytes_before_login: u32,
    /// How long a connection has to log in, from when it was accepted.
    pub login_timeout: Duration,
    /// How long a command may take to arrive once it has begun (plus a second per 64 KiB of
    /// literal it announces).
    pub command_timeout: Duration,
    /// How long a logged-in connection may stay idle (IDLE excepted, as RFC 2177 allows).
    pub idle_timeout: Duration,
    /// Delay before answering a failed login.
    pub failed_login_delay: Duration,
    /// Failed logins from one IP address per minute before it is refused for a minute.
    pub max_failed_logins_per_ip: u32,
    /// Failed logins for one account name per minute, from anywhere, before logins to it are
    /// refused for a minute.
    pub max_failed_logins_per_account: u32,
    /// Password checks in progress at once for one IP address.
    pub max_login_checks_per_ip: u32,
}

/// Certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// A self-signed certificate generated on first start under `data_dir/tls` and reused.
    SelfSigned,
    /// A PEM certificate chain and its private key.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// Which store holds bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A Maildir++ tree per user under `root`.
    Maildir {
        /// The directory holding one Maildir per user.
        root: PathBuf,
    },
    /// One SQL database (SQLite, PostgreSQL, MySQL/MariaDB) for every user's bodies.
    Sql {
        /// `sqlite:/path`, `postgres://user:pass@host/db`, `mysql://user@host/db`.
        url: String,
        /// Connections in the pool.
        max_connections: u32,
        /// Largest row of body bytes, in bytes.
        chunk_bytes: u64,
        /// How long connecting may take.
        connect_timeout: Duration,
    },
    /// One bucket of an S3-compatible store for every user's bodies, behind the journal.
    S3(S3),
}

/// An S3-compatible store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3 {
    /// Endpoint URL; `None`: AWS itself.
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    pub bucket: String,
    /// Prepended to every object key; empty or ending in `/`.
    pub prefix: String,
    /// Region; `None`: from the AWS environment, else `us-east-1`.
    pub region: Option<String>,
    /// Access key id and secret; `None`: the AWS environment's credentials.
    pub credentials: Option<(String, Secret)>,
    /// Path-style URLs (most self-hosted stores need them).
    pub path_style: bool,
    /// Requests in flight at once.
    pub max_requests: u32,
    /// Attempts per request.
    pub attempts: u32,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for one attempt of one request.
    pub request_timeout: Duration,
}

/// A value kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// The staging journal in front of a slow store (SQL, S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    /// Whether commits go through it (always for S3).
    pub enabled: bool,
    /// Its directory.
    pub dir: PathBuf,
    /// Bytes soft-done but not yet acked beyond which commits wait.
    pub max_bytes: u64,
    /// Segment file size.
    pub segment_bytes: u64,
    /// Batches uploaded at once.
    pub uploads: u32,
}

/// When APPEND answers OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAck {
    /// Once the message is durable locally and readable (soft-done).
    SoftDone,
    /// Once the authoritative store confirmed it (acked).
    Acked,
}

/// Latency and fault injection around the backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Delay {
    /// Seed of the generator.
    pub seed: u64,
    /// Read latency.
    pub read: Duration,
    /// Up to this much more read latency.
    pub read_jitter: Duration,
    /// Write latency.
    pub write: Duration,
    /// Up to this much more write latency.
    pub write_jitter: Duration,
    /// Share of operations that fail (0 to 1).
    pub error_rate: f64,
    /// Share of operations that stall (0 to 1).
    pub stall_rate: f64,
    /// Length of a stall.
    pub stall: Duration,
    /// Extra time before a commit is acked (soft-done is not delayed).
    pub ack: Duration,
    /// Up to this much more ack delay.
    pub ack_jitter: Duration,
}

/// One body store: a backend, with its latency injection and journal. Every body's location
/// in the index names its store by `id`, so an id never changes meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    /// Its name (`main` by default for `[storage]`, the table's key for `[stores.NAME]`).
    pub name: String,
    /// The id the index records for bodies in it.
    pub id: u16,
    /// The backend.
    pub backend: Backend,
    /// Injected latency and faults, if configured (around the store, behind the journal).
    pub delay: Option<Delay>,
    /// Compression of what the store keeps, if configured (`[storage.compression]`).
    pub compression: Option<Compression>,
    /// Encryption of what the store keeps, if configured (`[storage.encryption]`).
    pub encryption: Option<Encryption>,
    /// Large parts stored once, if configured (`[storage.single_instance]`).
    pub single_instance: Option<SingleInstance>,
    /// The staging journal.
    pub journal: Journal,
}

/// Encryption at rest (`[storage.encryption]`, `[stores.NAME.encryption]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    /// The keyring file: `ID:BASE64` lines of 32-byte keys.
    pub keys: PathBuf,
    /// The key new objects are sealed with; the highest id when `None`.
    pub key_id: Option<u32>,
}

/// Single-instance parts (`[storage.single_instance]`, `[stores.NAME.single_instance]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SingleInstance {
    /// Parts of at least this many bytes are stored once.
    pub min_part: u64,
    /// How long a part nothing refers to is kept before it is deleted.
    pub grace: Duration,
    /// How often this node collects parts nothing refers to.
    pub collect_interval: Duration,
}

impl Default for SingleInstance {
    fn default() -> Self {
        SingleInstance {
            min_part: 32 << 10,
            grace: Duration::from_secs(24 * 3600),
            collect_interval: Duration::from_secs(3600),
        }
    }
}

/// zstd compression at rest (`[storage.compression]`, `[stores.NAME.compression]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// zstd level, 1 to 19.
    pub level: i32,
    /// Original bytes per independently decodable frame.
    pub frame_bytes: u32,
}

/// Where bodies are stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// The store new bodies go to (`[storage]`).
    pub main: Store,
    /// Other stores that still hold bodies (`[stores.NAME]`): read from, and sources or
    /// targets of `strata migrate`.
    pub others: Vec<Store>,
    /// When APPEND answers.
    pub append_ack: AppendAck,
    /// Body reads in flight at once for one FETCH.
    pub read_concurrency: u32,
    /// How often each user's stores are reconciled with their index (bodies nothing names are
    /// deleted); they are also reconciled at start. Zero: only at start.
    pub reconcile_interval: Duration,
    /// Cold bodies moved from the main store to another, if configured (`[storage.tiering]`).
    pub tiering: Option<Tiering>,
    /// The local read cache of slow stores, if configured (`[storage.cache]`).
    pub cache: Option<Cache>,
}

/// Tiering (`[storage.tiering]`): bodies the rules make cold, moved from the main store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiering {
    /// The store cold bodies go to (a `[stores.NAME]`).
    pub to: String,
    /// How often this node looks for cold bodies; the first run is one interval after start.
    pub interval: Duration,
    /// The most bytes moved per second, all users together; `None`: as fast as they go.
    pub rate: Option<u64>,
    /// The date ages are counted from.
    pub date: TierDate,
    /// A message is cold when any rule says so.
    pub rules: Vec<TierRule>,
}

/// The date a tiering rule's age is counted from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TierDate {
    /// SAVEDATE: when the message was saved in its mailbox.
    #[default]
    Saved,
    /// INTERNALDATE.
    Internal,
}

/// One tiering rule (`[[storage.tiering.rule]]`): every condition it sets must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierRule {
    /// At least this old.
    pub older_than: Option<Duration>,
    /// Filed in one of these mailboxes, or below one.
    pub mailboxes: Vec<String>,
    /// At least this many bytes.
    pub larger_than: Option<u64>,
}

/// The local read cache (`[storage.cache]`): whole bodies read from slow stores, kept on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    /// Its directory.
    pub dir: PathBuf,
    /// The most bytes it keeps.
    pub size: u64,
    /// The stores whose reads it keeps, by name.
    pub stores: Vec<String>,
}

impl Storage {
    /// Every store, the main one first.
    pub fn stores(&self) -> impl Iterator<Item = &Store> {
        std::iter::once(&self.main).chain(&self.others)
    }

    /// The store called `name`.
    pub fn named(&self, name: &str) -> Option<&Store> {
        self.stores().find(|s| s.name == name)
    }
}

/// The per-user index.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    /// How long the writer may wait for more flag changes to share an fsync.
    pub group_commit_window: Duration,
    /// How long a flag change may stay unfsynced after it is answered (zero: fsynced before
    /// the answer). Messages and mailboxes are always fsynced first.
    pub flag_sync_delay: Duration,
    /// Page cache per open index, in bytes.
    pub cache_bytes: u64,
    /// Repack a user's index when its file takes more than this many times its live data.
    pub repack_ratio: f64,
    /// Change-log entries kept at repack (for QRESYNC and backups).
    pub log_retention: u64,
    /// Shipping each user's index to the main store.
    pub ship: Ship,
    /// Each user's full-text index.
    pub fts: Fts,
}

/// Each user's full-text index, which SEARCH BODY and TEXT answer from (`[index.fts]`). It is a
/// cache under `<data_dir>/fts`, rebuilt from the index and the stores whenever it is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fts {
    /// Whether it is kept (off: SEARCH BODY and TEXT read bodies from the store).
    pub enabled: bool,
    /// The indexing buffer of the one full-text writer open at a time, in bytes.
    pub writer_memory_bytes: u64,
}

/// Shipping each user's index to its main store as a chain of objects (a base and diffs), so
/// that a node's loss loses no mail state (`[index.ship]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Ship {
    /// Whether indexes are shipped (by default: when the main store is SQL or S3, or `dir` is
    /// set).
    pub enabled: bool,
    /// Ships to this directory (a disk other than the node's, or a shared file system)
    /// instead of the main store: how a Maildir deployment ships its indexes.
    pub dir: Option<std::path::PathBuf>,
    /// The longest a committed change waits before it is shipped.
    pub max_lag: Duration,
    /// Changes after which a diff is shipped at once.
    pub max_changes: u64,
    /// A new base is shipped when the diffs since the last one exceed this fraction of it.
    pub compact_ratio: f64,
    /// A new base is shipped after this many diffs in any case.
    pub max_diffs: u64,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// A tracing filter: `info`, `debug`, `strata=debug,info`...
    pub level: String,
    /// How each line is written.
    pub format: LogFormat,
}

/// How log lines are written (`[log] format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For a person reading a terminal or a journal.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// The metrics and health endpoint (`[metrics]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Where `/metrics` and `/health` are served over HTTP; `None`: nowhere.
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    /// The embedded defaults: `strata serve` with no configuration file runs on these.
    fn default() -> Self {
        let data_dir = PathBuf::from("./strata-data");
        Config {
            imap: Imap {
                starttls: Some(SocketAddr::from(([127, 0, 0, 1], 1143))),
                tls: Some(SocketAddr::from(([127, 0, 0, 1], 1993))),
                plaintext_auth: PlaintextAuth::Loopback,
                max_connections: 1000,
                max_connections_per_ip: 50,
                max_command_bytes: 64 * 1024,
                max_literal_bytes: 64 << 20,
                max_command_bytes_before_login: 8 * 1024,
                max_literal_bytes_before_login: 8 * 1024,
                login_timeout: Duration::from_secs(60),
                command_timeout: Duration::from_secs(120),
                idle_timeout: Duration::from_secs(30 * 60),
                failed_login_delay: Duration::from_secs(2),
                max_failed_logins_per_ip: 10,
                max_failed_logins_per_account: 20,
                max_login_checks_per_ip: 2,
            },
            tls: Tls::SelfSigned,
            storage: Storage {
                main: Store {
                    name: "main".into(),
                    id: 0,
                    backend: Backend::Maildir {
                        root: data_dir.join("mail"),
                    },
                    delay: None,
                    compression: None,
                    single_instance: None,
                    encryption: None,
                    journal: Journal {
                        enabled: false,
                        dir: data_dir.join("journal"),
                        max_bytes: 1 << 30,
                        segment_bytes: 64 << 20,
                        uploads: 32,
                    },
                },
                others: Vec::new(),
                append_ack: AppendAck::SoftDone,
                read_concurrency: 32,
                reconcile_interval: Duration::from_secs(6 * 3600),
                tiering: None,
                cache: None,
            },
            index: Index {
                group_commit_window: Duration::ZERO,
                flag_sync_delay: Duration::from_millis(100),
                cache_bytes: 64 << 20,
                repack_ratio: 2.0,
                log_retention: 1_000_000,
                ship: Ship {
                    enabled: false,
                    dir: None,
                    max_lag: Duration::from_secs(1),
                    max_changes: 256,
                    compact_ratio: 0.5,
                    max_diffs: 256,
                },
                fts: Fts {
                    enabled: true,
                    writer_memory_bytes: 16 << 20,
                },
            },
            auth: Auth {
                backend: AccountsIn::File,
                cache_entries: 10_000,
                cache_ttl: Duration::from_secs(300),
            },
            log: Log {
                level: "info".into(),
                format: LogFormat::Text,
            },
            lmtp: Lmtp {
                listen: None,
                socket: None,
                hostname: "localhost".into(),
                domains: Vec::new(),
                detail_delimiter: Some('+'),
                detail_mailbox: true,
                max_message_bytes: 64 << 20,
                max_recipients: 100,
                max_connections: 100,
                timeout: Duration::from_secs(300),
            },
            quota: Quota::default(),
            metrics: Metrics::default(),
            data_dir,
        }
    }
}
