//! `imap-bench`: measures IMAP servers with a deterministic synthetic corpus. `run` drives one
//! or two servers phase by phase (two are alternated so their ratio holds on a noisy machine);
//! without `--target` it starts Strata in this process. `sweep` starts Strata over the delay
//! backend at several latencies. See docs/benchmarks.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata_integration_tests::TestServer;
use strata_integration_tests::bench::{self, Options, PHASES, PhaseResult, Target, report};

#[derive(Parser)]
#[command(name = "imap-bench", about = "Measures IMAP servers side by side")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the phases against one or two servers (or an in-process Strata).
    Run(RunArgs),
    /// Runs the phases against an in-process Strata over the delay backend at each latency.
    Sweep(SweepArgs),
    /// Measures resynchronization: one SELECT (QRESYNC ...) against a plain SELECT and a full
    /// flag fetch, after 1% of flags changed and 0.5% of messages went.
    Resync(ResyncArgs),
    /// Measures index shipping: APPEND throughput with it on and off, bytes shipped, and the
    /// restore of N-message users from S3.
    Ship(ShipArgs),
    /// Measures SEARCH BODY on a large mailbox on S3 with injected latency, answered from the
    /// full-text index (and, on a smaller one, without it).
    SearchScale(SearchScaleArgs),
    /// Measures bytes stored, and the time to store and read them, with single-instance
    /// parts, compression and encryption against a plain store, on SQLite in process.
    Storage(StorageArgs),
    /// Measures FETCH of cold mail (tiered to S3 with injected latency): the first read, the
    /// second (from the read cache) and the same messages hot.
    Cold(ColdArgs),
}

#[derive(Args, Clone)]
struct ColdArgs {
    /// Messages in the cold mailbox (and as many hot).
    #[arg(long, default_value_t = 300)]
    messages: u32,
    /// Of those, how many are read one per command.
    #[arg(long, default_value_t = 50)]
    singles: u32,
    /// Injected latency of every cold-store read, in ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct StorageArgs {
    /// Deliveries (messages before each goes to every recipient).
    #[arg(long, default_value_t = 200)]
    deliveries: u32,
    /// Users each delivery goes to.
    #[arg(long, default_value_t = 10)]
    recipients: u32,
    /// The share of deliveries carrying an attachment other deliveries carry too.
    #[arg(long, default_value_t = 0.3)]
    shared: f64,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct SearchScaleArgs {
    /// Messages in the mailbox searched with the full-text index.
    #[arg(long, default_value_t = 100_000)]
    messages: u32,
    /// Messages in the mailbox searched without it.
    #[arg(long, default_value_t = 2_000)]
    unindexed: u32,
    /// Injected latency of every store read, in ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Searches per needle.
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// Connections the APPENDs are spread over.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ShipArgs {
    /// APPENDs per round and server.
    #[arg(long, default_value_t = 400)]
    appends: u32,
    /// Connections the APPENDs are spread over.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Rounds per server, alternated.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Sizes of the users restored, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    restore: Vec<u32>,
    /// Injected store latency of the second restore of each size, in ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ResyncArgs {
    /// A server to compare with, as NAME=HOST:PORT (plain IMAP); a `strata` process is started
    /// and measured first.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Login on the other targets.
    #[arg(long, default_value = "bench")]
    user: String,
    /// Password on the other targets.
    #[arg(long, default_value = "bench")]
    password: String,
    /// Messages in the mailbox.
    #[arg(long, default_value_t = 20_000)]
    messages: u32,
    /// Flags changed while the client is away, in percent of the messages.
    #[arg(long, default_value_t = 1.0)]
    changed_pct: f64,
    /// Messages expunged while the client is away, in percent.
    #[arg(long, default_value_t = 0.5)]
    expunged_pct: f64,
    /// Samples of each way of resyncing.
    #[arg(long, default_value_t = 7)]
    repeats: u32,
    /// Connections the mailbox is filled over.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct Sizes {
    /// Messages in the corpus.
    #[arg(long, default_value_t = 2000)]
    messages: u32,
    /// Connections of the parallel APPEND phase.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Samples per read phase.
    #[arg(long, default_value_t = 10)]
    repeats: u32,
    /// Bodies per UID FETCH in fetch-bodies.
    #[arg(long, default_value_t = 200)]
    random_bodies: u32,
    /// Clients of the mixed phase.
    #[arg(long, default_value_t = 16)]
    mixed_clients: u32,
    /// Seconds of the mixed phase.
    #[arg(long, default_value_t = 20)]
    mixed_secs: u64,
    /// Connections held in IDLE by idle-memory.
    #[arg(long, default_value_t = 200)]
    idle_connections: u32,
    /// Corpus seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Phases to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
    /// Append the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Sizes {
    fn options(&self) -> Options {
        Options {
            messages: self.messages,
            connections: self.connections,
            seed: self.seed,
            repeats: self.repeats,
            random_bodies: self.random_bodies,
            mixed_clients: self.mixed_clients,
            mixed_duration: Duration::from_secs(self.mixed_secs),
            idle_connections: self.idle_connections,
        }
    }

    fn phases(&self, default: &[&str]) -> Vec<String> {
        if self.phases.is_empty() {
            default.iter().map(|p| p.to_string()).collect()
        } else {
            self.phases.clone()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// A server as NAME=HOST:PORT (plain IMAP, or TLS with --tls-ca); give two to compare.
    /// Without one, a `strata` process is started (login bench/bench), and with
    /// `--with-strata` it is added as the first of two.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Start a `strata` process and compare the one --target against it.
    #[arg(long)]
    with_strata: bool,
    /// TOML appended to the started `strata`'s configuration, to measure a feature off (for
    /// example `--strata-config '[index.fts]\nenabled = false'`; `\n` starts a line).
    #[arg(long, default_value = "")]
    strata_config: String,
    /// Login (the same on every target).
    #[arg(long, default_value = "bench")]
    user: String,
    /// Password.
    #[arg(long, default_value = "bench")]
    password: String,
    /// Connect with implicit TLS, trusting this certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The processes whose memory is a target's, as NAME=comm1,comm2 (for idle-memory).
    #[arg(long = "processes")]
    processes: Vec<String>,
    #[command(flatten)]
    sizes: Sizes,
}

#[derive(Args)]
struct SweepArgs {
    /// Injected latencies in milliseconds (reads, and acks of writes), with 10% jitter.
    #[arg(long, value_delimiter = ',', default_value = "0,5,20,50,100")]
    latencies: Vec<u64>,
    #[command(flatten)]
    sizes: Sizes,
}

/// This process, where Strata runs in-process (by id: another imap-bench must not count).
fn own_process() -> Vec<String> {
    vec![format!("pid:{}", std::process::id())]
}

async fn in_process_strata(latency_ms: u64, acked: bool) -> (TestServer, Target) {
    let server = TestServer::start_with(|c| {
        c.imap.tls = None;
        c.imap.max_connections_per_ip = 10_000;
        c.imap.max_connections = 10_000;
        if acked {
            c.storage.append_ack = strata_config::AppendAck::Acked;
        }
        if latency_ms > 0 {
            let l = Duration::from_millis(latency_ms);
            c.storage.main.delay = Some(strata_config::Delay {
                seed: 1,
                read: l,
                read_jitter: l / 10,
                write: Duration::ZERO,
                write_jitter: Duration::ZERO,
                error_rate: 0.0,
                stall_rate: 0.0,
                stall: Duration::ZERO,
                ack: l,
                ack_jitter: l / 10,
            });
        }
    })
    .await;
    let target = Target {
        name: "strata".into(),
        addr: server.imap_addr(),
        tls_ca: None,
        user: "alice".into(),
        password: "alice-password".into(),
        processes: own_process(),
    };
    (server, target)
}

/// A `strata` server started as its own process (from the binary beside this one), so that its
/// memory is measured apart from the benchmark's.
struct Spawned {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// A memory figure of the process from `/proc/PID/status`, in MiB (0 if unreadable).
    fn status_mib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib >> 10)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn spawn_strata(extra: &str) -> (Spawned, Target) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()
        .expect("own path")
        .with_file_name("strata");
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build --release -p strata-server`",
        exe.display()
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\nmax_connections = 100000\nmax_connections_per_ip = 100000\n{}\n",
            data.display(),
            extra.replace("\\n", "\n")
        ),
    )
    .expect("config file");
    let mut add = Command::new(&exe)
        .args([
            "--config",
            config.to_str().expect("path"),
            "user",
            "add",
            "bench",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("strata user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"bench\n")
        .expect("password");
    assert!(add.wait().expect("user add").success());
    let mut child = Command::new(&exe)
        .args(["--config", config.to_str().expect("path"), "serve"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("server output") > 0,
            "strata exited"
        );
        if let Some(a) = line.trim().strip_prefix("strata: IMAP (STARTTLS) on ") {
            break a.parse().expect("address");
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let target = Target {
        name: "strata".into(),
        addr,
        tls_ca: None,
        user: "bench".into(),
        password: "bench".into(),
        processes: vec![format!("pid:{}", child.id())],
    };
    (Spawned { child, _dir: dir }, target)
}

fn write_out(out: &Option<PathBuf>, text: &str) {
    print!("{text}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("report file");
        f.write_all(text.as_bytes()).expect("write report");
    }
}

/// A `--target NAME=HOST:PORT` as a plain-IMAP target.
fn target(spec: &str, user: &str, password: &str) -> Target {
    let (name, addr) = spec.split_once('=').expect("--target NAME=HOST:PORT");
    let addr: SocketAddr = addr.parse().expect("--target NAME=HOST:PORT");
    Target {
        name: name.to_string(),
        addr,
        tls_ca: None,
        user: user.to_string(),
        password: password.to_string(),
        processes: Vec::new(),
    }
}

async fn resync(args: ResyncArgs) {
    let (server, strata) = spawn_strata("");
    let mut targets = vec![strata];
    targets.extend(
        args.targets
            .iter()
            .map(|spec| target(spec, &args.user, &args.password)),
    );
    let o = bench::resync::ResyncOptions {
        messages: args.messages,
        changed_pct: args.changed_pct,
        expunged_pct: args.expunged_pct,
        repeats: args.repeats,
        connections: args.connections,
    };
    let results = bench::resync::run(&targets, &o).await;
    write_out(
        &args.out,
        &format!("\n{}", bench::resync::report(&o, &results)),
    );
    drop(server);
}

async fn run(args: RunArgs) {
    let o = args.sizes.options();
    let phases = args.sizes.phases(PHASES);
    let mut keep = None;
    let mut targets: Vec<Target> = Vec::new();
    if args.targets.is_empty() || args.with_strata {
        let (server, target) = spawn_strata(&args.strata_config);
        keep = Some(server);
        targets.push(target);
    }
    targets.extend(args.targets.iter().map(|spec| {
        let mut t = target(spec, &args.user, &args.password);
        t.tls_ca = args.tls_ca.clone();
        t.processes = args
            .processes
            .iter()
            .filter_map(|p| p.split_once('='))
            .filter(|(n, _)| *n == t.name)
            .flat_map(|(_, list)| list.split(',').map(str::to_string))
            .collect();
        t
    }));
    let results = bench::run(&targets, &phases, &o).await;
    let mut text = format!(
        "\n### Run: {} messages (seed {}), {} APPEND connections, {} repeats, {} bodies per fetch, {} mixed clients for {} s, {} idle connections\n\n",
        o.messages,
        o.seed,
        o.connections,
        o.repeats,
        o.random_bodies,
        o.mixed_clients,
        o.mixed_duration.as_secs(),
        o.idle_connections
    );
    if targets.len() == 2 {
        text.push_str(&report::targets(&results[0], &results[1], &targets[1].name));
        text.push('\n');
        text.push_str(&report::side_by_side(
            &targets[0].name,
            &results[0],
            &targets[1].name,
            &results[1],
        ));
        text.push('\n');
    }
    for (t, r) in targets.iter().zip(&results) {
        text.push_str(&report::table(&t.name, r));
        text.push('\n');
    }
    if let Some(server) = &keep {
        // Each phase starts the peak afresh (to report its own): the run's is the largest.
        let phases_peak = results[0].iter().filter_map(|r| r.peak).max().unwrap_or(0) >> 20;
        let now = server.status_mib("VmRSS:");
        let peak = server.status_mib("VmHWM:").max(phases_peak);
        text.push_str(&format!(
            "strata's memory after the run: resident {now} MiB (target under 100), peak {peak} MiB (target under 200)\n"
        ));
    }
    write_out(&args.sizes.out, &text);
    drop(keep);
}

async fn sweep(args: SweepArgs) {
    let o = args.sizes.options();
    let phases = args.sizes.phases(&[
        "append-1",
        "fetch-meta",
        "fetch-envelope",
        "fetch-bodystructure",
        "fetch-headers",
        "fetch-bodies",
        "search-header",
    ]);
    // Per latency: the phases at soft-done, then the APPEND phases again at acked.
    let appends: Vec<String> = phases
        .iter()
        .filter(|p| p.starts_with("append-"))
        .cloned()
        .collect();
    let mut rows: Vec<(u64, Vec<PhaseResult>, Vec<PhaseResult>)> = Vec::new();
    for &l in &args.latencies {
        let (mut server, target) = in_process_strata(l, false).await;
        let results = bench::run(std::slice::from_ref(&target), &phases, &o).await;
        let reads = server.server().backends.delay_stats();
        server.stop().await;
        eprintln!(
            "latency {l} ms: backend saw {} reads, at most {} in flight",
            reads.reads, reads.max_reads_in_flight
        );
        let acked = if appends.is_empty() {
            Vec::new()
        } else {
            let (mut server, target) = in_process_strata(l, true).await;
            let r = bench::run(std::slice::from_ref(&target), &appends, &o).await;
            server.stop().await;
            r.into_iter().next().unwrap_or_default()
        };
        rows.push((l, results.into_iter().next().unwrap_or_default(), acked));
    }
    let mut text = format!(
        "\n### Latency sweep: {} messages (seed {}), {} repeats, {} bodies per fetch, {} connections for append-n; reads and acks delayed by the latency ±10%; soft-done is local\n\n| phase |",
        o.messages, o.seed, o.repeats, o.random_bodies, o.connections
    );
    for (l, _, _) in &rows {
        text.push_str(&format!(" {l} ms |"));
    }
    text.push_str("\n|---|");
    for _ in &rows {
        text.push_str("---:|");
    }
    text.push('\n');
    let p50 = |r: Option<&PhaseResult>| {
        r.map(|r| r.quantile(0.5).as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    for (i, phase) in phases.iter().enumerate() {
        let label = if phase.starts_with("append-") {
            format!("{phase} (answer at soft-done), p50 ms")
        } else {
            format!("{phase}, p50 ms")
        };
        text.push_str(&format!("| {label} |"));
        for (_, r, _) in &rows {
            text.push_str(&format!(" {:.2} |", p50(r.get(i))));
        }
        text.push('\n');
    }
    for (i, phase) in appends.iter().enumerate() {
        text.push_str(&format!("| {phase} (answer at acked), p50 ms |"));
        for (_, _, a) in &rows {
            text.push_str(&format!(" {:.2} |", p50(a.get(i))));
        }
        text.push('\n');
    }
    write_out(&args.sizes.out, &text);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    match Cli::parse().command {
        Command::Run(a) => run(a).await,
        Command::Sweep(a) => sweep(a).await,
        Command::Resync(a) => resync(a).await,
        Command::Ship(a) => {
            let text = strata_integration_tests::bench::ship::run(
                &strata_integration_tests::bench::ship::Options {
                    appends: a.appends,
                    connections: a.connections,
                    rounds: a.rounds,
                    restore: a.restore.clone(),
                    latency: Duration::from_millis(a.latency_ms),
                },
            )
            .await;
            write_out(&a.out, &text);
        }
        Command::Storage(a) => {
            let text = bench::storage::run(&bench::storage::Options {
                deliveries: a.deliveries,
                recipients: a.recipients,
                shared: a.shared,
            })
            .await;
            write_out(&a.out, &text);
        }
        Command::Cold(a) => {
            let text = bench::cold::run(&bench::cold::Options {
                messages: a.messages,
                singles: a.singles,
                latency: Duration::from_millis(a.latency_ms),
            })
            .await;
            write_out(&a.out, &text);
        }
        Command::SearchScale(a) => {
            let text = bench::search_scale::run(&bench::search_scale::Options {
                messages: a.messages,
                unindexed: a.unindexed,
                latency: Duration::from_millis(a.latency_ms),
                repeats: a.repeats,
                connections: a.connections,
            })
            .await;
            write_out(&a.out, &text);
        }
    }
}
