//! Finding a user's mail in an SQL or S3 store from the store alone, for `strata index
//! rebuild` when even the shipped index chain is gone: every body is listed, its metadata read
//! (user, mailbox id and name, GUID, dates; see `BodyMeta`), and the bodies grouped into the
//! mailboxes they were last filed in. A body without metadata (written before stores kept it)
//! is placed by its key, which names a folder, the GUID and the INTERNALDATE's second.
//!
//! Flags, keywords and UIDs are not in the store: a rebuild gives every message new UIDs
//! (under a new UIDVALIDITY) and no flags. This module only plans; `import` records the plan.

use std::collections::HashMap;

use futures::StreamExt;
use strata_backend_api::{Backend, BackendError, BodyMeta, Key};
use strata_index::{Guid, Timestamp};
use strata_mailstore::is_strata_key;
use strata_mailstore::names::DELIMITER;

/// Metadata reads in flight at once (S3 needs one HEAD per body).
const CONCURRENCY: usize = 32;

/// One body found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBody {
    /// Its key in the user's store.
    pub key: String,
    /// Its size as the store lists it.
    pub size: u64,
    /// The size its metadata records, if any (a mismatch is damage).
    pub recorded_size: Option<u64>,
    /// Its GUID, from the metadata or the key.
    pub guid: Option<Guid>,
    /// INTERNALDATE.
    pub internal_date: Timestamp,
    /// When it was filed (0 if unknown), which orders a mailbox's messages.
    pub saved: i64,
}

/// One mailbox to recreate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundMailbox {
    /// Its path.
    pub path: Vec<String>,
    /// Its bodies, oldest filed first.
    pub bodies: Vec<StoredBody>,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The mailboxes, INBOX first.
    pub mailboxes: Vec<FoundMailbox>,
    /// Bodies whose metadata names another user: left where they are, not adopted.
    pub foreign: Vec<String>,
    /// Bodies placed by their key because their metadata is missing or damaged.
    pub by_key: u64,
}

/// Where a body belongs before names are settled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Group {
    /// A mailbox id from the metadata.
    Id(u64),
    /// A key's folder (`""` is INBOX, `.a.b` is a/b, `.=7` is mailbox 7).
    Folder(String),
}

/// Lists `backend` (one user's view of the store) and plans the user's mailboxes.
pub async fn scan(backend: &dyn Backend, user: &str) -> Result<Scan, BackendError> {
    let listed: Vec<_> = backend
        .list("")
        .await?
        .into_iter()
        .filter(|l| is_strata_key(l.key.as_str()))
        .collect();
    let metas: Vec<(strata_backend_api::Listed, Option<BodyMeta>)> =
        futures::stream::iter(listed)
            .map(|l| async move {
                let meta = match backend.meta(&l.key).await {
                    Ok(m) => m,
                    Err(e) if e.kind == strata_backend_api::ErrorKind::NotFound => return None,
                    Err(e) => {
                        tracing::warn!(key = %l.key, error = %e, "rebuild: unreadable metadata; placing the body by its key");
                        None
                    }
                };
                Some((l, meta))
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await;
    let mut out = Scan::default();
    let mut groups: HashMap<Group, Vec<StoredBody>> = HashMap::new();
    // The name each mailbox id had when its most recently filed body was written.
    let mut names: HashMap<u64, (i64, String)> = HashMap::new();
    for (l, meta) in metas {
        let key = l.key.as_str().to_string();
        let (folder, from_key) = by_key(&key);
        match meta {
            Some(m) if m.user != user => out.foreign.push(key),
            Some(m) => {
                let named = names.entry(m.mailbox).or_insert((i64::MIN, String::new()));
                if m.saved >= named.0 {
                    *named = (m.saved, m.mailbox_name.clone());
                }
                groups
                    .entry(Group::Id(m.mailbox))
                    .or_default()
                    .push(StoredBody {
                        key,
                        size: l.size,
                        recorded_size: Some(m.size),
                        guid: parse_guid(&m.guid).or(from_key.guid),
                        internal_date: Timestamp {
                            unix: m.internal_date,
                            offset_minutes: m.zone_minutes,
                        },
                        saved: m.saved,
                    });
            }
            None => {
                out.by_key += 1;
                groups
                    .entry(Group::Folder(folder))
                    .or_default()
                    .push(StoredBody {
                        size: l.size,
                        ..from_key
                    });
            }
        }
    }
    // Bodies placed by key join the mailbox their folder names, when one is known.
    let mut by_path: HashMap<Vec<String>, Vec<StoredBody>> = HashMap::new();
    let mut ids: Vec<(u64, Vec<StoredBody>)> = Vec::new();
    let mut folders: Vec<(String, Vec<StoredBody>)> = Vec::new();
    for (g, bodies) in groups {
        match g {
            Group::Id(id) => ids.push((id, bodies)),
            Group::Folder(f) => folders.push((f, bodies)),
        }
    }
    ids.sort_by_key(|(id, _)| *id);
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    let mut id_paths: HashMap<u64, Vec<String>> = HashMap::new();
    for (id, bodies) in ids {
        let name = names.get(&id).map(|(_, n)| n.clone()).unwrap_or_default();
        let mut path = split_name(&name).unwrap_or_else(|| vec![format!("Recovered {id}")]);
        if by_path.contains_key(&path) {
            // Two mailboxes last named alike (one renamed, another created with its name).
            let last = path.last_mut().expect("a path has a name");
            *last = format!("{last} ({id})");
        }
        id_paths.insert(id, path.clone());
        by_path.entry(path).or_default().extend(bodies);
    }
    for (folder, bodies) in folders {
        let path = folder_path(&folder, &id_paths);
        by_path.entry(path).or_default().extend(bodies);
    }
    let mut mailboxes: Vec<FoundMailbox> = by_path
        .into_iter()
        .map(|(path, mut bodies)| {
            bodies.sort_by(|a, b| {
                (a.saved, a.internal_date.unix, &a.key).cmp(&(
                    b.saved,
                    b.internal_date.unix,
                    &b.key,
                ))
            });
            FoundMailbox { path, bodies }
        })
        .collect();
    mailboxes.sort_by(|a, b| {
        let inbox = |p: &Vec<String>| !(p.len() == 1 && p[0] == "INBOX");
        (inbox(&a.path), &a.path).cmp(&(inbox(&b.path), &b.path))
    });
    out.mailboxes = mailboxes;
    Ok(out)
}

/// A mailbox name's levels, or `None` if it is empty or has an empty level.
fn split_name(name: &str) -> Option<Vec<String>> {
    let path: Vec<String> = name.split(DELIMITER).map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    if path[0].eq_ignore_ascii_case("INBOX") {
        let mut p = path;
        p[0] = "INBOX".into();
        return Some(p);
    }
    Some(path)
}

/// The mailbox a key's folder names.
fn folder_path(folder: &str, id_paths: &HashMap<u64, Vec<String>>) -> Vec<String> {
    let Some(rest) = folder.strip_prefix('.') else {
        return vec!["INBOX".into()];
    };
    if let Some(id) = rest.strip_prefix('=') {
        return match id.parse::<u64>() {
            Ok(id) => id_paths
                .get(&id)
                .cloned()
                .unwrap_or_else(|| vec![format!("Recovered {id}")]),
            Err(_) => vec![format!("Recovered {rest}")],
        };
    }
    split_name(&rest.replace('.', &DELIMITER.to_string()))
        .unwrap_or_else(|| vec![format!("Recovered {rest}")])
}

/// What a body key (`[<folder>/]<seconds>.G<guid>.strata`) says: its folder and a body
/// placed by it.
fn by_key(key: &str) -> (String, StoredBody) {
    let (folder, name) = key.rsplit_once('/').unwrap_or(("", key));
    let rest = name.strip_suffix(".strata").unwrap_or(name);
    let (secs, guid) = rest.split_once(".G").unwrap_or((rest, ""));
    let unix = secs.parse().unwrap_or(0);
    (
        folder.to_string(),
        StoredBody {
            key: key.to_string(),
            size: 0,
            recorded_size: None,
            guid: parse_guid(guid),
            internal_date: Timestamp {
                unix,
                offset_minutes: 0,
            },
            saved: unix,
        },
    )
}

/// 32 hex digits as a GUID.
fn parse_guid(hex: &str) -> Option<Guid> {
    if hex.len() != 32 {
        return None;
    }
    let mut g = [0u8; 16];
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Guid(g))
}

/// The key of a stored body, for reading it.
pub fn key_of(body: &StoredBody) -> Result<Key, BackendError> {
    Key::new(body.key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_folder_guid_and_date() {
        let (f, b) = by_key(".Sent/1700000000.G00112233445566778899aabbccddeeff.strata");
        assert_eq!(f, ".Sent");
        assert_eq!(b.internal_date.unix, 1_700_000_000);
        assert_eq!(
            b.guid.unwrap().to_string(),
            "00112233445566778899aabbccddeeff"
        );
        let ids = HashMap::from([(7, vec!["Odd name".to_string()])]);
        assert_eq!(folder_path("", &ids), vec!["INBOX"]);
        assert_eq!(folder_path(".a.b", &ids), vec!["a", "b"]);
        assert_eq!(folder_path(".=7", &ids), vec!["Odd name"]);
        assert_eq!(folder_path(".=8", &ids), vec!["Recovered 8"]);
        assert_eq!(
            split_name("inbox/x"),
            Some(vec!["INBOX".into(), "x".into()])
        );
        assert_eq!(split_name("a//b"), None);
    }
}
