//! # strata-metrics
//!
//! What Strata measures, as one process-wide set of Prometheus families ([`metrics`]) that the
//! layers record into as things happen (connections and session states, IMAP commands, logins,
//! LMTP deliveries, store operations, index commits, repacks, reconciler runs), plus the
//! gauges read at scrape time (journal backlog), and the text a scrape gets ([`Metrics::text`]).
//!
//! It is not the HTTP endpoint (the server's) and knows nothing of IMAP or stores beyond the
//! label values it is handed. Process-wide because a count is of the process: every server in
//! it (tests run several) adds to the same families.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Listener {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandResult {
    command: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOp {
    store: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOpResult {
    store: String,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreResult {
    store: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Durable {
    durable: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every family Strata exports.
pub struct Metrics {
    registry: Registry,
    connections: Family<Listener, Gauge>,
    accepted: Family<Listener, Counter>,
    sessions: Family<StateLabel, Gauge>,
    commands: Family<CommandResult, Counter>,
    command_seconds: Family<CommandLabel, Histogram>,
    logins: Family<ResultLabel, Counter>,
    deliveries: Family<ResultLabel, Counter>,
    store_ops: Family<StoreOpResult, Counter>,
    store_seconds: Family<StoreOp, Histogram>,
    journal_batches: Family<StoreLabel, Gauge>,
    journal_bytes: Family<StoreLabel, Gauge>,
    journal_oldest: Family<StoreLabel, FloatGauge>,
    index_commits: Family<Durable, Counter>,
    index_commit_seconds: Family<Durable, Histogram>,
    repacks: Counter,
    reconciler_runs: Counter,
    reconciler_removed: Counter,
    cache_reads: Family<StoreResult, Counter>,
    cache_objects: Family<StoreLabel, Gauge>,
    cache_bytes: Family<StoreLabel, Gauge>,
    tiered_bodies: Counter,
    tiered_bytes: Counter,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Latency buckets from 100 µs to about 26 s: a cached FETCH and a slow S3 PUT both land
/// inside them.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strata");
        let m = Metrics {
            connections: Family::default(),
            accepted: Family::default(),
            sessions: Family::default(),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(latency),
            logins: Family::default(),
            deliveries: Family::default(),
            store_ops: Family::default(),
            store_seconds: Family::new_with_constructor(latency),
            journal_batches: Family::default(),
            journal_bytes: Family::default(),
            journal_oldest: Family::default(),
            index_commits: Family::default(),
            index_commit_seconds: Family::new_with_constructor(latency),
            repacks: Counter::default(),
            reconciler_runs: Counter::default(),
            reconciler_removed: Counter::default(),
            cache_reads: Family::default(),
            cache_objects: Family::default(),
            cache_bytes: Family::default(),
            tiered_bodies: Counter::default(),
            tiered_bytes: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Connections open now, by listener (imap, imaps, lmtp)",
            m.connections.clone(),
        );
        r.register(
            "connections_accepted",
            "Connections accepted, by listener",
            m.accepted.clone(),
        );
        r.register(
            "imap_sessions",
            "IMAP sessions now, by state (not_authenticated, authenticated, selected, idle)",
            m.sessions.clone(),
        );
        r.register(
            "imap_commands",
            "IMAP commands answered, by command and result (ok, no, bad)",
            m.commands.clone(),
        );
        r.register(
            "imap_command_seconds",
            "Time from a command's last byte to its tagged answer, by command",
            m.command_seconds.clone(),
        );
        r.register(
            "logins",
            "Password checks, by result (ok, failed, throttled, unavailable)",
            m.logins.clone(),
        );
        r.register(
            "lmtp_deliveries",
            "LMTP and strata deliver deliveries per recipient, by result (delivered, over_quota, failed)",
            m.deliveries.clone(),
        );
        r.register(
            "store_operations",
            "Body store operations, by store, operation and result (ok or the error's kind)",
            m.store_ops.clone(),
        );
        r.register(
            "store_operation_seconds",
            "Body store operation latency, by store and operation",
            m.store_seconds.clone(),
        );
        r.register(
            "journal_pending_batches",
            "Batches the journal holds that its store has not acked",
            m.journal_batches.clone(),
        );
        r.register(
            "journal_pending_bytes",
            "Bytes of those batches",
            m.journal_bytes.clone(),
        );
        r.register(
            "journal_oldest_pending_seconds",
            "How long the oldest unacked batch has waited",
            m.journal_oldest.clone(),
        );
        r.register(
            "index_commits",
            "Index transactions committed, durable (fsynced) or deferred",
            m.index_commits.clone(),
        );
        r.register(
            "index_commit_seconds",
            "Index commit latency (for a durable one, mostly its fsync)",
            m.index_commit_seconds.clone(),
        );
        r.register(
            "index_repacks",
            "Index repacks completed",
            m.repacks.clone(),
        );
        r.register(
            "reconciler_runs",
            "Reconciler runs completed",
            m.reconciler_runs.clone(),
        );
        r.register(
            "reconciler_removed_bodies",
            "Bodies the reconciler deleted because nothing named them",
            m.reconciler_removed.clone(),
        );
        r.register(
            "cache_reads",
            "Whole reads of a cached store, answered from the local cache (hit) or the store (miss)",
            m.cache_reads.clone(),
        );
        r.register(
            "cache_objects",
            "Objects the read cache of a store holds",
            m.cache_objects.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes the read cache of a store takes on disk",
            m.cache_bytes.clone(),
        );
        r.register(
            "tiered_bodies",
            "Bodies tiering moved to the cold store",
            m.tiered_bodies.clone(),
        );
        r.register(
            "tiered_bytes",
            "Bytes of those bodies",
            m.tiered_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A connection accepted on `listener`; counted open until the guard is dropped.
    pub fn connection(&self, listener: &'static str) -> Open {
        let label = Listener { listener };
        self.accepted.get_or_create(&label).inc();
        let gauge = self.connections.get_or_create(&label).clone();
        gauge.inc();
        Open(gauge)
    }

    /// An IMAP session in `state` until the returned guard is moved on or dropped.
    pub fn session(&self, state: &'static str) -> SessionState {
        let gauge = self.sessions.get_or_create(&StateLabel { state }).clone();
        gauge.inc();
        SessionState { gauge, state }
    }

    /// An IMAP command answered with `result` (`OK`, `NO`, `BAD`) after `took`.
    pub fn command(&self, command: &'static str, result: &str, took: Duration) {
        let result = match result {
            "OK" => "ok",
            "NO" => "no",
            "BAD" => "bad",
            _ => "none",
        };
        self.commands
            .get_or_create(&CommandResult { command, result })
            .inc();
        self.command_seconds
            .get_or_create(&CommandLabel { command })
            .observe(took.as_secs_f64());
    }

    /// A password check ended: `ok`, `failed`, `throttled` or `unavailable`.
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&ResultLabel { result }).inc();
    }

    /// One recipient's delivery ended: `delivered`, `over_quota`, `no_user`, `failed`.
    pub fn delivery(&self, result: &'static str) {
        self.deliveries.get_or_create(&ResultLabel { result }).inc();
    }

    /// A store operation ended with `result` (`ok` or an error's kind) after `took`.
    pub fn store_op(&self, store: &str, op: &'static str, result: &'static str, took: Duration) {
        self.store_ops
            .get_or_create(&StoreOpResult {
                store: store.to_string(),
                op,
                result,
            })
            .inc();
        self.store_seconds
            .get_or_create(&StoreOp {
                store: store.to_string(),
                op,
            })
            .observe(took.as_secs_f64());
    }

    /// A journal's backlog as a scrape finds it.
    pub fn journal(&self, store: &str, batches: u64, bytes: u64, oldest: Option<Duration>) {
        let label = StoreLabel {
            store: store.to_string(),
        };
        self.journal_batches
            .get_or_create(&label)
            .set(batches as i64);
        self.journal_bytes.get_or_create(&label).set(bytes as i64);
        self.journal_oldest
            .get_or_create(&label)
            .set(oldest.map_or(0.0, |d| d.as_secs_f64()));
    }

    /// An index transaction committed after `took`; `durable` when it was fsynced.
    pub fn index_commit(&self, durable: bool, took: Duration) {
        let label = Durable {
            durable: if durable { "true" } else { "false" },
        };
        self.index_commits.get_or_create(&label).inc();
        self.index_commit_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// An index repack completed.
    pub fn repacked(&self) {
        self.repacks.inc();
    }

    /// A reconciler run completed, having deleted `removed` bodies.
    pub fn reconciled(&self, removed: u64) {
        self.reconciler_runs.inc();
        self.reconciler_removed.inc_by(removed);
    }

    /// A read cache as a scrape finds it: its totals since start (hits and misses, which only
    /// grow) and what it holds.
    pub fn cache(&self, store: &str, hits: u64, misses: u64, objects: u64, bytes: u64) {
        for (result, total) in [("hit", hits), ("miss", misses)] {
            let c = self.cache_reads.get_or_create(&StoreResult {
                store: store.to_string(),
                result,
            });
            c.inc_by(total.saturating_sub(c.get()));
        }
        let label = StoreLabel {
            store: store.to_string(),
        };
        self.cache_objects.get_or_create(&label).set(objects as i64);
        self.cache_bytes.get_or_create(&label).set(bytes as i64);
    }

    /// Tiering moved `bodies` bodies of `bytes` bytes to the cold store.
    pub fn tiered(&self, bodies: u64, bytes: u64) {
        self.tiered_bodies.inc_by(bodies);
        self.tiered_bytes.inc_by(bytes);
    }

    /// Every family in the Prometheus text format.
    pub fn text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// An open connection, counted until dropped.
pub struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The state an IMAP session is counted in.
pub struct SessionState {
    gauge: Gauge,
    state: &'static str,
}

impl SessionState {
    /// Counts the session in `state` from now on.
    pub fn set(&mut self, state: &'static str) {
        if state != self.state {
            *self = metrics().session(state);
        }
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_held_and_the_text_names_each_family() {
        let m = metrics();
        let open = m.connection("imap");
        let mut s = m.session("not_authenticated");
        s.set("selected");
        m.command("FETCH", "OK", Duration::from_millis(3));
        m.store_op("main", "get", "ok", Duration::from_millis(1));
        m.index_commit(true, Duration::from_millis(2));
        let text = m.text();
        for needle in [
            "strata_connections{listener=\"imap\"} 1",
            "strata_connections_accepted_total{listener=\"imap\"}",
            "strata_imap_sessions{state=\"selected\"} 1",
            "strata_imap_sessions{state=\"not_authenticated\"} 0",
            "strata_imap_commands_total{command=\"FETCH\",result=\"ok\"} 1",
            "strata_imap_command_seconds_count{command=\"FETCH\"} 1",
            "strata_store_operations_total{store=\"main\",op=\"get\",result=\"ok\"} 1",
            "strata_index_commits_total{durable=\"true\"} 1",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
        drop((open, s));
        let text = m.text();
        assert!(
            text.contains("strata_connections{listener=\"imap\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("strata_imap_sessions{state=\"selected\"} 0"),
            "{text}"
        );
    }
}
