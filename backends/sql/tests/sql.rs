//! The SQL backend against real databases: SQLite in a temporary directory, and the PostgreSQL
//! and MariaDB servers on loopback (`STRATA_TEST_POSTGRES`, `STRATA_TEST_MYSQL` override their
//! admin URLs). Every check of the conformance suite gets a database of its own, dropped after.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use strata_backend_api::{Backend, Batch, ErrorKind, Key, conformance};
use strata_backend_sql::{SqlBackend, SqlOptions};

fn postgres_admin() -> String {
    std::env::var("STRATA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_admin() -> String {
    std::env::var("STRATA_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// Databases made for one test, dropped when it ends.
struct Scratch {
    admin: String,
    made: Mutex<Vec<String>>,
}

impl Scratch {
    fn new(admin: String) -> Arc<Scratch> {
        Arc::new(Scratch {
            admin,
            made: Mutex::new(Vec::new()),
        })
    }

    fn url_of(&self, db: &str) -> String {
        let base = self
            .admin
            .rsplit_once('/')
            .expect("admin URL has a database")
            .0;
        format!("{base}/{db}")
    }

    /// A new, empty database; its URL.
    async fn fresh(&self) -> String {
        let name = format!("strata_t_{}_{}", std::process::id(), rand::random::<u32>());
        self.exec(&format!("CREATE DATABASE {name}")).await;
        self.made.lock().unwrap().push(name.clone());
        self.url_of(&name)
    }

    async fn exec(&self, sql: &str) {
        if self.admin.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&self.admin).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::MySqlConnection::connect(&self.admin).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }

    async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.made.lock().unwrap());
        for n in names {
            if self.admin.starts_with("postgres") {
                self.exec(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
                    .await;
            } else {
                self.exec(&format!("DROP DATABASE IF EXISTS {n}")).await;
            }
        }
    }
}

fn opts(url: String, chunk_bytes: usize) -> SqlOptions {
    SqlOptions {
        chunk_bytes,
        ..SqlOptions::new(url)
    }
}

async fn conformance_on(admin: String, chunk_bytes: usize) {
    let scratch = Scratch::new(admin);
    let s = scratch.clone();
    conformance::run_all(move || {
        let s = s.clone();
        async move {
            let url = s.fresh().await;
            Arc::new(SqlBackend::connect(&opts(url, chunk_bytes)).await.unwrap())
                as Arc<dyn Backend>
        }
    })
    .await;
    scratch.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    for chunk_bytes in [1 << 20, 7] {
        let n = std::sync::atomic::AtomicU32::new(0);
        let dir = dir.path().to_path_buf();
        conformance::run_all(|| {
            let path = dir.join(format!(
                "b{chunk_bytes}-{}.db",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            async move {
                let url = format!("sqlite:{}", path.display());
                Arc::new(SqlBackend::connect(&opts(url, chunk_bytes)).await.unwrap())
                    as Arc<dyn Backend>
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_contract() {
    conformance_on(postgres_admin(), 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_keeps_the_contract() {
    conformance_on(mysql_admin(), 1000).await;
}

/// Bodies survive the process: a second connection to the same database reads them, and a
/// range read across chunk boundaries returns exactly the range.
#[tokio::test]
async fn bodies_persist_and_ranges_cross_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("bodies.db").display());
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let key = Key::new(".INBOX/1.G1.strata").unwrap();
    {
        let b = SqlBackend::connect(&opts(url.clone(), 64)).await.unwrap();
        let r = b
            .commit(Batch::new().put(key.clone(), body.clone()))
            .await
            .unwrap();
        assert!(r.is_acked(), "the database's commit is the ack");
        b.close().await;
    }
    // Reopened with another chunk size: old objects keep the size they were written with.
    let b = SqlBackend::connect(&opts(url, 4096)).await.unwrap();
    assert_eq!(b.get(&key, None).await.unwrap(), body);
    assert_eq!(b.get(&key, Some(60..200)).await.unwrap(), body[60..200]);
    assert_eq!(b.get(&key, Some(9990..20_000)).await.unwrap(), body[9990..]);
    assert_eq!(b.size(&key).await.unwrap(), 10_000);
}

/// A wrong password, a missing database and an unreachable server are errors that say so,
/// within the connect timeout, not hangs or panics.
#[tokio::test]
async fn unreachable_or_refused_databases_are_clear_errors() {
    let quick = |url: &str| SqlOptions {
        connect_timeout: Duration::from_secs(3),
        ..SqlOptions::new(url)
    };
    let started = Instant::now();
    // Nothing listens on port 9 of loopback.
    let e = SqlBackend::connect(&quick("postgres://postgres@127.0.0.1:9/test"))
        .await
        .err()
        .expect("no server there");
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    let e = SqlBackend::connect(&quick("mysql://root:wrong@127.0.0.1:3306/test"))
        .await
        .err()
        .expect("wrong password");
    assert!(e.to_string().to_lowercase().contains("denied"), "{e}");
    assert!(
        !e.to_string().contains("wrong"),
        "the password is not shown: {e}"
    );
    let e = SqlBackend::connect(&quick(
        "postgres://postgres@127.0.0.1:5432/strata_no_such_db",
    ))
    .await
    .err()
    .expect("no such database");
    assert!(e.to_string().contains("strata_no_such_db"), "{e}");
    let e = SqlBackend::connect(&quick("oracle://x/y"))
        .await
        .err()
        .expect("unknown scheme");
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Writers with connections of their own (as nodes sharing one database) race to create one
/// key required absent: exactly one commits, the rest are refused, and the key holds the
/// winner's bytes.
async fn one_conditional_create_wins(url: String) {
    let writers: Vec<Arc<SqlBackend>> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(Arc::new(
                SqlBackend::connect(&opts(url.clone(), 1000)).await.unwrap(),
            ));
        }
        v
    };
    for round in 0..10 {
        let key = Key::new(format!("strata-index/claim.{round}")).unwrap();
        let tasks: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (w, key) = (w.clone(), key.clone());
                tokio::spawn(async move {
                    let data = format!("writer {i}");
                    let r = w
                        .commit(
                            Batch::new()
                                .require_absent(key.clone())
                                .put(key, data.clone()),
                        )
                        .await;
                    (data, r.map(drop))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (data, r) = t.await.unwrap();
            match r {
                Ok(()) => winners.push(data),
                // SQLite may refuse the loser as busy rather than on the key: still refused.
                Err(e) => assert!(
                    e.kind == ErrorKind::Conflict || url.starts_with("sqlite"),
                    "{e}"
                ),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = writers[0].get(&key, None).await.unwrap();
        assert_eq!(stored, winners[0].as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_creates_race_with_one_winner_on_every_database() {
    let dir = tempfile::tempdir().unwrap();
    one_conditional_create_wins(format!("sqlite:{}", dir.path().join("race.db").display())).await;
    for admin in [postgres_admin(), mysql_admin()] {
        let scratch = Scratch::new(admin);
        one_conditional_create_wins(scratch.fresh().await).await;
        scratch.drop_all().await;
    }
}

/// More reads than connections, each longer than the connect timeout would let a read wait
/// for one: they queue and all succeed, rather than failing as if the database were down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_connections_wait_their_turn_and_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("bodies.db").display());
    let b = SqlBackend::connect(&SqlOptions {
        max_connections: 2,
        connect_timeout: Duration::from_millis(100),
        ..opts(url, 4096)
    })
    .await
    .unwrap();
    let body: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let key = Key::new("big").unwrap();
    b.commit(Batch::new().put(key.clone(), body.clone()))
        .await
        .unwrap();
    let reads = (0..64).map(|_| b.get(&key, None));
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.unwrap().len(), body.len());
    }
}
