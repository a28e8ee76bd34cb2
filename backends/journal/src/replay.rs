//! Opening a journal directory: read every segment, keep the batches not yet acked, cut a torn
//! tail off the last segment, and refuse (naming file and offset) damage anywhere else.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_backend_api::{BackendError, ErrorKind};

use crate::format::{Bad, MAGIC, RecOp, Record, decode};
use crate::state::{Blob, Metas, Ops, Write};

/// What the segments hold.
#[derive(Debug, Default)]
pub struct Found {
    /// Segment files, oldest first, with the highest batch number in each.
    pub segments: Vec<(PathBuf, u64)>,
    /// Batches not covered by an acked marker, in order: each op's key and data, and the
    /// metadata of its puts.
    pub batches: BTreeMap<u64, (Ops, Metas)>,
    /// Every batch up to this is acked.
    pub acked: u64,
    /// The highest batch number seen.
    pub max_jseq: u64,
    /// The next segment number.
    pub next_segment: u64,
}

fn err(dir: &Path, kind: ErrorKind, message: String) -> BackendError {
    BackendError::new(format!("journal {}", dir.display()), kind, message)
}

fn io(dir: &Path, what: &str, e: std::io::Error) -> BackendError {
    err(dir, ErrorKind::Io, format!("{what}: {e}")).with_source(e)
}

/// Reads the directory's segments.
pub fn scan(dir: &Path) -> Result<Found, BackendError> {
    let mut numbered = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, "cannot list", e))? {
        let entry = entry.map_err(|e| io(dir, "cannot list", e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".jnl"))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        numbered.push((n, entry.path()));
    }
    numbered.sort();
    let mut found = Found {
        next_segment: numbered.last().map_or(0, |(n, _)| n + 1),
        ..Found::default()
    };
    let mut all: BTreeMap<u64, (Ops, Metas)> = BTreeMap::new();
    let count = numbered.len();
    for (i, (_, path)) in numbered.into_iter().enumerate() {
        let last = i + 1 == count;
        let bytes = std::fs::read(&path)
            .map_err(|e| io(dir, &format!("cannot read {}", path.display()), e))?;
        if bytes.len() < MAGIC.len() && last && MAGIC.starts_with(&bytes) {
            // Created but never written: nothing in it was ever acknowledged.
            std::fs::remove_file(&path)
                .map_err(|e| io(dir, "cannot remove an empty segment", e))?;
            continue;
        }
        if !bytes.starts_with(MAGIC) {
            return Err(err(
                dir,
                ErrorKind::Corrupt,
                format!("{} is not a Strata journal segment", path.display()),
            ));
        }
        let file = Arc::new(
            File::open(&path)
                .map_err(|e| io(dir, &format!("cannot open {}", path.display()), e))?,
        );
        let mut at = MAGIC.len();
        let mut max_jseq = 0;
        while at < bytes.len() {
            match decode(&bytes[at..]) {
                Ok((Record::Batch { jseq, ops }, used)) => {
                    let mut metas = Metas::new();
                    let mut out: Ops = Vec::with_capacity(ops.len());
                    for op in ops {
                        let (key, write, meta) = match op {
                            RecOp::Put { key, data, meta } => {
                                let blob = Blob::File {
                                    seg: file.clone(),
                                    at: at as u64 + data.start,
                                    len: data.end - data.start,
                                };
                                (key, Write::Put(blob), meta)
                            }
                            RecOp::Copy { key, from, meta } => {
                                // The decoder checked that the batch writes the source.
                                let Some(blob) = out
                                    .iter()
                                    .rev()
                                    .find(|(k, _)| *k == from)
                                    .and_then(|(_, w)| w.blob().cloned())
                                else {
                                    return Err(err(
                                        dir,
                                        ErrorKind::Corrupt,
                                        format!(
                                            "{} copies {from}, which it does not write",
                                            path.display()
                                        ),
                                    ));
                                };
                                (key, Write::Copy { from, blob }, meta)
                            }
                            RecOp::Delete { key } => (key, Write::Delete, None),
                        };
                        metas.retain(|(k, _)| *k != key);
                        if let Some(m) = meta {
                            metas.push((key.clone(), m));
                        }
                        out.push((key, write));
                    }
                    let ops = out;
                    all.insert(jseq, (ops, metas));
                    max_jseq = max_jseq.max(jseq);
                    at += used;
                }
                Ok((Record::Acked(m), used)) => {
                    found.acked = found.acked.max(m);
                    at += used;
                }
                Err(bad) => {
                    let zeros = bytes[at..].iter().all(|&b| b == 0);
                    if last && (bad == Bad::Torn || zeros) {
                        tracing::warn!(
                            segment = %path.display(),
                            offset = at,
                            bytes = bytes.len() - at,
                            "cutting a torn write off the journal's end (it was never acknowledged)"
                        );
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(|e| io(dir, "cannot open to cut", e))?;
                        f.set_len(at as u64)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| io(dir, "cannot cut a torn write", e))?;
                        break;
                    }
                    let why = match bad {
                        Bad::Torn => {
                            "a record ends early in a segment that is not the last".to_string()
                        }
                        Bad::Corrupt(why) => why,
                    };
                    return Err(err(
                        dir,
                        ErrorKind::Corrupt,
                        format!(
                            "{} is damaged at byte {at}: {why}; it holds batches the store may not have, so Strata will not start over it (move it aside to start without them)",
                            path.display()
                        ),
                    ));
                }
            }
        }
        found.max_jseq = found.max_jseq.max(max_jseq);
        found.segments.push((path, max_jseq));
    }
    found.batches = all.split_off(&(found.acked + 1));
    Ok(found)
}
