//! Object keys. A key is checked once, when it is made, so that no backend ever sees one that
//! could escape its storage (a maildir path with `..`, an S3 key with a leading `/`).

use std::fmt;

use crate::error::{BackendError, ErrorKind};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// A validated key: `/`-separated segments of `A-Z a-z 0-9 . _ - + = ,`, none empty, `.` or
/// `..`, at most [`MAX_KEY_BYTES`] long.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Checks and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Key, BackendError> {
        let key = key.into();
        let bad = |why: &str| {
            Err(BackendError::new(
                "key",
                ErrorKind::InvalidKey,
                format!(
                    "invalid key {:?}: {why}",
                    key.chars().take(80).collect::<String>()
                ),
            ))
        };
        if key.is_empty() {
            return bad("empty");
        }
        if key.len() > MAX_KEY_BYTES {
            return bad("too long");
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return bad("empty path segment");
            }
            if segment == "." || segment == ".." {
                return bad("relative path segment");
            }
            if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._-+=,".contains(*c)))
            {
                return bad(&format!("character {c:?} is not allowed"));
            }
        }
        Ok(Key(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_confuse_a_store_are_refused() {
        for bad in [
            "",
            "/abs",
            "trailing/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            "nul\0",
            "sp ace",
            "a\\b",
            "ünïcode",
        ] {
            assert!(Key::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Key::new("x".repeat(MAX_KEY_BYTES + 1)).is_err());
        for good in [
            "a",
            "ab/cd/ef.eml",
            "user=alice/2026/11/1a2b-3c,S=1234",
            "x".repeat(512).as_str(),
        ] {
            assert_eq!(Key::new(good).unwrap().as_str(), good);
        }
    }
}
