//! Reads of cold mail (`imap-bench cold`): Strata on SQLite (the hot store) with a cold S3
//! store on loopback whose reads are delayed, and a read cache in front of it. The corpus is
//! appended twice, to INBOX (stays hot) and to Archive (which tiering moves to the cold store);
//! then FETCH BODY[] is timed for the same messages read cold the first time, cold the second
//! time (from the cache), and hot, one message per command and many per command; and before
//! that, FETCH BODY[HEADER] of many (a header is kept as a prefix of its message).

use std::time::{Duration, Instant};

use crate::bench::corpus;
use crate::s3server::S3Server;
use crate::stores::{Store, cold_store, s3_backend};
use crate::{Client, TestServer, read_delay};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Messages in each mailbox.
    pub messages: u32,
    /// Of those, how many are read one per command (the rest are read in one FETCH).
    pub singles: u32,
    /// Injected latency of every cold-store read.
    pub latency: Duration,
}

/// The time of `UID FETCH set BODY.PEEK[]` and the bytes of its reply.
async fn fetch(c: &mut Client, set: &str) -> (Duration, usize) {
    fetch_section(c, set, "").await
}

/// The time of `UID FETCH set BODY.PEEK[section]` and the bytes of its reply.
async fn fetch_section(c: &mut Client, set: &str, section: &str) -> (Duration, usize) {
    let start = Instant::now();
    let r = c
        .ok(&format!("UID FETCH {set} (BODY.PEEK[{section}])"))
        .await;
    let t = start.elapsed();
    (t, r.untagged.iter().map(String::len).sum())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs the measurement; the report in markdown.
pub async fn run(o: &Options) -> String {
    let root = tempfile::tempdir().expect("temporary directory");
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .expect("S3 server on loopback");
    let latency = o.latency;
    let s = TestServer::start_on(Store::Sqlite, |c| {
        c.imap.tls = None;
        // Nothing reads bodies behind the benchmark's back (the full-text indexer would warm
        // the cache).
        c.index.fts.enabled = false;
        let archive = vec![strata_config::TierRule {
            mailboxes: vec!["Archive".into()],
            ..strata_config::TierRule::default()
        }];
        let day = Duration::from_secs(24 * 3600);
        let cold = cold_store(c, s3_backend(&s3), archive, day, None, 4 << 30);
        cold.delay = Some(read_delay(latency, Duration::ZERO));
    })
    .await;
    let mut c = s.login("alice").await;
    let mut bytes = 0;
    for i in 0..o.messages {
        let m = corpus::message(1, i);
        bytes += m.len();
        for mailbox in ["INBOX", "Archive"] {
            let r = c.append(mailbox, "", &m).await;
            assert!(r.is_ok(), "APPEND: {r:?}");
        }
    }
    let moved = strata_server::control::request(&s.data_dir, "tier-run alice", &mut |_| {})
        .await
        .expect("tier-run")
        .expect("the server answers");
    eprintln!("{moved}");
    let mut hot = s.login("alice").await;
    hot.ok("EXAMINE INBOX").await;
    c.ok("EXAMINE Archive").await;
    let reads = || s.server().backends.delay_stats().reads;

    // Headers first, while no body is cached whole.
    let singles = o.singles.min(o.messages);
    let set = format!("{}:{}", singles + 1, o.messages);
    let before = reads();
    let (head_first, reply) = fetch_section(&mut c, &set, "HEADER").await;
    let head_first_reads = reads() - before;
    let before = reads();
    let (head_second, reply2) = fetch_section(&mut c, &set, "HEADER").await;
    let head_second_reads = reads() - before;
    let (head_hot, reply3) = fetch_section(&mut hot, &set, "HEADER").await;
    assert!(
        reply == reply2 && reply2 == reply3,
        "every header read answers the same bytes"
    );

    // One message per command.
    let (mut first, mut second, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let before = reads();
    for uid in 1..=singles {
        first.push(fetch(&mut c, &uid.to_string()).await.0);
    }
    let first_reads = reads() - before;
    let before = reads();
    for uid in 1..=singles {
        second.push(fetch(&mut c, &uid.to_string()).await.0);
        warm.push(fetch(&mut hot, &uid.to_string()).await.0);
    }
    let second_reads = reads() - before;

    // The rest in one command each.
    let before = reads();
    let (many_first, reply) = fetch(&mut c, &set).await;
    let many_first_reads = reads() - before;
    let before = reads();
    let (many_second, reply2) = fetch(&mut c, &set).await;
    let many_second_reads = reads() - before;
    let (many_hot, reply3) = fetch(&mut hot, &set).await;
    assert!(
        reply == reply2 && reply2 == reply3,
        "every read answers the same bytes"
    );

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (f, sc, h) = (median(first), median(second), median(warm));
    let mut text = format!(
        "\n### Cold reads: {} messages ({:.1} MB, generated corpus, seed 1) in a mailbox on S3 on loopback, every cold-store read delayed {} ms; the same messages hot on SQLite\n\n",
        o.messages,
        bytes as f64 / 1e6,
        o.latency.as_millis()
    );
    text.push_str("| FETCH BODY[] | cold, first read ms | cold, second read ms | hot ms | second ÷ hot | cold-store reads (first / second) |\n|---|---:|---:|---:|---:|---|\n");
    text.push_str(&format!(
        "| 1 message per command (median of {singles}) | {:.1} | {:.2} | {:.2} | {:.2} | {first_reads} / {second_reads} |\n",
        ms(f),
        ms(sc),
        ms(h),
        sc.as_secs_f64() / h.as_secs_f64()
    ));
    text.push_str(&format!(
        "| {} messages in one command | {:.1} | {:.1} | {:.1} | {:.2} | {many_first_reads} / {many_second_reads} |\n",
        o.messages - singles,
        ms(many_first),
        ms(many_second),
        ms(many_hot),
        many_second.as_secs_f64() / many_hot.as_secs_f64()
    ));
    text.push_str(&format!(
        "| {} messages in one command, BODY[HEADER] (before the bodies) | {:.1} | {:.1} | {:.1} | {:.2} | {head_first_reads} / {head_second_reads} |\n",
        o.messages - singles,
        ms(head_first),
        ms(head_second),
        ms(head_hot),
        head_second.as_secs_f64() / head_hot.as_secs_f64()
    ));
    text
}
