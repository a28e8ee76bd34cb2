//! Writing one message's FETCH answer: one writer per item, from the view entry, the content
//! record and the bytes read for its sections. Also what a FETCH needs from the index and the
//! store for its items (parsed parts, the byte range to read).

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use strata_mailstore::SYNCED_HEADERS;
use strata_mailstore::mime::transfer_decoded;
use strata_mailstore::model::{
    ContentRecord, Guid, HeaderField, HeaderFieldRef, MimePart, Parts, Timestamp, Uid, ViewEntry,
};

use super::items::Item;
use crate::encode::Out;
use crate::objectid::object_id;
use crate::structure::{self, SectionBytes, SectionSpec};

/// Everything one message's answer is written from.
pub(super) struct Message<'a> {
    pub(super) seq: u32,
    pub(super) uid: Uid,
    pub(super) entry: &'a ViewEntry,
    pub(super) recent: bool,
    pub(super) content: Option<&'a ContentRecord>,
    /// The bytes read for its sections, and the offset in the message they start at.
    pub(super) bytes: &'a Bytes,
    pub(super) base: u64,
    /// FLAGS are added, with MODSEQ when CONDSTORE is on, because this FETCH set `\Seen`.
    pub(super) seen_now: bool,
    pub(super) condstore: bool,
    /// Its thread, when THREADID is asked for and the index knows it.
    pub(super) thread: Option<Guid>,
    /// The answer of each item answered from the index's header fields, by the item's
    /// position ([`index_sections`]); empty when none is.
    pub(super) index_sections: &'a [Option<Vec<u8>>],
}

/// Writes `* seq FETCH (...)` for one message.
pub(super) fn message(
    o: &mut Out,
    items: &[Item],
    m: &Message<'_>,
    names: &dyn Fn(strata_mailstore::model::KeywordId) -> Option<String>,
) {
    o.raw(format!("* {} FETCH (", m.seq));
    let mut flags_done = false;
    let mut uid_done = false;
    let mut modseq_done = false;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            o.raw(" ");
        }
        match item {
            Item::Uid => uid_done = true,
            Item::Flags => flags_done = true,
            Item::ModSeq => modseq_done = true,
            _ => {}
        }
        write_item(o, item, Some(i), m, names);
    }
    if m.seen_now && !flags_done {
        o.raw(" ");
        write_item(o, &Item::Flags, None, m, names);
    }
    if m.seen_now && m.condstore {
        // RFC 7162 3.1: an implicit \Seen is told with UID and MODSEQ.
        if !uid_done {
            o.raw(" ");
            write_item(o, &Item::Uid, None, m, names);
        }
        if !modseq_done {
            o.raw(" ");
            write_item(o, &Item::ModSeq, None, m, names);
        }
    }
    o.raw(")").crlf();
}

/// Writes one item (the one at `at` among those asked for, if it is one of them).
fn write_item(
    o: &mut Out,
    item: &Item,
    at: Option<usize>,
    m: &Message<'_>,
    names: &dyn Fn(strata_mailstore::model::KeywordId) -> Option<String>,
) {
    let content = || m.content.expect("planned with content");
    match item {
        Item::Uid => {
            o.raw(format!("UID {}", m.uid));
        }
        Item::ModSeq => {
            o.raw(format!("MODSEQ ({})", m.entry.modseq.0));
        }
        Item::Flags => {
            o.raw("FLAGS ");
            o.flags(&m.entry.flags, names, m.recent);
        }
        Item::InternalDate => {
            o.raw(format!(
                "INTERNALDATE \"{}\"",
                internal_date(m.entry.internal_date)
            ));
        }
        Item::Size => {
            o.raw(format!("RFC822.SIZE {}", m.entry.size));
        }
        Item::SaveDate => {
            o.raw(format!("SAVEDATE \"{}\"", internal_date(m.entry.save_date)));
        }
        Item::EmailId => {
            o.raw(format!("EMAILID ({})", object_id('M', m.entry.guid.0)));
        }
        Item::ThreadId => {
            match m.thread {
                Some(t) => o.raw(format!("THREADID ({})", object_id('T', t.0))),
                // RFC 8474 5.2: a message the server cannot thread.
                None => o.raw("THREADID NIL"),
            };
        }
        Item::Preview => {
            // Up to 200 characters of UTF-8, a literal when not ASCII (RFC 8970 3).
            o.raw("PREVIEW ");
            let preview = &content().parsed.preview;
            if preview.chars().any(char::is_control) {
                // Written by a version that kept control characters.
                let clean: String = preview.chars().filter(|c| !c.is_control()).collect();
                o.nstring(Some(clean.as_bytes()));
            } else {
                o.nstring(Some(preview.as_bytes()));
            }
        }
        Item::Envelope => {
            o.raw("ENVELOPE ");
            structure::envelope(o, &content().parsed.envelope);
        }
        Item::Body | Item::BodyStructure => {
            let ext = matches!(item, Item::BodyStructure);
            o.raw(if ext { "BODYSTRUCTURE " } else { "BODY " });
            structure::body_structure(o, &content().parsed.structure, ext);
        }
        Item::Binary {
            part,
            partial,
            size_only,
            ..
        } => {
            let c = content();
            let raw = section_data(c, &binary_spec(part), m.bytes, m.base);
            let data = binary_decoded(c, part, raw);
            let label = part_label(part);
            if *size_only {
                o.raw(format!("BINARY.SIZE[{label}] {}", data.len()));
                return;
            }
            let (start, end) = match partial {
                Some((start, len)) => {
                    let start = (*start as usize).min(data.len());
                    (start, start.saturating_add(*len as usize).min(data.len()))
                }
                None => (0, data.len()),
            };
            match partial {
                Some(_) => o.raw(format!("BINARY[{label}]<{start}> ")),
                None => o.raw(format!("BINARY[{label}] ")),
            };
            o.literal8(&data[start..end]);
        }
        Item::Section {
            spec,
            partial,
            label,
            ..
        } => {
            let indexed = at
                .and_then(|i| m.index_sections.get(i))
                .and_then(Option::as_deref);
            let section = match indexed {
                Some(s) => Cow::Borrowed(s),
                None => section_data(content(), spec, m.bytes, m.base),
            };
            match partial {
                Some((start, len)) => {
                    let start = (*start as usize).min(section.len());
                    let end = start.saturating_add(*len as usize).min(section.len());
                    o.raw(format!("{label}<{start}> "));
                    o.literal_in(m.bytes, &section[start..end]);
                }
                None => {
                    o.raw(format!("{label} "));
                    o.literal_in(m.bytes, &section);
                }
            }
        }
    }
}

/// The INTERNALDATE form: `"17-Jul-1996 02:44:25 -0700"`.
pub(crate) fn internal_date(t: Timestamp) -> String {
    let offset = chrono::FixedOffset::east_opt(i32::from(t.offset_minutes) * 60)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"));
    let dt = chrono::DateTime::from_timestamp(t.unix, 0)
        .unwrap_or_default()
        .with_timezone(&offset);
    dt.format("%d-%b-%Y %H:%M:%S %z").to_string()
}

/// The parsed parts of the content record that the items are answered from.
pub(super) fn parts_of(items: &[Item]) -> Parts {
    let mut p = Parts::default();
    for item in items {
        match item {
            Item::Envelope => p.envelope = true,
            Item::Preview => p.preview = true,
            Item::Body | Item::BodyStructure => p.structure = true,
            // Answered from the header fields alone ([`index_sections`]).
            Item::Section { spec, .. } if from_index(spec) => {}
            Item::Section { .. } | Item::Binary { .. } => p.structure = true,
            _ => {}
        }
    }
    p
}

/// Whether an item needs the content record: a section answered from the index's header
/// fields needs only those ([`index_sections`]).
pub(super) fn needs_record(item: &Item) -> bool {
    item.needs_content() && !answered_from_fields(item)
}

/// Whether an item is a section answered from the index's header fields.
pub(super) fn answered_from_fields(item: &Item) -> bool {
    matches!(item, Item::Section { spec, .. } if from_index(spec))
}

/// The answer of each item that is a section answered from the index's header fields (`None`
/// for the others), from the message's synced fields.
pub(super) fn index_sections(
    items: &[Item],
    fields: &[HeaderFieldRef<'_>],
) -> Vec<Option<Vec<u8>>> {
    items
        .iter()
        .map(|item| match item {
            Item::Section {
                spec: spec @ SectionSpec::Fields { names, .. },
                ..
            } if from_index(spec) => Some(fields_from_index(fields, names)),
            _ => None,
        })
        .collect()
}

/// Whether an item needs bytes from the backend.
pub(super) fn reads_body(item: &Item) -> bool {
    match item {
        Item::Section { spec, .. } => !from_index(spec),
        Item::Binary { .. } => true,
        _ => false,
    }
}

/// Whether a section is answered from the header fields the index keeps: HEADER.FIELDS of the
/// message itself naming only synced fields (what clients fetch to list a mailbox).
fn from_index(spec: &SectionSpec) -> bool {
    match spec {
        SectionSpec::Fields {
            part: None,
            names,
            keep: true,
        } => names.iter().all(|n| {
            SYNCED_HEADERS
                .iter()
                .any(|h| h.as_bytes().eq_ignore_ascii_case(n))
        }),
        _ => false,
    }
}

/// The requested fields, in message order, from the index (see [`from_index`]).
fn fields_from_index(fields: &[HeaderFieldRef<'_>], names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in fields {
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
        {
            HeaderField::write_line(h.name, h.value, h.unspaced, &mut out);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The smallest byte range of the message that holds every requested section.
pub(super) fn covering_range(c: &ContentRecord, items: &[Item]) -> Option<Range<u64>> {
    let mut out: Option<Range<u64>> = None;
    for item in items {
        let binary;
        let spec = match item {
            Item::Section { spec, .. } if !from_index(spec) => spec,
            Item::Binary { part, .. } => {
                binary = binary_spec(part);
                &binary
            }
            _ => continue,
        };
        let r = match structure::section_bytes(&c.parsed.structure, spec) {
            SectionBytes::Range(r) => r,
            SectionBytes::Fields { header, .. } => header,
            SectionBytes::Empty => continue,
        };
        out = Some(match out {
            None => r,
            Some(o) => o.start.min(r.start)..o.end.max(r.end),
        });
    }
    out.map(|r| r.start..r.end.min(c.size))
}

/// The byte range BINARY[part] reads: the part's body, or the whole message for `[]`.
pub(super) fn binary_spec(part: &[u32]) -> SectionSpec {
    if part.is_empty() {
        SectionSpec::Full
    } else {
        SectionSpec::Part(part.to_vec())
    }
}

fn part_label(part: &[u32]) -> String {
    let nums: Vec<String> = part.iter().map(u32::to_string).collect();
    nums.join(".")
}

/// The transfer encodings BINARY can undo (RFC 3516 4.2); others are `[UNKNOWN-CTE]`.
fn known_encoding(e: Option<&[u8]>) -> bool {
    e.is_none_or(|e| {
        ["7bit", "8bit", "binary", "base64", "quoted-printable"]
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(e))
    })
}

/// The leaf part BINARY[part] decodes, if it names one (a multipart or a message is sent as
/// it is stored).
fn binary_leaf<'c>(c: &'c ContentRecord, part: &[u32]) -> Option<&'c MimePart> {
    if part.is_empty() {
        return None;
    }
    structure::find_part(&c.parsed.structure, part)
        .filter(|p| p.children.is_empty() && !p.media_type.eq_ignore_ascii_case(b"message"))
}

/// Whether some BINARY item names a part whose encoding cannot be undone.
pub(super) fn unknown_cte(c: &ContentRecord, items: &[Item]) -> bool {
    items.iter().any(|i| match i {
        Item::Binary { part, .. } => {
            binary_leaf(c, part).is_some_and(|p| !known_encoding(p.encoding.as_deref()))
        }
        _ => false,
    })
}

fn binary_decoded<'d>(c: &ContentRecord, part: &[u32], raw: Cow<'d, [u8]>) -> Cow<'d, [u8]> {
    match binary_leaf(c, part).and_then(|p| p.encoding.as_deref()) {
        Some(e)
            if e.eq_ignore_ascii_case(b"base64") || e.eq_ignore_ascii_case(b"quoted-printable") =>
        {
            Cow::Owned(transfer_decoded(&raw, Some(e)))
        }
        _ => raw,
    }
}

/// A section's bytes, cut from `data`, which holds the message from offset `base`: borrowed
/// where the section is a run of the message's bytes, so it is copied once, into the answer.
fn section_data<'d>(
    c: &ContentRecord,
    spec: &SectionSpec,
    data: &'d [u8],
    base: u64,
) -> Cow<'d, [u8]> {
    let cut = |r: Range<u64>| -> &'d [u8] {
        let s = (r.start.saturating_sub(base) as usize).min(data.len());
        let e = (r.end.saturating_sub(base) as usize).clamp(s, data.len());
        &data[s..e]
    };
    match structure::section_bytes(&c.parsed.structure, spec) {
        SectionBytes::Range(r) => Cow::Borrowed(cut(r)),
        SectionBytes::Fields {
            header,
            names,
            keep,
        } => Cow::Owned(structure::filter_fields(cut(header), &names, keep)),
        SectionBytes::Empty => Cow::Borrowed(&[]),
    }
}
