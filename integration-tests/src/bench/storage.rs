//! Bytes stored, and the cost of storing and reading them, for each storage layer against a
//! plain store in the same run: a corpus in which 30% of deliveries carry an attachment other
//! deliveries carry too, each delivered to 10 users (its own `Delivered-To` per copy, as LMTP
//! writes it), put through the configured store stack on SQLite in process, concurrently per
//! delivery as LMTP files it. What it measures is the stores, not IMAP: `imap-bench run`
//! measures APPEND and FETCH through a server.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_backend_api::{Backend, Batch, Key, Read};

use super::corpus;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Deliveries (messages before fan-out).
    pub deliveries: u32,
    /// Users each delivery goes to.
    pub recipients: u32,
    /// The share of deliveries that carry a shared attachment.
    pub shared: f64,
}

/// One configuration's figures.
struct Figures {
    name: &'static str,
    stored: u64,
    file: u64,
    put: Duration,
    read: Duration,
    headers: Duration,
}

/// The deliveries: corpus messages, 30% of them with an attachment from a pool in which each
/// is carried about four times.
fn deliveries(o: &Options) -> Vec<Vec<u8>> {
    let pool_len = ((f64::from(o.deliveries) * o.shared) / 4.0).ceil().max(1.0) as usize;
    let mut rng = StdRng::seed_from_u64(19);
    let pool: Vec<String> = (0..pool_len)
        .map(|_| {
            let n = rng.random_range(50_000..500_000);
            let raw: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
            b64.as_bytes()
                .chunks(76)
                .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
                .collect()
        })
        .collect();
    (0..o.deliveries)
        .map(|i| {
            let m = corpus::message(7, i);
            if !rng.random_bool(o.shared) {
                return m;
            }
            let split = m
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 2);
            let (header, body) = m.split_at(split);
            let header = String::from_utf8_lossy(header)
                .lines()
                .filter(|l| !l.starts_with("MIME-Version") && !l.starts_with("Content-"))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>();
            let attachment = &pool[rng.random_range(0..pool.len())];
            format!(
                "{header}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"s{i}\"\r\n\r\n\
                 --s{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\
                 --s{i}\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{attachment}--s{i}--\r\n",
                String::from_utf8_lossy(body).chars().take(3000).collect::<String>()
            )
            .into_bytes()
        })
        .collect()
}

/// A store on a fresh SQLite database with the layers `layers` names, and the database file.
async fn store(
    dir: &std::path::Path,
    layers: &str,
) -> (std::sync::Arc<dyn Backend>, std::path::PathBuf) {
    let db = dir.join("bodies.db");
    let mut toml = format!(
        "data_dir = \"{}\"\n[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:{}\"\n\
         [storage.journal]\nenabled = false\n",
        dir.display(),
        db.display()
    );
    if layers.contains("sis") {
        toml.push_str("[storage.single_instance]\n");
    }
    if layers.contains("zstd") {
        toml.push_str("[storage.compression]\n");
    }
    if layers.contains("enc") {
        use base64::Engine;
        let keys = dir.join("keyring");
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        std::fs::write(&keys, format!("1:{key}\n")).expect("keyring");
        toml.push_str(&format!(
            "[storage.encryption]\nkeys = \"{}\"\n",
            keys.display()
        ));
    }
    let path = dir.join("strata.toml");
    std::fs::write(&path, toml).expect("config");
    let cfg = strata_config::load(&path).expect("a valid configuration");
    let backends = strata_server::backends::Backends::connect(&cfg.storage)
        .await
        .expect("the store");
    (backends.shared_main().expect("a shared store"), db)
}

async fn measure(name: &'static str, layers: &str, o: &Options, mail: &[Vec<u8>]) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, db) = store(dir.path(), layers).await;
    let key = |d: usize, r: u32| Key::new(format!("u{r}/{d}")).expect("a key");
    let start = Instant::now();
    for (d, m) in mail.iter().enumerate() {
        let copies = (0..o.recipients).map(|r| {
            let mut copy = format!("Delivered-To: u{r}@example.org\r\n").into_bytes();
            copy.extend_from_slice(m);
            store.commit(Batch::new().put(key(d, r), copy))
        });
        for c in futures::future::join_all(copies).await {
            c.expect("a delivery");
        }
    }
    let put = start.elapsed();
    let keys: Vec<Key> = (0..mail.len())
        .flat_map(|d| (0..o.recipients).map(move |r| (d, r)))
        .map(|(d, r)| key(d, r))
        .collect();
    let start = Instant::now();
    let reads = keys.iter().cloned().map(Read::whole).collect();
    let got: Vec<Result<Bytes, _>> = store.get_many(reads, 16).collect().await;
    let read = start.elapsed();
    for (g, k) in got.into_iter().zip(&keys) {
        let (d, _) = k.as_str().split_once('/').expect("u/d");
        let d: usize = k.as_str()[d.len() + 1..].parse().expect("a number");
        assert!(g.expect("a read").ends_with(&mail[d]), "{k} changed");
    }
    let start = Instant::now();
    let reads = keys
        .iter()
        .map(|k| Read {
            key: k.clone(),
            range: Some(0..2048),
        })
        .collect();
    let heads: Vec<Result<Bytes, _>> = store.get_many(reads, 16).collect().await;
    let headers = start.elapsed();
    assert!(heads.iter().all(|h| h.is_ok()));
    let stored = store
        .list_stored("")
        .await
        .expect("a listing")
        .iter()
        .map(|l| l.size)
        .sum();
    let file = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    Figures {
        name,
        stored,
        file,
        put,
        read,
        headers,
    }
}

/// Runs every configuration and reports them against plain, in markdown.
pub async fn run(o: &Options) -> String {
    let mail = deliveries(o);
    let delivered: u64 = mail.iter().map(|m| m.len() as u64).sum::<u64>() * u64::from(o.recipients);
    let mut rows = Vec::new();
    for (name, layers) in [
        ("plain", ""),
        ("zstd", "zstd"),
        ("sis", "sis"),
        ("sis + zstd", "sis,zstd"),
        ("sis + zstd + encryption", "sis,zstd,enc"),
        ("plain (again)", ""),
    ] {
        eprintln!("storage: {name}");
        rows.push(measure(name, layers, o, &mail).await);
    }
    // The plain baseline is the mean of the runs before and after the others.
    let last = rows.pop().expect("the second plain run");
    let base = Figures {
        name: "plain",
        stored: rows[0].stored,
        file: rows[0].file,
        put: (rows[0].put + last.put) / 2,
        read: (rows[0].read + last.read) / 2,
        headers: (rows[0].headers + last.headers) / 2,
    };
    rows[0] = base;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let mut out = format!(
        "Storage layers on SQLite: {} deliveries × {} users ({:.0}% with a shared attachment), \
         {:.1} MB delivered.\n\n\
         | layers | stored MB | ÷ plain | database MB | put s | ÷ plain | read all s | ÷ plain | read 2 KiB heads s | ÷ plain |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        o.deliveries,
        o.recipients,
        o.shared * 100.0,
        delivered as f64 / 1e6
    );
    let b = &rows[0];
    let (bs, bp, br, bh) = (
        b.stored as f64,
        b.put.as_secs_f64(),
        b.read.as_secs_f64(),
        b.headers.as_secs_f64(),
    );
    for f in &rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:.3} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.2} |\n",
            f.name,
            f.stored as f64 / 1e6,
            ratio(f.stored as f64, bs),
            f.file as f64 / 1e6,
            f.put.as_secs_f64(),
            ratio(f.put.as_secs_f64(), bp),
            f.read.as_secs_f64(),
            ratio(f.read.as_secs_f64(), br),
            f.headers.as_secs_f64(),
            ratio(f.headers.as_secs_f64(), bh),
        ));
    }
    out
}
