//! The resync benchmark: a client that last saw a large mailbox comes back after 1% of its
//! flags changed and 0.5% of its messages were expunged, and catches up either with one
//! `SELECT (QRESYNC ...)` or with a plain SELECT and a full `UID FETCH 1:* (FLAGS)`. Time and
//! bytes of each, per server, alternated between servers so their ratio holds on a noisy
//! machine.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Target, append, uids};
use crate::{Client, Reply, number_after};

const BOX: &str = "BenchResync";

/// What to build and how often to measure.
#[derive(Clone, Debug)]
pub struct ResyncOptions {
    /// Messages in the mailbox.
    pub messages: u32,
    /// Share of messages whose flags change while the client is away, in percent.
    pub changed_pct: f64,
    /// Share of messages expunged while the client is away, in percent.
    pub expunged_pct: f64,
    /// Samples of each way of resyncing.
    pub repeats: u32,
    /// Connections the mailbox is filled over.
    pub connections: u32,
}

/// One server's figures.
#[derive(Clone, Debug, Default)]
pub struct ResyncResult {
    /// The server.
    pub name: String,
    /// Time of each QRESYNC SELECT.
    pub qresync: Vec<Duration>,
    /// Bytes the QRESYNC SELECT's answer took.
    pub qresync_bytes: u64,
    /// Time of each SELECT plus full flag fetch.
    pub full: Vec<Duration>,
    /// Bytes of that answer.
    pub full_bytes: u64,
    /// Messages the QRESYNC SELECT reported changed, and UIDs it reported vanished.
    pub reported: (usize, usize),
}

fn reply_bytes(r: &Reply) -> u64 {
    // "* " + line + CRLF for each untagged line; tag + status + CRLF for the last.
    r.untagged.iter().map(|l| l.len() as u64 + 4).sum::<u64>() + r.status.len() as u64 + 8
}

/// The median of some durations.
pub fn median(d: &[Duration]) -> Duration {
    let mut d = d.to_vec();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

/// Fills the mailbox, remembers what a client saw, then changes and expunges while it is away.
/// Returns the client's UIDVALIDITY and HIGHESTMODSEQ.
async fn build(t: &Target, o: &ResyncOptions, seed: u64) -> (u64, u64) {
    let mut c = t.connect().await;
    let _ = c.cmd(&format!("DELETE {BOX}")).await;
    assert!(c.cmd(&format!("CREATE {BOX}")).await.is_ok());
    let per = o.messages.div_ceil(o.connections.max(1));
    let mut tasks = Vec::new();
    for k in 0..o.connections.max(1) {
        let t = t.clone();
        let (from, to) = (k * per, ((k + 1) * per).min(o.messages));
        tasks.push(tokio::spawn(async move {
            let mut c = t.connect().await;
            for i in from..to {
                let m = format!(
                    "From: a{i}@example.org\r\nTo: b@example.org\r\nSubject: resync {i}\r\n\
                     Message-ID: <{i}@resync>\r\n\r\nbody {i}\r\n"
                );
                assert!(append(&mut c, BOX, m.as_bytes()).await, "APPEND {i}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("filler");
    }
    // What the client saw when it last synced.
    assert!(c.cmd("ENABLE QRESYNC").await.is_ok());
    let r = c.cmd(&format!("SELECT {BOX}")).await;
    assert!(r.is_ok(), "{}: {r:?}", t.name);
    let validity = r
        .untagged
        .iter()
        .find_map(|l| number_after(l, "UIDVALIDITY"))
        .expect("UIDVALIDITY");
    let highest = r
        .untagged
        .iter()
        .find_map(|l| number_after(l, "HIGHESTMODSEQ"))
        .expect("HIGHESTMODSEQ");
    // While it is away: some flags change, some messages go.
    let mut all = uids(&mut c).await;
    all.shuffle(&mut StdRng::seed_from_u64(seed));
    let changed = (f64::from(o.messages) * o.changed_pct / 100.0) as usize;
    let expunged = (f64::from(o.messages) * o.expunged_pct / 100.0) as usize;
    for chunk in all[..changed].chunks(100) {
        let set: Vec<String> = chunk.iter().map(u32::to_string).collect();
        let r = c
            .cmd(&format!(
                "UID STORE {} +FLAGS.SILENT (\\Flagged)",
                set.join(",")
            ))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }
    let gone: Vec<String> = all[changed..changed + expunged]
        .iter()
        .map(u32::to_string)
        .collect();
    for chunk in gone.chunks(100) {
        let set = chunk.join(",");
        assert!(
            c.cmd(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
                .await
                .is_ok()
        );
        assert!(c.cmd(&format!("UID EXPUNGE {set}")).await.is_ok());
    }
    let _ = c.cmd("LOGOUT").await;
    (validity, highest)
}

async fn qresync_once(c: &mut Client, validity: u64, highest: u64) -> (Duration, Reply) {
    let start = Instant::now();
    let r = c
        .cmd(&format!("SELECT {BOX} (QRESYNC ({validity} {highest}))"))
        .await;
    let took = start.elapsed();
    assert!(r.is_ok(), "{r:?}");
    (took, r)
}

async fn full_once(c: &mut Client) -> (Duration, u64) {
    let start = Instant::now();
    let s = c.cmd(&format!("SELECT {BOX}")).await;
    let f = c.cmd("UID FETCH 1:* (FLAGS)").await;
    let took = start.elapsed();
    assert!(s.is_ok() && f.is_ok(), "{f:?}");
    (took, reply_bytes(&s) + reply_bytes(&f))
}

/// Builds the mailbox on every target, then measures both ways of resyncing on each, targets
/// alternated round by round.
pub async fn run(targets: &[Target], o: &ResyncOptions) -> Vec<ResyncResult> {
    let mut state = Vec::new();
    for t in targets {
        state.push(build(t, o, 7).await);
    }
    let mut out: Vec<ResyncResult> = targets
        .iter()
        .map(|t| ResyncResult {
            name: t.name.clone(),
            ..Default::default()
        })
        .collect();
    for _ in 0..o.repeats {
        for (i, t) in targets.iter().enumerate() {
            let (validity, highest) = state[i];
            // Each sample on a fresh, logged-in connection, as a client coming back.
            let mut c = t.connect().await;
            assert!(c.cmd("ENABLE QRESYNC").await.is_ok());
            let (took, r) = qresync_once(&mut c, validity, highest).await;
            out[i].qresync.push(took);
            out[i].qresync_bytes = reply_bytes(&r);
            out[i].reported = (
                r.untagged.iter().filter(|l| l.contains(" FETCH (")).count(),
                r.untagged
                    .iter()
                    .filter(|l| l.starts_with("VANISHED"))
                    .count(),
            );
            let _ = c.cmd("LOGOUT").await;
            let mut c = t.connect().await;
            let (took, bytes) = full_once(&mut c).await;
            out[i].full.push(took);
            out[i].full_bytes = bytes;
            let _ = c.cmd("LOGOUT").await;
        }
    }
    out
}

/// The report, as markdown.
pub fn report(o: &ResyncOptions, results: &[ResyncResult]) -> String {
    let mut s = format!(
        "### Resync: {} messages, {}% flags changed, {}% expunged, median of {}\n\n\
         | server | QRESYNC SELECT | bytes | SELECT + UID FETCH 1:* (FLAGS) | bytes | QRESYNC ÷ full |\n\
         |---|---|---|---|---|---|\n",
        o.messages, o.changed_pct, o.expunged_pct, o.repeats
    );
    for r in results {
        let q = median(&r.qresync);
        let f = median(&r.full);
        s.push_str(&format!(
            "| {} | {:.1} ms | {} | {:.1} ms | {} | {:.3} |\n",
            r.name,
            q.as_secs_f64() * 1000.0,
            r.qresync_bytes,
            f.as_secs_f64() * 1000.0,
            r.full_bytes,
            q.as_secs_f64() / f.as_secs_f64().max(1e-9)
        ));
    }
    if results.len() == 2 {
        let a = median(&results[0].qresync).as_secs_f64();
        let b = median(&results[1].qresync).as_secs_f64().max(1e-9);
        s.push_str(&format!(
            "\nQRESYNC SELECT, {} ÷ {}: **{:.2}**\n",
            results[0].name,
            results[1].name,
            a / b
        ));
    }
    s
}
