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
    let since = utc(crate::model::Timestamp::now().unix);
    let label = format!("pid {} on {host}, since {since}\n", std::process::id());
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

/// A UNIX time as `2026-11-30 15:09:40 UTC`.
pub(crate) fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_796_051_380), "2026-11-30 15:09:40 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
