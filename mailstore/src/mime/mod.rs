//! Strata's reading of a message, once, at APPEND: the MIME tree with each part's byte
//! offsets, the envelope, the header fields clients sync and a preview — what the index keeps
//! so that nothing but a body is ever read from a store.
//!
//! The structure is Strata's own walk ([`tree`]), because IMAP fixes it to the byte: which
//! line ends a part, what an empty part or a broken boundary gives, how deep nesting may go.
//! Decoding (charsets, quoted-printable, HTML to text) is mail-parser's. Every limit is a
//! constant here and nothing recurses, so no message can exhaust the stack or the heap beyond
//! a bound its size sets.

mod address;
mod content;
mod decode;
mod envelope;
pub(crate) mod header;
mod tree;

pub use address::{MISSING_DOMAIN, MISSING_MAILBOX, parse_list as parse_addresses, search_text};
pub use decode::{part_text, transfer_decoded};
pub use tree::{MAX_DEPTH, MAX_PARTS};

use strata_index::{MimePart, ParsedMessage};

/// Header fields kept for clients that sync headers (`BODY.PEEK[HEADER.FIELDS (...)]`).
pub const SYNCED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Reply-To",
    "Sender",
    "Content-Type",
    "Priority",
    "X-Priority",
    "Importance",
    "List-Id",
    "List-Unsubscribe",
    "Newsgroups",
    "Delivered-To",
];

/// Longest preview, in characters (RFC 8970 allows 256).
pub const PREVIEW_CHARS: usize = 200;

/// How much of a text part the preview decodes.
const PREVIEW_SOURCE_BYTES: usize = 16 * 1024;

/// Parses a raw message. Never fails: anything is a message, if only a text/plain one.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let t = tree::walk(raw);
    let envelope = envelope::of(raw, &t.fields);
    let headers = tree::synced(raw, &t.fields, SYNCED_HEADERS);
    let preview = preview(raw, &t.root);
    ParsedMessage {
        envelope,
        structure: t.root,
        headers,
        preview,
    }
}

/// Where the body of each leaf part (one that holds no other parts) lies in `raw`: what a store
/// may keep apart from the message's header and structure, and once however many messages
/// hold it. The whole body of a message that is not multipart is one.
pub fn leaf_bodies(raw: &[u8]) -> Vec<std::ops::Range<usize>> {
    let t = tree::walk(raw);
    t.root
        .walk()
        .filter(|(_, p)| p.children.is_empty())
        .map(|(_, p)| p.body_offset as usize..p.end_offset as usize)
        .collect()
}

/// The first words of the message's first text part that is not an attachment (plain text
/// preferred to HTML), blanks collapsed.
fn preview(raw: &[u8], root: &MimePart) -> String {
    let readable = |p: &MimePart, sub: &[u8]| {
        p.children.is_empty()
            && p.media_type == b"text"
            && p.subtype == sub
            && p.disposition
                .as_ref()
                .is_none_or(|d| d.kind != b"attachment")
    };
    let Some(part) = root
        .walk()
        .map(|(_, p)| p)
        .find(|p| readable(p, b"plain"))
        .or_else(|| root.walk().map(|(_, p)| p).find(|p| readable(p, b"html")))
    else {
        return String::new();
    };
    let mut body = &raw[part.body_offset as usize..part.end_offset as usize];
    if body.len() > PREVIEW_SOURCE_BYTES {
        body = &body[..PREVIEW_SOURCE_BYTES];
        // Whole lines only, so that no encoded unit is cut in two.
        if let Some(lf) = memchr::memrchr(b'\n', body) {
            body = &body[..lf + 1];
        }
    }
    let text = part_text(body, part);
    let mut out = String::new();
    let mut chars = 0;
    // Control characters (NUL among them, which no IMAP string may hold) count as blanks.
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        let n = word.chars().count();
        if chars + n + usize::from(chars > 0) > PREVIEW_CHARS {
            break;
        }
        if chars > 0 {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += n;
    }
    out
}
