//! # strata-config
//!
//! Strata's configuration: the schema ([`Config`]), the embedded defaults `strata serve` runs on
//! without a file ([`Config::default`]), and reading a TOML file ([`load`], [`parse`]) with
//! every problem reported at once, each naming the key and its line. `docs/config.md` documents
//! every option; `strata.example.toml` is a commented example.
//!
//! It does not open sockets, read certificates or start anything: the server does.

mod error;
mod file;
mod schema;
mod size;

pub use error::{ConfigError, ConfigErrors};
pub use file::{check_files, load, parse};
pub use schema::{
    AccountsIn, AppendAck, Auth, Backend, Cache, Compression, Config, Delay, Encryption, Fts, Imap,
    Index, Journal, Lmtp, Log, LogFormat, Metrics, PlaintextAuth, Quota, S3, Secret, Ship,
    SingleInstance, Storage, Store, TierDate, TierRule, Tiering, Tls,
};
pub use size::{parse_count, parse_size};
