//! The skeleton: what is stored under a message's key once its large parts are stored apart.
//!
//! ```text
//! "\0STRS1" | length u64 | count u32 | count × (offset u64, len u64, blake3 hash [32])
//!           | the message's other bytes, in order
//! ```
//!
//! Integers are big-endian. `offset` and `len` place each part in the original message; parts
//! are sorted and do not overlap. An object that does not start with the magic is a message
//! stored whole. A message that itself starts with the magic is stored as a skeleton without
//! parts, so no message can be taken for a skeleton.

use std::ops::Range;

/// What every skeleton starts with.
pub const MAGIC: &[u8] = b"\0STRS1";
/// The magic, the length and the count.
pub const FIXED: usize = MAGIC.len() + 8 + 4;
/// One part's entry in the table.
const ENTRY: usize = 8 + 8 + 32;

/// A part's content hash (blake3 of its raw bytes).
pub type Hash = [u8; 32];

/// One part stored apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Where it starts in the message.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// Its content hash: the part object's name.
    pub hash: Hash,
}

/// A skeleton's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The message's length.
    pub length: u64,
    /// The parts stored apart, in order.
    pub parts: Vec<Part>,
}

/// What the first bytes of an object say.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A message stored whole.
    Plain,
    /// A skeleton with this table.
    Table(Table),
    /// A skeleton whose table needs this many bytes from the start.
    Need(usize),
}

/// Where a piece of a range read comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// These bytes of the skeleton object.
    Inline(Range<u64>),
    /// These bytes of the part at this index of the table.
    Part(usize, Range<u64>),
}

impl Table {
    /// Where the message's other bytes start in the skeleton object.
    pub fn data_at(&self) -> u64 {
        (FIXED + self.parts.len() * ENTRY) as u64
    }

    /// The skeleton object's length.
    pub fn stored_len(&self) -> u64 {
        let apart: u64 = self.parts.iter().map(|p| p.len).sum();
        self.data_at() + self.length - apart
    }

    /// The pieces that make `range` of the message (clamped to its end), in order.
    pub fn pieces(&self, range: Range<u64>) -> Vec<Piece> {
        let end = range.end.min(self.length);
        let start = range.start.min(end);
        let mut out = Vec::new();
        // `at`: where in the message the next segment starts; `inline`: where the
        // skeleton's bytes for it start.
        let (mut at, mut inline) = (0u64, self.data_at());
        let push_inline = |from: u64, to: u64, inline: u64, out: &mut Vec<Piece>| {
            let (s, e) = (from.max(start), to.min(end));
            if s < e {
                out.push(Piece::Inline(inline + (s - from)..inline + (e - from)));
            }
        };
        for (i, p) in self.parts.iter().enumerate() {
            push_inline(at, p.offset, inline, &mut out);
            inline += p.offset - at;
            let (s, e) = (p.offset.max(start), (p.offset + p.len).min(end));
            if s < e {
                out.push(Piece::Part(i, s - p.offset..e - p.offset));
            }
            at = p.offset + p.len;
        }
        push_inline(at, self.length, inline, &mut out);
        out
    }
}

/// The message's length, if `head` (at least [`FIXED`] bytes of an object) is a skeleton's.
pub fn length(head: &[u8]) -> Option<u64> {
    (head.len() >= FIXED && head.starts_with(MAGIC))
        .then(|| u64::from_be_bytes(head[6..14].try_into().expect("8 bytes")))
}

/// Reads the table at the start of an object.
pub fn parse(head: &[u8]) -> Result<Parsed, String> {
    if !head.starts_with(MAGIC) {
        // A message shorter than the magic but starting like it is still a message.
        return Ok(Parsed::Plain);
    }
    if head.len() < FIXED {
        return Ok(Parsed::Need(FIXED));
    }
    let length = u64::from_be_bytes(head[6..14].try_into().expect("8 bytes"));
    let count = u32::from_be_bytes(head[14..18].try_into().expect("4 bytes")) as usize;
    // Every part is at least a byte of the message, so a count beyond its length is damage,
    // and the table's size is bounded before anything is allocated for it.
    if count as u64 > length {
        return Err(format!("{count} parts in a message of {length} bytes"));
    }
    let need = FIXED + count * ENTRY;
    if head.len() < need {
        return Ok(Parsed::Need(need));
    }
    let mut parts = Vec::with_capacity(count);
    let mut at = 0u64;
    for e in head[FIXED..need].chunks_exact(ENTRY) {
        let offset = u64::from_be_bytes(e[0..8].try_into().expect("8 bytes"));
        let len = u64::from_be_bytes(e[8..16].try_into().expect("8 bytes"));
        let end = offset.checked_add(len).filter(|&end| end <= length);
        if offset < at || len == 0 || end.is_none() {
            return Err(format!("part at {offset} of {len} bytes is out of place"));
        }
        at = offset + len;
        parts.push(Part {
            offset,
            len,
            hash: e[16..48].try_into().expect("32 bytes"),
        });
    }
    Ok(Parsed::Table(Table { length, parts }))
}

/// The skeleton of `raw` with `cuts` (sorted, disjoint, non-empty ranges) stored apart, and
/// the parts' table entries.
pub fn encode(raw: &[u8], cuts: &[Range<usize>]) -> (Vec<u8>, Table) {
    let parts: Vec<Part> = cuts
        .iter()
        .map(|c| Part {
            offset: c.start as u64,
            len: (c.end - c.start) as u64,
            hash: *blake3::hash(&raw[c.clone()]).as_bytes(),
        })
        .collect();
    let table = Table {
        length: raw.len() as u64,
        parts,
    };
    let mut out = Vec::with_capacity(table.stored_len() as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&table.length.to_be_bytes());
    out.extend_from_slice(&(table.parts.len() as u32).to_be_bytes());
    for p in &table.parts {
        out.extend_from_slice(&p.offset.to_be_bytes());
        out.extend_from_slice(&p.len.to_be_bytes());
        out.extend_from_slice(&p.hash);
    }
    let mut at = 0;
    for c in cuts {
        out.extend_from_slice(&raw[at..c.start]);
        at = c.end;
    }
    out.extend_from_slice(&raw[at..]);
    (out, table)
}

/// The ranges of `raw` worth storing apart among `candidates` (any ranges, such as a MIME
/// walk's leaf bodies): those of at least `min` bytes, in bounds, sorted, and not overlapping
/// one kept before them.
pub fn cuts(raw: &[u8], mut candidates: Vec<Range<usize>>, min: usize) -> Vec<Range<usize>> {
    candidates.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in candidates {
        let fits = r.end <= raw.len() && r.end > r.start && r.end - r.start >= min.max(1);
        if fits && out.last().is_none_or(|l| l.end <= r.start) {
            out.push(r);
        }
    }
    out
}

/// The message put back together from its skeleton object and its parts (in table order),
/// every length checked.
pub fn assemble(table: &Table, skeleton: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, String> {
    if skeleton.len() as u64 != table.stored_len() {
        return Err(format!(
            "skeleton of {} bytes, its table says {}",
            skeleton.len(),
            table.stored_len()
        ));
    }
    let mut out = Vec::with_capacity(table.length as usize);
    for piece in table.pieces(0..table.length) {
        match piece {
            Piece::Inline(r) => out.extend_from_slice(&skeleton[r.start as usize..r.end as usize]),
            Piece::Part(i, r) => {
                let part = parts[i];
                if part.len() as u64 != table.parts[i].len {
                    return Err(format!(
                        "part {} of {} bytes, the table says {}",
                        hex(&table.parts[i].hash),
                        part.len(),
                        table.parts[i].len
                    ));
                }
                out.extend_from_slice(&part[r.start as usize..r.end as usize]);
            }
        }
    }
    Ok(out)
}

/// A hash as 64 lowercase hex digits.
pub fn hex(hash: &Hash) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// A hash read back from its hex form.
pub fn unhex(s: &str) -> Option<Hash> {
    blake3::Hash::from_hex(s).ok().map(|h| *h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(raw: &[u8], cuts: &[Range<usize>]) -> Vec<u8> {
        let (skel, table) = encode(raw, cuts);
        let Ok(Parsed::Table(read)) = parse(&skel) else {
            panic!("not a skeleton")
        };
        assert_eq!(read, table);
        let parts: Vec<&[u8]> = cuts.iter().map(|c| &raw[c.clone()]).collect();
        assemble(&table, &skel, &parts).unwrap()
    }

    proptest! {
        #[test]
        fn any_bytes_cut_anywhere_come_back_whole_and_by_range(
            raw in proptest::collection::vec(any::<u8>(), 0..2000),
            points in proptest::collection::vec(0usize..2000, 0..12),
            min in 0usize..50,
            a in 0u64..2100, b in 0u64..2100,
        ) {
            let mut pts: Vec<usize> = points.into_iter().map(|p| p.min(raw.len())).collect();
            pts.sort();
            let candidates: Vec<Range<usize>> = pts.chunks_exact(2).map(|c| c[0]..c[1]).collect();
            let cuts = cuts(&raw, candidates, min);
            prop_assert_eq!(whole(&raw, &cuts), raw.clone());
            let (skel, table) = encode(&raw, &cuts);
            let range = a.min(b)..a.max(b);
            let mut got = Vec::new();
            for piece in table.pieces(range.clone()) {
                match piece {
                    Piece::Inline(r) => got.extend_from_slice(&skel[r.start as usize..r.end as usize]),
                    Piece::Part(i, r) => {
                        let c = &cuts[i];
                        got.extend_from_slice(&raw[c.start + r.start as usize..c.start + r.end as usize]);
                    }
                }
            }
            let end = (range.end as usize).min(raw.len());
            let start = (range.start as usize).min(end);
            prop_assert_eq!(got, raw[start..end].to_vec());
        }

        #[test]
        fn no_bytes_parse_into_a_table_that_reads_out_of_bounds(
            head in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut data = MAGIC.to_vec();
            data.extend_from_slice(&head);
            if let Ok(Parsed::Table(t)) = parse(&data) {
                let mut at = 0;
                for p in &t.parts {
                    prop_assert!(p.offset >= at && p.len > 0 && p.offset + p.len <= t.length);
                    at = p.offset + p.len;
                }
            }
        }
    }

    #[test]
    fn a_message_that_starts_like_a_skeleton_is_kept_apart_from_one() {
        let raw = b"\0STRS1 and then some".to_vec();
        assert_eq!(whole(&raw, &[]), raw);
        assert_eq!(parse(b"\0STR").unwrap(), Parsed::Plain);
        assert_eq!(parse(b"From: a\r\n").unwrap(), Parsed::Plain);
    }

    #[test]
    fn damaged_tables_are_refused() {
        let (mut skel, _) = encode(&[7u8; 100], std::slice::from_ref(&(10..60)));
        // The part's length, beyond the message.
        skel[FIXED + 8..FIXED + 16].copy_from_slice(&200u64.to_be_bytes());
        assert!(parse(&skel).is_err());
        let (mut skel, _) = encode(&[7u8; 100], std::slice::from_ref(&(10..60)));
        skel[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse(&skel).is_err());
    }
}
