//! The three engines under test, behind one interface: Strata's index (through its public API),
//! raw redb (one table, quick-repair, the same durability) and SQLite (WAL, synchronous=FULL).
//! Every engine stores key = mailbox id ‖ UID with a 300-byte record.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use strata_index as si;

/// Size of one record's value in the raw engines, and roughly Strata's content record.
pub const RECORD_BYTES: usize = 300;

/// Concurrent sessions used for group-committed flag changes.
pub const SESSIONS: usize = 256;

/// What every engine can do.
pub trait Engine {
    /// Appends `uids` to `mailbox`, `per_commit` records per durable commit.
    fn append(&mut self, mailbox: u32, uids: std::ops::Range<u32>, per_commit: usize);
    /// Toggles `\Seen` on each UID, one durable commit each.
    fn flags_each(&mut self, mailbox: u32, uids: &[u32]);
    /// Toggles `\Seen` on each UID, letting the engine share commits between sessions.
    fn flags_grouped(&mut self, mailbox: u32, uids: &[u32]);
    /// Reads (UID, flags) of every message of a mailbox from the store; returns the count.
    fn scan(&mut self, mailbox: u32) -> usize;
    /// Reads one record; returns whether it exists.
    fn lookup(&mut self, mailbox: u32, uid: u32) -> bool;
    /// Deletes the given UIDs, in commits of 1000.
    fn expunge(&mut self, mailbox: u32, uids: &[u32]);
    /// Rewrites the file densely (Strata: repack; redb: compact; SQLite: VACUUM); returns how
    /// long the writer was held and the whole rewrite took, where the engine tells.
    fn repack(&mut self) -> Option<(Duration, Duration)>;
    /// Reads every record and checks it; returns the count.
    fn verify(&mut self) -> u64;
    /// Write closures run and commits made so far, for engines that group commits themselves.
    fn commit_counts(&self) -> Option<(u64, u64)> {
        None
    }
    /// The files that make up the store.
    fn files(&self) -> Vec<PathBuf>;
}

fn record(mailbox: u32, uid: u32) -> Vec<u8> {
    let mut v = vec![0u8; RECORD_BYTES];
    v[1..5].copy_from_slice(&mailbox.to_be_bytes());
    v[5..9].copy_from_slice(&uid.to_be_bytes());
    for (i, b) in v.iter_mut().enumerate().skip(9) {
        *b = (i as u8).wrapping_mul(31) ^ (uid as u8);
    }
    v
}

fn key(mailbox: u32, uid: u32) -> [u8; 8] {
    let mut k = [0; 8];
    k[..4].copy_from_slice(&mailbox.to_be_bytes());
    k[4..].copy_from_slice(&uid.to_be_bytes());
    k
}

// ----- Strata -----

/// Strata's index, driven through its public API.
pub struct Strata {
    rt: tokio::runtime::Runtime,
    index: Option<si::UserIndex>,
    path: PathBuf,
    mailboxes: Vec<si::MailboxId>,
    view: Option<std::sync::Arc<si::MailboxView>>,
    snapshot: Option<si::Snapshot>,
    /// Time the last open took, and whether it found an unclean shutdown.
    pub last_open: (Duration, bool),
}

/// A message whose content record is about [`RECORD_BYTES`] long.
pub fn strata_message(mailbox: u32, uid: u32) -> si::NewMessage {
    let mut guid = [0u8; 16];
    guid[..4].copy_from_slice(&mailbox.to_be_bytes());
    guid[4..8].copy_from_slice(&uid.to_be_bytes());
    si::NewMessage {
        content: si::ContentRecord {
            guid: si::Guid(guid),
            size: 4000 + u64::from(uid % 1000),
            location: si::BodyLocation {
                store: si::StoreId(0),
                key: format!("{mailbox:08x}{uid:08x}"),
            },
            parsed: si::ParsedMessage {
                envelope: si::Envelope {
                    subject: Some(format!("Benchmark message {uid}").into_bytes()),
                    message_id: Some(format!("<{mailbox}.{uid}@bench.example>").into_bytes()),
                    ..si::Envelope::default()
                },
                preview: "x".repeat(RECORD_BYTES - 120),
                ..si::ParsedMessage::default()
            },
        },
        flags: si::Flags::default(),
        internal_date: si::Timestamp {
            unix: 1_700_000_000 + i64::from(uid),
            offset_minutes: 0,
        },
    }
}

impl Strata {
    /// Opens (or creates) the index in `dir`, with `mailboxes` mailboxes.
    pub fn open(dir: &Path, mailboxes: u32) -> Strata {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let path = dir.join("strata.redb");
        let mut opts = si::IndexOptions {
            cache_bytes: 1 << 30,
            ..si::IndexOptions::default()
        };
        // Lets an operator try other group-commit windows without rebuilding.
        if let Some(us) = std::env::var("STRATA_GROUP_WINDOW_US")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            opts.group_commit_window = Duration::from_micros(us);
        }
        let start = Instant::now();
        let (index, report) = rt.block_on(si::UserIndex::open(&path, opts)).unwrap();
        let elapsed = start.elapsed();
        let mut ids = Vec::new();
        let snap = index.snapshot().unwrap();
        for m in 0..mailboxes {
            let name = format!("box{m}");
            let id = match snap.lookup(None, &name).unwrap() {
                Some(id) => id,
                None => {
                    rt.block_on(index.create_mailbox(si::NewMailbox {
                        parent: None,
                        name,
                        special_use: None,
                    }))
                    .unwrap()
                    .id
                }
            };
            ids.push(id);
        }
        drop(snap);
        Strata {
            rt,
            index: Some(index),
            path,
            mailboxes: ids,
            view: None,
            snapshot: None,
            last_open: (elapsed, report.unclean_shutdown),
        }
    }

    fn index(&self) -> &si::UserIndex {
        self.index.as_ref().unwrap()
    }

    fn mb(&self, m: u32) -> si::MailboxId {
        self.mailboxes[m as usize]
    }

    /// Reads (UID, flags) of every message from the shared in-memory view.
    pub fn scan_view(&mut self, mailbox: u32) -> usize {
        if self.view.is_none() {
            let mb = self.mb(mailbox);
            self.view = Some(self.rt.block_on(self.index().view(mb)).unwrap());
        }
        self.view.as_ref().unwrap().with_entries(|entries| {
            let mut n = 0usize;
            for e in entries {
                n += usize::from(e.flags.system.bits() < 0x80);
            }
            n
        })
    }

    /// The writer's counters.
    pub fn stats(&self) -> si::WriterStats {
        self.index().stats()
    }

    /// Live key and value bytes, as the index counts them.
    pub fn live_bytes(&self) -> u64 {
        self.index().snapshot().unwrap().live_bytes()
    }

    /// The last repack's report.
    pub fn repack_report(&mut self) -> si::RepackReport {
        self.snapshot = None;
        self.rt.block_on(si::repack(self.index(), None)).unwrap()
    }

    /// Keeps appending single messages to mailbox 0, each durable, forever.
    pub fn write_forever(&mut self, from: u32) -> ! {
        let mb = self.mb(0);
        let mut uid = from;
        loop {
            self.rt
                .block_on(self.index().append(mb, vec![strata_message(0, uid)]))
                .unwrap();
            uid += 1;
        }
    }
}

impl Engine for Strata {
    fn append(&mut self, mailbox: u32, uids: std::ops::Range<u32>, per_commit: usize) {
        let mb = self.mb(mailbox);
        let all: Vec<u32> = uids.collect();
        for chunk in all.chunks(per_commit) {
            let msgs = chunk.iter().map(|&u| strata_message(mailbox, u)).collect();
            self.rt.block_on(self.index().append(mb, msgs)).unwrap();
        }
    }

    fn flags_each(&mut self, mailbox: u32, uids: &[u32]) {
        let mb = self.mb(mailbox);
        for &u in uids {
            let flags = si::Flags::system(si::SystemFlags::SEEN);
            self.rt
                .block_on(self.index().write(si::Durability::Immediate, move |t| {
                    t.store(mb, &[si::Uid(u)], si::StoreOp::Add, &flags, None)?;
                    Ok(())
                }))
                .unwrap();
        }
    }

    fn flags_grouped(&mut self, mailbox: u32, uids: &[u32]) {
        let mb = self.mb(mailbox);
        let per = uids.len().div_ceil(SESSIONS);
        let index = self.index().clone();
        let chunks: Vec<Vec<u32>> = uids.chunks(per.max(1)).map(<[u32]>::to_vec).collect();
        self.rt.block_on(async move {
            let mut tasks = Vec::new();
            for chunk in chunks {
                let index = index.clone();
                tasks.push(tokio::spawn(async move {
                    for u in chunk {
                        index
                            .store(
                                mb,
                                vec![si::Uid(u)],
                                si::StoreOp::Add,
                                si::Flags::system(si::SystemFlags::FLAGGED),
                                None,
                            )
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    }

    fn scan(&mut self, mailbox: u32) -> usize {
        let mb = self.mb(mailbox);
        let snap = self.index().snapshot().unwrap();
        let mut n = 0;
        snap.for_each_message(mb, si::Uid(0), |m| {
            n += usize::from(m.flags.system.bits() < 0x80);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        n
    }

    fn lookup(&mut self, mailbox: u32, uid: u32) -> bool {
        if self.snapshot.is_none() {
            self.snapshot = Some(self.index().snapshot().unwrap());
        }
        let mb = self.mb(mailbox);
        self.snapshot
            .as_ref()
            .unwrap()
            .message(mb, si::Uid(uid))
            .unwrap()
            .is_some()
    }

    fn expunge(&mut self, mailbox: u32, uids: &[u32]) {
        let mb = self.mb(mailbox);
        for chunk in uids.chunks(1000) {
            let uids = chunk.iter().map(|&u| si::Uid(u)).collect();
            self.rt.block_on(self.index().expunge(mb, uids)).unwrap();
        }
    }

    fn repack(&mut self) -> Option<(Duration, Duration)> {
        let r = self.repack_report();
        Some((r.swap_hold, r.duration))
    }

    fn commit_counts(&self) -> Option<(u64, u64)> {
        let s = self.stats();
        Some((s.jobs, s.commits))
    }

    fn verify(&mut self) -> u64 {
        let snap = self.index().snapshot().unwrap();
        si::verify(&snap).unwrap().messages
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        self.view = None;
        self.snapshot = None;
        if let Some(index) = self.index.take() {
            self.rt.block_on(index.close());
        }
    }
}

// ----- raw redb -----

/// Opens or creates a redb file with the given tables; returns it and how long the open took.
fn open_redb(
    path: &Path,
    tables: &[TableDefinition<&'static [u8], &'static [u8]>],
) -> (redb::Database, Duration) {
    let start = Instant::now();
    let db = redb::Database::builder()
        .set_cache_size(1 << 30)
        .create(path)
        .unwrap();
    let elapsed = start.elapsed();
    let w = db.begin_write().unwrap();
    for t in tables {
        w.open_table(*t).unwrap();
    }
    w.commit().unwrap();
    (db, elapsed)
}

const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// redb used directly: one table, quick-repair on every commit, like Strata's own use of it.
pub struct RawRedb {
    db: redb::Database,
    path: PathBuf,
    read: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl RawRedb {
    /// Opens (or creates) the database in `dir`; returns it and how long the open took.
    pub fn open(dir: &Path) -> (RawRedb, Duration) {
        let path = dir.join("raw.redb");
        let (db, elapsed) = open_redb(&path, &[RAW]);
        (
            RawRedb {
                db,
                path,
                read: None,
            },
            elapsed,
        )
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<&'static [u8], &'static [u8]>)) {
        let mut w = self.db.begin_write().unwrap();
        w.set_quick_repair(true);
        {
            let mut t = w.open_table(RAW).unwrap();
            f(&mut t);
        }
        w.commit().unwrap();
    }

    fn set_flag(
        t: &mut redb::Table<&'static [u8], &'static [u8]>,
        mailbox: u32,
        uid: u32,
        bit: u8,
    ) {
        let k = key(mailbox, uid);
        let mut v = t.get(&k[..]).unwrap().unwrap().value().to_vec();
        v[0] |= bit;
        t.insert(&k[..], v.as_slice()).unwrap();
    }

    /// Keeps appending single records to mailbox 0, each durable, forever.
    pub fn write_forever(&mut self, from: u32) -> ! {
        let mut uid = from;
        loop {
            self.write(|t| {
                t.insert(&key(0, uid)[..], record(0, uid).as_slice())
                    .unwrap();
            });
            uid += 1;
        }
    }
}

impl Engine for RawRedb {
    fn append(&mut self, mailbox: u32, uids: std::ops::Range<u32>, per_commit: usize) {
        let all: Vec<u32> = uids.collect();
        for chunk in all.chunks(per_commit) {
            self.write(|t| {
                for &u in chunk {
                    t.insert(&key(mailbox, u)[..], record(mailbox, u).as_slice())
                        .unwrap();
                }
            });
        }
    }

    fn flags_each(&mut self, mailbox: u32, uids: &[u32]) {
        for &u in uids {
            self.write(|t| Self::set_flag(t, mailbox, u, 1));
        }
    }

    fn flags_grouped(&mut self, mailbox: u32, uids: &[u32]) {
        // Without a group-committing writer, the application batches by hand: as many updates
        // per commit as Strata's sessions have in flight.
        for chunk in uids.chunks(SESSIONS) {
            self.write(|t| {
                for &u in chunk {
                    Self::set_flag(t, mailbox, u, 4);
                }
            });
        }
    }

    fn scan(&mut self, mailbox: u32) -> usize {
        let r = self.db.begin_read().unwrap();
        let t = r.open_table(RAW).unwrap();
        let (a, b) = (key(mailbox, 0), key(mailbox + 1, 0));
        let mut n = 0;
        for row in t.range::<&[u8]>(&a[..]..&b[..]).unwrap() {
            let (_, v) = row.unwrap();
            n += usize::from(v.value()[0] < 0x80);
        }
        n
    }

    fn lookup(&mut self, mailbox: u32, uid: u32) -> bool {
        if self.read.is_none() {
            self.read = Some(self.db.begin_read().unwrap().open_table(RAW).unwrap());
        }
        self.read
            .as_ref()
            .unwrap()
            .get(&key(mailbox, uid)[..])
            .unwrap()
            .is_some()
    }

    fn expunge(&mut self, mailbox: u32, uids: &[u32]) {
        self.read = None;
        for chunk in uids.chunks(1000) {
            self.write(|t| {
                for &u in chunk {
                    t.remove(&key(mailbox, u)[..]).unwrap();
                }
            });
        }
    }

    fn repack(&mut self) -> Option<(Duration, Duration)> {
        self.read = None;
        while self.db.compact().unwrap() {}
        None
    }

    fn verify(&mut self) -> u64 {
        let r = self.db.begin_read().unwrap();
        let t = r.open_table(RAW).unwrap();
        let mut n = 0;
        for row in t.iter().unwrap() {
            let (k, v) = row.unwrap();
            assert_eq!(k.value()[..4], v.value()[1..5]);
            n += 1;
        }
        n
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}

// ----- SQLite -----

/// SQLite in WAL mode with synchronous=FULL.
pub struct Sqlite {
    conn: rusqlite::Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (or creates) the database in `dir`; returns it and how long the open took.
    pub fn open(dir: &Path) -> (Sqlite, Duration) {
        let path = dir.join("sqlite.db");
        let start = Instant::now();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-1048576;
             CREATE TABLE IF NOT EXISTS records (mailbox INTEGER, uid INTEGER, flags INTEGER,
               data BLOB, PRIMARY KEY (mailbox, uid)) WITHOUT ROWID;",
        )
        .unwrap();
        let elapsed = start.elapsed();
        (Sqlite { conn, path }, elapsed)
    }

    fn txn(&mut self, f: impl FnOnce(&rusqlite::Transaction<'_>)) {
        let t = self.conn.transaction().unwrap();
        f(&t);
        t.commit().unwrap();
    }

    /// Keeps appending single records to mailbox 0, each durable, forever.
    pub fn write_forever(&mut self, from: u32) -> ! {
        let mut uid = from;
        loop {
            self.append(0, uid..uid + 1, 1);
            uid += 1;
        }
    }
}

impl Engine for Sqlite {
    fn append(&mut self, mailbox: u32, uids: std::ops::Range<u32>, per_commit: usize) {
        let all: Vec<u32> = uids.collect();
        for chunk in all.chunks(per_commit) {
            self.txn(|t| {
                let mut s = t
                    .prepare_cached("INSERT INTO records VALUES (?1, ?2, 0, ?3)")
                    .unwrap();
                for &u in chunk {
                    s.execute(rusqlite::params![mailbox, u, record(mailbox, u)])
                        .unwrap();
                }
            });
        }
    }

    fn flags_each(&mut self, mailbox: u32, uids: &[u32]) {
        for &u in uids {
            self.txn(|t| {
                t.prepare_cached(
                    "UPDATE records SET flags = flags | 1 WHERE mailbox = ?1 AND uid = ?2",
                )
                .unwrap()
                .execute(rusqlite::params![mailbox, u])
                .unwrap();
            });
        }
    }

    fn flags_grouped(&mut self, mailbox: u32, uids: &[u32]) {
        for chunk in uids.chunks(SESSIONS) {
            self.txn(|t| {
                let mut s = t
                    .prepare_cached(
                        "UPDATE records SET flags = flags | 4 WHERE mailbox = ?1 AND uid = ?2",
                    )
                    .unwrap();
                for &u in chunk {
                    s.execute(rusqlite::params![mailbox, u]).unwrap();
                }
            });
        }
    }

    fn scan(&mut self, mailbox: u32) -> usize {
        let mut s = self
            .conn
            .prepare_cached("SELECT uid, flags FROM records WHERE mailbox = ?1 ORDER BY uid")
            .unwrap();
        let mut rows = s.query([mailbox]).unwrap();
        let mut n = 0;
        while let Some(r) = rows.next().unwrap() {
            let f: i64 = r.get(1).unwrap();
            n += usize::from(f < 0x80);
        }
        n
    }

    fn lookup(&mut self, mailbox: u32, uid: u32) -> bool {
        let mut s = self
            .conn
            .prepare_cached("SELECT data FROM records WHERE mailbox = ?1 AND uid = ?2")
            .unwrap();
        let mut rows = s.query(rusqlite::params![mailbox, uid]).unwrap();
        rows.next().unwrap().is_some()
    }

    fn expunge(&mut self, mailbox: u32, uids: &[u32]) {
        for chunk in uids.chunks(1000) {
            self.txn(|t| {
                let mut s = t
                    .prepare_cached("DELETE FROM records WHERE mailbox = ?1 AND uid = ?2")
                    .unwrap();
                for &u in chunk {
                    s.execute(rusqlite::params![mailbox, u]).unwrap();
                }
            });
        }
    }

    fn repack(&mut self) -> Option<(Duration, Duration)> {
        self.conn
            .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        None
    }

    fn verify(&mut self) -> u64 {
        let ok: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        self.conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    fn files(&self) -> Vec<PathBuf> {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        vec![self.path.clone(), wal]
    }
}

// ----- raw redb writing Strata's rows -----

const ROW_TABLES: [TableDefinition<&[u8], &[u8]>; 5] = [
    TableDefinition::new("contents"),
    TableDefinition::new("messages"),
    TableDefinition::new("changes"),
    TableDefinition::new("mailboxes"),
    TableDefinition::new("meta"),
];

/// redb used directly, writing the rows Strata writes for the same operation (content,
/// message, change-log entry, mailbox counters, user counters) with the same durability: the
/// engine's own cost of Strata's data model, without Strata's API around it.
pub struct RedbRows {
    db: redb::Database,
    path: PathBuf,
    modseq: u64,
}

impl RedbRows {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> (RedbRows, Duration) {
        let path = dir.join("rows.redb");
        let (db, elapsed) = open_redb(&path, &ROW_TABLES);
        (
            RedbRows {
                db,
                path,
                modseq: 0,
            },
            elapsed,
        )
    }

    /// Runs one durable commit; `f` gets the five tables and the next MODSEQ.
    fn commit(
        &mut self,
        f: impl FnOnce(&mut [redb::Table<&'static [u8], &'static [u8]>], &mut u64),
    ) {
        let mut w = self.db.begin_write().unwrap();
        w.set_quick_repair(true);
        {
            let mut tables: Vec<_> = ROW_TABLES
                .iter()
                .map(|t| w.open_table(*t).unwrap())
                .collect();
            f(&mut tables, &mut self.modseq);
            let state = [7u8; 40];
            tables[4].insert(&b"state"[..], &state[..]).unwrap();
        }
        w.commit().unwrap();
    }

    fn change(
        tables: &mut [redb::Table<&'static [u8], &'static [u8]>],
        modseq: &mut u64,
        k: &[u8; 8],
    ) {
        *modseq += 1;
        let mut lk = modseq.to_be_bytes().to_vec();
        lk.extend_from_slice(k);
        tables[2].insert(lk.as_slice(), &[1u8; 20][..]).unwrap();
        tables[3].insert(&k[..4], &[2u8; 100][..]).unwrap();
    }
}

impl Engine for RedbRows {
    fn append(&mut self, mailbox: u32, uids: std::ops::Range<u32>, per_commit: usize) {
        let all: Vec<u32> = uids.collect();
        for chunk in all.chunks(per_commit) {
            self.commit(|t, modseq| {
                for &u in chunk {
                    let k = key(mailbox, u);
                    let mut guid = [0u8; 16];
                    guid[..8].copy_from_slice(&k);
                    t[0].insert(&guid[..], record(mailbox, u).as_slice())
                        .unwrap();
                    t[1].insert(&k[..], &[3u8; 80][..]).unwrap();
                    Self::change(t, modseq, &k);
                }
            });
        }
    }

    fn flags_each(&mut self, mailbox: u32, uids: &[u32]) {
        for &u in uids {
            self.flags_grouped(mailbox, &[u]);
        }
    }

    fn flags_grouped(&mut self, mailbox: u32, uids: &[u32]) {
        for chunk in uids.chunks(SESSIONS) {
            self.commit(|t, modseq| {
                for &u in chunk {
                    let k = key(mailbox, u);
                    let mut v = t[1].get(&k[..]).unwrap().unwrap().value().to_vec();
                    v[0] |= 1;
                    t[1].insert(&k[..], v.as_slice()).unwrap();
                    Self::change(t, modseq, &k);
                }
            });
        }
    }

    fn scan(&mut self, mailbox: u32) -> usize {
        let r = self.db.begin_read().unwrap();
        let t = r.open_table(ROW_TABLES[1]).unwrap();
        let (a, b) = (key(mailbox, 0), key(mailbox + 1, 0));
        t.range::<&[u8]>(&a[..]..&b[..]).unwrap().count()
    }

    fn lookup(&mut self, mailbox: u32, uid: u32) -> bool {
        let r = self.db.begin_read().unwrap();
        let t = r.open_table(ROW_TABLES[1]).unwrap();
        t.get(&key(mailbox, uid)[..]).unwrap().is_some()
    }

    fn expunge(&mut self, mailbox: u32, uids: &[u32]) {
        for chunk in uids.chunks(1000) {
            self.commit(|t, modseq| {
                for &u in chunk {
                    let k = key(mailbox, u);
                    t[1].remove(&k[..]).unwrap();
                    let mut guid = [0u8; 16];
                    guid[..8].copy_from_slice(&k);
                    t[0].remove(&guid[..]).unwrap();
                    Self::change(t, modseq, &k);
                }
            });
        }
    }

    fn repack(&mut self) -> Option<(Duration, Duration)> {
        while self.db.compact().unwrap() {}
        None
    }

    fn verify(&mut self) -> u64 {
        let r = self.db.begin_read().unwrap();
        r.open_table(ROW_TABLES[1]).unwrap().len().unwrap()
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}
