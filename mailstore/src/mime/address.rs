//! Address lists as ENVELOPE reports them (RFC 3501 7.4.2 over RFC 5322 3.4 and its obsolete
//! forms): display names unquoted, source routes as `adl`, groups framed by a start (mailbox
//! the group's name, host NIL) and an end (all NIL). What a sender left out is filled with
//! `MISSING_MAILBOX` / `MISSING_DOMAIN`, as mature servers do, so that a NIL host only ever
//! means a group.
//!
//! Comments are skipped (an address without a display name takes its comment as one); strings
//! are kept as written, so encoded words reach the client encoded. Nothing here recurses: nested
//! comments are counted.

use base64::Engine as _;
use strata_index::Address;

/// Stands for a missing local part.
pub const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
/// Stands for a missing domain.
pub const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Atom(&'a [u8]),
    /// Content unescaped, and the raw text with its quotes.
    Quoted(Vec<u8>, &'a [u8]),
    /// `[...]`, raw.
    Literal(&'a [u8]),
    /// Content without the outer parentheses.
    Comment(&'a [u8]),
    Special(u8),
}

#[derive(Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Blanks (or a comment) came before it.
    spaced: bool,
}

fn tokenize(v: &[u8]) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut spaced = false;
    while i < v.len() {
        let b = v[i];
        let start = i;
        let tok = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                spaced = true;
                i += 1;
                continue;
            }
            b'(' => {
                let mut depth = 0usize;
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let end = i.min(v.len());
                i = (i + 1).min(v.len());
                Tok::Comment(&v[start + 1..end.max(start + 1)])
            }
            b'"' => {
                let mut text = Vec::new();
                i += 1;
                while i < v.len() && v[i] != b'"' {
                    if v[i] == b'\\' && i + 1 < v.len() {
                        i += 1;
                    }
                    text.push(v[i]);
                    i += 1;
                }
                i = (i + 1).min(v.len());
                Tok::Quoted(text, &v[start..i])
            }
            b'[' => {
                while i < v.len() && v[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(v.len());
                Tok::Literal(&v[start..i])
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' | b'\\' | b')' | b']' => {
                i += 1;
                Tok::Special(b)
            }
            _ => {
                while i < v.len() && !b" \t\r\n()\"[<>@,;:.\\]".contains(&v[i]) {
                    i += 1;
                }
                Tok::Atom(&v[start..i])
            }
        };
        let comment = matches!(tok, Tok::Comment(_));
        out.push(Token { tok, spaced });
        spaced = comment;
    }
    out
}

fn is(t: Option<&Token<'_>>, c: u8) -> bool {
    matches!(t, Some(Token { tok: Tok::Special(s), .. }) if *s == c)
}

/// A phrase (display name or group name): words joined by one blank where the source had
/// blanks or comments, quoted strings unquoted.
fn phrase(toks: &[Token<'_>]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut pending_space = false;
    for t in toks {
        let text: &[u8] = match &t.tok {
            Tok::Comment(_) => {
                pending_space = true;
                continue;
            }
            Tok::Atom(a) => a,
            Tok::Quoted(q, _) => q,
            Tok::Literal(l) => l,
            Tok::Special(s) => std::slice::from_ref(s),
        };
        if !out.is_empty() && (pending_space || t.spaced) {
            out.push(b' ');
        }
        pending_space = false;
        out.extend_from_slice(text);
    }
    (!out.is_empty()).then_some(out)
}

/// A local part or domain: its words as written (quoted strings keep their quotes), with the
/// blanks and comments between them dropped.
fn joined(toks: &[Token<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        match &t.tok {
            Tok::Comment(_) => {}
            Tok::Atom(a) | Tok::Literal(a) => out.extend_from_slice(a),
            Tok::Quoted(_, raw) => out.extend_from_slice(raw),
            Tok::Special(s) => out.push(*s),
        }
    }
    out
}

fn last_comment(toks: &[Token<'_>]) -> Option<Vec<u8>> {
    toks.iter().rev().find_map(|t| match t.tok {
        Tok::Comment(c) if !c.trim_ascii().is_empty() => Some(c.trim_ascii().to_vec()),
        _ => None,
    })
}

/// A display name as an envelope carries it: ASCII as is, valid UTF-8 as an RFC 2047 word,
/// other 8-bit text as is.
fn display(name: Vec<u8>) -> Vec<u8> {
    match std::str::from_utf8(&name) {
        Ok(s) if !s.is_ascii() => format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes(),
        _ => name,
    }
}

fn or_missing(v: Vec<u8>, missing: &[u8]) -> Vec<u8> {
    if v.is_empty() { missing.to_vec() } else { v }
}

/// The addresses of an (unfolded) address-list field value, in envelope form.
pub fn parse_list(v: &[u8]) -> Vec<Address> {
    let toks = tokenize(v);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    while i < toks.len() {
        if is(toks.get(i), b',') || matches!(toks[i].tok, Tok::Comment(_)) {
            i += 1;
            continue;
        }
        if is(toks.get(i), b';') {
            if in_group {
                out.push(Address::default());
                in_group = false;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < toks.len()
            && ![b':', b'<', b'@', b',', b';']
                .iter()
                .any(|&c| is(toks.get(i), c))
        {
            i += 1;
        }
        let words = &toks[start..i];
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Special(b':')) if !in_group => {
                i += 1;
                out.push(Address {
                    mailbox: Some(phrase(words).unwrap_or_default()),
                    ..Address::default()
                });
                in_group = true;
            }
            Some(Tok::Special(b'<')) => {
                i += 1;
                let (adl, mailbox, host, next) = angle(&toks, i);
                i = next;
                out.push(Address {
                    name: phrase(words).map(display),
                    adl,
                    mailbox: Some(or_missing(mailbox, MISSING_MAILBOX)),
                    host: Some(or_missing(host, MISSING_DOMAIN)),
                });
                // Anything between the ">" and the next address is ignored.
                while i < toks.len() && !is(toks.get(i), b',') && !is(toks.get(i), b';') {
                    i += 1;
                }
            }
            Some(Tok::Special(b'@')) => {
                i += 1;
                let dstart = i;
                // The domain runs to the next address (a ":" outside a group ends it too).
                let ends = |t: Option<&Token<'_>>| {
                    [b',', b';', b'<', b'@'].iter().any(|&c| is(t, c)) || (!in_group && is(t, b':'))
                };
                while i < toks.len() && !ends(toks.get(i)) {
                    i += 1;
                }
                let domain = &toks[dstart..i];
                let name = last_comment(domain).or_else(|| last_comment(words));
                out.push(Address {
                    name: name.map(display),
                    adl: None,
                    mailbox: Some(or_missing(joined(words), MISSING_MAILBOX)),
                    host: Some(or_missing(joined(domain), MISSING_DOMAIN)),
                });
                // A stray "@" or "<" after a domain: skip to the next address.
                while i < toks.len() && !is(toks.get(i), b',') && !is(toks.get(i), b';') {
                    i += 1;
                }
            }
            Some(Tok::Special(b':')) => {
                // A second ":" inside a group: not an address.
                i += 1;
            }
            _ => {
                let local = joined(words);
                if !local.is_empty() {
                    out.push(Address {
                        name: last_comment(words).map(display),
                        adl: None,
                        mailbox: Some(local),
                        host: Some(MISSING_DOMAIN.to_vec()),
                    });
                }
            }
        }
    }
    if in_group {
        out.push(Address::default());
    }
    out
}

/// Inside `<...>` from `i`: an optional route (`@a,@b:`), a local part and a domain. Returns
/// them and the index after the `>`.
fn angle(toks: &[Token<'_>], mut i: usize) -> (Option<Vec<u8>>, Vec<u8>, Vec<u8>, usize) {
    let end = (i..toks.len())
        .find(|&j| is(toks.get(j), b'>'))
        .unwrap_or(toks.len());
    let inner = &toks[i..end];
    i = end + 1;
    let mut rest = inner;
    let mut adl = None;
    if is(
        rest.iter().find(|t| !matches!(t.tok, Tok::Comment(_))),
        b'@',
    ) && let Some(colon) = rest.iter().position(|t| is(Some(t), b':'))
    {
        adl = Some(joined(&rest[..colon])).filter(|a| !a.is_empty());
        rest = &rest[colon + 1..];
    }
    let (local, domain) = match rest.iter().rposition(|t| is(Some(t), b'@')) {
        Some(at) => (joined(&rest[..at]), joined(&rest[at + 1..])),
        None => (joined(rest), Vec::new()),
    };
    (adl, local, domain, i)
}

/// An address list written out for searching: `name <mailbox@host>` per address and group
/// names as they are, joined by `, `, so that `SEARCH FROM user@domain` matches however the
/// sender spelled the address (comments, routes, quoting).
pub fn search_text(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in parse_list(v) {
        if a.mailbox.is_none() {
            continue; // a group's end
        }
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        if let Some(n) = &a.name {
            out.extend_from_slice(n);
            out.push(b' ');
        }
        match (&a.mailbox, &a.host) {
            (Some(m), Some(h)) => {
                out.push(b'<');
                out.extend_from_slice(m);
                out.push(b'@');
                out.extend_from_slice(h);
                out.push(b'>');
            }
            (Some(group), None) => out.extend_from_slice(group),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(
        name: Option<&str>,
        adl: Option<&str>,
        mailbox: Option<&str>,
        host: Option<&str>,
    ) -> Address {
        let f = |v: Option<&str>| v.map(|s| s.as_bytes().to_vec());
        Address {
            name: f(name),
            adl: f(adl),
            mailbox: f(mailbox),
            host: f(host),
        }
    }

    #[test]
    fn the_forms_rfc_5322_allows() {
        assert_eq!(
            parse_list(b"\"Smith, J.\" <j@example.org>, plain@example.net"),
            [
                a(Some("Smith, J."), None, Some("j"), Some("example.org")),
                a(None, None, Some("plain"), Some("example.net")),
            ]
        );
        assert_eq!(
            parse_list(b"John Q. Public <john@example.org>"),
            [a(
                Some("John Q. Public"),
                None,
                Some("john"),
                Some("example.org")
            )]
        );
        assert_eq!(
            parse_list(b"user@domain (Real Name)"),
            [a(Some("Real Name"), None, Some("user"), Some("domain"))]
        );
        assert_eq!(
            parse_list(b"<@route:user@domain>"),
            [a(None, Some("@route"), Some("user"), Some("domain"))]
        );
        assert_eq!(
            parse_list(b"<user (comment)@ (comment) domain.org>"),
            [a(None, None, Some("user"), Some("domain.org"))]
        );
        assert_eq!(
            parse_list(b"\"john doe\"@example.org"),
            [a(None, None, Some("\"john doe\""), Some("example.org"))]
        );
    }

    #[test]
    fn groups_are_framed() {
        assert_eq!(
            parse_list(b"group:;, group2: (foo) ;"),
            [
                a(None, None, Some("group"), None),
                a(None, None, None, None),
                a(None, None, Some("group2"), None),
                a(None, None, None, None),
            ]
        );
        assert_eq!(
            parse_list(b"team: a@b.c, \"D\" <d@e.f>; x@y.z"),
            [
                a(None, None, Some("team"), None),
                a(None, None, Some("a"), Some("b.c")),
                a(Some("D"), None, Some("d"), Some("e.f")),
                a(None, None, None, None),
                a(None, None, Some("x"), Some("y.z")),
            ]
        );
        assert_eq!(
            parse_list(b"unterminated: a@b.c"),
            [
                a(None, None, Some("unterminated"), None),
                a(None, None, Some("a"), Some("b.c")),
                a(None, None, None, None),
            ]
        );
    }

    #[test]
    fn what_is_missing_is_filled_in() {
        assert_eq!(
            parse_list(b"foo"),
            [a(None, None, Some("foo"), Some("MISSING_DOMAIN"))]
        );
        assert_eq!(
            parse_list(b"Name <>"),
            [a(
                Some("Name"),
                None,
                Some("MISSING_MAILBOX"),
                Some("MISSING_DOMAIN")
            )]
        );
        assert_eq!(
            parse_list(b"@example.org"),
            [a(None, None, Some("MISSING_MAILBOX"), Some("example.org"))]
        );
        assert!(parse_list(b"").is_empty());
        assert!(parse_list(b" , ,").is_empty());
    }

    #[test]
    fn search_text_spells_addresses_plainly() {
        assert_eq!(
            search_text(b"<user-from (comment)@ (comment) domain.org>, g: x@y;"),
            b"<user-from@domain.org>, g, <x@y>"
        );
    }

    #[test]
    fn hostile_input_is_linear() {
        let deep = "(".repeat(200_000);
        assert!(parse_list(deep.as_bytes()).is_empty());
        let many = "a@b,".repeat(50_000);
        assert_eq!(parse_list(many.as_bytes()).len(), 50_000);
    }
}
