//! Configuration errors: each names the file, the key and, where the key is in the file, the
//! line.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, if the configuration came from one.
    pub file: Option<PathBuf>,
    /// The key, dotted (`imap.starttls`); empty for a problem with the file as a whole.
    pub key: String,
    /// 1-based line of the key, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map_or_else(|| "configuration".to_string(), |p| p.display().to_string());
        match (self.line, self.key.is_empty()) {
            (Some(line), false) => write!(f, "{file}:{line}: {}: {}", self.key, self.message),
            (Some(line), true) => write!(f, "{file}:{line}: {}", self.message),
            (None, false) => write!(f, "{file}: {}: {}", self.key, self.message),
            (None, true) => write!(f, "{file}: {}", self.message),
        }
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
