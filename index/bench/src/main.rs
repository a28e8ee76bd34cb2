//! Benchmark of Strata's index against raw redb and SQLite on one workload (key = mailbox id ‖
//! UID, 300-byte records). Each phase of each engine runs in its own process, engines
//! interleaved phase by phase, so that only ratios measured in the same run are compared.
//!
//! `strata-index-bench run` drives everything and prints (or writes) a Markdown report.

mod engines;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use engines::{Engine, RawRedb, RedbRows, Sqlite, Strata};

#[derive(Parser)]
#[command(about = "Strata's index against raw redb and SQLite, phase by phase")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs every phase for every engine and reports the figures and ratios.
    Run {
        /// Records per mailbox in phases a to d.
        #[arg(long, default_value_t = 100_000)]
        records: u32,
        /// Records in phases e and f (spread over 10 mailboxes).
        #[arg(long, default_value_t = 1_000_000)]
        big: u32,
        /// Phases to run (a1 a100 b1 bg c d e f).
        #[arg(long, value_delimiter = ',', default_value = "a1,a100,b1,bg,c,d,e,f")]
        phases: Vec<String>,
        /// Where the databases go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also write the Markdown report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// One phase of one engine (run by `run` in a child process).
    #[command(hide = true)]
    Child {
        #[arg(long)]
        phase: String,
        #[arg(long)]
        engine: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        records: u32,
    },
}

/// One figure, printed by a child as `RESULT {json}`.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Figure {
    metric: String,
    engine: String,
    value: f64,
    unit: String,
    /// Whether a larger value is better (for the ratio's wording).
    higher_is_better: bool,
}

const ENGINES: [&str; 4] = ["strata", "redb", "sqlite", "redb-rows"];

/// Phases where raw redb writing Strata's own rows is measured too.
const ROWS_PHASES: [&str; 4] = ["a1", "a100", "b1", "bg"];

fn emit(engine: &str, metric: &str, value: f64, unit: &str, higher_is_better: bool) {
    let f = Figure {
        metric: metric.into(),
        engine: engine.into(),
        value,
        unit: unit.into(),
        higher_is_better,
    };
    println!("RESULT {}", serde_json::to_string(&f).unwrap());
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The median time of `reps` runs of `f`, in milliseconds.
fn p50_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    percentile(&mut times, 0.5)
}

fn open(engine: &str, dir: &Path, mailboxes: u32) -> (Box<dyn Engine>, Duration) {
    std::fs::create_dir_all(dir).unwrap();
    match engine {
        "strata" => {
            let s = Strata::open(dir, mailboxes);
            let d = s.last_open.0;
            (Box::new(s), d)
        }
        "redb" => {
            let (e, d) = RawRedb::open(dir);
            (Box::new(e), d)
        }
        "sqlite" => {
            let (e, d) = Sqlite::open(dir);
            (Box::new(e), d)
        }
        "redb-rows" => {
            let (e, d) = RedbRows::open(dir);
            (Box::new(e), d)
        }
        other => panic!("unknown engine {other}"),
    }
}

fn disk_bytes(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| strata_index::disk_bytes(f)).sum()
}

fn shuffled(n: u32, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (1..=n).collect();
    v.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    v
}

fn child(phase: &str, engine: &str, dir: &Path, n: u32) {
    let rate = |count: u32, d: Duration| f64::from(count) / d.as_secs_f64();
    match phase {
        "a1" | "a100" => {
            let per = if phase == "a1" { 1 } else { 100 };
            let (mut e, _) = open(engine, dir, 1);
            let t = Instant::now();
            e.append(0, 1..n + 1, per);
            emit(
                engine,
                &format!("({phase}) append, {per} per durable commit"),
                rate(n, t.elapsed()),
                "records/s",
                true,
            );
        }
        "b1" | "bg" => {
            let (mut e, _) = open(engine, dir, 1);
            e.append(0, 1..n + 1, 1000);
            let before = e.commit_counts();
            let uids = shuffled(n, 7);
            let t = Instant::now();
            let name = if phase == "b1" {
                e.flags_each(0, &uids);
                "(b1) random flag updates, 1 per durable commit"
            } else {
                e.flags_grouped(0, &uids);
                "(bg) random flag updates, group-committed"
            };
            emit(engine, name, rate(n, t.elapsed()), "updates/s", true);
            if let (Some((jobs0, commits0)), Some((jobs1, commits1))) = (before, e.commit_counts())
            {
                let per_commit = (jobs1 - jobs0) as f64 / (commits1 - commits0) as f64;
                emit(
                    engine,
                    &format!("({phase}) flag updates per commit"),
                    per_commit,
                    "updates",
                    true,
                );
            }
        }
        "c" => {
            let (mut e, _) = open(engine, dir, 1);
            e.append(0, 1..n + 1, 1000);
            let p50 = p50_ms(21, || assert_eq!(e.scan(0), n as usize));
            emit(
                engine,
                "(c) FETCH 1:* FLAGS scan from the store, p50",
                p50,
                "ms",
                false,
            );
            drop(e);
            if engine == "strata" {
                let mut s = Strata::open(dir, 1);
                s.scan_view(0);
                let p50 = p50_ms(101, || assert_eq!(s.scan_view(0), n as usize));
                emit(
                    engine,
                    "(c) FETCH 1:* FLAGS scan from the in-memory view, p50",
                    p50,
                    "ms",
                    false,
                );
            }
        }
        "d" => {
            let (mut e, _) = open(engine, dir, 1);
            e.append(0, 1..n + 1, 1000);
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            let mut times = Vec::with_capacity(n as usize);
            let t_all = Instant::now();
            for _ in 0..n {
                let uid = rng.random_range(1..=n);
                let t = Instant::now();
                assert!(e.lookup(0, uid));
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let total = t_all.elapsed();
            emit(
                engine,
                "(d) random point lookups",
                rate(n, total),
                "lookups/s",
                true,
            );
            emit(
                engine,
                "(d) point lookup p50",
                percentile(&mut times, 0.5),
                "us",
                false,
            );
            emit(
                engine,
                "(d) point lookup p99",
                percentile(&mut times, 0.99),
                "us",
                false,
            );
        }
        "e-load" => {
            // Load 10 mailboxes, say so, then keep writing until killed.
            let (mut e, _) = open(engine, dir, 10);
            let per_box = n / 10;
            for m in 0..10 {
                e.append(m, 1..per_box + 1, 1000);
            }
            println!("LOADED");
            match engine {
                "strata" => {
                    drop(e);
                    Strata::open(dir, 10).write_forever(per_box + 1)
                }
                "redb" => {
                    drop(e);
                    RawRedb::open(dir).0.write_forever(per_box + 1)
                }
                _ => {
                    drop(e);
                    Sqlite::open(dir).0.write_forever(per_box + 1)
                }
            }
        }
        "e-recover" | "e-recover-cold" => {
            let label = if phase == "e-recover" { "warm" } else { "cold" };
            let t = Instant::now();
            let (mut e, open_time) = open(engine, dir, 10);
            let opened = t.elapsed();
            let t = Instant::now();
            assert!(e.lookup(5, 1));
            let first = t.elapsed();
            let t = Instant::now();
            let count = e.verify();
            let verify = t.elapsed();
            assert!(count >= u64::from(n), "{count} records after recovery");
            emit(
                engine,
                &format!("(e) reopen after SIGKILL at {n} records, {label}"),
                open_time.as_secs_f64() * 1e3,
                "ms",
                false,
            );
            emit(
                engine,
                &format!("(e) reopen + first lookup, {label}"),
                (opened + first).as_secs_f64() * 1e3,
                "ms",
                false,
            );
            emit(
                engine,
                &format!("(e) full verify, {label}"),
                verify.as_secs_f64() * 1e3,
                "ms",
                false,
            );
        }
        "f" => {
            let (mut e, _) = open(engine, dir, 10);
            let files = e.files();
            let live_of = |count: u64| (count * (8 + engines::RECORD_BYTES as u64)) as f64;
            emit(
                engine,
                &format!("(f) disk after {n} appends"),
                disk_bytes(&files) as f64 / 1048576.0,
                "MiB",
                false,
            );
            let per_box = n / 10;
            let evens: Vec<u32> = (1..=per_box).filter(|u| u % 2 == 0).collect();
            for m in 0..10 {
                e.expunge(m, &evens);
            }
            emit(
                engine,
                "(f) disk after expunging every other UID",
                disk_bytes(&files) as f64 / 1048576.0,
                "MiB",
                false,
            );
            if let Some((hold, total)) = e.repack() {
                emit(
                    engine,
                    "(f) repack: time the writer was held",
                    hold.as_secs_f64() * 1e3,
                    "ms",
                    false,
                );
                emit(
                    engine,
                    "(f) repack: total time, user writing meanwhile allowed",
                    total.as_secs_f64() * 1e3,
                    "ms",
                    false,
                );
            }
            let after = disk_bytes(&files) as f64;
            emit(
                engine,
                "(f) disk after repack",
                after / 1048576.0,
                "MiB",
                false,
            );
            let remaining = e.verify();
            emit(
                engine,
                "(f) disk after repack / 308-byte records kept",
                after / live_of(remaining),
                "x",
                false,
            );
            drop(e);
            if engine == "strata" {
                let s = Strata::open(dir, 10);
                emit(
                    engine,
                    "(f) disk after repack / live key+value bytes",
                    after / s.live_bytes() as f64,
                    "x",
                    false,
                );
            }
        }
        other => panic!("unknown phase {other}"),
    }
}

fn run_child(exe: &Path, phase: &str, engine: &str, dir: &Path, n: u32) -> Vec<Figure> {
    let out = Command::new(exe)
        .args([
            "child",
            "--phase",
            phase,
            "--engine",
            engine,
            "--records",
            &n.to_string(),
            "--dir",
        ])
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{phase}/{engine} failed");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(stdout: &str) -> Vec<Figure> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

/// Phase e: load, keep writing, SIGKILL, then reopen warm (the original) and cold (a copy whose
/// pages were dropped from the page cache).
fn crash_phase(exe: &Path, engine: &str, dir: &Path, n: u32) -> Vec<Figure> {
    let mut child = Command::new(exe)
        .args([
            "child",
            "--phase",
            "e-load",
            "--engine",
            engine,
            "--records",
            &n.to_string(),
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l == "LOADED" => break,
            Some(Ok(_)) => {}
            _ => panic!("{engine}: the loader died before it finished"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let cold = dir.with_extension("cold");
    let _ = std::fs::remove_dir_all(&cold);
    std::fs::create_dir_all(&cold).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let to = cold.join(p.file_name().unwrap());
        std::fs::copy(&p, &to).unwrap();
        evict(&to);
    }
    let mut figs = run_child(exe, "e-recover", engine, dir, n);
    figs.extend(run_child(exe, "e-recover-cold", engine, &cold, n));
    figs
}

/// Drops a file's pages from the page cache.
fn evict(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
}

fn report(figs: &[Figure], meta: &str) -> String {
    let mut by_metric: BTreeMap<(usize, String), BTreeMap<String, Figure>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for f in figs {
        if !order.contains(&f.metric) {
            order.push(f.metric.clone());
        }
        let i = order.iter().position(|m| m == &f.metric).unwrap();
        by_metric
            .entry((i, f.metric.clone()))
            .or_default()
            .insert(f.engine.clone(), f.clone());
    }
    let mut out = format!(
        "{meta}\n\n| phase | unit | Strata | raw redb | SQLite | redb, Strata's rows | Strata / redb | Strata / SQLite | Strata / redb, Strata's rows |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let fmt = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    };
    for ((_, metric), row) in by_metric {
        let get = |e: &str| row.get(e).map(|f| f.value);
        let unit = row.values().next().unwrap().unit.clone();
        let cell = |v: Option<f64>| v.map_or("–".to_string(), fmt);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "–".into(),
        };
        out += &format!(
            "| {metric} | {unit} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(get("strata")),
            cell(get("redb")),
            cell(get("sqlite")),
            cell(get("redb-rows")),
            ratio(get("strata"), get("redb")),
            ratio(get("strata"), get("sqlite")),
            ratio(get("strata"), get("redb-rows")),
        );
    }
    out
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Child {
            phase,
            engine,
            dir,
            records,
        } => child(&phase, &engine, &dir, records),
        Cmd::Run {
            records,
            big,
            phases,
            dir,
            out,
        } => {
            let tmp = tempfile::tempdir_in(dir.unwrap_or_else(std::env::temp_dir)).unwrap();
            let exe = std::env::current_exe().unwrap();
            let mut figs = Vec::new();
            let started = Instant::now();
            for phase in &phases {
                for engine in ENGINES {
                    if engine == "redb-rows" && !ROWS_PHASES.contains(&phase.as_str()) {
                        continue;
                    }
                    let d = tmp.path().join(format!("{engine}-{phase}"));
                    eprintln!("phase {phase}, {engine}...");
                    let got = match phase.as_str() {
                        "e" => crash_phase(
                            &exe,
                            engine,
                            &tmp.path().join(format!("{engine}-big")),
                            big,
                        ),
                        "f" => run_child(
                            &exe,
                            "f",
                            engine,
                            &tmp.path().join(format!("{engine}-big")),
                            big,
                        ),
                        p => run_child(&exe, p, engine, &d, records),
                    };
                    for f in &got {
                        eprintln!("  {}: {:.3} {}", f.metric, f.value, f.unit);
                    }
                    figs.extend(got);
                    if phase != "e" {
                        let _ = std::fs::remove_dir_all(&d);
                    }
                }
            }
            let meta = format!(
                "Records per mailbox in a–d: {records}; in e–f: {big} over 10 mailboxes. {} cores. Took {:.0} s.",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                started.elapsed().as_secs_f64()
            );
            let text = report(&figs, &meta);
            println!("{text}");
            if let Some(out) = out {
                std::fs::write(out, &text).unwrap();
            }
        }
    }
}
