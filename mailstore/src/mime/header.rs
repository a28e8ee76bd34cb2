//! A part's header block as a list of fields: where each name and value lie in the raw
//! message. Nothing here interprets a field; the part's end is the tree walker's business.

use std::ops::Range;

/// One header field.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The name, without the colon and trailing blanks.
    pub name: Range<usize>,
    /// The value: from after the colon to the end of the field's last line, without that
    /// line's line break (folded lines keep theirs).
    pub value: Range<usize>,
}

impl Field {
    /// Whether the field is called `name` (case-insensitively).
    pub fn is(&self, raw: &[u8], name: &str) -> bool {
        raw[self.name.clone()].eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value as written, folding included.
    pub fn raw<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.value.clone()]
    }

    /// The value unfolded, without blanks at either end.
    pub fn unfolded(&self, raw: &[u8]) -> Vec<u8> {
        unfold(self.raw(raw))
    }
}

/// Adds the header line `line` (without its line break) to `fields`: a new field, or the
/// continuation of the last one.
pub(crate) fn add_line(fields: &mut Vec<Field>, raw: &[u8], line: Range<usize>) {
    let text = &raw[line.clone()];
    if matches!(text.first(), Some(b' ' | b'\t')) {
        if let Some(last) = fields.last_mut() {
            last.value.end = line.end;
        }
        return;
    }
    match memchr::memchr(b':', text) {
        Some(colon) => {
            let name = text[..colon].trim_ascii_end();
            fields.push(Field {
                name: line.start..line.start + name.len(),
                value: line.start + colon + 1..line.end,
            });
        }
        // Not a field (an mbox "From " line, garbage): kept with no value, matching no name.
        None => fields.push(Field {
            name: line.clone(),
            value: line.end..line.end,
        }),
    }
}

/// The fields of a header block (up to its empty line), as the MIME walk reads them.
pub(crate) fn block(raw: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let (next, text_end) = line_at(raw, pos);
        if text_end == pos {
            break;
        }
        add_line(&mut fields, raw, pos..text_end);
        pos = next;
    }
    fields
}

/// The end of the line starting at `at` (after its LF, or the end of the input) and the end
/// of its text (before CRLF or LF).
pub(crate) fn line_at(raw: &[u8], at: usize) -> (usize, usize) {
    match memchr::memchr(b'\n', &raw[at..]) {
        Some(i) => {
            let lf = at + i;
            let text_end = if lf > at && raw[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (lf + 1, text_end)
        }
        None => (raw.len(), raw.len()),
    }
}

/// The first field called `name`.
pub(crate) fn first<'f>(fields: &'f [Field], raw: &[u8], name: &str) -> Option<&'f Field> {
    fields.iter().find(|f| f.is(raw, name))
}

/// A value with its line breaks removed (the blanks after them stay, as RFC 5322 unfolding
/// says) and the blanks at either end trimmed.
pub(crate) fn unfold(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    let end = out.trim_ascii_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_ascii_start().len();
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_continue_over_folded_lines() {
        let raw = b"Subject : a\r\n b\r\nX\r\nTo:c";
        let mut f = Vec::new();
        add_line(&mut f, raw, 0..11);
        add_line(&mut f, raw, 13..15);
        add_line(&mut f, raw, 17..18);
        add_line(&mut f, raw, 20..24);
        assert_eq!(f.len(), 3);
        assert!(f[0].is(raw, "subject"));
        assert_eq!(f[0].raw(raw), b" a\r\n b");
        assert_eq!(f[0].unfolded(raw), b"a b");
        assert!(!f[1].is(raw, "x:"));
        assert_eq!(f[2].unfolded(raw), b"c");
    }
}
