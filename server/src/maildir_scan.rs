//! Reading a Maildir++ tree as other mail programs (Dovecot, mbsync, Postfix) leave it: the
//! folders (`.Sent`, `.Work.Projects`), each message's unique name, its flags from the file name
//! (`:2,FRS`, with Dovecot's keyword letters from `dovecot-keywords`), and its date (the file's
//! modification time, as Dovecot uses for INTERNALDATE). Used by `strata import maildir` and
//! `strata index rebuild`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_index::Timestamp;

/// A folder of a Maildir++ tree.
#[derive(Debug)]
pub struct Folder {
    /// The mailbox path (`["INBOX"]`, `["Work", "Projects"]`).
    pub path: Vec<String>,
    /// The folder's directory name (`""` for the top level, `.Work.Projects` otherwise).
    pub dir_name: String,
    /// Its messages, oldest unique name first.
    pub messages: Vec<Found>,
}

/// A message file.
#[derive(Debug)]
pub struct Found {
    /// The file.
    pub file: PathBuf,
    /// The unique name (the file name without `:2,flags`).
    pub unique: String,
    /// Flag letters of the file name (`S`, `R`, `F`, `T`, `D`).
    pub flags: String,
    /// Keyword names from Dovecot's letters.
    pub keywords: Vec<String>,
    /// INTERNALDATE.
    pub date: Timestamp,
    /// Delivered to `new/`, not yet seen by any client.
    pub new: bool,
}

/// Scans a Maildir++ tree. Directories that are not Maildirs are skipped.
pub fn scan(root: &Path) -> std::io::Result<Vec<Folder>> {
    let mut folders = Vec::new();
    if root.join("cur").is_dir() || root.join("new").is_dir() {
        folders.push(folder(root, vec!["INBOX".into()], String::new())?);
    }
    let mut subdirs: Vec<_> = std::fs::read_dir(root)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with('.') && n != "." && n != "..")
        .collect();
    subdirs.sort();
    for name in subdirs {
        let dir = root.join(&name);
        if !(dir.join("cur").is_dir() || dir.join("new").is_dir()) {
            continue;
        }
        let path: Vec<String> = name[1..]
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if path.is_empty() {
            continue;
        }
        let path = if path[0].eq_ignore_ascii_case("INBOX") && path.len() > 1 {
            let mut p = path;
            p[0] = "INBOX".into();
            p
        } else {
            path
        };
        folders.push(folder(&dir, path, name)?);
    }
    Ok(folders)
}

fn keyword_letters(dir: &Path) -> HashMap<char, String> {
    let Ok(text) = std::fs::read_to_string(dir.join("dovecot-keywords")) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (n, name) = l.split_once(' ')?;
            let n: u8 = n.trim().parse().ok()?;
            (n < 26).then(|| ((b'a' + n) as char, name.trim().to_string()))
        })
        .collect()
}

fn folder(dir: &Path, path: Vec<String>, dir_name: String) -> std::io::Result<Folder> {
    let letters = keyword_letters(dir);
    let mut messages = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let (unique, flags) = match name.split_once(":2,") {
                Some((u, f)) => (u.to_string(), f.to_string()),
                None => (
                    name.split(':').next().unwrap_or(&name).to_string(),
                    String::new(),
                ),
            };
            let keywords = flags
                .chars()
                .filter_map(|c| letters.get(&c).cloned())
                .collect();
            let meta = e.metadata().ok();
            let mtime = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            // When the name was last given (a rename sets it): the newest of two names wins.
            let named = meta.as_ref().map_or(0, |m| {
                use std::os::unix::fs::MetadataExt;
                m.ctime() as i128 * 1_000_000_000 + i128::from(m.ctime_nsec())
            });
            messages.push((
                named,
                Found {
                    file: e.path(),
                    unique,
                    flags,
                    keywords,
                    date: Timestamp {
                        unix: mtime,
                        offset_minutes: 0,
                    },
                    new: sub == "new",
                },
            ));
        }
    }
    // One message per unique name: a crash between writing a file's new name and removing its
    // old one (or another tool's) can leave two names for one message. The one in cur/ named
    // last wins, so a rebuild never records one body twice.
    messages.sort_by(|(na, a), (nb, b)| {
        a.unique
            .cmp(&b.unique)
            .then(b.new.cmp(&a.new))
            .then(na.cmp(nb))
    });
    let mut messages: Vec<Found> = messages.into_iter().map(|(_, f)| f).collect();
    messages.reverse();
    messages.dedup_by(|later, kept| later.unique == kept.unique);
    messages.reverse();
    Ok(Folder {
        path,
        dir_name,
        messages,
    })
}

/// The system flags a Maildir flag string stands for.
pub fn system_flags(letters: &str) -> strata_index::SystemFlags {
    use strata_index::SystemFlags as F;
    let mut out = F::empty();
    for c in letters.chars() {
        out |= match c {
            'S' => F::SEEN,
            'R' => F::ANSWERED,
            'F' => F::FLAGGED,
            'T' => F::DELETED,
            'D' => F::DRAFT,
            _ => F::empty(),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_flags_and_keywords_are_read() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in [
            "cur",
            "new",
            "tmp",
            ".Work.Projects/cur",
            ".Work.Projects/new",
            "not-a-folder",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("cur/1.a.host:2,RSa"), "x").unwrap();
        std::fs::write(root.join("new/2.b.host"), "y").unwrap();
        std::fs::write(root.join("dovecot-keywords"), "0 $Label1\n1 Junk\n").unwrap();
        std::fs::write(root.join(".Work.Projects/cur/3.c.host:2,T"), "z").unwrap();
        let folders = scan(root).unwrap();
        assert_eq!(folders.len(), 2);
        assert_eq!(folders[0].path, ["INBOX"]);
        let m = &folders[0].messages;
        assert_eq!(
            (m[0].unique.as_str(), m[0].flags.as_str()),
            ("1.a.host", "RSa")
        );
        assert_eq!(m[0].keywords, ["$Label1"]);
        assert!(m[1].new && m[1].flags.is_empty());
        assert_eq!(folders[1].path, ["Work", "Projects"]);
        assert_eq!(folders[1].dir_name, ".Work.Projects");
        assert_eq!(system_flags("RSFTD"), strata_index::SystemFlags::all());
    }
}

#[cfg(test)]
mod dedup_tests {
    use super::*;

    #[test]
    fn two_names_of_one_message_are_one_message_named_last() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let write =
            |name: &str| std::fs::write(dir.path().join(name), "Subject: x\r\n\r\nx\r\n").unwrap();
        write("new/100.a.host");
        write("cur/100.a.host:2,S");
        // Named last: a rename sets the name's time, so wait for the clock to move on.
        let first = std::fs::metadata(dir.path().join("cur/100.a.host:2,S")).unwrap();
        loop {
            write("cur/100.a.host:2,ST");
            let m = std::fs::metadata(dir.path().join("cur/100.a.host:2,ST")).unwrap();
            use std::os::unix::fs::MetadataExt;
            if (m.ctime(), m.ctime_nsec()) > (first.ctime(), first.ctime_nsec()) {
                break;
            }
        }
        write("cur/200.b.host:2,");
        let folders = scan(dir.path()).unwrap();
        let found: Vec<(&str, &str)> = folders[0]
            .messages
            .iter()
            .map(|m| (m.unique.as_str(), m.flags.as_str()))
            .collect();
        assert_eq!(found, [("100.a.host", "ST"), ("200.b.host", "")]);
    }
}
