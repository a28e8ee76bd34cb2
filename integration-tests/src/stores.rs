//! Which body store a test server runs on. The whole IMAP suite runs once per store:
//! `STRATA_TEST_BACKEND` is `maildir` (the default), `maildir-journal` (Maildir behind the
//! staging journal), `sqlite`, `postgres`, `mariadb` or `s3`; and `STRATA_TEST_LAYERS`
//! (comma-separated) puts layers in front of it: `compress`, `encrypt`, `sis` (SQL and S3
//! only), and `tier` (a cold store every body moves to, behind a read cache).
//! PostgreSQL and MariaDB are the loopback servers (a scratch database per test server,
//! dropped after); S3 is an s3s-fs server started in the test process.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use strata_config::{Backend, Config, S3, Secret};

use crate::s3server::{ACCESS_KEY, S3Server, SECRET_KEY};

/// The loopback PostgreSQL, as its admin.
pub const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The loopback MariaDB, as its admin.
pub const MARIADB_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";

/// A body store for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// A Maildir per user.
    Maildir,
    /// Every user's Maildir behind the staging journal.
    MaildirJournal,
    /// SQLite in the data directory.
    Sqlite,
    /// A scratch database on the loopback PostgreSQL.
    Postgres,
    /// A scratch database on the loopback MariaDB.
    Mariadb,
    /// A bucket of an S3 server in the test process.
    S3,
}

impl Store {
    /// The store `STRATA_TEST_BACKEND` names (Maildir when unset).
    pub fn from_env() -> Store {
        match std::env::var("STRATA_TEST_BACKEND").as_deref() {
            Err(_) | Ok("" | "maildir") => Store::Maildir,
            Ok("maildir-journal") => Store::MaildirJournal,
            Ok("sqlite") => Store::Sqlite,
            Ok("postgres") => Store::Postgres,
            Ok("mariadb") => Store::Mariadb,
            Ok("s3") => Store::S3,
            Ok(other) => panic!(
                "STRATA_TEST_BACKEND={other:?}: expected maildir, maildir-journal, sqlite, postgres, \
                 mariadb or s3"
            ),
        }
    }
}

/// Puts the layers `STRATA_TEST_LAYERS` names in front of the main store; `tier` adds a
/// cold store like the main one, with its layers, that tiering moves every body to within
/// moments of its saving, with a read cache in front.
pub fn layers_from_env(config: &mut Config) {
    let layers = std::env::var("STRATA_TEST_LAYERS").unwrap_or_default();
    let mut tier = false;
    for layer in layers.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        match layer {
            "tier" => tier = true,
            // Small frames, so that bodies span several and range reads cross them. Never on
            // a Maildir, which other programs read as plain files.
            "compress" if matches!(config.storage.main.backend, Backend::Maildir { .. }) => {}
            "compress" => {
                config.storage.main.compression = Some(strata_config::Compression {
                    level: 3,
                    frame_bytes: 4096,
                })
            }
            "encrypt" if matches!(config.storage.main.backend, Backend::Maildir { .. }) => {}
            // A keyring of two keys in the data directory; the second seals.
            "encrypt" => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD;
                std::fs::create_dir_all(&config.data_dir).expect("data directory");
                let keys = config.data_dir.join("keyring");
                let text = format!("1:{}\n2:{}\n", b64.encode([1u8; 32]), b64.encode([2u8; 32]));
                std::fs::write(&keys, text).expect("keyring");
                config.storage.main.encryption =
                    Some(strata_config::Encryption { keys, key_id: None });
            }
            "sis" if matches!(config.storage.main.backend, Backend::Maildir { .. }) => {}
            // Parts from 1 KiB, so that the suite's attachments and larger bodies are stored
            // apart and its range reads cross skeletons and parts.
            "sis" => {
                config.storage.main.single_instance = Some(strata_config::SingleInstance {
                    min_part: 1024,
                    ..strata_config::SingleInstance::default()
                })
            }
            other => panic!(
                "STRATA_TEST_LAYERS: {other:?} is not a layer (sis, compress, encrypt, tier)"
            ),
        }
    }
    if tier {
        tiered(config);
    }
}

/// A cold store beside the main one (a Maildir, SQLite, or the same S3 server under another
/// prefix), configured with the main store's layers; every body goes there at the next run
/// (every 200 ms), and its reads are cached.
fn tiered(config: &mut Config) {
    let main = config.storage.main.clone();
    let backend = match &main.backend {
        Backend::Maildir { .. } => Backend::Maildir {
            root: config.data_dir.join("cold-mail"),
        },
        Backend::Sql { .. } => sql_backend(format!(
            "sqlite:{}",
            config.data_dir.join("cold.db").display()
        )),
        Backend::S3(s3) => Backend::S3(S3 {
            prefix: "cold/".into(),
            ..s3.clone()
        }),
    };
    let every = vec![strata_config::TierRule {
        older_than: Some(Duration::ZERO),
        ..strata_config::TierRule::default()
    }];
    // Often, so that bodies move under the suite's commands.
    let cold = cold_store(
        config,
        backend,
        every,
        Duration::from_millis(200),
        None,
        64 << 20,
    );
    cold.compression = main.compression;
    cold.encryption = main.encryption;
    cold.single_instance = main.single_instance;
}

/// Adds store `cold` (id 7) on `backend`, without layers, behind a journal if it is S3; tiering
/// to it by `rules` every `interval` at `rate`; and a read cache of `cache_bytes` in front of
/// it. Returns the store, to add layers or latency to.
pub fn cold_store(
    config: &mut Config,
    backend: Backend,
    rules: Vec<strata_config::TierRule>,
    interval: Duration,
    rate: Option<u64>,
    cache_bytes: u64,
) -> &mut strata_config::Store {
    let mut journal = config.storage.main.journal.clone();
    journal.enabled = matches!(backend, Backend::S3(_));
    journal.dir = config.data_dir.join("journal-cold");
    config.storage.tiering = Some(strata_config::Tiering {
        to: "cold".into(),
        interval,
        rate,
        date: strata_config::TierDate::Saved,
        rules,
    });
    config.storage.cache = Some(strata_config::Cache {
        dir: config.data_dir.join("cache"),
        size: cache_bytes,
        stores: vec!["cold".into()],
    });
    config.storage.others.push(strata_config::Store {
        name: "cold".into(),
        id: 7,
        backend,
        delay: None,
        compression: None,
        encryption: None,
        single_instance: None,
        journal,
    });
    config.storage.others.last_mut().expect("just pushed")
}

/// What a test server's store needs kept alive, and cleaned up after.
#[derive(Default)]
pub struct Resources {
    /// The S3 server.
    pub s3: Option<S3Server>,
    /// A scratch database: its admin URL and name.
    pub database: Option<(String, String)>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.database.take() {
            let drop = if admin.starts_with("postgres") {
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            } else {
                format!("DROP DATABASE IF EXISTS {name}")
            };
            // Drop runs inside the test's runtime, so the statement gets a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(admin_exec(&admin, &drop));
                }
            })
            .join();
        }
    }
}

/// Runs one statement as a loopback server's admin.
pub async fn admin_exec(admin: &str, sql: &str) {
    if admin.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .expect("PostgreSQL on loopback");
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .expect("admin statement");
    } else {
        let mut c = sqlx::MySqlConnection::connect(admin)
            .await
            .expect("MariaDB on loopback");
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .expect("admin statement");
    }
}

/// A database of its own on a loopback server: its name and URL.
pub async fn scratch_database(admin: &str) -> (String, String) {
    let name = format!("strata_it_{}_{}", std::process::id(), rand::random::<u32>());
    admin_exec(admin, &format!("CREATE DATABASE {name}")).await;
    let url = format!("{}/{name}", admin.rsplit_once('/').expect("admin URL").0);
    (name, url)
}

/// An SQL backend at `url`, with 4 KiB chunks so that bodies span several.
pub fn sql_backend(url: String) -> Backend {
    Backend::Sql {
        url,
        max_connections: 8,
        chunk_bytes: 4096,
        connect_timeout: Duration::from_secs(10),
    }
}

/// The S3 backend on `server`'s `strata` bucket.
pub fn s3_backend(server: &S3Server) -> Backend {
    Backend::S3(S3 {
        endpoint: Some(server.endpoint()),
        bucket: "strata".into(),
        prefix: "bodies/".into(),
        // No region: a store at an explicit endpoint needs none (and no cloud is asked).
        region: None,
        credentials: Some((ACCESS_KEY.into(), Secret(SECRET_KEY.into()))),
        path_style: true,
        max_requests: 64,
        attempts: 4,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    })
}

/// Points `config` at `store`, creating what it needs under `root`.
pub async fn configure(store: Store, config: &mut Config, root: &Path) -> Resources {
    let mut res = Resources::default();
    config.storage.main.backend = match store {
        Store::Maildir | Store::MaildirJournal => Backend::Maildir {
            root: config.data_dir.join("mail"),
        },
        Store::Sqlite => sql_backend(format!(
            "sqlite:{}",
            config.data_dir.join("bodies.db").display()
        )),
        Store::Postgres | Store::Mariadb => {
            let admin = if store == Store::Postgres {
                POSTGRES_ADMIN
            } else {
                MARIADB_ADMIN
            };
            let (name, url) = scratch_database(admin).await;
            res.database = Some((admin.to_string(), name));
            sql_backend(url)
        }
        Store::S3 => {
            let server = S3Server::start(&root.join("s3"), "strata")
                .await
                .expect("S3 server on loopback");
            let backend = s3_backend(&server);
            res.s3 = Some(server);
            backend
        }
    };
    config.storage.main.journal.enabled = store != Store::Maildir;
    config.storage.main.journal.dir = config.data_dir.join("journal");
    res
}
