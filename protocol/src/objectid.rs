//! RFC 8474 object ids as Strata writes them: EMAILID `M` and THREADID `T` followed by the 32 hex
//! digits of a content GUID (copies share their original's), MAILBOXID `F` followed by the
//! mailbox's UIDVALIDITY and id (neither is ever given out twice, and RENAME keeps both).

use strata_mailstore::model::MailboxRecord;

/// An RFC 8474 object id as Strata writes it: a letter, then 32 hex digits of a GUID.
pub(crate) fn object_id(prefix: char, id: [u8; 16]) -> String {
    let mut s = String::with_capacity(33);
    s.push(prefix);
    for b in id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The GUID in an object id of `prefix`'s kind, or `None` when it is not one.
pub(crate) fn parse(prefix: u8, s: &[u8]) -> Option<[u8; 16]> {
    let s = s
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(s);
    let hex = s.strip_prefix(&[prefix])?;
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A mailbox's MAILBOXID.
pub(crate) fn mailbox_id(rec: &MailboxRecord) -> String {
    format!("F{:08x}{:08x}", rec.uid_validity, rec.id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_strangers() {
        let g = [0xab; 16];
        let id = object_id('M', g);
        assert_eq!(id.len(), 33);
        assert_eq!(parse(b'M', id.as_bytes()), Some(g));
        assert_eq!(parse(b'M', format!("\"{id}\"").as_bytes()), Some(g));
        assert_eq!(parse(b'T', id.as_bytes()), None);
        assert_eq!(parse(b'M', b"M12"), None);
        assert_eq!(
            parse(b'M', "Mé234567890123456789012345678901".as_bytes()),
            None
        );
        assert_eq!(parse(b'M', b"Mzz000000000000000000000000000000"), None);
    }
}
