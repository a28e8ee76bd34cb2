//! SEARCH BODY on a large mailbox over a slow store (`imap-bench search-scale`): Strata with S3
//! bodies on loopback behind the journal is filled with N small messages, its full-text index
//! catches up, then it restarts with every store read delayed, and SEARCH BODY is timed for a
//! word a few messages hold, a word none holds, and a word every message holds. The same
//! searches with the full-text index off cost about ceil(N / read_concurrency) round trips;
//! that is measured on a smaller mailbox (the time grows with N), not on the large one.

use std::time::{Duration, Instant};

use strata_config::Config;

use crate::bench::corpus::WORDS;
use crate::stores::Store;
use crate::{Client, TestServer, read_delay, until};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Messages in the large mailbox.
    pub messages: u32,
    /// Messages in the mailbox searched without the full-text index.
    pub unindexed: u32,
    /// Injected latency of every store read.
    pub latency: Duration,
    /// Searches per needle (the median is reported).
    pub repeats: u32,
    /// Connections the APPENDs are spread over.
    pub connections: u32,
}

/// One message in a thousand holds it.
const RARE: &str = "quokka";
/// No message holds it.
const ABSENT: &str = "axolotl";
/// Every message holds it.
const COMMON: &str = "meeting";

/// Message `i`: about 1.5 KB of text.
fn message(i: u32) -> Vec<u8> {
    let mut body = String::new();
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for line in 0..16 {
        for _ in 0..10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            body.push(' ');
        }
        if line == 8 {
            body.push_str(COMMON);
            if i % 1000 == 7 {
                body.push(' ');
                body.push_str(RARE);
            }
        }
        body.push_str("\r\n");
    }
    format!(
        "From: Sender {i} <s{i}@example.org>\r\nTo: bench@example.org\r\nSubject: message {i}\r\nMessage-ID: <scale{i}@example.org>\r\nDate: Tue, 1 Jul 2025 10:52:37 +0200\r\n\r\n{body}"
    )
    .into_bytes()
}

/// APPENDs messages `0..n` to INBOX over `connections` connections.
async fn fill(s: &TestServer, n: u32, connections: u32) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let addr = s.imap_addr();
            tokio::spawn(async move {
                let mut client = Client::plain(addr).await;
                client.ok("LOGIN alice alice-password").await;
                for i in (c..n).step_by(connections as usize) {
                    let r = client.append("INBOX", "", &message(i)).await;
                    assert!(r.is_ok(), "APPEND {i}: {r:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("append task");
    }
    start.elapsed()
}

/// Waits until alice's full-text index holds every message.
async fn indexed(s: &TestServer, limit: Duration) -> Duration {
    let start = Instant::now();
    let store = s.server().store.clone();
    until("the full-text index caught up", limit, || {
        store
            .open_users()
            .iter()
            .find(|u| u.name() == "alice")
            .and_then(|u| u.fts_unindexed().ok().flatten())
            .is_some_and(|n| n == 0)
    })
    .await;
    start.elapsed()
}

/// The median time of `UID SEARCH BODY needle`, and how many messages it found.
async fn search(c: &mut Client, needle: &str, repeats: u32) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let r = c.ok(&format!("UID SEARCH BODY {needle}")).await;
        times.push(start.elapsed());
        found = r
            .with("SEARCH")
            .first()
            .map_or(0, |l| l.split_whitespace().count().saturating_sub(1));
    }
    times.sort();
    (times[times.len() / 2], found)
}

async fn server(fts: bool) -> TestServer {
    TestServer::start_on(Store::S3, |c: &mut Config| {
        c.index.fts.enabled = fts;
        c.imap.tls = None;
    })
    .await
}

/// Restarts `s` with every store read delayed by `latency`, and logs alice in on it.
async fn slowed(s: &mut TestServer, latency: Duration) -> Client {
    s.stop().await;
    s.config.storage.main.delay = Some(read_delay(latency, Duration::ZERO));
    s.restart().await;
    let mut c = s.login("alice").await;
    c.ok("EXAMINE INBOX").await;
    c
}

/// Runs the measurement; the report in markdown.
pub async fn run(o: &Options) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut text = format!(
        "\n### SEARCH BODY at scale: S3 on loopback behind the journal, every store read delayed {} ms, median of {}\n\n",
        o.latency.as_millis(),
        o.repeats
    );
    text.push_str("| mailbox | full-text index | needle | messages found | time ms |\n|---|---|---|---:|---:|\n");

    let mut big = server(true).await;
    let filled = fill(&big, o.messages, o.connections).await;
    let caught_up = indexed(&big, Duration::from_secs(3600)).await;
    eprintln!(
        "{} messages appended in {:.1} s; indexed {:.1} s later",
        o.messages,
        filled.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    let mut c = slowed(&mut big, o.latency).await;
    // The indexer compares the whole index with the full-text index at start: wait for it, so
    // the searches find it settled.
    indexed(&big, Duration::from_secs(600)).await;
    let before = big.server().backends.delay_stats().reads;
    for needle in [RARE, ABSENT, COMMON] {
        let (t, found) = search(&mut c, needle, o.repeats).await;
        text.push_str(&format!(
            "| {} | on | {needle} | {found} | {:.1} |\n",
            o.messages,
            ms(t)
        ));
    }
    let reads = big.server().backends.delay_stats().reads - before;
    big.stop().await;

    let mut small = server(false).await;
    fill(&small, o.unindexed, o.connections).await;
    let mut c = slowed(&mut small, o.latency).await;
    for needle in [RARE, ABSENT] {
        let (t, found) = search(&mut c, needle, o.repeats.min(3)).await;
        text.push_str(&format!(
            "| {} | off | {needle} | {found} | {:.1} |\n",
            o.unindexed,
            ms(t)
        ));
    }
    small.stop().await;
    text.push_str(&format!(
        "\nStore reads during the searches with the full-text index: {reads}. Filling: {} messages in {:.0} s over {} connections, indexed {:.0} s after the last APPEND.\n",
        o.messages,
        filled.as_secs_f64(),
        o.connections,
        caught_up.as_secs_f64()
    ));
    text
}
