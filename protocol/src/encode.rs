//! Writing IMAP response syntax: strings (atom, quoted or literal, whichever is valid), NIL,
//! flag lists, and the status lines. The response grammar is small; what matters is that every
//! string a client gets is well-formed whatever bytes a message holds.

use strata_mailstore::model::{Flags, KeywordId, SystemFlags};

/// A response being built.
#[derive(Default)]
pub struct Out {
    /// The bytes to send.
    pub buf: Vec<u8>,
}

impl Out {
    /// Appends raw protocol bytes.
    pub fn raw(&mut self, b: impl AsRef<[u8]>) -> &mut Self {
        self.buf.extend_from_slice(b.as_ref());
        self
    }

    /// Appends a string: quoted when it is short and quotable, a literal otherwise.
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        if s.len() <= 1024 && s.iter().all(|&b| quotable(b)) {
            self.buf.push(b'"');
            // Most strings need no escapes: copy them whole.
            if s.iter().any(|&b| b == b'"' || b == b'\\') {
                for &b in s {
                    if b == b'"' || b == b'\\' {
                        self.buf.push(b'\\');
                    }
                    self.buf.push(b);
                }
            } else {
                self.buf.extend_from_slice(s);
            }
            self.buf.push(b'"');
        } else {
            self.literal(s);
        }
        self
    }

    /// Appends a literal. RFC 3501's literals exclude NUL (CHAR8), so NUL bytes are sent as
    /// 0x80, as mature servers do; the length stays the same.
    pub fn literal(&mut self, s: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        match memchr::memchr(0, s) {
            None => self.buf.extend_from_slice(s),
            Some(first) => {
                self.buf.extend_from_slice(&s[..first]);
                self.buf
                    .extend(s[first..].iter().map(|&b| if b == 0 { 0x80 } else { b }));
            }
        }
        self
    }

    /// Appends a literal8 (RFC 3516) when the bytes hold a NUL, a literal otherwise: BINARY's
    /// data goes out exactly as decoded.
    pub fn literal8(&mut self, s: &[u8]) -> &mut Self {
        if memchr::memchr(0, s).is_none() {
            return self.literal(s);
        }
        self.buf
            .extend_from_slice(format!("~{{{}}}\r\n", s.len()).as_bytes());
        self.buf.extend_from_slice(s);
        self
    }

    /// Appends a string or NIL.
    pub fn nstring(&mut self, s: Option<&[u8]>) -> &mut Self {
        match s {
            Some(s) => self.string(s),
            None => self.raw("NIL"),
        }
    }

    /// Appends an astring: a bare atom when it is one, a string otherwise.
    pub fn astring(&mut self, s: &[u8]) -> &mut Self {
        if !s.is_empty() && s.iter().all(|&b| is_astring_char(b)) && !s.eq_ignore_ascii_case(b"NIL")
        {
            self.raw(s)
        } else {
            self.string(s)
        }
    }

    /// Appends a mailbox name as the client sees it (`names::shown`): an astring, or for a
    /// client that names mailboxes in UTF-8 a
    /// quoted UTF-8 string (RFC 9051's quoted takes UTF-8; names hold no CR, LF or NUL).
    pub fn mailbox(&mut self, name: &str, utf8: bool) -> &mut Self {
        if !utf8 || name.is_ascii() || name.chars().any(char::is_control) {
            return self.astring(name.as_bytes());
        }
        self.buf.push(b'"');
        for b in name.bytes() {
            if b == b'"' || b == b'\\' {
                self.buf.push(b'\\');
            }
            self.buf.push(b);
        }
        self.buf.push(b'"');
        self
    }

    /// Appends a number.
    pub fn num(&mut self, n: impl std::fmt::Display) -> &mut Self {
        self.raw(n.to_string())
    }

    /// Appends a parenthesised flag list.
    pub fn flags(
        &mut self,
        flags: &Flags,
        names: &dyn Fn(KeywordId) -> Option<String>,
        recent: bool,
    ) -> &mut Self {
        self.buf.push(b'(');
        let mut first = true;
        let mut sep = |o: &mut Out| {
            if !first {
                o.buf.push(b' ');
            }
            first = false;
        };
        for (bit, name) in SYSTEM_FLAGS {
            if flags.system.contains(*bit) {
                sep(self);
                self.raw(name);
            }
        }
        if recent {
            sep(self);
            self.raw("\\Recent");
        }
        for k in &flags.keywords {
            if let Some(n) = names(*k) {
                sep(self);
                self.raw(n);
            }
        }
        self.buf.push(b')');
        self
    }

    /// Ends a line.
    pub fn crlf(&mut self) -> &mut Self {
        self.raw("\r\n")
    }

    /// Takes the bytes out.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// The system flags and their names, in the order Strata writes them.
pub const SYSTEM_FLAGS: &[(SystemFlags, &str)] = &[
    (SystemFlags::ANSWERED, "\\Answered"),
    (SystemFlags::FLAGGED, "\\Flagged"),
    (SystemFlags::DELETED, "\\Deleted"),
    (SystemFlags::SEEN, "\\Seen"),
    (SystemFlags::DRAFT, "\\Draft"),
];

fn quotable(b: u8) -> bool {
    // TEXT-CHAR minus CR/LF, 7-bit only: 8-bit bytes go in literals.
    (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n'
}

fn is_astring_char(b: u8) -> bool {
    // ATOM-CHAR plus resp-specials (`]`).
    b > 0x20 && b < 0x7f && !b"(){%*\"\\".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_never_carry_nul() {
        let mut o = Out::default();
        o.literal(b"a\0b\0");
        assert_eq!(
            o.take(),
            b"{4}\r\na\x80b\x80",
            "same length, NUL sent as 0x80"
        );
        o.string(b"x\0y");
        assert_eq!(o.take(), b"{3}\r\nx\x80y");
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        let mut o = Out::default();
        o.string(b"a \"b\"");
        assert_eq!(o.take(), b"\"a \\\"b\\\"\"");
        o.string("é".as_bytes());
        assert_eq!(o.take(), b"{2}\r\n\xc3\xa9");
        o.string(b"a\r\nb");
        assert_eq!(o.take(), b"{4}\r\na\r\nb");
        o.astring(b"INBOX");
        assert_eq!(o.take(), b"INBOX");
        o.astring(b"a b");
        assert_eq!(o.take(), b"\"a b\"");
        o.astring(b"");
        assert_eq!(o.take(), b"\"\"");
        o.nstring(None);
        assert_eq!(o.take(), b"NIL");
    }

    #[test]
    fn flags_are_listed_in_order() {
        let mut o = Out::default();
        let f = Flags {
            system: SystemFlags::SEEN | SystemFlags::ANSWERED,
            keywords: vec![KeywordId(0)],
        };
        o.flags(&f, &|_| Some("$Junk".into()), true);
        assert_eq!(o.take(), b"(\\Answered \\Seen \\Recent $Junk)");
    }
}
