//! The owner file beside an index file (`<file>.owner`): who has it open for writing, so that a
//! refused open can say which process holds the lock. The lock itself is the engine's file lock;
//! this file is only the label, and a stale one left by a crash is harmless.

use std::path::{Path, PathBuf};

pub(crate) fn owner_path(index: &Path) -> PathBuf {
    let mut p = index.as_os_str().to_owned();
    p.push(".owner");
    PathBuf::from(p)
}

/// Records this process as the writer of `index`.
pub(crate) fn claim(index: &Path) {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    let since = crate::model::Timestamp::now().unix;
    let label = format!(
        "pid {} on {host}, since unix time {since}\n",
        std::process::id()
    );
    // The label is advisory: failing to write it must not stop the index from opening.
    if let Err(e) = std::fs::write(owner_path(index), label) {
        tracing::warn!(file = %index.display(), error = %e, "cannot write index owner file");
    }
}

/// Removes the label when the writer closes.
pub(crate) fn release(index: &Path) {
    let _ = std::fs::remove_file(owner_path(index));
}

/// Describes who holds the write lock, from the label.
pub(crate) fn describe_holder(index: &Path) -> String {
    match std::fs::read_to_string(owner_path(index)) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => "holder unknown: no owner file".to_string(),
    }
}
