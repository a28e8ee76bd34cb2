//! # strata-backend-delay
//!
//! A backend that holds another and makes it slow or unreliable on purpose: latency (fixed plus
//! jitter, per kind of operation), errors (a rate and a kind) and stalls (a rate and a length),
//! all drawn from a seeded generator so a run can be repeated. Operators put it in front of any
//! backend to see how Strata behaves when storage is slow; tests use it to show that reads of
//! many bodies overlap.
//!
//! An injected error happens *before* the inner backend is called, so a failed commit writes
//! nothing, as a real store's refused request would.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_backend_api::{
    AckTracker, Backend, BackendError, Batch, BodyMeta, Capabilities, ErrorKind, Key, Label,
    Listed, Receipt,
};

/// Latency of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Always added.
    pub fixed: Duration,
    /// Up to this much more, uniformly drawn.
    pub jitter: Duration,
}

impl Latency {
    /// A fixed latency with no jitter.
    pub fn fixed(d: Duration) -> Self {
        Latency {
            fixed: d,
            jitter: Duration::ZERO,
        }
    }
}

/// What to inject.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayConfig {
    /// Seed of the generator behind jitter, errors and stalls.
    pub seed: u64,
    /// Latency of reads (`get`, `size`).
    pub read: Latency,
    /// Latency of commits.
    pub write: Latency,
    /// Share of operations that fail, from 0 to 1.
    pub error_rate: f64,
    /// The kind of the injected errors.
    pub error_kind: ErrorKind,
    /// Share of operations that stall, from 0 to 1.
    pub stall_rate: f64,
    /// How long a stall lasts (added to the latency).
    pub stall: Duration,
    /// Extra time before a commit is acked, while soft-done stays as fast as the inner backend:
    /// a slow authoritative store behind a fast local journal.
    pub ack: Latency,
}

impl Default for DelayConfig {
    fn default() -> Self {
        DelayConfig {
            seed: 0,
            read: Latency::default(),
            write: Latency::default(),
            error_rate: 0.0,
            error_kind: ErrorKind::Unavailable,
            stall_rate: 0.0,
            stall: Duration::from_secs(5),
            ack: Latency::default(),
        }
    }
}

/// Counters of what the wrapper saw and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Reads started.
    pub reads: u64,
    /// Commits started.
    pub commits: u64,
    /// The most reads that were in flight at once.
    pub max_reads_in_flight: u64,
    /// Errors injected.
    pub errors: u64,
    /// Stalls injected.
    pub stalls: u64,
    /// Bytes returned by reads (shows whether range reads stay small).
    pub bytes_read: u64,
}

/// The wrapper.
pub struct DelayBackend<B> {
    inner: B,
    name: String,
    cfg: DelayConfig,
    rng: Mutex<StdRng>,
    reads: AtomicU64,
    commits: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    errors: AtomicU64,
    stalls: AtomicU64,
    bytes_read: AtomicU64,
    /// The error rate now (`f64` bits): it can change while the wrapper serves.
    error_rate: AtomicU64,
    /// Receipts of this wrapper when acks are delayed; `None` passes the inner ones through.
    acks: Option<Arc<AckTracker>>,
    /// In commit order: the wrapper's number, the inner receipt, when to ack at the earliest.
    ack_queue: Mutex<Option<mpsc::UnboundedSender<(u64, Receipt, Instant)>>>,
}

enum Kind {
    Read,
    Write,
}

/// Decrements the in-flight count however a read ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<B: Backend> DelayBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, cfg: DelayConfig) -> Self {
        let name = format!("delay({})", inner.name());
        let delayed_acks = !cfg.ack.fixed.is_zero() || !cfg.ack.jitter.is_zero();
        let acks = delayed_acks.then(|| Arc::new(AckTracker::new(name.clone())));
        DelayBackend {
            inner,
            name,
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            error_rate: AtomicU64::new(cfg.error_rate.to_bits()),
            cfg,
            reads: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            acks,
            ack_queue: Mutex::new(None),
        }
    }

    /// Changes the share of operations that fail, from now on (an outage is a rate of 1).
    pub fn set_error_rate(&self, rate: f64) {
        self.error_rate
            .store(rate.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// What it has seen and done so far.
    pub fn stats(&self) -> DelayStats {
        DelayStats {
            reads: self.reads.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            max_reads_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
        }
    }

    /// Draws this operation's fate: how long to wait, and whether to fail.
    fn draw(&self, kind: Kind) -> (Duration, bool) {
        let lat = match kind {
            Kind::Read => self.cfg.read,
            Kind::Write => self.cfg.write,
        };
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = lat.fixed;
        if !lat.jitter.is_zero() {
            wait += lat.jitter.mul_f64(rng.random::<f64>());
        }
        if self.cfg.stall_rate > 0.0 && rng.random::<f64>() < self.cfg.stall_rate {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            wait += self.cfg.stall;
        }
        let rate = f64::from_bits(self.error_rate.load(Ordering::Relaxed));
        let fail = rate > 0.0 && rng.random::<f64>() < rate;
        (wait, fail)
    }

    async fn delay(&self, kind: Kind) -> Result<(), BackendError> {
        let (wait, fail) = self.draw(kind);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if fail {
            self.errors.fetch_add(1, Ordering::Relaxed);
            // The retry hint is the one a real failure of this kind carries.
            return Err(BackendError::new(
                self.name.clone(),
                self.cfg.error_kind,
                "injected failure",
            ));
        }
        Ok(())
    }

    fn ack_wait(&self) -> Duration {
        let lat = self.cfg.ack;
        if lat.jitter.is_zero() {
            return lat.fixed;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        lat.fixed + lat.jitter.mul_f64(rng.random::<f64>())
    }

    fn start_read(&self) -> InFlight<'_> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }
}

/// Acks the wrapper's receipts in commit order, each once its delay has passed and the inner
/// store acked it; delays overlap, so acks are pipelined, not serialised.
fn spawn_acker(acks: Arc<AckTracker>) -> mpsc::UnboundedSender<(u64, Receipt, Instant)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Receipt, Instant)>();
    tokio::spawn(async move {
        while let Some((seq, inner, due)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            match inner.acked().await {
                Ok(()) => acks.ack_upto(seq),
                Err(e) => acks.fail_from(seq, e),
            }
        }
    });
    tx
}

#[async_trait]
impl<B: Backend> Backend for DelayBackend<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            deferred_ack: self.inner.capabilities().deferred_ack || self.acks.is_some(),
            // Each read pays the injected latency, as from a remote store.
            local_reads: false,
            ..self.inner.capabilities()
        }
    }

    fn below(&self) -> Option<&dyn Backend> {
        Some(&self.inner)
    }

    async fn commit(&self, batch: Batch) -> Result<Receipt, BackendError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.delay(Kind::Write).await?;
        let inner = self.inner.commit(batch).await?;
        let Some(acks) = &self.acks else {
            return Ok(inner);
        };
        let due = Instant::now() + self.ack_wait();
        // Numbering and queueing under one lock keep the queue in commit order.
        let mut queue = self.ack_queue.lock().unwrap_or_else(|p| p.into_inner());
        let tx = queue.get_or_insert_with(|| spawn_acker(acks.clone()));
        let receipt = acks.issue();
        let _ = tx.send((receipt.seq(), inner, due));
        Ok(receipt)
    }

    async fn flush(&self, seq: u64) -> Result<(), BackendError> {
        match &self.acks {
            Some(acks) => acks.flush(seq).await,
            None => self.inner.flush(seq).await,
        }
    }

    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        let _flight = self.start_read();
        self.delay(Kind::Read).await?;
        let data = self.inner.get(key, range).await?;
        self.bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }

    async fn size(&self, key: &Key) -> Result<u64, BackendError> {
        let _flight = self.start_read();
        self.delay(Kind::Read).await?;
        self.inner.size(key).await
    }

    async fn meta(&self, key: &Key) -> Result<Option<BodyMeta>, BackendError> {
        let _flight = self.start_read();
        self.delay(Kind::Read).await?;
        self.inner.meta(key).await
    }

    async fn set_labels(&self, labels: Vec<(Key, Label)>) -> Result<(), BackendError> {
        self.delay(Kind::Write).await?;
        self.inner.set_labels(labels).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        self.delay(Kind::Read).await?;
        self.inner.list(prefix).await
    }

    async fn clean_partial(&self, older_than: Duration) -> Result<u64, BackendError> {
        self.inner.clean_partial(older_than).await
    }
}
