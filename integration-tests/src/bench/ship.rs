//! The index-shipping benchmark (`imap-bench ship`): APPEND throughput with shipping on and off
//! (S3 on loopback behind the journal; the two servers' rounds alternate so the ratio holds on a
//! noisy machine), bytes shipped per APPEND and per flag change, and the time to restore an
//! N-message user from S3 on a node with an empty disk until it answers, with and without
//! injected store latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_backend_api::{Backend, Prefixed};
use strata_backend_delay::{DelayBackend, DelayConfig, Latency};
use strata_backend_s3::S3Backend;
use strata_config::{AppendAck, Config};
use strata_index::{Flags, IndexOptions, NewMessage, StoreId, Timestamp};
use strata_mailstore::ship::{ShipOptions, chain};
use strata_mailstore::{AckPolicy, BodyStores, Mailstore, MailstoreOptions};

use crate::s3server::S3Server;
use crate::stores::{self, Store};
use crate::{TestServer, bench::corpus};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// APPENDs per round and server.
    pub appends: u32,
    /// Connections the APPENDs are spread over.
    pub connections: u32,
    /// Rounds per server (alternated).
    pub rounds: u32,
    /// Messages of each user restored.
    pub restore: Vec<u32>,
    /// Store latency of the second restore of each size.
    pub latency: Duration,
}

async fn server(ship: bool, ack: AppendAck) -> TestServer {
    TestServer::start_on(Store::S3, |c: &mut Config| {
        c.index.ship.enabled = ship;
        c.storage.append_ack = ack;
    })
    .await
}

/// APPENDs `n` corpus messages over `connections` connections; the time it took.
async fn appends(s: &TestServer, n: u32, connections: u32, offset: u32) -> Duration {
    let start = Instant::now();
    let per = n / connections.max(1);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let addr = s.imap_addr();
            tokio::spawn(async move {
                let mut client = crate::Client::plain(addr).await;
                client.ok("LOGIN alice alice-password").await;
                for i in 0..per {
                    let m = corpus::message(7, offset + c * per + i);
                    let r = client.append("INBOX", "", &m).await;
                    assert!(r.is_ok(), "{r:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender");
    }
    start.elapsed()
}

fn shipped_bytes(s: &TestServer) -> u64 {
    s.server()
        .store
        .open_users()
        .iter()
        .find(|u| u.name() == "alice")
        .and_then(|u| u.ship_progress())
        .and_then(|p| p.chain)
        .map_or(0, |c| c.shipped_bytes)
}

/// Waits until the server's store holds everything answered (bodies and index), so that one
/// server's uploads do not run into the other's timed round.
async fn settle(s: &TestServer) {
    for u in s.server().store.open_users() {
        u.flush().await.expect("flushed");
    }
}

/// Runs the benchmark; the report, as markdown.
pub async fn run(o: &Options) -> String {
    let mut out = String::from("## Index shipping\n\n");
    out += &format!(
        "S3 (s3s-fs) on loopback behind the journal; {} APPENDs of corpus messages per round over {} connections, {} rounds per server, alternated, each round timed until its last OK and then drained (bodies and index acked) before the other server's.\n\n",
        o.appends, o.connections, o.rounds
    );
    out += "| append_ack | shipping off (msg/s, median) | shipping on (msg/s, median) | on ÷ off (time) | bytes shipped per APPEND |\n|---|---|---|---|---|\n";
    let mut flag_line = String::new();
    for ack in [AppendAck::SoftDone, AppendAck::Acked] {
        let off = server(false, ack).await;
        let on = server(true, ack).await;
        let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
        for r in 0..o.rounds {
            let offset = r * o.appends;
            t_off.push(appends(&off, o.appends, o.connections, offset).await);
            settle(&off).await;
            t_on.push(appends(&on, o.appends, o.connections, offset).await);
            settle(&on).await;
        }
        settle(&on).await;
        let bytes = shipped_bytes(&on);
        t_off.sort();
        t_on.sort();
        let (m_off, m_on) = (t_off[t_off.len() / 2], t_on[t_on.len() / 2]);
        let rate = |d: Duration| f64::from(o.appends) / d.as_secs_f64();
        let label = match ack {
            AppendAck::SoftDone => "soft-done",
            AppendAck::Acked => "acked",
        };
        out += &format!(
            "| {label} | {:.0} | {:.0} | {:.2} | {:.0} |\n",
            rate(m_off),
            rate(m_on),
            m_on.as_secs_f64() / m_off.as_secs_f64(),
            bytes as f64 / f64::from(o.appends * o.rounds)
        );
        if ack == AppendAck::SoftDone {
            // Flag changes as a client sends them: one STORE per message, as fast as answered.
            let before = shipped_bytes(&on);
            let mut c = crate::Client::plain(on.imap_addr()).await;
            c.ok("LOGIN alice alice-password").await;
            c.ok("SELECT INBOX").await;
            let n = 500u32.min(o.appends * o.rounds / o.connections.max(1) * o.connections.max(1));
            for i in 1..=n {
                c.ok(&format!("STORE {i} +FLAGS (\\Flagged)")).await;
            }
            settle(&on).await;
            let per = (shipped_bytes(&on) - before) as f64 / f64::from(n);
            flag_line = format!(
                "Flag changes: {n} STOREs of one message each, sent one after another: {per:.0} bytes shipped per change (changes within `max_lag_ms` share a diff).\n\n"
            );
        }
    }
    out += "\n";
    out += &flag_line;

    out += "| messages | store latency | restored and answering | objects | bytes read |\n|---|---|---|---|---|\n";
    for &n in &o.restore {
        for latency in [Duration::ZERO, o.latency] {
            let (took, objects, bytes) = restore(n, latency).await;
            out += &format!(
                "| {n} | {} ms | {:.0} ms | {objects} | {bytes} |\n",
                latency.as_millis(),
                took.as_secs_f64() * 1000.0
            );
        }
    }
    out
}

fn mailstore(dir: &std::path::Path, store: Arc<dyn Backend>) -> Mailstore {
    Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: AckPolicy::SoftDone,
            read_concurrency: 32,
            index: IndexOptions::default(),
            ship: Some(ShipOptions::default()),
            fts: None,
        },
        Arc::new(move |user| {
            let view: Arc<dyn Backend> = Arc::new(Prefixed::new(store.clone(), user)?);
            Ok(BodyStores::new(StoreId(0), view))
        }),
    )
}

/// Ships an `n`-message user to a fresh S3 bucket, then restores it on an empty data dir over
/// a store `latency` away: the time until its INBOX answers, the objects and bytes read.
async fn restore(n: u32, latency: Duration) -> (Duration, u64, u64) {
    let root = tempfile::tempdir().expect("temporary directory");
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .expect("S3 server");
    let strata_config::Backend::S3(cfg) = stores::s3_backend(&s3) else {
        unreachable!("an S3 backend")
    };
    let s3: Arc<dyn Backend> = Arc::new(
        S3Backend::connect(&strata_server::backends::s3_options(&cfg))
            .await
            .expect("S3 backend"),
    );
    // The user's index: records only (a restore never reads a body), each a real parse.
    {
        let node = mailstore(&root.path().join("a"), s3.clone());
        let user = node.user("alice").await.expect("user");
        let inbox = user
            .find(&user.snapshot().expect("snapshot"), &["INBOX".to_string()])
            .expect("INBOX")
            .id;
        let mut i = 0;
        while i < n {
            let batch: Vec<NewMessage> = (i..(i + 1000).min(n))
                .map(|j| {
                    let raw = corpus::message(3, j);
                    let mut m = NewMessage {
                        content: strata_index::ContentRecord {
                            guid: strata_index::Guid(rand::random()),
                            size: raw.len() as u64,
                            location: strata_index::BodyLocation {
                                store: StoreId(0),
                                key: format!("{j}.strata"),
                            },
                            parsed: strata_mailstore::parse(&raw),
                        },
                        flags: Flags::default(),
                        internal_date: Timestamp::now(),
                    };
                    m.flags.keywords.clear();
                    m
                })
                .collect();
            i += batch.len() as u32;
            user.index().append(inbox, batch).await.expect("append");
        }
        user.shipped().await.expect("shipped");
        drop(user);
        node.close_idle().await;
    }
    let store: Arc<dyn Backend> = if latency.is_zero() {
        s3
    } else {
        Arc::new(DelayBackend::new(
            s3,
            DelayConfig {
                read: Latency {
                    fixed: latency,
                    jitter: Duration::ZERO,
                },
                write: Latency {
                    fixed: latency,
                    jitter: Duration::ZERO,
                },
                ..DelayConfig::default()
            },
        ))
    };
    let node = mailstore(&root.path().join("b"), store.clone());
    let start = Instant::now();
    let user = node.user("alice").await.expect("restored");
    let snap = user.snapshot().expect("snapshot");
    let inbox = user.find(&snap, &["INBOX".to_string()]).expect("INBOX");
    let view = user.index().view(inbox.id).await.expect("view");
    let took = start.elapsed();
    assert_eq!(view.len(), n as usize, "every message restored");
    assert_eq!(inbox.messages, n, "and counted");
    drop((view, snap, user));
    // What the restore read: the chain from the head's base on.
    let view: Arc<dyn Backend> = Arc::new(Prefixed::new(store, "alice").expect("prefix"));
    let head = chain::read_head(&*view)
        .await
        .expect("head")
        .expect("a chain");
    let sizes = chain::probe(&*view, head.base).await.expect("chain");
    let (objects, bytes) = (sizes.len() as u64, sizes.iter().sum());
    node.close_idle().await;
    (took, objects, bytes)
}
