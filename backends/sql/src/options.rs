//! What an admin configures for the SQL backend.

use std::time::Duration;

/// How to reach the database and how to store bodies in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlOptions {
    /// `sqlite:/path/bodies.db`, `postgres://user:pass@host/db`, `mysql://user@host/db`.
    pub url: String,
    /// Connections in the pool (reads of one FETCH run on up to this many at once).
    pub max_connections: u32,
    /// Largest row of body bytes; larger bodies are split into chunks of this size.
    pub chunk_bytes: usize,
    /// How long connecting, or waiting for a free connection, may take.
    pub connect_timeout: Duration,
}

impl SqlOptions {
    /// Defaults for `url`: 16 connections, 1 MiB chunks, 10 s to connect.
    pub fn new(url: impl Into<String>) -> Self {
        SqlOptions {
            url: url.into(),
            max_connections: 16,
            chunk_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A URL with its password replaced, for errors and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::redacted("postgres://strata:secret@db/mail"),
            "postgres://strata:***@db/mail"
        );
        assert_eq!(super::redacted("sqlite:/x.db"), "sqlite:/x.db");
    }
}
