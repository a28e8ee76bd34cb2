//! What SEARCH BODY and TEXT compare in a message: its header block and the body of each text
//! part as written (attachments are never compared), plus the decoded text of those parts.
//! SEARCH and the full-text indexer both take them from here, so the index holds exactly what
//! a search without it would read.

use std::ops::Range;

use bytes::Bytes;
use strata_index::MimePart;

use crate::mime::part_text;

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
