//! Mailbox names as IMAP clients send them, checked and split into the index's path components.
//!
//! The hierarchy delimiter is `/`. Names are kept in their wire form (modified UTF-7 for
//! non-ASCII), so they round-trip byte for byte. `INBOX` is case-insensitive, as RFC 3501 says.

use thiserror::Error;

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';
/// Longest whole mailbox name, in bytes: long enough for any real hierarchy, short enough that a
/// name always fits a log line and a backend key.
pub const MAX_NAME_BYTES: usize = 1024;
/// Deepest hierarchy.
pub const MAX_DEPTH: usize = 32;

/// Why a mailbox name was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NameError {
    /// Empty name or empty component (`a//b`, `/a`, `a/`).
    #[error("mailbox name has an empty component")]
    Empty,
    /// `.` or `..` as a component.
    #[error("mailbox name component may not be \".\" or \"..\"")]
    Dots,
    /// A control character (NUL, CR, LF...).
    #[error("mailbox name contains a control character")]
    Control,
    /// Wildcards are for LIST patterns, not names.
    #[error("mailbox name contains a wildcard (% or *)")]
    Wildcard,
    /// Too long or too deep.
    #[error("mailbox name is longer than {MAX_NAME_BYTES} bytes or deeper than {MAX_DEPTH} levels")]
    TooLong,
    /// Not UTF-8.
    #[error("mailbox name is not valid UTF-8")]
    NotUtf8,
}

/// Splits and checks a mailbox name; `INBOX` in any case becomes `INBOX`.
pub fn split_name(raw: &[u8]) -> Result<Vec<String>, NameError> {
    let name = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(NameError::Control);
    }
    if name.contains(['%', '*']) {
        return Err(NameError::Wildcard);
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, part) in name.split(DELIMITER).enumerate() {
        if part.is_empty() {
            return Err(NameError::Empty);
        }
        if part == "." || part == ".." {
            return Err(NameError::Dots);
        }
        if i == 0 && part.eq_ignore_ascii_case("INBOX") {
            parts.push("INBOX".into());
        } else {
            parts.push(part.to_string());
        }
    }
    if parts.len() > MAX_DEPTH {
        return Err(NameError::TooLong);
    }
    Ok(parts)
}

/// Joins path components into the name clients see.
pub fn join_name<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            out.push(DELIMITER);
        }
        out.push_str(p.as_ref());
    }
    out
}

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the delimiter.
/// `INBOX` matches case-insensitively.
pub fn matches_pattern(name: &str, pattern: &str) -> bool {
    let (name, pattern) = if name.len() >= 5
        && name[..5].eq_ignore_ascii_case("INBOX")
        && pattern.len() >= 5
        && pattern.is_char_boundary(5)
        && pattern[..5].eq_ignore_ascii_case("INBOX")
    {
        (&name[5..], &pattern[5..])
    } else {
        (name, pattern)
    };
    glob(name.as_bytes(), pattern.as_bytes())
}

fn glob(name: &[u8], pat: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point per `*`/`%`.
    let (mut n, mut p) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'*' || pat[p] == b'%') {
            star = Some((p, n, pat[p] == b'%'));
            p += 1;
        } else if p < pat.len() && pat[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn, percent)) = star {
            if percent && name[sn] == DELIMITER as u8 {
                return false;
            }
            star = Some((sp, sn + 1, percent));
            p = sp + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*' || c == b'%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_refuse() {
        assert_eq!(split_name(b"inbox").unwrap(), vec!["INBOX"]);
        assert_eq!(split_name(b"a/b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_name(b"Inbox/x").unwrap(), vec!["INBOX", "x"]);
        assert_eq!(split_name(b"../etc"), Err(NameError::Dots));
        assert_eq!(split_name(b"a/./b"), Err(NameError::Dots));
        assert_eq!(split_name(b"/etc"), Err(NameError::Empty));
        assert_eq!(split_name(b"a//b"), Err(NameError::Empty));
        assert_eq!(split_name(b""), Err(NameError::Empty));
        assert_eq!(split_name(b"a\0b"), Err(NameError::Control));
        assert_eq!(split_name(&[b'x'; 10_000]), Err(NameError::TooLong));
        assert_eq!(split_name(b"a*"), Err(NameError::Wildcard));
    }

    #[test]
    fn patterns_match_as_rfc3501_says() {
        assert!(matches_pattern("INBOX", "*"));
        assert!(matches_pattern("a/b/c", "*"));
        assert!(matches_pattern("a/b/c", "a/*"));
        assert!(!matches_pattern("a/b/c", "a/%"));
        assert!(matches_pattern("a/b", "a/%"));
        assert!(matches_pattern("a", "%"));
        assert!(!matches_pattern("a/b", "%"));
        assert!(matches_pattern("INBOX", "inbox"));
        assert!(matches_pattern("Sent", "S%t"));
        assert!(!matches_pattern("Sent", "S%x"));
        assert!(matches_pattern("a/b/c", "%/%/c"));
    }
}
