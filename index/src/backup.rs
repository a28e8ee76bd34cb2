//! The backup form of a user's index: a *base* (a dense copy of the file as of one MODSEQ) and
//! *diffs* (every row changed since a MODSEQ), each a plain file that can be shipped to object
//! storage as is. [`import`] rebuilds an index file from a base and its diffs.
//!
//! Diff file layout: `STRATA-INDEX-DIFF\0`, format version (u32 LE), payload length (u64 LE),
//! payload (postcard-encoded [`Diff`]), CRC-32 of the payload (u32 LE).

use std::io::Write;
use std::path::Path;

use crate::diff::{self, Diff};
use crate::error::{IndexError, Result};
use crate::index::UserIndex;
use crate::model::Modseq;
use crate::open::sync_dir;
use crate::repack::{apply_to_copy, dense_copy, sibling};
use crate::snapshot::Snapshot;
use crate::store::blocking;

const DIFF_MAGIC: &[u8; 18] = b"STRATA-INDEX-DIFF\0";
const DIFF_FORMAT: u32 = 1;

/// Writes a base: a dense copy of the index as of now, to `dest` (atomically). Returns its
/// MODSEQ, from which the next diff starts.
pub async fn export_base(index: &UserIndex, dest: &Path) -> Result<Modseq> {
    let shared = index.shared().clone();
    let dest = dest.to_path_buf();
    blocking(&dest.clone(), "backup", move || {
        let snap = shared.snapshot()?;
        let tmp = sibling(&dest, "writing");
        dense_copy(&snap, &tmp, snap.log_floor())?;
        std::fs::rename(&tmp, &dest).map_err(|e| IndexError::io(&dest, e))?;
        sync_dir(&dest)?;
        Ok(snap.modseq())
    })
    .await
}

/// Writes a diff of everything changed after `since` to `dest` (atomically). Returns the MODSEQ
/// it reaches.
pub async fn export_diff(index: &UserIndex, since: Modseq, dest: &Path) -> Result<Modseq> {
    let shared = index.shared().clone();
    let dest = dest.to_path_buf();
    blocking(&dest.clone(), "backup", move || {
        let snap = shared.snapshot()?;
        let d = diff::since(&snap, since)?;
        write_diff(&dest, &d)?;
        Ok(d.to)
    })
    .await
}

fn write_diff(dest: &Path, d: &Diff) -> Result<()> {
    let payload = postcard::to_stdvec(d).expect("serializing into memory cannot fail");
    let tmp = sibling(dest, "writing");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(DIFF_MAGIC)?;
        f.write_all(&DIFF_FORMAT.to_le_bytes())?;
        f.write_all(&(payload.len() as u64).to_le_bytes())?;
        f.write_all(&payload)?;
        f.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| IndexError::io(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| IndexError::io(dest, e))?;
    sync_dir(dest)
}

/// Reads a diff file, checking its header and checksum.
pub fn read_diff(path: &Path) -> Result<Diff> {
    let raw = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let bad = |why: &str| IndexError::corrupt(path, format!("not a valid index diff: {why}"));
    let rest = raw
        .strip_prefix(DIFF_MAGIC.as_slice())
        .ok_or_else(|| bad("no header"))?;
    if rest.len() < 12 {
        return Err(bad("truncated header"));
    }
    let format = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    if format != DIFF_FORMAT {
        return Err(IndexError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: format,
            supported: DIFF_FORMAT,
        });
    }
    let len = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
    let body = &rest[12..];
    let len = usize::try_from(len).map_err(|_| bad("length too large"))?;
    if body.len() != len.saturating_add(4) {
        return Err(bad("truncated"));
    }
    let (payload, crc) = body.split_at(len);
    if crc32fast::hash(payload).to_le_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    postcard::from_bytes(payload).map_err(|e| bad(&e.to_string()))
}

/// Builds an index file at `dest` (which must not exist) from a base and its diffs, applied in
/// order. Returns the MODSEQ the result is at.
pub fn import(base: &Path, diffs: &[&Path], dest: &Path) -> Result<Modseq> {
    if dest.exists() {
        return Err(IndexError::BackupMismatch(format!(
            "{} already exists; restore into a new path",
            dest.display()
        )));
    }
    let tmp = sibling(dest, "importing");
    std::fs::copy(base, &tmp).map_err(|e| IndexError::io(base, e))?;
    let result = (|| {
        for d in diffs {
            let diff = read_diff(d)?;
            apply_to_copy(&tmp, &diff)?;
        }
        verify_copy(&tmp)
    })();
    install(&tmp, dest, result)
}

/// Checks a built copy (every row and invariant) and returns its MODSEQ. The file is closed on
/// this thread before this returns, so the caller can open it at once (a snapshot that is a
/// file's last holder would close it on a thread of its own).
pub(crate) fn verify_copy(tmp: &Path) -> Result<Modseq> {
    let db = crate::open::open_read_only(tmp, 16 << 20)?;
    let snap = Snapshot::begin(tmp, db.clone())?;
    crate::check::verify(&snap)?;
    let modseq = snap.modseq();
    drop(snap);
    drop(db);
    Ok(modseq)
}

/// Puts a copy built at `tmp` in place at `dest` (fsynced, renamed, the directory fsynced), or
/// removes it if building it failed.
pub(crate) fn install(tmp: &Path, dest: &Path, built: Result<Modseq>) -> Result<Modseq> {
    let done = built.and_then(|m| {
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| IndexError::io(tmp, e))?;
        std::fs::rename(tmp, dest).map_err(|e| IndexError::io(dest, e))?;
        sync_dir(dest)?;
        Ok(m)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    done
}
