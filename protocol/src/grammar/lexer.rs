//! The tokens of one complete command message, as spans of its bytes: enough structure to find
//! an extension's clause (a parenthesised option list, a `$`) and cut it out, never enough to
//! decode the command — imap-codec does that with what is left.

use std::ops::Range;

/// What a span of the message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run of bytes up to a space, a parenthesis, a quote or the line end (an atom, a
    /// number, a sequence set, a flag, `BODY[...]`'s start).
    Atom,
    /// A quoted string, quotes included.
    Quoted,
    /// A literal: its `{n}` (or `{n+}`, `~{n}`) prefix, line break and data.
    Literal,
    Open,
    Close,
}

/// One token: its kind and where it is in the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) span: Range<usize>,
}

/// Splits a complete command (as the fragmentizer delivered it: literals inline, ending in
/// CRLF) into tokens; spaces and the final line break separate them and are not tokens.
/// `None` for bytes that are not a command (an unterminated quote, a literal whose data is
/// short): imap-codec then refuses them in its own words.
pub(crate) fn tokens(msg: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        let start = i;
        let kind = match b {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b'"' => {
                i += 1;
                loop {
                    match msg.get(i)? {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\r' | b'\n' => return None,
                        _ => i += 1,
                    }
                }
                Kind::Quoted
            }
            _ => {
                if let Some(end) = literal_end(msg, i) {
                    i = end?;
                    Kind::Literal
                } else {
                    while i < msg.len()
                        && !matches!(msg[i], b' ' | b'(' | b')' | b'"' | b'\r' | b'\n')
                    {
                        // A section's brackets may hold spaces and parentheses:
                        // `BODY[HEADER.FIELDS (FROM TO)]` is one token here.
                        if msg[i] == b'[' {
                            i += msg[i..].iter().position(|&c| c == b']')?;
                        }
                        i += 1;
                    }
                    Kind::Atom
                }
            }
        };
        out.push(Token {
            kind,
            span: start..i,
        });
    }
    Some(out)
}

/// If a literal starts at `i`: `Some(Some(end))` past its data, `Some(None)` if it is cut
/// short; `None` if no literal starts there.
fn literal_end(msg: &[u8], i: usize) -> Option<Option<usize>> {
    let open = if msg[i] == b'~' { i + 1 } else { i };
    if msg.get(open) != Some(&b'{') {
        return None;
    }
    let close = open + msg[open..].iter().position(|&c| c == b'}')?;
    let digits = msg[open + 1..close]
        .strip_suffix(b"+")
        .unwrap_or(&msg[open + 1..close]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if msg.get(close + 1..close + 3) != Some(b"\r\n") {
        return None;
    }
    let end = close + 3 + n;
    Some((end <= msg.len()).then_some(end))
}

/// The text of an atom token, for comparing with a keyword.
pub(crate) fn is_word(msg: &[u8], t: &Token, word: &str) -> bool {
    t.kind == Kind::Atom && msg[t.span.clone()].eq_ignore_ascii_case(word.as_bytes())
}

/// The index of the `)` that closes the `(` at `open`; `None` when it is not closed.
pub(crate) fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(msg: &[u8]) -> Vec<(Kind, String)> {
        tokens(msg)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, String::from_utf8_lossy(&msg[t.span]).into_owned()))
            .collect()
    }

    #[test]
    fn splits_atoms_strings_literals_and_parentheses() {
        use Kind::*;
        let got = kinds(b"a1 SEARCH RETURN (MIN) SUBJECT \"a \\\"b\" TEXT {3}\r\nx y $\r\n");
        let want = [
            (Atom, "a1"),
            (Atom, "SEARCH"),
            (Atom, "RETURN"),
            (Open, "("),
            (Atom, "MIN"),
            (Close, ")"),
            (Atom, "SUBJECT"),
            (Quoted, "\"a \\\"b\""),
            (Atom, "TEXT"),
            (Literal, "{3}\r\nx y"),
            (Atom, "$"),
        ];
        let want: Vec<(Kind, String)> = want.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_section_is_one_token() {
        let got = kinds(b"a FETCH 1 BODY[HEADER.FIELDS (FROM TO)]<0.10>\r\n");
        assert_eq!(got[3].1, "BODY[HEADER.FIELDS (FROM TO)]<0.10>");
    }

    #[test]
    fn non_synchronizing_and_binary_literals() {
        let got = kinds(b"a APPEND x ~{2+}\r\n\0\n\r\n");
        assert_eq!(got[3], (Kind::Literal, "~{2+}\r\n\0\n".to_string()));
    }

    #[test]
    fn broken_input_is_no_command() {
        assert!(tokens(b"a SEARCH SUBJECT \"open\r\n").is_none());
        assert!(tokens(b"a SEARCH TEXT {9}\r\nab\r\n").is_none());
        assert!(tokens(b"a FETCH 1 BODY[HEADER\r\n").is_none());
    }

    #[test]
    fn finds_the_closing_parenthesis() {
        let msg = b"a LIST (SUBSCRIBED (X)) \"\" *\r\n";
        let t = tokens(msg).unwrap();
        assert_eq!(closing(&t, 2), Some(7));
        assert_eq!(closing(&t, 4), Some(6));
        assert!(is_word(msg, &t[1], "list"));
    }
}
