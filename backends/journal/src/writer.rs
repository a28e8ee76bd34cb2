//! The writer thread: appends the records of every commit waiting, fsyncs once for all of them
//! (group commit), then makes them readable from the file and hands them to the uploader.
//! Segments roll at a size; a failed write or fsync poisons the journal.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use strata_backend_api::{BackendError, ErrorKind, Key};
use tokio::sync::oneshot;

use crate::format::{MAGIC, encode_acked};
use crate::state::{Blob, Segment, Shared, Write, relink};

/// One commit's record, on its way to the file.
pub struct Job {
    /// Its journal number.
    pub jseq: u64,
    /// The encoded record.
    pub record: Vec<u8>,
    /// Each put's key and where its data lies in `record`.
    pub puts: Vec<(Key, std::ops::Range<u64>)>,
    /// Answered after the fsync.
    pub reply: oneshot::Sender<Result<(), BackendError>>,
}

/// What the writer thread is told.
pub enum Msg {
    /// Append and fsync.
    Append(Job),
    /// Every batch is acked: start a fresh segment so the old one can be deleted.
    Idle,
}

/// The segment being written.
pub struct Active {
    /// Open for reading and writing.
    pub file: Arc<File>,
    /// Its length.
    pub len: u64,
}

/// The name of segment number `n`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.jnl"))
}

/// Creates segment `n` (magic written and fsynced, directory fsynced).
pub fn create_segment(dir: &Path, n: u64) -> std::io::Result<Active> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all_at(MAGIC, 0)?;
    file.sync_data()?;
    File::open(dir)?.sync_all()?;
    Ok(Active {
        file: Arc::new(file),
        len: MAGIC.len() as u64,
    })
}

/// The writer thread's loop; it ends when every sender is gone.
pub fn run(
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    mut active: Active,
    mut next_segment: u64,
    segment_bytes: u64,
) {
    let mut marker = shared.lock().acked_jseq;
    while let Ok(first) = rx.recv() {
        let mut jobs = Vec::new();
        let mut idle = false;
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                Msg::Append(j) => jobs.push(j),
                Msg::Idle => idle = true,
            }
            msg = rx.try_recv().ok();
        }
        if let Some(why) = shared.lock().poisoned.clone() {
            let e = shared.err(ErrorKind::Poisoned, why);
            jobs.into_iter()
                .for_each(|j| drop(j.reply.send(Err(e.clone()))));
            continue;
        }
        let roll = active.len >= segment_bytes
            || (idle
                && jobs.is_empty()
                && shared.lock().queue.is_empty()
                && active.len > MAGIC.len() as u64);
        if roll {
            match create_segment(&shared.dir, next_segment) {
                Ok(a) => {
                    shared.lock().segments.push_back(Segment {
                        path: segment_path(&shared.dir, next_segment),
                        max_jseq: 0,
                    });
                    next_segment += 1;
                    active = a;
                    marker = 0;
                    // A fresh segment holds no batch, so the old one can go now.
                    shared.trim();
                }
                Err(e) => {
                    tracing::warn!(dir = %shared.dir.display(), error = %e, "could not start a new journal segment; writing on in the current one")
                }
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let acked = shared.lock().acked_jseq;
        let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.record.len()).sum::<usize>() + 32);
        if acked > marker {
            buf.extend_from_slice(&encode_acked(acked));
            marker = acked;
        }
        let mut starts = Vec::with_capacity(jobs.len());
        for j in &jobs {
            starts.push(active.len + buf.len() as u64);
            buf.extend_from_slice(&j.record);
        }
        let written = active
            .file
            .write_all_at(&buf, active.len)
            .and_then(|()| active.file.sync_data());
        shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = written {
            let why = format!(
                "journal {} refuses writes after a failed write or fsync ({e}); restart Strata once the disk is fixed",
                shared.dir.display()
            );
            tracing::error!("{why}");
            let err = shared.err(ErrorKind::Poisoned, why.clone());
            {
                let mut st = shared.lock();
                st.poisoned = Some(why);
                for j in &jobs {
                    if let Some(p) = st.queue.remove(&j.jseq) {
                        st.pending_bytes -= p.bytes;
                        shared.acks.fail_from(p.receipt, err.clone());
                    }
                    st.overlay.retain(|_, e| e.jseq != j.jseq);
                }
            }
            shared.space.notify_waiters();
            jobs.into_iter()
                .for_each(|j| drop(j.reply.send(Err(err.clone()))));
            continue;
        }
        active.len += buf.len() as u64;
        {
            let mut st = shared.lock();
            for (j, start) in jobs.iter().zip(&starts) {
                let blob = |r: &std::ops::Range<u64>| Blob::File {
                    seg: active.file.clone(),
                    at: start + r.start,
                    len: r.end - r.start,
                };
                if let Some(p) = st.queue.get_mut(&j.jseq) {
                    p.durable = true;
                    let mut puts = j.puts.iter();
                    for (_, w) in p.ops.iter_mut() {
                        if let Write::Put(b) = w
                            && let Some((_, r)) = puts.next()
                        {
                            *b = blob(r);
                        }
                    }
                    relink(&mut p.ops);
                    // What each key holds once the batch is through (the last write wins).
                    let last: HashMap<Key, Option<Blob>> = p
                        .ops
                        .iter()
                        .map(|(k, w)| (k.clone(), w.blob().cloned()))
                        .collect();
                    for (key, b) in last {
                        if let Some(e) = st.overlay.get_mut(&key)
                            && e.jseq == j.jseq
                            && e.blob.is_some()
                        {
                            e.blob = b;
                        }
                    }
                }
                if let Some(s) = st.segments.back_mut() {
                    s.max_jseq = s.max_jseq.max(j.jseq);
                }
            }
        }
        shared.work.notify_one();
        jobs.into_iter().for_each(|j| drop(j.reply.send(Ok(()))));
    }
}
