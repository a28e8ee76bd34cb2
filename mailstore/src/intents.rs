//! Intent files beside a user's index: lists of body copies a multi-step operation may leave
//! behind if the process dies in the middle, so that the next run (or a rebuild) deletes them
//! instead of keeping or resurrecting them. A migration lists both copies of each body it
//! moves (`USER.moving`); an expunge lists the bodies it is about to give up
//! (`USER.expunging`). One line per copy: `guid<TAB>store<TAB>key`, written whole (temporary
//! file, fsync, rename).

use std::io::Write;
use std::path::Path;

use strata_index::{BodyLocation, Guid, StoreId};

use crate::error::{Result, StoreError};

/// Replaces the file with `intents` (removes it when there are none).
pub(crate) fn write(path: &Path, intents: &[(Guid, BodyLocation)]) -> Result<()> {
    if intents.is_empty() {
        return clear(path);
    }
    let mut text = String::new();
    for (g, loc) in intents {
        text.push_str(&format!("{g}\t{}\t{}\n", loc.store.0, loc.key));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| error(path, e))
}

/// Removes the file, if there is one.
pub(crate) fn clear(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error(path, e)),
        _ => Ok(()),
    }
}

/// What the file lists (nothing if there is no file); a line that does not parse is an error
/// naming it.
pub(crate) fn read(path: &Path) -> Result<Vec<(Guid, BodyLocation)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut f = line.splitn(3, '\t');
        let parsed = (|| {
            let guid: Guid = f.next()?.parse().ok()?;
            let store = StoreId(f.next()?.parse().ok()?);
            let key = f.next()?.to_string();
            Some((guid, BodyLocation { store, key }))
        })();
        match parsed {
            Some(p) => out.push(p),
            None => {
                return Err(StoreError::Intent(format!(
                    "{} line {}: not \"guid<TAB>store<TAB>key\"",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

fn error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Intent(format!("{}: {e}", path.display()))
}
