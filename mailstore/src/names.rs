//! Mailbox names as IMAP clients send them, checked and split into the index's path components.
//!
//! The hierarchy delimiter is `/`. Names are kept in IMAP4rev1's wire form, modified UTF-7
//! (`mutf7`), so they round-trip byte for byte to IMAP4rev1 clients; `to_stored` and `shown`
//! convert at the edge for IMAP4rev2 clients, which speak UTF-8. `INBOX` is case-insensitive,
//! as RFC 3501 says.

use std::borrow::Cow;

use thiserror::Error;

use crate::mutf7;

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
    /// An IMAP4rev1 name that is not modified UTF-7 (a bare `&`, say: `&-` stands for `&`).
    #[error("mailbox name is not valid modified UTF-7 (write & as &-)")]
    NotUtf7,
}

/// A name as a client sent it, in the form names are kept in (modified UTF-7). UTF-8 from an
/// IMAP4rev2 client is encoded, as is any 8-bit name from an IMAP4rev1 one (it can only be
/// UTF-8 meant as such); ASCII from an IMAP4rev1 client is modified UTF-7 already.
pub fn to_stored(raw: &[u8], utf8: bool) -> Cow<'_, [u8]> {
    if !utf8 && raw.is_ascii() {
        return Cow::Borrowed(raw);
    }
    match std::str::from_utf8(raw) {
        Ok(text) => Cow::Owned(mutf7::encode(text).into_bytes()),
        // Refused by `split_name`.
        Err(_) => Cow::Borrowed(raw),
    }
}

/// A kept name as a client sees it: UTF-8 for an IMAP4rev2 client, modified UTF-7 otherwise.
/// A name kept before names were checked, and not modified UTF-7, is shown as it is.
pub fn shown(stored: &str, utf8: bool) -> Cow<'_, str> {
    match utf8.then(|| mutf7::decode(stored)).flatten() {
        Some(text) => Cow::Owned(text),
        None => Cow::Borrowed(stored),
    }
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
    if mutf7::decode(name).is_none() {
        return Err(NameError::NotUtf7);
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
    // Bytes, not `str` slices: byte 5 of a UTF-8 name may fall inside a character.
    let inbox = |s: &str| s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"INBOX");
    let (name, pattern) = if inbox(name) && inbox(pattern) {
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
        assert_eq!(split_name(b"R&D"), Err(NameError::NotUtf7));
        assert_eq!(split_name("Entwürfe".as_bytes()), Err(NameError::NotUtf7));
        assert_eq!(split_name(b"Entw&APw-rfe").unwrap(), vec!["Entw&APw-rfe"]);
    }

    #[test]
    fn names_are_kept_in_modified_utf7() {
        assert_eq!(&*to_stored(b"R&D", true), b"R&-D");
        assert_eq!(&*to_stored(b"R&-D", false), b"R&-D");
        assert_eq!(&*to_stored("Entwürfe".as_bytes(), false), b"Entw&APw-rfe");
        assert_eq!(&*to_stored("Entwürfe".as_bytes(), true), b"Entw&APw-rfe");
        assert_eq!(&*to_stored(b"\xff", true), b"\xff");
        assert_eq!(shown("Entw&APw-rfe", true), "Entwürfe");
        assert_eq!(shown("Entw&APw-rfe", false), "Entw&APw-rfe");
        assert_eq!(shown("R&D", true), "R&D");
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
        // Byte 5 inside a character, on either side.
        assert!(matches_pattern("Entwürfe", "Entw%"));
        assert!(!matches_pattern("INBOXü", "Entwürfe"));
        assert!(matches_pattern("inbox/été", "INBOX/*"));
        assert!(!matches_pattern("Entwürfe", "INBOX"));
    }
}
