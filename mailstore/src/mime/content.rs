//! The `Content-*` fields of one part, as BODYSTRUCTURE reports them (RFC 2045, 2183, 2231,
//! 3282): media type and parameters (RFC 2231 continuations joined), transfer encoding, id,
//! description, MD5, disposition, language and location.

use strata_index::{Disposition, Param};

use super::header::{Field, first};

/// Longest boundary matched in full; longer ones are matched by this prefix (RFC 2046 allows
/// 70 characters), so a hostile boundary cannot make each line's check expensive.
pub(crate) const MAX_BOUNDARY: usize = 100;

/// What a part's header says about its content.
#[derive(Debug, Default)]
pub(crate) struct Content {
    /// Media type, lower case.
    pub media_type: Vec<u8>,
    /// Subtype, lower case.
    pub subtype: Vec<u8>,
    /// Content-Type parameters, names lower case.
    pub params: Vec<Param>,
    /// The multipart boundary, if the type is multipart and it has a usable one.
    pub boundary: Option<Vec<u8>>,
    /// Content-Transfer-Encoding's token.
    pub encoding: Option<Vec<u8>>,
    /// Content-ID.
    pub id: Option<Vec<u8>>,
    /// Content-Description.
    pub description: Option<Vec<u8>>,
    /// Content-MD5.
    pub md5: Option<Vec<u8>>,
    /// Content-Disposition.
    pub disposition: Option<Disposition>,
    /// Content-Language tags.
    pub language: Vec<String>,
    /// Content-Location.
    pub location: Option<Vec<u8>>,
}

impl Content {
    /// Reads the fields of a part. `mime_child`: the part is inside a multipart, so its
    /// `Content-*` fields count without MIME-Version; `digest_child`: its default type is
    /// message/rfc822 (RFC 2046 5.1.5), not text/plain.
    pub fn of(raw: &[u8], fields: &[Field], mime_child: bool, digest_child: bool) -> Content {
        let (default_type, default_sub): (&[u8], &[u8]) = if digest_child {
            (b"message", b"rfc822")
        } else {
            (b"text", b"plain")
        };
        let mut c = Content {
            media_type: default_type.to_vec(),
            subtype: default_sub.to_vec(),
            ..Content::default()
        };
        let content_type = first(fields, raw, "Content-Type");
        // Without MIME-Version or a Content-Type, the Content-* fields of a message are not
        // MIME's (RFC 2045 4), as mature servers read them too.
        let is_mime =
            mime_child || content_type.is_some() || first(fields, raw, "MIME-Version").is_some();
        if !is_mime {
            return c;
        }
        // A Content-Type that does not parse means the default (RFC 2045 5.2).
        if let Some((t, s, params)) = content_type.and_then(|f| media_type(&f.unfolded(raw))) {
            c.media_type = t;
            c.subtype = s;
            c.params = params;
        }
        if c.media_type == b"multipart" {
            c.boundary = c
                .params
                .iter()
                .find(|p| p.name == b"boundary")
                .map(|p| p.value[..p.value.len().min(MAX_BOUNDARY)].to_vec())
                .filter(|b| !b.is_empty());
        }
        let value = |name: &str| first(fields, raw, name).map(|f| f.unfolded(raw));
        c.encoding = value("Content-Transfer-Encoding")
            .map(|v| {
                let mut cur = Cursor::new(&v);
                cur.token().to_vec()
            })
            .filter(|t| !t.is_empty());
        c.id = value("Content-ID");
        c.description = value("Content-Description");
        c.md5 = value("Content-MD5");
        c.location = value("Content-Location");
        c.disposition = value("Content-Disposition").and_then(|v| {
            let mut cur = Cursor::new(&v);
            cur.skip_cfws();
            let kind = cur.token().to_ascii_lowercase();
            (!kind.is_empty()).then(|| Disposition {
                kind,
                params: parameters(&mut cur),
            })
        });
        c.language = value("Content-Language")
            .map(|v| {
                let mut cur = Cursor::new(&v);
                let mut tags = Vec::new();
                loop {
                    cur.skip_cfws();
                    let t = cur.token();
                    if !t.is_empty() {
                        tags.push(String::from_utf8_lossy(t).into_owned());
                    }
                    cur.skip_cfws();
                    if !cur.eat(b',') {
                        break;
                    }
                }
                tags
            })
            .unwrap_or_default();
        c
    }
}

/// `type "/" subtype *(";" parameter)`, lower-cased type and subtype; `None` if either is
/// missing.
fn media_type(v: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<Param>)> {
    let mut cur = Cursor::new(v);
    cur.skip_cfws();
    let t = cur.token().to_ascii_lowercase();
    cur.skip_cfws();
    if t.is_empty() || !cur.eat(b'/') {
        return None;
    }
    cur.skip_cfws();
    let s = cur.token().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    Some((t, s, parameters(&mut cur)))
}

/// The `;`-separated parameters after a type or disposition, names lower-cased, quoted values
/// unquoted, RFC 2231 continuations (`name*0`, `name*1*`...) joined into `name` (or `name*`
/// when the first is encoded, its value still `charset'lang'%XX`). A malformed parameter is
/// skipped, not the rest.
fn parameters(cur: &mut Cursor<'_>) -> Vec<Param> {
    let mut raw_params: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        cur.skip_cfws();
        if cur.at_end() {
            break;
        }
        if !cur.eat(b';') {
            // Garbage where a ";" belongs: skip to the next one.
            cur.skip_past(b';');
            continue;
        }
        cur.skip_cfws();
        let name = cur.token().to_ascii_lowercase();
        cur.skip_cfws();
        if name.is_empty() || !cur.eat(b'=') {
            continue;
        }
        cur.skip_cfws();
        let value = if cur.peek() == Some(b'"') {
            cur.quoted()
        } else {
            cur.value_token().to_vec()
        };
        raw_params.push((name, value));
    }
    join_continuations(raw_params)
}

/// RFC 2231 section 3: `name*N` and `name*N*` segments joined in order, from 0 up to the
/// first missing number, where the first segment appeared.
fn join_continuations(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Param> {
    fn segment(name: &[u8]) -> Option<(&[u8], u32, bool)> {
        let (name, extended) = match name.strip_suffix(b"*") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let star = name.iter().rposition(|&b| b == b'*')?;
        let digits = &name[star + 1..];
        if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
        Some((&name[..star], n, extended))
    }
    let mut out: Vec<Param> = Vec::new();
    let mut done: Vec<Vec<u8>> = Vec::new();
    for (name, value) in &raw {
        let Some((base, _, _)) = segment(name) else {
            out.push(Param {
                name: name.clone(),
                value: value.clone(),
            });
            continue;
        };
        if done.iter().any(|d| d == base) {
            continue;
        }
        done.push(base.to_vec());
        let mut parts: Vec<(u32, bool, &[u8])> = raw
            .iter()
            .filter_map(|(n, v)| {
                let (b, i, e) = segment(n)?;
                (b == base).then_some((i, e, v.as_slice()))
            })
            .collect();
        parts.sort_by_key(|p| p.0);
        let mut value = Vec::new();
        let mut encoded = false;
        for (want, (i, e, v)) in parts.iter().enumerate() {
            if *i != want as u32 {
                break;
            }
            if want == 0 {
                encoded = *e;
            }
            value.extend_from_slice(v);
        }
        let mut name = base.to_vec();
        if encoded {
            name.push(b'*');
        }
        out.push(Param { name, value });
    }
    out
}

/// A cursor over an unfolded structured field value (RFC 2045 tokens, quoted strings and
/// comments). Comments nest; their depth is counted, not recursed into.
pub(crate) struct Cursor<'a> {
    v: &'a [u8],
    i: usize,
}

/// RFC 2045 tspecials, plus the blanks and controls no token holds.
fn is_token_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

impl<'a> Cursor<'a> {
    pub fn new(v: &'a [u8]) -> Self {
        Cursor { v, i: 0 }
    }

    fn at_end(&self) -> bool {
        self.i >= self.v.len()
    }

    fn peek(&self) -> Option<u8> {
        self.v.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn skip_past(&mut self, b: u8) {
        match memchr::memchr(b, &self.v[self.i..]) {
            Some(at) => self.i += at + 1,
            None => self.i = self.v.len(),
        }
    }

    /// Skips blanks and comments.
    pub fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => self.skip_comment(),
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' => self.i += 1,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
        self.i = self.i.min(self.v.len());
    }

    /// A token (possibly empty).
    pub fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(is_token_byte) {
            self.i += 1;
        }
        &self.v[start..self.i]
    }

    /// An unquoted parameter value: a token, leniently also holding `/`, `?`, `=`, `@`,
    /// `:`, `[`, `]`, `<`, `>` and `,`, which senders often leave unquoted.
    fn value_token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b > b' ' && b != 0x7f && !b"();\"\\".contains(&b))
        {
            self.i += 1;
        }
        &self.v[start..self.i]
    }

    /// A quoted string, unquoted (the cursor is on its opening quote); an unterminated one
    /// runs to the end.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: &str) -> Param {
        Param {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn media_types_and_parameters() {
        let (t, s, ps) =
            media_type(b"Text/HTML (c) ; Charset=\"utf-8\" ; format = flowed;; junk ; x=a/b=")
                .unwrap();
        assert_eq!((t.as_slice(), s.as_slice()), (&b"text"[..], &b"html"[..]));
        assert_eq!(
            ps,
            [p("charset", "utf-8"), p("format", "flowed"), p("x", "a/b=")]
        );
        assert!(media_type(b"text").is_none());
        assert!(media_type(b"/plain").is_none());
        assert!(media_type(b"").is_none());
    }

    #[test]
    fn rfc_2231_continuations_are_joined() {
        let mut c = Cursor::new(
            b"; title*1*=%20b; title*0*=us-ascii'en'a; name*1=\" y\"; name*0=x; name*3=lost",
        );
        assert_eq!(
            parameters(&mut c),
            [p("title*", "us-ascii'en'a%20b"), p("name", "x y")]
        );
        let mut c = Cursor::new(b"; filename*=utf-8''%E2%82%AC.txt");
        assert_eq!(parameters(&mut c), [p("filename*", "utf-8''%E2%82%AC.txt")]);
    }

    #[test]
    fn nested_comments_are_skipped_without_recursion() {
        let deep = format!("{}x{} text/plain", "(".repeat(100_000), ")".repeat(100_000));
        let (t, s, _) = media_type(deep.as_bytes()).unwrap();
        assert_eq!((t.as_slice(), s.as_slice()), (&b"text"[..], &b"plain"[..]));
    }
}
