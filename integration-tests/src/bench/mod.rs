//! The IMAP benchmark: drives any IMAP server with the synthetic [`corpus`] through fixed
//! phases and reports, per phase, total time and per-command p50/p99. Two servers can be
//! measured side by side, phase by phase, so that the ratio between them holds on a noisy
//! machine. Used by the `imap-bench` binary (see `docs/benchmarks.md`).

pub mod cold;
pub mod corpus;
pub mod report;
pub mod resync;
pub mod search_scale;
pub mod ship;
pub mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Client;

/// A server to measure.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name in reports.
    pub name: String,
    /// Where it listens (plain IMAP, or implicit TLS with `tls_ca`).
    pub addr: SocketAddr,
    /// Connect with TLS, trusting this certificate.
    pub tls_ca: Option<PathBuf>,
    /// Login.
    pub user: String,
    /// Password.
    pub password: String,
    /// The processes whose resident memory is the server's: names, or `pid:N` for one
    /// process (a spawned server, which other processes of the same name must not inflate).
    pub processes: Vec<String>,
}

/// How big and how long the run is.
#[derive(Clone, Debug)]
pub struct Options {
    /// Messages in the corpus.
    pub messages: u32,
    /// Connections of the parallel APPEND phase.
    pub connections: u32,
    /// Corpus seed.
    pub seed: u64,
    /// Times each read phase is repeated (samples per phase).
    pub repeats: u32,
    /// Bodies per UID FETCH in the random-bodies phase.
    pub random_bodies: u32,
    /// Clients of the mixed phase.
    pub mixed_clients: u32,
    /// Length of the mixed phase.
    pub mixed_duration: Duration,
    /// Connections of the idle-memory phase.
    pub idle_connections: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            messages: 2000,
            connections: 8,
            seed: 1,
            repeats: 10,
            random_bodies: 200,
            mixed_clients: 16,
            mixed_duration: Duration::from_secs(20),
            idle_connections: 200,
        }
    }
}

/// Every phase, in the order they run.
pub const PHASES: &[&str] = &[
    "append-1",
    "append-n",
    "select",
    "fetch-meta",
    "fetch-envelope",
    "fetch-bodystructure",
    "fetch-headers",
    "fetch-bodies",
    "store",
    "search-header",
    "search-body",
    "expunge-half",
    "mixed",
    "login",
    "login-churn",
    "idle-memory",
];

/// One phase's measurements.
#[derive(Clone, Debug, Default)]
pub struct PhaseResult {
    /// The phase.
    pub phase: String,
    /// Wall time of the whole phase.
    pub total: Duration,
    /// One sample per timed command.
    pub samples: Vec<Duration>,
    /// Commands answered NO or BAD, or lost connections.
    pub errors: u64,
    /// A figure of its own (commands/s for `mixed`, bytes per connection for `idle-memory`).
    pub figure: Option<(String, f64)>,
    /// The server's peak resident memory during the phase, in bytes, where it could be read.
    pub peak: Option<u64>,
}

impl PhaseResult {
    fn new(phase: &str) -> Self {
        PhaseResult {
            phase: phase.to_string(),
            ..Default::default()
        }
    }

    /// The `q` quantile (0..=1) of the samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let i = ((s.len() - 1) as f64 * q).round() as usize;
        s[i]
    }
}

const BOX_ONE: &str = "BenchOne";
const BOX_MANY: &str = "BenchMany";

impl Target {
    /// A connection, greeted, not logged in.
    pub async fn greeted(&self) -> Client {
        match &self.tls_ca {
            Some(ca) => Client::tls(self.addr, ca).await,
            None => Client::plain(self.addr).await,
        }
    }

    /// A logged-in connection.
    pub async fn connect(&self) -> Client {
        let mut c = self.greeted().await;
        let r = c
            .cmd(&format!(
                "LOGIN {} {}",
                quote(&self.user),
                quote(&self.password)
            ))
            .await;
        assert!(r.is_ok(), "{}: login failed: {r:?}", self.name);
        c
    }

    /// Resident memory of the server's processes, in bytes.
    pub fn rss(&self) -> Option<u64> {
        self.status_sum("VmRSS:")
    }

    /// The sum of the server's processes' peak resident memory since `reset_peak`, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.status_sum("VmHWM:")
    }

    /// Starts the server's processes' peak resident memory again from what they hold now.
    pub fn reset_peak(&self) {
        for dir in self.server_processes() {
            // "5" resets VmHWM (proc(5), clear_refs); a process we may not write to keeps its own.
            let _ = std::fs::write(dir.join("clear_refs"), "5");
        }
    }

    fn server_processes(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|dir| {
                let pid = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                self.processes
                    .iter()
                    .any(|p| p.strip_prefix("pid:") == Some(pid))
                    || std::fs::read_to_string(dir.join("comm"))
                        .is_ok_and(|comm| self.processes.iter().any(|p| p == comm.trim()))
            })
            .collect()
    }

    fn status_sum(&self, field: &str) -> Option<u64> {
        if self.processes.is_empty() {
            return None;
        }
        let mut total = 0;
        for dir in self.server_processes() {
            let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
                continue;
            };
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                total += kb * 1024;
            }
        }
        Some(total)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Appends with a non-synchronizing literal (LITERAL+), as fast clients do.
async fn append(c: &mut Client, mailbox: &str, message: &[u8]) -> bool {
    let tag = c.tag();
    let mut bytes = format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).into_bytes();
    bytes.extend_from_slice(message);
    bytes.extend_from_slice(b"\r\n");
    c.send_raw(&bytes).await;
    c.until_tagged(&tag).await.is_ok()
}

async fn timed(c: &mut Client, res: &mut PhaseResult, cmd: &str) -> crate::Reply {
    let start = Instant::now();
    let r = c.cmd(cmd).await;
    res.samples.push(start.elapsed());
    if !r.is_ok() {
        res.errors += 1;
    }
    r
}

/// Empties the benchmark mailboxes before a run.
pub async fn prepare(t: &Target) {
    let mut c = t.connect().await;
    for b in [BOX_ONE, BOX_MANY] {
        let _ = c.cmd(&format!("DELETE {b}")).await;
        let r = c.cmd(&format!("CREATE {b}")).await;
        assert!(r.is_ok(), "{}: CREATE {b}: {r:?}", t.name);
    }
    let _ = c.cmd("LOGOUT").await;
}

async fn uids(c: &mut Client) -> Vec<u32> {
    let r = c.cmd("UID SEARCH ALL").await;
    r.with("SEARCH")
        .first()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one phase against a target.
pub async fn run_phase(t: &Target, phase: &str, o: &Options) -> PhaseResult {
    let mut res = PhaseResult::new(phase);
    match phase {
        "append-1" => {
            let mut c = t.connect().await;
            for i in 0..o.messages {
                let m = corpus::message(o.seed, i);
                let s = Instant::now();
                if !append(&mut c, BOX_ONE, &m).await {
                    res.errors += 1;
                }
                res.samples.push(s.elapsed());
            }
        }
        "append-n" => {
            let n = o.connections.max(1);
            // Every connection logs in first; the clock starts when all are ready.
            let ready = std::sync::Arc::new(tokio::sync::Barrier::new(n as usize + 1));
            let mut tasks = Vec::new();
            for k in 0..n {
                let t = t.clone();
                let o = o.clone();
                let ready = ready.clone();
                tasks.push(tokio::spawn(async move {
                    let mut c = t.connect().await;
                    ready.wait().await;
                    let mut out = PhaseResult::default();
                    for i in (k..o.messages).step_by(n as usize) {
                        let m = corpus::message(o.seed, i);
                        let s = Instant::now();
                        if !append(&mut c, BOX_MANY, &m).await {
                            out.errors += 1;
                        }
                        out.samples.push(s.elapsed());
                    }
                    out
                }));
            }
            ready.wait().await;
            let start = Instant::now();
            for task in tasks {
                let r = task.await.expect("append task");
                res.samples.extend(r.samples);
                res.errors += r.errors;
            }
            res.total = start.elapsed();
            return res;
        }
        "select" => {
            for _ in 0..o.repeats {
                let mut c = t.connect().await;
                timed(&mut c, &mut res, &format!("SELECT {BOX_ONE}")).await;
                let _ = c.cmd("LOGOUT").await;
            }
        }
        "fetch-meta" | "fetch-envelope" | "fetch-bodystructure" | "fetch-headers" => {
            let items = match phase {
                "fetch-meta" => "(FLAGS UID RFC822.SIZE INTERNALDATE)",
                "fetch-envelope" => "(ENVELOPE)",
                "fetch-bodystructure" => "(BODYSTRUCTURE)",
                _ => "(BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])",
            };
            let mut c = t.connect().await;
            c.cmd(&format!("EXAMINE {BOX_ONE}")).await;
            for _ in 0..o.repeats {
                let start = Instant::now();
                let (r, _) = c.cmd_counting(&format!("FETCH 1:* {items}")).await;
                res.samples.push(start.elapsed());
                if !r.is_ok() || r.untagged.len() < o.messages as usize {
                    res.errors += 1;
                }
            }
        }
        "fetch-bodies" => {
            let mut c = t.connect().await;
            c.cmd(&format!("EXAMINE {BOX_ONE}")).await;
            let all = uids(&mut c).await;
            let mut rng = StdRng::seed_from_u64(o.seed);
            for _ in 0..o.repeats {
                let pick: Vec<String> = (0..o.random_bodies.min(all.len() as u32))
                    .map(|_| all[rng.random_range(0..all.len())].to_string())
                    .collect();
                let start = Instant::now();
                let (r, _) = c
                    .cmd_counting(&format!("UID FETCH {} (BODY.PEEK[])", pick.join(",")))
                    .await;
                res.samples.push(start.elapsed());
                if !r.is_ok() {
                    res.errors += 1;
                }
            }
        }
        "store" => {
            let mut c = t.connect().await;
            c.cmd(&format!("SELECT {BOX_ONE}")).await;
            for u in uids(&mut c).await {
                timed(
                    &mut c,
                    &mut res,
                    &format!("UID STORE {u} +FLAGS (\\Flagged)"),
                )
                .await;
            }
        }
        "search-header" | "search-body" => {
            let key = if phase == "search-header" {
                format!("SUBJECT {}", corpus::RARE_SUBJECT_WORD)
            } else {
                format!("BODY {}", corpus::RARE_BODY_WORD)
            };
            let mut c = t.connect().await;
            c.cmd(&format!("EXAMINE {BOX_ONE}")).await;
            for _ in 0..o.repeats {
                timed(&mut c, &mut res, &format!("SEARCH {key}")).await;
            }
        }
        "expunge-half" => {
            let mut c = t.connect().await;
            c.cmd(&format!("SELECT {BOX_ONE}")).await;
            let odd: Vec<String> = uids(&mut c)
                .await
                .into_iter()
                .step_by(2)
                .map(|u| u.to_string())
                .collect();
            for chunk in odd.chunks(500) {
                c.cmd(&format!(
                    "UID STORE {} +FLAGS.SILENT (\\Deleted)",
                    chunk.join(",")
                ))
                .await;
            }
            timed(&mut c, &mut res, "EXPUNGE").await;
        }
        "mixed" => return mixed(t, o).await,
        "login-churn" => return login_churn(t, o).await,
        "login" => {
            // The same user again and again on new connections, as reconnecting phones do:
            // each sample is the LOGIN command alone.
            for _ in 0..o.repeats * 20 {
                let mut c = t.greeted().await;
                let s = Instant::now();
                let r = c
                    .cmd(&format!("LOGIN {} {}", quote(&t.user), quote(&t.password)))
                    .await;
                res.samples.push(s.elapsed());
                if !r.is_ok() {
                    res.errors += 1;
                }
                let _ = c.cmd("LOGOUT").await;
            }
        }
        "idle-memory" => return idle_memory(t, o).await,
        other => panic!("unknown phase {other}"),
    }
    // One command at a time: the phase's time is its commands' time, not logins and setup.
    res.total = res.samples.iter().sum();
    res
}

async fn mixed(t: &Target, o: &Options) -> PhaseResult {
    let res = PhaseResult::new("mixed");
    // Every client logs in and selects first; the clock starts when all are ready.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(o.mixed_clients as usize + 1));
    let mut tasks = Vec::new();
    for k in 0..o.mixed_clients {
        let t = t.clone();
        let o = o.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = PhaseResult::default();
            let mut rng = StdRng::seed_from_u64(o.seed + u64::from(k));
            let mut c = t.connect().await;
            c.cmd(&format!("SELECT {BOX_MANY}")).await;
            let all = uids(&mut c).await;
            let mut appended = 0;
            ready.wait().await;
            let deadline = Instant::now() + o.mixed_duration;
            while Instant::now() < deadline {
                let roll: f64 = rng.random();
                let u = all
                    .get(rng.random_range(0..all.len().max(1)))
                    .copied()
                    .unwrap_or(1);
                let lo = u.saturating_sub(50).max(1);
                let cmd = if roll < 0.30 {
                    format!("UID FETCH {lo}:{u} (FLAGS)")
                } else if roll < 0.50 {
                    format!("UID FETCH {lo}:{u} (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
                } else if roll < 0.65 {
                    format!("UID FETCH {u} (BODY.PEEK[])")
                } else if roll < 0.80 {
                    let op = if rng.random_bool(0.5) { '+' } else { '-' };
                    format!("UID STORE {u} {op}FLAGS (\\Seen)")
                } else if roll < 0.85 {
                    format!(
                        "SEARCH SUBJECT {}",
                        corpus::WORDS[rng.random_range(0..corpus::WORDS.len())]
                    )
                } else if roll < 0.90 {
                    let m = corpus::message(o.seed + 7, k * 100_000 + appended);
                    appended += 1;
                    let s = Instant::now();
                    if !append(&mut c, BOX_MANY, &m).await {
                        out.errors += 1;
                    }
                    out.samples.push(s.elapsed());
                    continue;
                } else {
                    "NOOP".to_string()
                };
                timed(&mut c, &mut out, &cmd).await;
            }
            out
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    gather(res, tasks, start, "commands/s").await
}

/// `--mixed-clients` clients for `--mixed-secs`, each in a loop of short sessions, as phones
/// reconnecting do: connect, LOGIN, STATUS INBOX, SELECT INBOX, NOOP, LOGOUT. Each sample is one
/// whole session; the figure is sessions per second.
async fn login_churn(t: &Target, o: &Options) -> PhaseResult {
    let res = PhaseResult::new("login-churn");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.mixed_clients {
        let t = t.clone();
        let duration = o.mixed_duration;
        tasks.push(tokio::spawn(async move {
            let mut out = PhaseResult::default();
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                let s = Instant::now();
                let mut c = t.greeted().await;
                let login = format!("LOGIN {} {}", quote(&t.user), quote(&t.password));
                for cmd in [
                    login.as_str(),
                    "STATUS INBOX (MESSAGES UNSEEN)",
                    "SELECT INBOX",
                    "NOOP",
                    "LOGOUT",
                ] {
                    if !c.cmd(cmd).await.is_ok() {
                        out.errors += 1;
                    }
                }
                out.samples.push(s.elapsed());
            }
            out
        }));
    }
    gather(res, tasks, start, "sessions/s").await
}

/// The samples and errors of every client's task into `res`, timed from `start`, with the
/// samples per second as its figure, named `unit`.
async fn gather(
    mut res: PhaseResult,
    tasks: Vec<tokio::task::JoinHandle<PhaseResult>>,
    start: Instant,
    unit: &str,
) -> PhaseResult {
    for task in tasks {
        match task.await {
            Ok(r) => {
                res.samples.extend(r.samples);
                res.errors += r.errors;
            }
            Err(_) => res.errors += 1,
        }
    }
    res.total = start.elapsed();
    let rate = res.samples.len() as f64 / res.total.as_secs_f64();
    res.figure = Some((unit.into(), rate));
    res
}

async fn idle_memory(t: &Target, o: &Options) -> PhaseResult {
    let mut res = PhaseResult::new("idle-memory");
    let start = Instant::now();
    let Some(before) = t.rss() else {
        res.figure = Some(("no process names given".into(), 0.0));
        return res;
    };
    // Two equal steps; the second's growth is the marginal cost of a connection, without what
    // the first connections pay once (the user's index and mailbox view, allocator pools).
    let mut conns = Vec::new();
    let mut step = async || {
        for _ in 0..o.idle_connections {
            let mut c = t.connect().await;
            c.cmd(&format!("SELECT {BOX_ONE}")).await;
            c.send_raw(b"i IDLE\r\n").await;
            let _ = c.read_response().await;
            conns.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    step().await;
    let before = t.rss().unwrap_or(before);
    step().await;
    let after = t.rss().unwrap_or(before);
    for mut c in conns {
        c.send_raw(b"DONE\r\n").await;
        let _ = c.until_tagged("i").await;
        let _ = c.cmd("LOGOUT").await;
    }
    res.total = start.elapsed();
    let per = after.saturating_sub(before) as f64 / f64::from(o.idle_connections.max(1));
    res.figure = Some(("bytes/connection".into(), per));
    res
}

/// Runs the phases against each target, alternating targets phase by phase.
pub async fn run(targets: &[Target], phases: &[String], o: &Options) -> Vec<Vec<PhaseResult>> {
    for t in targets {
        prepare(t).await;
    }
    let mut out: Vec<Vec<PhaseResult>> = vec![Vec::new(); targets.len()];
    for phase in phases {
        for (i, t) in targets.iter().enumerate() {
            t.reset_peak();
            let mut r = run_phase(t, phase, o).await;
            r.peak = t.peak_rss();
            eprintln!(
                "{:>10} {:<20} {:>9.1} ms total, p50 {:.2} ms, p99 {:.2} ms, {} errors, peak {} MiB{}",
                t.name,
                phase,
                r.total.as_secs_f64() * 1000.0,
                r.quantile(0.5).as_secs_f64() * 1000.0,
                r.quantile(0.99).as_secs_f64() * 1000.0,
                r.errors,
                r.peak.map_or("?".into(), |b| (b >> 20).to_string()),
                r.figure
                    .as_ref()
                    .map(|(k, v)| format!(", {v:.0} {k}"))
                    .unwrap_or_default()
            );
            out[i].push(r);
        }
    }
    out
}
