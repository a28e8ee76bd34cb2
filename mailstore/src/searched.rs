//! What SEARCH compares in a message: for BODY and TEXT, its header block and the body of each
//! text part as written (attachments are never compared), plus the decoded text of those
//! parts; for header keys (SUBJECT, FROM, HEADER), each field's value as written, unfolded,
//! decoded and, for addresses, as `name <mailbox@host>`. SEARCH and the full-text indexer both
//! take them from here, so the index holds exactly what a search without it would compare.

use std::ops::Range;

use bytes::Bytes;
use strata_index::MimePart;

use crate::mime::{header, part_text, search_text};
use crate::text::decode_header;

/// The text parts a body search compares, in MIME order.
pub fn text_parts(root: &MimePart) -> Vec<&MimePart> {
    root.walk()
        .map(|(_, p)| p)
        .filter(|p| p.children.is_empty() && p.media_type.eq_ignore_ascii_case(b"text"))
        .collect()
}

/// The one range that covers the header block and every text part: a single read per message,
/// so N messages cost ceil(N / concurrency) round trips (an attachment between two text parts
/// is read too, which costs bytes, not a round trip).
pub fn searched_span(root: &MimePart) -> Range<u64> {
    let end = text_parts(root)
        .iter()
        .map(|p| p.end_offset)
        .fold(root.body_offset, u64::max);
    0..end
}

/// The header block and each text part's body, cut from `covering` (the bytes of
/// [`searched_span`], or of the whole message); ranges past its end come out short.
pub fn searched_slices(root: &MimePart, covering: &Bytes) -> (Bytes, Vec<Bytes>) {
    let cut = |r: Range<u64>| {
        let len = covering.len() as u64;
        let (s, e) = (r.start.min(len), r.end.clamp(r.start.min(len), len));
        covering.slice(s as usize..e as usize)
    };
    let header = cut(0..root.body_offset);
    let parts = text_parts(root)
        .iter()
        .map(|p| cut(p.body_offset..p.end_offset))
        .collect();
    (header, parts)
}

/// The decoded text of the text parts, one after another with a line break between (what
/// SEARCH compares after the raw bytes).
pub fn searched_text(parts: &[Bytes], text_parts: &[&MimePart]) -> String {
    parts
        .iter()
        .zip(text_parts)
        .map(|(body, p)| part_text(body, p))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Header fields whose value is an address list: a header search also compares them as
/// `name <mailbox@host>`, whatever comments and routes the sender wrote around them.
pub const ADDRESS_FIELDS: &[&str] = &["From", "To", "Cc", "Bcc", "Sender", "Reply-To"];

/// Every field of a header block as a header search reads one the index does not keep: its
/// name, and its value with the lines joined (a continuation keeps its leading blanks) and
/// trimmed.
pub fn block_fields(header: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some((_, last)) = out.last_mut() {
                last.extend_from_slice(line.trim_ascii_end());
            }
            continue;
        }
        let mut it = line.splitn(2, |&b| b == b':');
        let name = it.next().unwrap_or_default().trim_ascii();
        out.push((name, it.next().unwrap_or_default().trim_ascii().to_vec()));
    }
    out
}

/// The values of the fields called `name` in a header block (see [`block_fields`]).
pub fn field_values(header: &[u8], name: &str) -> Vec<Vec<u8>> {
    block_fields(header)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
        .collect()
}

/// A value with its line breaks removed.
pub fn strip_breaks(v: &[u8]) -> Vec<u8> {
    v.iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect()
}

/// Whether `hay` holds `needle`, ASCII letters in either case.
pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Every form of the values in a header block that a header search compares besides the
/// block's own bytes: each value as the index keeps it (folded) and as read from the block
/// (joined), each decoded when it has encoded words, and each address list as
/// `name <mailbox@host>` (decoded too). The full-text index holds them, so that its
/// candidates for a header search include every message the search matches.
pub fn header_forms(block: &[u8]) -> Vec<String> {
    let is_address = |name: &[u8]| {
        ADDRESS_FIELDS
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
    };
    let mut out = Vec::new();
    for f in header::block(block) {
        let raw = f.raw(block);
        let raw = raw.strip_prefix(b" ").unwrap_or(raw);
        value_forms(raw, is_address(&block[f.name.clone()]), &mut out);
    }
    for (name, joined) in block_fields(block) {
        value_forms(&joined, is_address(name), &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn value_forms(v: &[u8], address: bool, out: &mut Vec<String>) {
    out.push(String::from_utf8_lossy(v).into_owned());
    if contains_ci(v, b"=?") {
        out.push(decode_header(v));
    }
    if address {
        let plain = search_text(&strip_breaks(v));
        if contains_ci(&plain, b"=?") {
            out.push(decode_header(&plain));
        }
        out.push(String::from_utf8_lossy(&plain).into_owned());
    }
}
