//! Writing IMAP response syntax: strings (atom, quoted or literal, whichever is valid), NIL,
//! flag lists, and the status lines. The response grammar is small; what matters is that every
//! string a client gets is well-formed whatever bytes a message holds.
//!
//! A large literal cut from bytes read from a store is not copied: the response keeps a reference
//! to those bytes and the connection writes them out in place ([`Out::write_to`]).

use std::io::IoSlice;

use bytes::Bytes;
use strata_mailstore::model::{Flags, KeywordId, SystemFlags};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Literals at least this long are sent from the bytes they were read into, not copied.
const SHARE_AT: usize = 16 * 1024;

/// A response being built: bytes of its own, with shared byte runs (large literals) between.
#[derive(Default)]
pub struct Out {
    /// The bytes written into the response.
    pub buf: Vec<u8>,
    /// Shared runs, each sent after `buf[..at]`, in order of `at`.
    shared: Vec<(usize, Bytes)>,
    /// The length of the shared runs together.
    shared_len: usize,
}

/// A place in a response, to go back to with [`Out::truncate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    own: usize,
    shared: usize,
}

/// Own buffers larger than this are given back when a command is answered.
const KEEP_AFTER_FLUSH: usize = 16 * 1024;

impl Out {
    /// The bytes queued, own and shared.
    pub fn len(&self) -> usize {
        self.buf.len() + self.shared_len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the response stands now.
    pub fn mark(&self) -> Mark {
        Mark {
            own: self.buf.len(),
            shared: self.shared.len(),
        }
    }

    /// Drops everything written after `m`.
    pub fn truncate(&mut self, m: Mark) {
        self.buf.truncate(m.own);
        for (_, b) in self.shared.drain(m.shared.min(self.shared.len())..) {
            self.shared_len -= b.len();
        }
    }

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

    /// Appends a literal of `s`, which lies within `owner`: a large one without NUL is sent
    /// from `owner`'s memory instead of being copied.
    pub fn literal_in(&mut self, owner: &Bytes, s: &[u8]) -> &mut Self {
        let within = owner.as_ptr_range().start <= s.as_ptr_range().start
            && s.as_ptr_range().end <= owner.as_ptr_range().end;
        if s.len() < SHARE_AT || !within || memchr::memchr(0, s).is_some() {
            return self.literal(s);
        }
        self.buf
            .extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        self.shared.push((self.buf.len(), owner.slice_ref(s)));
        self.shared_len += s.len();
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

    /// Takes the bytes out, shared runs copied in.
    pub fn take(&mut self) -> Vec<u8> {
        if self.shared.is_empty() {
            return std::mem::take(&mut self.buf);
        }
        let mut out = Vec::with_capacity(self.len());
        let mut from = 0;
        for (at, b) in self.shared.drain(..) {
            out.extend_from_slice(&self.buf[from..at]);
            out.extend_from_slice(&b);
            from = at;
        }
        out.extend_from_slice(&self.buf[from..]);
        self.buf.clear();
        self.shared_len = 0;
        out
    }

    /// Writes everything queued to `w` (gathered, so shared runs are never copied here) and
    /// empties the response, keeping its own buffer's allocation (see [`Out::release`]).
    pub async fn write_to(
        &mut self,
        w: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> std::io::Result<()> {
        let mut slices = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut from = 0;
        for (at, b) in &self.shared {
            slices.push(IoSlice::new(&self.buf[from..*at]));
            slices.push(IoSlice::new(b));
            from = *at;
        }
        slices.push(IoSlice::new(&self.buf[from..]));
        slices.retain(|s| !s.is_empty());
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = w.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        drop(slices);
        self.shared.clear();
        self.shared_len = 0;
        self.buf.clear();
        Ok(())
    }

    /// Gives back a large own buffer once a command is answered, so an idle connection holds
    /// little.
    pub fn release(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_AFTER_FLUSH {
            self.buf = Vec::new();
        }
    }

    /// Whether `m` still marks a place in what is queued (nothing was sent since).
    pub fn holds(&self, m: Mark) -> bool {
        m.own <= self.buf.len() && m.shared <= self.shared.len()
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

    /// A body of `len` bytes like a message's: lines of text.
    fn body(len: usize) -> Bytes {
        (0..len)
            .map(|i| {
                if i % 72 == 71 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect::<Vec<u8>>()
            .into()
    }

    #[test]
    fn large_literals_are_shared_and_sent_in_order() {
        let owner = body(100_000);
        let response = || {
            let mut o = Out::default();
            o.raw("* 1 FETCH (BODY[] ");
            o.literal_in(&owner, &owner[10..90_000]);
            o.raw(" BODY[TEXT] ");
            o.literal_in(&owner, &owner[..100]);
            o.raw(")").crlf();
            o
        };
        let mut o = response();
        assert_eq!(o.shared.len(), 1, "only the large literal is shared");
        assert_eq!(o.len(), o.buf.len() + 89_990);
        let mut want = b"* 1 FETCH (BODY[] {89990}\r\n".to_vec();
        want.extend_from_slice(&owner[10..90_000]);
        want.extend_from_slice(b" BODY[TEXT] {100}\r\n");
        want.extend_from_slice(&owner[..100]);
        want.extend_from_slice(b")\r\n");
        let mut again = response();
        assert_eq!(o.take(), want, "take copies the shared run in");
        let mut sent = Vec::new();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(again.write_to(&mut sent))
            .expect("written");
        assert_eq!(sent, want, "write_to gathers the same bytes");
        assert!(again.is_empty());
    }

    #[test]
    fn literals_that_must_change_or_lie_elsewhere_are_copied() {
        let mut with_nul = body(40_000).to_vec();
        with_nul[20_000] = 0;
        let with_nul = Bytes::from(with_nul);
        let mut o = Out::default();
        o.literal_in(&with_nul, &with_nul);
        assert!(o.shared.is_empty(), "NUL must become 0x80");
        assert_eq!(o.buf[o.buf.len() - 20_000], 0x80);
        let elsewhere = body(40_000);
        let mut o = Out::default();
        o.literal_in(&with_nul, &elsewhere);
        assert!(o.shared.is_empty(), "bytes outside the owner are copied");
        assert!(o.take().ends_with(&elsewhere));
    }

    #[test]
    fn truncating_drops_shared_runs_after_the_mark() {
        let owner = body(50_000);
        let mut o = Out::default();
        o.raw("a ");
        let m = o.mark();
        o.literal_in(&owner, &owner);
        o.raw(" b");
        assert!(o.holds(m));
        o.truncate(m);
        assert_eq!(o.len(), 2);
        assert_eq!(o.take(), b"a ");
    }
}
