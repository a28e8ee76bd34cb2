//! The uploader: pushes durable batches to the store in journal order, several at once when
//! they touch different keys, retrying with backoff until the store acks each; logs the lag.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rand::Rng;
use strata_backend_api::{Backend, BackendError, Batch, ErrorKind, Key, Retry};
use tokio::task::JoinSet;

use crate::state::{Metas, Ops, Shared, Write};
use crate::writer::Msg;

/// The longest wait between two attempts at one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the lag is logged while batches wait longer than [`LAG_LOG_AFTER`].
const LAG_LOG_EVERY: Duration = Duration::from_secs(10);
/// A lag shorter than this is normal operation, not news.
const LAG_LOG_AFTER: Duration = Duration::from_secs(5);

/// The uploader's loop; it ends when the journal is closed.
pub async fn run(
    shared: Arc<Shared>,
    inner: Arc<dyn Backend>,
    parallel: usize,
    writer: Sender<Msg>,
) {
    let mut inflight = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_lag_log: Option<Instant> = None;
    let mut uploaded_since_idle = true;
    while !shared.closed.load(Ordering::Acquire) {
        for (jseq, ops, metas) in startable(&shared, parallel.saturating_sub(inflight.len())) {
            inflight.spawn(upload(shared.clone(), inner.clone(), jseq, ops, metas));
        }
        tokio::select! {
            () = shared.work.notified() => {}
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok(jseq) = done {
                    let done = shared.done(jseq);
                    // Before the ack: whoever waits for it finds the files labelled.
                    if !done.labels.is_empty()
                        && let Err(e) = inner.set_labels(done.labels).await
                    {
                        tracing::warn!(error = %e, "could not label files the journal wrote");
                    }
                    if !done.metas.is_empty() {
                        let batch = done
                            .metas
                            .iter()
                            .fold(Batch::new(), |b, (k, m)| b.meta(k.clone(), m.clone()));
                        match inner.commit(batch).await {
                            Ok(_) => shared.recorded(&done.metas),
                            Err(e) => tracing::warn!(error = %e, "could not record body metadata in the store"),
                        }
                    }
                    shared.release(done.receipt);
                    uploaded_since_idle = true;
                }
            }
            _ = tick.tick() => {
                let stats = shared.stats();
                match stats.oldest {
                    Some(age) if age >= LAG_LOG_AFTER && last_lag_log.is_none_or(|t| t.elapsed() >= LAG_LOG_EVERY) => {
                        tracing::warn!(
                            journal = %shared.dir.display(),
                            batches = stats.pending_batches,
                            bytes = stats.pending_bytes,
                            oldest_s = age.as_secs(),
                            retries = stats.retries,
                            "journal lag: batches soft-done but not yet acked by {}",
                            inner.name()
                        );
                        last_lag_log = Some(Instant::now());
                    }
                    None if stats.pending_batches == 0 => {
                        if last_lag_log.take().is_some() {
                            tracing::info!(journal = %shared.dir.display(), "journal lag drained: {} has acked every batch", inner.name());
                        }
                        if uploaded_since_idle {
                            // Roll to a fresh segment so the acked one is deleted.
                            let _ = writer.send(Msg::Idle);
                            uploaded_since_idle = false;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Batches that can start now, in order: durable, not uploading, and touching no key an
/// earlier unfinished batch touches (so the store sees each key's writes in order).
fn startable(shared: &Shared, room: usize) -> Vec<(u64, Ops, Metas)> {
    let mut out = Vec::new();
    if room == 0 {
        return out;
    }
    let mut st = shared.lock();
    let mut busy: HashSet<&Key> = HashSet::new();
    let mut start = Vec::new();
    for (&jseq, p) in &st.queue {
        if p.done {
            continue;
        }
        if !p.durable || start.len() == room {
            break;
        }
        let free = !p.uploading && p.ops.iter().all(|(k, _)| !busy.contains(k));
        busy.extend(p.ops.iter().map(|(k, _)| k));
        if free {
            start.push(jseq);
        }
    }
    for jseq in start {
        if let Some(p) = st.queue.get_mut(&jseq) {
            p.uploading = true;
            out.push((jseq, p.ops.clone(), p.metas.clone()));
        }
    }
    out
}

/// Uploads one batch until the store acks it; returns its number.
async fn upload(
    shared: Arc<Shared>,
    inner: Arc<dyn Backend>,
    jseq: u64,
    ops: Ops,
    metas: Metas,
) -> u64 {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u64;
    loop {
        match push(&*inner, &ops, &metas).await {
            Ok(()) => return jseq,
            Err(e) => {
                attempt += 1;
                shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                if attempt == 1 || attempt.is_multiple_of(20) {
                    if e.is_retryable() {
                        tracing::warn!(batch = jseq, attempt, error = %e, "upload to {} failed; retrying", inner.name());
                    } else {
                        tracing::error!(batch = jseq, attempt, error = %e, "{} refuses a journaled batch; it stays in the journal and is retried", inner.name());
                    }
                }
                let base = match e.retry {
                    Retry::After(d) => d.max(backoff),
                    _ => backoff,
                };
                let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 4);
                tokio::time::sleep(base + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One attempt: the batch to the store, then its ack.
async fn push(inner: &dyn Backend, ops: &Ops, metas: &Metas) -> Result<(), BackendError> {
    let mut batch = Batch::new();
    for (key, write) in ops {
        batch = match write {
            Write::Put(b) => {
                let data = b.read(None).await.map_err(|e| {
                    BackendError::new(
                        "journal",
                        ErrorKind::Io,
                        format!("cannot read {key} back from the journal: {e}"),
                    )
                })?;
                batch.put(key.clone(), data)
            }
            Write::Copy { from, .. } => batch.copy(from.clone(), key.clone()),
            Write::Delete => batch.delete(key.clone()),
        };
    }
    for (key, meta) in metas {
        batch = batch.meta(key.clone(), meta.clone());
    }
    inner.commit(batch).await?.acked().await
}
