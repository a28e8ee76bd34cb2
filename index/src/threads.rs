//! Threads, for RFC 8474's THREADID: a new message joins the thread of a message it names (by
//! its own Message-ID, References or In-Reply-To) when their base subjects agree, and starts a
//! thread named after its own content otherwise. The thread belongs to the content, so copies
//! share it.
//!
//! `Table::Threads` maps each Message-ID a content brought to (thread, base subject hash, the
//! content that brought it); the row goes when that content does. This is not RFC 5256's THREAD
//! algorithm: it never reorders or splits a thread once made.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Guid;
use crate::parsed::{Envelope, HeaderField};

/// Most Message-IDs one message contributes (its own, then the latest references).
const MAX_IDS: usize = 32;
/// Longest Message-ID kept as a key; a longer one is cut (it still names its message).
const MAX_ID_BYTES: usize = 250;

/// What threading reads from a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ThreadKeys {
    /// Its own Message-ID first, then those it refers to, most recent first.
    ids: Vec<Vec<u8>>,
    /// CRC-32 of the base subject.
    subject: u32,
}

/// A Message-ID's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Known {
    pub thread: Guid,
    pub subject: u32,
    /// The content whose arrival recorded the row; the row goes with it.
    pub creator: Guid,
}

/// Where threading reads and writes its rows: the live transaction, or a schema upgrade.
pub(crate) trait ThreadRows {
    fn known(&self, key: &[u8]) -> Result<Option<Known>>;
    fn record(&mut self, key: &[u8], known: &Known) -> Result<()>;
    fn forget(&mut self, key: &[u8]) -> Result<()>;
}

/// A Message-ID's key in `Table::Threads`.
pub(crate) fn id_key(id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(b'm');
    k.extend_from_slice(&id[..id.len().min(MAX_ID_BYTES)]);
    k
}

impl ThreadKeys {
    /// The keys of a message from its envelope and synced header fields.
    pub(crate) fn of(envelope: &Envelope, headers: &[HeaderField]) -> ThreadKeys {
        let mut own = Vec::new();
        if let Some(v) = &envelope.message_id {
            msg_ids(v, &mut own);
        }
        own.truncate(1);
        let mut refs = Vec::new();
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("References"))
        {
            msg_ids(&h.value, &mut refs);
        }
        if let Some(v) = &envelope.in_reply_to {
            msg_ids(v, &mut refs);
        }
        let mut ids = own;
        for id in refs.into_iter().rev() {
            if ids.len() == MAX_IDS {
                break;
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let subject = envelope.subject.as_deref().unwrap_or_default();
        ThreadKeys {
            ids,
            subject: crc32fast::hash(&base_subject(subject)),
        }
    }

    /// Decodes the keys from a stored content's envelope and header blobs; undecodable parts
    /// count as empty (threading is a convenience, never a reason to refuse a message).
    pub(crate) fn of_blobs(envelope: &[u8], headers: &[u8]) -> ThreadKeys {
        let envelope: Envelope = postcard::from_bytes(envelope).unwrap_or_default();
        let headers: Vec<HeaderField> = postcard::from_bytes(headers).unwrap_or_default();
        ThreadKeys::of(&envelope, &headers)
    }

    /// The `Table::Threads` keys these ids live under.
    pub(crate) fn row_keys(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.ids.iter().map(|id| id_key(id))
    }
}

/// Threads new content `guid`: returns its thread and records the Message-IDs it brings.
pub(crate) fn assign(rows: &mut dyn ThreadRows, guid: Guid, keys: &ThreadKeys) -> Result<Guid> {
    // Each id's row read once: APPEND pays this per new content.
    let mut found: Vec<(Vec<u8>, Option<Known>)> = Vec::new();
    for key in keys.row_keys() {
        let known = rows.known(&key)?;
        found.push((key, known));
    }
    let thread = found
        .iter()
        .filter_map(|(_, k)| k.as_ref())
        .find(|k| k.subject == keys.subject)
        .map_or(guid, |k| k.thread);
    let known = Known {
        thread,
        subject: keys.subject,
        creator: guid,
    };
    for (key, _) in found.iter().filter(|(_, k)| k.is_none()) {
        rows.record(key, &known)?;
    }
    Ok(thread)
}

/// Forgets the Message-IDs content `guid` brought, as it goes.
pub(crate) fn release(rows: &mut dyn ThreadRows, guid: Guid, keys: &ThreadKeys) -> Result<()> {
    for key in keys.row_keys() {
        if rows.known(&key)?.is_some_and(|k| k.creator == guid) {
            rows.forget(&key)?;
        }
    }
    Ok(())
}

/// Every `<...>` in a header value, appended to `out` (at most `MAX_IDS` in all).
fn msg_ids(value: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut rest = value;
    while let Some(open) = memchr(b'<', rest) {
        let after = &rest[open + 1..];
        let Some(close) = memchr(b'>', after) else {
            break;
        };
        let id: Vec<u8> = after[..close]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if !id.is_empty() {
            out.push(id);
        }
        rest = &after[close + 1..];
        if out.len() >= 4 * MAX_IDS {
            // Keep the most recent references of a very long chain.
            out.drain(..2 * MAX_IDS);
        }
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The subject without reply and forward markers, list tags or case: what a reply and its
/// original share.
fn base_subject(s: &[u8]) -> Vec<u8> {
    let lower: Vec<u8> = s.iter().map(u8::to_ascii_lowercase).collect();
    // Whitespace collapsed to single spaces.
    let mut words: Vec<u8> = Vec::with_capacity(lower.len());
    for w in lower
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !words.is_empty() {
            words.push(b' ');
        }
        words.extend_from_slice(w);
    }
    let mut t: &[u8] = &words;
    loop {
        let before = t.len();
        t = t.trim_ascii_start();
        if t.first() == Some(&b'[')
            && let Some(end) = memchr(b']', t)
        {
            t = &t[end + 1..];
        }
        for marker in [&b"re"[..], b"fwd", b"fw", b"aw", b"sv", b"wg", b"tr"] {
            if let Some(rest) = t.strip_prefix(marker) {
                // "Re:", "Re[2]:", "Re :".
                let mut r = rest;
                if r.first() == Some(&b'[')
                    && let Some(end) = memchr(b']', r)
                {
                    r = &r[end + 1..];
                }
                if let Some(r) = r.trim_ascii_start().strip_prefix(b":") {
                    t = r;
                    break;
                }
            }
        }
        if t.len() == before {
            break;
        }
    }
    let mut t = t.trim_ascii();
    while let Some(r) = t.strip_suffix(b"(fwd)") {
        t = r.trim_ascii_end();
    }
    t.to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Rows(HashMap<Vec<u8>, Known>);

    impl ThreadRows for Rows {
        fn known(&self, key: &[u8]) -> Result<Option<Known>> {
            Ok(self.0.get(key).cloned())
        }
        fn record(&mut self, key: &[u8], known: &Known) -> Result<()> {
            self.0.insert(key.to_vec(), known.clone());
            Ok(())
        }
        fn forget(&mut self, key: &[u8]) -> Result<()> {
            self.0.remove(key);
            Ok(())
        }
    }

    fn keys(id: &str, refs: &str, subject: &str) -> ThreadKeys {
        let envelope = Envelope {
            message_id: Some(id.as_bytes().to_vec()),
            subject: Some(subject.as_bytes().to_vec()),
            ..Envelope::default()
        };
        let headers = vec![HeaderField {
            name: "References".into(),
            value: refs.as_bytes().to_vec(),
            unspaced: false,
        }];
        ThreadKeys::of(&envelope, &headers)
    }

    #[test]
    fn base_subjects_drop_markers_and_tags() {
        for s in [
            "Lunch",
            "Re: Lunch",
            "RE:  lunch",
            "Re[2]: Lunch",
            "Fwd: Re: [team] Lunch",
            "AW: Lunch (fwd)",
            "  lunch  ",
        ] {
            assert_eq!(base_subject(s.as_bytes()), b"lunch", "{s}");
        }
        assert_eq!(base_subject(b"Re: Lunch plans"), b"lunch plans");
        assert_eq!(base_subject(b"Reply hazy"), b"reply hazy");
    }

    #[test]
    fn replies_join_and_strangers_do_not() {
        let mut rows = Rows::default();
        let (a, b, c, d, e) = (
            Guid([1; 16]),
            Guid([2; 16]),
            Guid([3; 16]),
            Guid([4; 16]),
            Guid([5; 16]),
        );
        let ta = assign(&mut rows, a, &keys("<a@x>", "", "Lunch")).unwrap();
        assert_eq!(ta, a);
        let tb = assign(&mut rows, b, &keys("<b@x>", "<a@x>", "Re: Lunch")).unwrap();
        assert_eq!(tb, a);
        // A reply to the reply, naming only it.
        let tc = assign(&mut rows, c, &keys("<c@x>", "<b@x>", "RE: lunch")).unwrap();
        assert_eq!(tc, a);
        // Same references, another subject: a new conversation.
        let td = assign(&mut rows, d, &keys("<d@x>", "<a@x>", "Budget")).unwrap();
        assert_eq!(td, d);
        // A reply that arrives before its original: the original joins it.
        let te = assign(&mut rows, e, &keys("<e@x>", "<f@x>", "Re: Trip")).unwrap();
        let tf = assign(&mut rows, Guid([6; 16]), &keys("<f@x>", "", "Trip")).unwrap();
        assert_eq!((te, tf), (e, e));
        // Content going takes the ids it brought, and only those.
        release(&mut rows, a, &keys("<a@x>", "", "Lunch")).unwrap();
        assert!(rows.known(&id_key(b"a@x")).unwrap().is_none());
        assert!(rows.known(&id_key(b"b@x")).unwrap().is_some());
    }

    #[test]
    fn ids_are_bounded() {
        let refs: String = (0..10_000).map(|i| format!("<r{i}@x> ")).collect();
        let k = keys("<own@x>", &refs, "s");
        assert_eq!(k.ids.len(), MAX_IDS);
        assert_eq!(k.ids[0], b"own@x");
        assert_eq!(k.ids[1], b"r9999@x");
        let long = format!("<{}>", "x".repeat(10_000));
        assert_eq!(
            id_key(keys(&long, "", "s").ids[0].as_slice()).len(),
            1 + MAX_ID_BYTES
        );
    }
}
