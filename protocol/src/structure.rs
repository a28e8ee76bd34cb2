//! ENVELOPE and BODY/BODYSTRUCTURE from what the index parsed at APPEND, and the byte ranges of
//! BODY[section] within a message. Nothing here reads a body.

use std::ops::Range;

use strata_mailstore::model::{Address, Envelope, MimePart, Param};

use crate::encode::Out;

/// Writes an ENVELOPE (RFC 3501 7.4.2); Sender and Reply-To default to From.
pub fn envelope(o: &mut Out, e: &Envelope) {
    o.raw("(");
    o.nstring(e.date.as_deref()).raw(" ");
    o.nstring(e.subject.as_deref()).raw(" ");
    addresses(o, &e.from);
    o.raw(" ");
    addresses(
        o,
        if e.sender.is_empty() {
            &e.from
        } else {
            &e.sender
        },
    );
    o.raw(" ");
    addresses(
        o,
        if e.reply_to.is_empty() {
            &e.from
        } else {
            &e.reply_to
        },
    );
    for list in [&e.to, &e.cc, &e.bcc] {
        o.raw(" ");
        addresses(o, list);
    }
    o.raw(" ");
    o.nstring(e.in_reply_to.as_deref()).raw(" ");
    o.nstring(e.message_id.as_deref()).raw(")");
}

fn addresses(o: &mut Out, list: &[Address]) {
    if list.is_empty() {
        o.raw("NIL");
        return;
    }
    o.raw("(");
    for a in list {
        o.raw("(");
        o.nstring(a.name.as_deref()).raw(" ");
        o.nstring(a.adl.as_deref()).raw(" ");
        o.nstring(a.mailbox.as_deref()).raw(" ");
        o.nstring(a.host.as_deref()).raw(")");
    }
    o.raw(")");
}

fn is_multipart(p: &MimePart) -> bool {
    p.media_type.eq_ignore_ascii_case(b"multipart") && !p.children.is_empty()
}

fn is_message(p: &MimePart) -> bool {
    p.media_type.eq_ignore_ascii_case(b"message")
        && p.subtype.eq_ignore_ascii_case(b"rfc822")
        && p.enclosed.is_some()
        && !p.children.is_empty()
}

/// Writes BODYSTRUCTURE (`extended`) or BODY (RFC 3501 7.4.2). Iterative: a tree's depth
/// never decides the depth of the call stack.
pub fn body_structure(o: &mut Out, root: &MimePart, extended: bool) {
    enum Task<'p> {
        Part(&'p MimePart),
        /// After a multipart's children: its subtype and extension data.
        MultipartEnd(&'p MimePart),
        /// After an enclosed message's structure: the line count and extension data.
        MessageEnd(&'p MimePart),
    }
    let mut stack = vec![Task::Part(root)];
    while let Some(task) = stack.pop() {
        match task {
            Task::Part(p) if is_multipart(p) => {
                o.raw("(");
                stack.push(Task::MultipartEnd(p));
                stack.extend(p.children.iter().rev().map(Task::Part));
            }
            Task::Part(p) => {
                let text = p.media_type.eq_ignore_ascii_case(b"text");
                o.raw("(");
                o.string(&p.media_type).raw(" ");
                o.string(&p.subtype).raw(" ");
                params(o, &p.params, text);
                o.raw(" ");
                o.nstring(p.id.as_deref()).raw(" ");
                o.nstring(p.description.as_deref()).raw(" ");
                o.string(p.encoding.as_deref().unwrap_or(b"7BIT")).raw(" ");
                o.num(p.end_offset.saturating_sub(p.body_offset));
                if is_message(p) {
                    o.raw(" ");
                    envelope(o, p.enclosed.as_deref().unwrap_or(&Envelope::default()));
                    o.raw(" ");
                    stack.push(Task::MessageEnd(p));
                    stack.push(Task::Part(&p.children[0]));
                    continue;
                }
                if text {
                    o.raw(" ").num(p.lines.unwrap_or(0));
                }
                leaf_extension(o, p, extended);
                o.raw(")");
            }
            Task::MultipartEnd(p) => {
                o.raw(" ");
                o.string(&p.subtype);
                if extended {
                    o.raw(" ");
                    params(o, &p.params, false);
                    o.raw(" ");
                    tail(o, p);
                }
                o.raw(")");
            }
            Task::MessageEnd(p) => {
                o.raw(" ").num(p.lines.unwrap_or(0));
                leaf_extension(o, p, extended);
                o.raw(")");
            }
        }
    }
}

// MD5, then what every part kind ends with.
fn leaf_extension(o: &mut Out, p: &MimePart, extended: bool) {
    if extended {
        o.raw(" ");
        o.nstring(p.md5.as_deref()).raw(" ");
        tail(o, p);
    }
}

// Disposition, language and location, common to both part kinds.
fn tail(o: &mut Out, p: &MimePart) {
    match &p.disposition {
        Some(d) => {
            o.raw("(").string(&d.kind).raw(" ");
            params(o, &d.params, false);
            o.raw(")");
        }
        None => {
            o.raw("NIL");
        }
    }
    o.raw(" ");
    match p.language.as_slice() {
        [] => {
            o.raw("NIL");
        }
        [one] => {
            o.string(one.as_bytes());
        }
        many => {
            o.raw("(");
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    o.raw(" ");
                }
                o.string(l.as_bytes());
            }
            o.raw(")");
        }
    }
    o.raw(" ");
    o.nstring(p.location.as_deref());
}

/// A parameter list; a text part without a charset says `us-ascii`, its default (RFC 2045 5.2).
fn params(o: &mut Out, ps: &[Param], text: bool) {
    let add_charset = text && !ps.iter().any(|p| p.name.eq_ignore_ascii_case(b"charset"));
    if ps.is_empty() && !add_charset {
        o.raw("NIL");
        return;
    }
    o.raw("(");
    for (i, p) in ps.iter().enumerate() {
        if i > 0 {
            o.raw(" ");
        }
        o.string(&p.name).raw(" ").string(&p.value);
    }
    if add_charset {
        if !ps.is_empty() {
            o.raw(" ");
        }
        o.raw("\"charset\" \"us-ascii\"");
    }
    o.raw(")");
}

/// The part at a part path (`BODY[1.2]`), as RFC 3501 6.4.5 numbers them: the numbers index
/// the parts of a multipart; a message that is not multipart has only a part 1, its body; and
/// the numbers after a message/rfc822 part's number index the enclosed message the same way.
/// So for a message whose own type is message/rfc822, `1` is the whole enclosed message.
pub fn find_part<'p>(root: &'p MimePart, path: &[u32]) -> Option<&'p MimePart> {
    // The message the next number counts in, or the part reached.
    let mut message = root;
    let mut cur: Option<&MimePart> = None;
    for &n in path {
        let n = usize::try_from(n).ok()?.checked_sub(1)?;
        let container = match cur {
            None => message,
            Some(p) if is_message(p) => {
                message = &p.children[0];
                message
            }
            Some(p) if is_multipart(p) => {
                cur = Some(p.children.get(n)?);
                continue;
            }
            Some(_) => return None,
        };
        cur = Some(if is_multipart(container) {
            container.children.get(n)?
        } else if n == 0 {
            container
        } else {
            return None;
        });
    }
    cur
}

/// What a section's bytes are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionBytes {
    /// A contiguous range of the message.
    Range(Range<u64>),
    /// The header block at this range, filtered to (or without) the named fields.
    Fields {
        /// The header block.
        header: Range<u64>,
        /// Field names.
        names: Vec<Vec<u8>>,
        /// Keep the named fields (`false`: drop them).
        keep: bool,
    },
    /// Nothing (a part that does not exist).
    Empty,
}

/// The header and body ranges of the message a section refers to: the whole message, or the
/// message enclosed in a message/rfc822 part.
fn message_at<'p>(root: &'p MimePart, part: Option<&[u32]>) -> Option<&'p MimePart> {
    match part {
        None => Some(root),
        Some(path) => {
            let p = find_part(root, path)?;
            is_message(p).then(|| &p.children[0])
        }
    }
}

/// The bytes of `BODY[section]` for a section given as its parts.
pub fn section_bytes(root: &MimePart, section: &SectionSpec) -> SectionBytes {
    match section {
        SectionSpec::Full => SectionBytes::Range(0..root.end_offset),
        // A message/rfc822 part's body is the whole enclosed message, header included.
        SectionSpec::Part(path) => match find_part(root, path) {
            Some(p) => SectionBytes::Range(p.body_offset..p.end_offset),
            None => SectionBytes::Empty,
        },
        SectionSpec::Mime(path) => match find_part(root, path) {
            Some(p) => SectionBytes::Range(p.header_offset..p.body_offset),
            None => SectionBytes::Empty,
        },
        SectionSpec::Header(part) => match message_at(root, part.as_deref()) {
            Some(m) => SectionBytes::Range(m.header_offset..m.body_offset),
            None => SectionBytes::Empty,
        },
        SectionSpec::Text(part) => match message_at(root, part.as_deref()) {
            Some(m) => SectionBytes::Range(m.body_offset..m.end_offset),
            None => SectionBytes::Empty,
        },
        SectionSpec::Fields { part, names, keep } => match message_at(root, part.as_deref()) {
            Some(m) => SectionBytes::Fields {
                header: m.header_offset..m.body_offset,
                names: names.clone(),
                keep: *keep,
            },
            None => SectionBytes::Empty,
        },
    }
}

/// A BODY[...] section, independent of the wire types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionSpec {
    /// `BODY[]`.
    Full,
    /// `BODY[1.2]`.
    Part(Vec<u32>),
    /// `BODY[1.2.MIME]`.
    Mime(Vec<u32>),
    /// `BODY[HEADER]`, `BODY[1.HEADER]`.
    Header(Option<Vec<u32>>),
    /// `BODY[TEXT]`, `BODY[1.TEXT]`.
    Text(Option<Vec<u32>>),
    /// `BODY[HEADER.FIELDS (...)]` and `.NOT`.
    Fields {
        /// The enclosing part, if not the message.
        part: Option<Vec<u32>>,
        /// Field names.
        names: Vec<Vec<u8>>,
        /// `false` for HEADER.FIELDS.NOT.
        keep: bool,
    },
}

/// Filters a header block to (or without) the named fields, keeping folded lines with their
/// field, and ends it with the blank line, as RFC 3501 asks.
pub fn filter_fields(header: &[u8], names: &[Vec<u8>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut take = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !(line[0] == b' ' || line[0] == b'\t') {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = name.trim_ascii();
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            take = listed == keep;
        }
        if take {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_filtered_with_their_continuations() {
        let h = b"From: a\r\nSubject: one\r\n two\r\nTo: b\r\n\r\n";
        let names = vec![b"subject".to_vec()];
        assert_eq!(
            filter_fields(h, &names, true),
            b"Subject: one\r\n two\r\n\r\n"
        );
        assert_eq!(filter_fields(h, &names, false), b"From: a\r\nTo: b\r\n\r\n");
    }
}
