//! # strata-backend-sql
//!
//! Message bodies in an SQL database: SQLite, PostgreSQL or MySQL/MariaDB, chosen by the URL's
//! scheme (`sqlite:`, `postgres:`, `mysql:`/`mariadb:`). One SQL transaction per batch, so a
//! batch commits atomically in the store itself; the database's own commit is the ack (soft-done
//! and acked are one moment here; a slow database is made fast by the staging journal above it).
//!
//! An object is a row of `strata_objects` (key, size, chunk size) and its bytes are rows of
//! `strata_chunks`, at most `chunk_bytes` each, so that no row exceeds a server's packet limit
//! and a range read fetches only the chunks it covers. The schema is created and upgraded by
//! the migrations shipped in `migrations/<dialect>/`. A body's metadata ([`BodyMeta`]) is kept
//! in `mail_*` columns of its object row, so a query finds a user's mail by mailbox and GUID.
//!
//! It is not an index: nothing but bodies is stored here.

mod dialect;
mod error;
mod options;

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sqlx::{MySqlPool, PgPool, Row, SqlitePool};
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Listed, Op,
    Receipt,
};

pub use dialect::Dialect;
pub use options::SqlOptions;

use dialect::Statements;
use error::{db_err, sql_err};

enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// The SQL backend.
pub struct SqlBackend {
    db: Db,
    name: String,
    chunk_bytes: usize,
    acks: AckTracker,
    /// Commits from this process are serialised, so that a precondition checked inside one
    /// transaction still holds when it commits (an absent key cannot be locked).
    commit_lock: tokio::sync::Mutex<()>,
    /// Reads in flight, one fewer than the pool's connections (a commit has the last): more
    /// reads wait here, for as long as it takes, rather than for a connection, whose wait
    /// ends in an error after the connect timeout however healthy the database is.
    reads: tokio::sync::Semaphore,
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$sql` to its dialect's statements;
/// the body is the same code for every database, type-checked once per driver.
macro_rules! on_db {
    ($self:expr, $pool:ident, $sql:ident => $body:expr) => {
        match &$self.db {
            Db::Sqlite($pool) => {
                let $sql = Statements::get(Dialect::Sqlite);
                $body
            }
            Db::Postgres($pool) => {
                let $sql = Statements::get(Dialect::Postgres);
                $body
            }
            Db::MySql($pool) => {
                let $sql = Statements::get(Dialect::MySql);
                $body
            }
        }
    };
}

impl SqlBackend {
    /// Connects, creating the database file (SQLite) and the schema if missing and running
    /// any migration not yet applied. A wrong URL, wrong credentials or an unreachable server
    /// are errors that say which, within `connect_timeout`.
    pub async fn connect(opts: &SqlOptions) -> Result<SqlBackend, BackendError> {
        let dialect = Dialect::of_url(&opts.url)
            .ok_or_else(|| sql_err(ErrorKind::Unsupported, format!(
                "{}: the URL must start with sqlite:, postgres:, postgresql:, mysql: or mariadb:",
                options::redacted(&opts.url)
            )))?;
        let name = format!("sql-{}", dialect.name());
        let timeout = opts.connect_timeout;
        let db = tokio::time::timeout(timeout, Self::open_pool(dialect, opts))
            .await
            .map_err(|_| {
                BackendError::new(
                    name.clone(),
                    ErrorKind::Unavailable,
                    format!(
                        "{}: no connection within {} ms",
                        options::redacted(&opts.url),
                        timeout.as_millis()
                    ),
                )
            })?
            .map_err(|e| {
                db_err(
                    &name,
                    &format!("connecting to {}", options::redacted(&opts.url)),
                    e,
                )
            })?;
        let backend = SqlBackend {
            db,
            acks: AckTracker::new(name.clone()),
            name,
            chunk_bytes: opts.chunk_bytes.max(1),
            commit_lock: tokio::sync::Mutex::new(()),
            reads: tokio::sync::Semaphore::new(opts.max_connections.max(2) as usize - 1),
        };
        backend.migrate().await?;
        Ok(backend)
    }

    async fn open_pool(dialect: Dialect, opts: &SqlOptions) -> Result<Db, sqlx::Error> {
        use std::str::FromStr;
        // The same pool settings for every driver.
        fn pool<DB: sqlx::Database>(opts: &SqlOptions) -> sqlx::pool::PoolOptions<DB> {
            sqlx::pool::PoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(opts.connect_timeout.max(Duration::from_millis(100)))
        }
        Ok(match dialect {
            Dialect::Sqlite => {
                // A crash must not lose a committed batch: WAL with a full sync on commit.
                let url = opts.url.replacen("sqlite3:", "sqlite:", 1);
                let o = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10));
                Db::Sqlite(pool(opts).connect_with(o).await?)
            }
            Dialect::Postgres => {
                let o = sqlx::postgres::PgConnectOptions::from_str(&opts.url)?;
                Db::Postgres(pool(opts).connect_with(o).await?)
            }
            Dialect::MySql => {
                let url = opts.url.replacen("mariadb:", "mysql:", 1);
                let o = sqlx::mysql::MySqlConnectOptions::from_str(&url)?;
                Db::MySql(pool(opts).connect_with(o).await?)
            }
        })
    }

    async fn migrate(&self) -> Result<(), BackendError> {
        let r = match &self.db {
            Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
            Db::MySql(p) => sqlx::migrate!("./migrations/mysql").run(p).await,
        };
        r.map_err(|e| {
            BackendError::new(
                self.name.clone(),
                ErrorKind::Io,
                format!("migrating the schema: {e}"),
            )
        })
    }

    /// The pool's connections are closed; later calls fail.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
            Db::MySql(p) => p.close().await,
        }
    }

    fn err(&self, kind: ErrorKind, message: String) -> BackendError {
        BackendError::new(self.name.clone(), kind, message)
    }

    fn dberr(&self, what: &str, e: sqlx::Error) -> BackendError {
        db_err(&self.name, what, e)
    }

    /// The chunks `[first, last]` an object of `chunk_bytes` chunks needs for `range`.
    fn chunk_span(size: u64, chunk_bytes: u64, range: &Range<u64>) -> Option<(i32, i32)> {
        let start = range.start.min(size);
        let end = range.end.clamp(start, size);
        if end == start || chunk_bytes == 0 {
            return None;
        }
        Some((
            (start / chunk_bytes) as i32,
            ((end - 1) / chunk_bytes) as i32,
        ))
    }
}

#[async_trait]
impl Backend for SqlBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_batch: true,
            range_reads: true,
            server_side_copy: true,
            deferred_ack: false,
            labels: false,
            metadata: true,
            local_reads: false,
        }
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        let _serial = self.commit_lock.lock().await;
        let chunk = self.chunk_bytes;
        on_db!(self, pool, sql => {
            let mut tx = pool.begin().await.map_err(|e| self.dberr("beginning a batch", e))?;
            for p in &batch.preconditions {
                let found = sqlx::query(sql.exists)
                    .bind(p.key().as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.dberr("checking a precondition", e))?
                    .is_some();
                if !p.holds(found) {
                    return Err(p.failed(&self.name));
                }
            }
            // A key required absent is inserted without deleting first: if another writer
            // created it meanwhile, the insert fails on the key (Conflict) instead of replacing it.
            let mut absent: std::collections::HashSet<&Key> = batch
                .preconditions
                .iter()
                .filter_map(|p| match p {
                    strata_backend_api::Precondition::Absent(k) => Some(k),
                    strata_backend_api::Precondition::Exists(_) => None,
                })
                .collect();
            for op in &batch.ops {
                match op {
                    Op::Put { key, data } => {
                        let fresh = absent.remove(key);
                        for stmt in [sql.del_chunks, sql.del_object] {
                            if fresh {
                                continue;
                            }
                            sqlx::query(stmt)
                                .bind(key.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.dberr("replacing an object", e))?;
                        }
                        sqlx::query(sql.ins_object)
                            .bind(key.as_str())
                            .bind(data.len() as i64)
                            .bind(chunk as i64)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.dberr("writing an object", e))?;
                        // An empty object still has one (empty) chunk, so a whole read is one
                        // query that finds rows exactly when the object exists.
                        let mut n = 0i32;
                        let mut rest: &[u8] = data;
                        loop {
                            let (this, next) = rest.split_at(rest.len().min(chunk));
                            sqlx::query(sql.ins_chunk)
                                .bind(key.as_str())
                                .bind(n)
                                .bind(this)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.dberr("writing an object", e))?;
                            n += 1;
                            rest = next;
                            if rest.is_empty() {
                                break;
                            }
                        }
                    }
                    Op::Delete { key } => {
                        absent.remove(key);
                        for stmt in [sql.del_chunks, sql.del_object] {
                            sqlx::query(stmt)
                                .bind(key.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.dberr("deleting an object", e))?;
                        }
                    }
                    Op::Meta { key, meta } => {
                        // A key not stored matches no row: skipped, as the contract says.
                        sqlx::query(sql.set_meta)
                            .bind(meta.user.as_str())
                            .bind(i64::try_from(meta.mailbox).unwrap_or(i64::MAX))
                            .bind(meta.mailbox_name.as_str())
                            .bind(meta.guid.as_str())
                            .bind(meta.internal_date)
                            .bind(i32::from(meta.zone_minutes))
                            .bind(meta.saved)
                            .bind(key.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.dberr("recording body metadata", e))?;
                    }
                    Op::Copy { from, to } => {
                        absent.remove(to);
                        let exists = sqlx::query(sql.exists)
                            .bind(from.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(|e| self.dberr("copying an object", e))?
                            .is_some();
                        if !exists {
                            return Err(self.err(
                                ErrorKind::NotFound,
                                format!("copy source {from} does not exist"),
                            ));
                        }
                        if from == to {
                            continue;
                        }
                        for stmt in [sql.del_chunks, sql.del_object] {
                            sqlx::query(stmt)
                                .bind(to.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.dberr("copying an object", e))?;
                        }
                        for stmt in [sql.copy_object, sql.copy_chunks] {
                            sqlx::query(stmt)
                                .bind(to.as_str())
                                .bind(from.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| self.dberr("copying an object", e))?;
                        }
                    }
                }
            }
            tx.commit().await.map_err(|e| self.dberr("committing a batch", e))?;
        });
        Ok(self.acks.issue_acked())
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        self.acks.flush(seq).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let _read = self.reads.acquire().await.expect("never closed");
        on_db!(self, pool, sql => {
            let rows = sqlx::query(sql.list)
                .bind(i32::try_from(prefix.len()).unwrap_or(i32::MAX))
                .bind(prefix)
                .fetch_all(pool)
                .await
                .map_err(|e| self.dberr("listing objects", e))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                // MySQL hands a binary-collated column over as bytes.
                let key: Vec<u8> = match r.try_get::<String, _>(0) {
                    Ok(k) => k.into_bytes(),
                    Err(_) => r.try_get(0).map_err(|e| self.dberr("listing objects", e))?,
                };
                let key = String::from_utf8_lossy(&key).into_owned();
                let size: i64 = r.try_get(1).map_err(|e| self.dberr("listing objects", e))?;
                out.push(Listed {
                    key: Key::new(key)?,
                    size: size.max(0) as u64,
                });
            }
            Ok(out)
        })
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let _read = self.reads.acquire().await.expect("never closed");
        on_db!(self, pool, sql => {
            let Some(range) = range else {
                let rows = sqlx::query(sql.all_chunks)
                    .bind(key.as_str())
                    .fetch_all(pool)
                    .await
                    .map_err(|e| self.dberr("reading an object", e))?;
                if rows.is_empty() {
                    return Err(self.err(ErrorKind::NotFound, format!("{key} does not exist")));
                }
                let mut out = BytesMut::new();
                for r in &rows {
                    let data: &[u8] = r.try_get(0).map_err(|e| self.dberr("reading an object", e))?;
                    out.extend_from_slice(data);
                }
                return Ok(out.freeze());
            };
            let meta = sqlx::query(sql.meta)
                .bind(key.as_str())
                .fetch_optional(pool)
                .await
                .map_err(|e| self.dberr("reading an object", e))?
                .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))?;
            let size: i64 = meta.try_get(0).map_err(|e| self.dberr("reading an object", e))?;
            let cb: i64 = meta.try_get(1).map_err(|e| self.dberr("reading an object", e))?;
            let (size, cb) = (size.max(0) as u64, cb.max(1) as u64);
            let Some((first, last)) = Self::chunk_span(size, cb, &range) else {
                return Ok(Bytes::new());
            };
            let rows = sqlx::query(sql.range_chunks)
                .bind(key.as_str())
                .bind(first)
                .bind(last)
                .fetch_all(pool)
                .await
                .map_err(|e| self.dberr("reading an object", e))?;
            let mut out = BytesMut::new();
            for r in &rows {
                let data: &[u8] = r.try_get(0).map_err(|e| self.dberr("reading an object", e))?;
                out.extend_from_slice(data);
            }
            let base = u64::from(first as u32) * cb;
            let start = range.start.min(size) - base;
            let end = range.end.clamp(range.start.min(size), size) - base;
            let out = out.freeze();
            if end as usize > out.len() {
                return Err(self.err(
                    ErrorKind::Corrupt,
                    format!("{key}: chunks {first}..={last} hold {} bytes, less than its size says", out.len()),
                ));
            }
            Ok(out.slice(start as usize..end as usize))
        })
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        let _read = self.reads.acquire().await.expect("never closed");
        let what = "reading body metadata";
        on_db!(self, pool, sql => {
            let row = sqlx::query(sql.get_meta)
                .bind(key.as_str())
                .fetch_optional(pool)
                .await
                .map_err(|e| self.dberr(what, e))?
                .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))?;
            let size: i64 = row.try_get(0).map_err(|e| self.dberr(what, e))?;
            // MySQL hands binary-collated text over as bytes.
            let text = |i: usize| -> Result<Option<String>, BackendError> {
                match row.try_get::<Option<String>, _>(i) {
                    Ok(s) => Ok(s),
                    Err(_) => Ok(row
                        .try_get::<Option<Vec<u8>>, _>(i)
                        .map_err(|e| self.dberr(what, e))?
                        .map(|b| String::from_utf8_lossy(&b).into_owned())),
                }
            };
            let user = text(1)?;
            let Some(user) = user else {
                return Ok(None);
            };
            let mailbox: Option<i64> = row.try_get(2).map_err(|e| self.dberr(what, e))?;
            let name = text(3)?;
            let guid = text(4)?;
            let date: Option<i64> = row.try_get(5).map_err(|e| self.dberr(what, e))?;
            let zone: Option<i32> = row.try_get(6).map_err(|e| self.dberr(what, e))?;
            let saved: Option<i64> = row.try_get(7).map_err(|e| self.dberr(what, e))?;
            Ok(Some(BodyMeta {
                user,
                mailbox: mailbox.unwrap_or_default().max(0) as u64,
                mailbox_name: name.unwrap_or_default(),
                guid: guid.unwrap_or_default(),
                internal_date: date.unwrap_or_default(),
                zone_minutes: zone.unwrap_or_default().clamp(-1440, 1440) as i16,
                saved: saved.unwrap_or_default(),
                size: size.max(0) as u64,
            }))
        })
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let _read = self.reads.acquire().await.expect("never closed");
        on_db!(self, pool, sql => {
            let row = sqlx::query(sql.meta)
                .bind(key.as_str())
                .fetch_optional(pool)
                .await
                .map_err(|e| self.dberr("reading an object's size", e))?
                .ok_or_else(|| self.err(ErrorKind::NotFound, format!("{key} does not exist")))?;
            let size: i64 = row.try_get(0).map_err(|e| self.dberr("reading an object's size", e))?;
            Ok(size.max(0) as u64)
        })
    }
}
