//! The MIME tree of a message with each part's byte offsets (RFC 2045/2046), read in one pass
//! with an explicit stack: no recursion, so a message's nesting never decides the depth of the
//! call stack.
//!
//! How boundaries are read follows RFC 2046 5.1.1 and what mature servers do with mail that
//! breaks it: a boundary line is `--` and one of the boundaries of the enclosing multiparts
//! (the innermost and longest that matches), the line break before it belongs to the
//! boundary, a boundary of an outer multipart ends every part inside it (a missing close
//! delimiter does not swallow the rest of the message), and empty parts are parts. A
//! multipart without a usable boundary, or whose boundary never appears, has one empty
//! text/plain part; a part of a multipart/digest defaults to message/rfc822.
//!
//! Containers nested deeper than [`MAX_DEPTH`] are opaque `application/octet-stream` leaves,
//! and after [`MAX_PARTS`] parts the rest of the message is the body of the multipart it is
//! in, so that what one message costs to parse, store and describe is bounded.

use strata_index::{Envelope, HeaderField, MimePart};

use super::content::Content;
use super::envelope;
use super::header::{Field, add_line, line_at};

/// The deepest a part may be nested (the message is depth 0); containers at the last level
/// are opaque.
pub const MAX_DEPTH: usize = 100;

/// The most parts one message is split into.
pub const MAX_PARTS: usize = 10_000;

/// What the walk gives.
pub(crate) struct Tree {
    /// The message's structure.
    pub root: MimePart,
    /// The message's own header fields (for its envelope and synced headers).
    pub fields: Vec<Field>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Leaf,
    Multipart {
        digest: bool,
    },
    /// message/rfc822: its one child is the enclosed message.
    Message,
}

struct Frame {
    part: MimePart,
    kind: Kind,
    depth: usize,
}

struct Bound {
    text: Vec<u8>,
    /// The index in the stack of the multipart it belongs to.
    frame: usize,
}

/// A boundary line found.
struct Hit {
    /// Where the line starts.
    line: usize,
    /// Where the next line starts.
    next: usize,
    /// Which boundary.
    bound: usize,
    /// A close delimiter (`--boundary--`).
    close: bool,
    /// Where the text the line ends began: the line break before the boundary belongs to it
    /// only if there is text before it.
    since: usize,
}

enum Step {
    /// A part's header starts here.
    Open(usize),
    /// Look for the next boundary line from here (a line start).
    Scan(usize),
    Boundary(Hit),
}

struct Walker<'a> {
    raw: &'a [u8],
    stack: Vec<Frame>,
    bounds: Vec<Bound>,
    parts: usize,
    root_fields: Vec<Field>,
    done: Option<MimePart>,
}

/// Walks `raw` into its tree.
pub(crate) fn walk(raw: &[u8]) -> Tree {
    let mut w = Walker {
        raw,
        stack: Vec::new(),
        bounds: Vec::new(),
        parts: 0,
        root_fields: Vec::new(),
        done: None,
    };
    let mut step = Step::Open(0);
    loop {
        step = match step {
            Step::Open(at) => w.open(at),
            Step::Scan(from) => match w.find_boundary(from) {
                Some(hit) => Step::Boundary(hit),
                None => {
                    while !w.stack.is_empty() {
                        w.close_top(raw.len());
                    }
                    break;
                }
            },
            Step::Boundary(hit) => w.boundary(hit),
        };
    }
    Tree {
        root: w.done.unwrap_or_default(),
        fields: w.root_fields,
    }
}

impl Walker<'_> {
    /// Reads the header of a part starting at `at`, pushes the part and says what comes next.
    fn open(&mut self, at: usize) -> Step {
        let raw = self.raw;
        self.parts += 1;
        let (depth, parent) = match self.stack.last() {
            Some(f) => (f.depth + 1, Some(f.kind)),
            None => (0, None),
        };
        let mut fields = Vec::new();
        let mut pos = at;
        let mut interrupted = None;
        let body = loop {
            if pos >= raw.len() {
                break raw.len();
            }
            if let Some(hit) = self.boundary_line(pos, at) {
                interrupted = Some(hit);
                break pos;
            }
            let (next, text_end) = line_at(raw, pos);
            if text_end == pos {
                break next; // the empty line ending the header
            }
            add_line(&mut fields, raw, pos..text_end);
            pos = next;
        };
        let content = Content::of(
            raw,
            &fields,
            matches!(parent, Some(Kind::Multipart { .. })),
            matches!(parent, Some(Kind::Multipart { digest: true })),
        );
        let room = depth + 1 < MAX_DEPTH && interrupted.is_none();
        let mut kind = match (content.media_type.as_slice(), content.subtype.as_slice()) {
            (b"multipart", sub) => Kind::Multipart {
                digest: sub == b"digest",
            },
            (b"message", b"rfc822") => Kind::Message,
            _ => Kind::Leaf,
        };
        let mut part = MimePart {
            media_type: content.media_type,
            subtype: content.subtype,
            params: content.params,
            id: content.id,
            description: content.description,
            encoding: content.encoding,
            md5: content.md5,
            disposition: content.disposition,
            language: content.language,
            location: content.location,
            header_offset: at as u64,
            body_offset: body as u64,
            end_offset: body as u64,
            ..MimePart::default()
        };
        if kind != Kind::Leaf && depth + 1 >= MAX_DEPTH {
            // Too deep to open: one opaque part.
            part.media_type = b"application".to_vec();
            part.subtype = b"octet-stream".to_vec();
            part.params.clear();
            kind = Kind::Leaf;
        }
        if matches!(parent, None | Some(Kind::Message)) {
            let enclosed = envelope::of(raw, &fields);
            match self.stack.last_mut() {
                Some(f) => f.part.enclosed = Some(Box::new(enclosed)),
                None => self.root_fields = fields,
            }
        }
        let boundary = content.boundary;
        self.stack.push(Frame { part, kind, depth });
        if let Some(mut hit) = interrupted {
            // A boundary line inside the header: the part ends there, with no body.
            hit.since = at;
            return Step::Boundary(hit);
        }
        match kind {
            Kind::Multipart { .. } if room => {
                if let Some(text) = boundary {
                    self.bounds.push(Bound {
                        text,
                        frame: self.stack.len() - 1,
                    });
                }
                Step::Scan(body)
            }
            Kind::Message if room => Step::Open(body),
            _ => Step::Scan(body),
        }
    }

    /// The boundary line starting at `at`, if it is one; `since` is where the current text
    /// began.
    fn boundary_line(&self, at: usize, since: usize) -> Option<Hit> {
        let raw = self.raw;
        if self.bounds.is_empty() || !raw[at..].starts_with(b"--") {
            return None;
        }
        let (next, text_end) = line_at(raw, at);
        let text = &raw[at + 2..text_end];
        let exact = text.strip_suffix(b"--").unwrap_or(text).len();
        let mut best: Option<usize> = None;
        // Innermost first, longest wins, an exact match ends the search (RFC 2046 5.1.2: an
        // inner boundary is never a prefix of an outer one in conforming mail).
        for (i, b) in self.bounds.iter().enumerate().rev() {
            if text.starts_with(&b.text)
                && best.is_none_or(|k| self.bounds[k].text.len() < b.text.len())
            {
                best = Some(i);
                if b.text.len() == exact {
                    break;
                }
            }
        }
        let bound = best?;
        let close = text[self.bounds[bound].text.len()..].starts_with(b"--");
        Some(Hit {
            line: at,
            next,
            bound,
            close,
            since,
        })
    }

    /// The next boundary line at or after `from` (a line start).
    fn find_boundary(&self, from: usize) -> Option<Hit> {
        if self.bounds.is_empty() {
            return None;
        }
        let finder = memchr::memmem::Finder::new(b"\n--");
        let mut at = from;
        loop {
            if let Some(hit) = self.boundary_line(at, from) {
                return Some(hit);
            }
            at += finder.find(&self.raw[at..])? + 1;
        }
    }

    /// Ends every part inside the multipart the boundary belongs to, then opens the next
    /// part or goes on with its epilogue.
    fn boundary(&mut self, hit: Hit) -> Step {
        let raw = self.raw;
        let mut end = hit.line;
        if hit.line > hit.since {
            end -= 1; // the LF before the boundary line
            if end > hit.since && raw[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let owner = self.bounds[hit.bound].frame;
        while self.stack.len() > owner + 1 {
            self.close_top(end);
        }
        self.bounds.truncate(hit.bound + usize::from(!hit.close));
        if hit.close {
            return Step::Scan(hit.next);
        }
        if self.parts >= MAX_PARTS {
            // No more parts: the rest is this multipart's to the end.
            self.bounds.clear();
            return Step::Scan(hit.next);
        }
        Step::Open(hit.next)
    }

    /// Ends the innermost open part at `end` and hands it to its parent.
    fn close_top(&mut self, end: usize) {
        let Some(Frame { mut part, kind, .. }) = self.stack.pop() else {
            return;
        };
        let end = end as u64;
        // A header cut short by a boundary loses the line break before it, as a body would.
        part.body_offset = part.body_offset.min(end);
        part.end_offset = end;
        match kind {
            Kind::Multipart { .. } if part.children.is_empty() => {
                // No part found: one empty text/plain part, as a multipart must have one.
                part.children.push(MimePart {
                    media_type: b"text".to_vec(),
                    subtype: b"plain".to_vec(),
                    header_offset: part.body_offset,
                    body_offset: part.body_offset,
                    end_offset: part.body_offset,
                    lines: Some(0),
                    ..MimePart::default()
                });
            }
            Kind::Message if part.children.is_empty() => {
                part.enclosed
                    .get_or_insert_with(|| Box::new(Envelope::default()));
                part.children.push(MimePart {
                    media_type: b"text".to_vec(),
                    subtype: b"plain".to_vec(),
                    header_offset: end,
                    body_offset: end,
                    end_offset: end,
                    lines: Some(0),
                    ..MimePart::default()
                });
            }
            _ => {}
        }
        if kind == Kind::Message || (kind == Kind::Leaf && part.media_type == b"text") {
            let body = &self.raw[part.body_offset as usize..part.end_offset as usize];
            part.lines = Some(memchr::memchr_iter(b'\n', body).count() as u32);
        }
        match self.stack.last_mut() {
            Some(parent) => parent.part.children.push(part),
            None => self.done = Some(part),
        }
    }
}

/// The header fields clients sync, from the message's own header.
pub(crate) fn synced(raw: &[u8], fields: &[Field], names: &[&str]) -> Vec<HeaderField> {
    fields
        .iter()
        .filter(|f| names.iter().any(|n| f.is(raw, n)))
        .map(|f| {
            let v = f.raw(raw);
            HeaderField {
                name: String::from_utf8_lossy(&raw[f.name.clone()]).into_owned(),
                value: v.strip_prefix(b" ").unwrap_or(v).to_vec(),
                unspaced: !v.starts_with(b" "),
            }
        })
        .collect()
}
