//! FETCH and UID FETCH (RFC 3501 6.4.5). Everything but body content comes from the index (the
//! shared view for flags, sizes and dates; the content record for ENVELOPE and BODYSTRUCTURE).
//! Body sections are read from the backend: one read per message covering only the bytes its
//! sections need, all messages' reads in flight together (bounded), answered in order.

use std::num::NonZeroU32;
use std::ops::Range;

use futures::StreamExt;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section,
};
use imap_codec::imap_types::sequence::SequenceSet;
use strata_index::{ContentRecord, Flags, Parts, StoreOp, SystemFlags, Timestamp, Uid};

use strata_mailstore::{BodyRead, SYNCED_HEADERS};

use crate::encode::Out;
use crate::respond::Responder;
use crate::session::{Next, Session};
use crate::structure::{self, SectionBytes, SectionSpec};

/// One requested item.
#[derive(Clone, Debug)]
enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    /// A body section, with the name it is answered under.
    Section {
        spec: SectionSpec,
        partial: Option<(u32, u32)>,
        peek: bool,
        label: String,
    },
}

impl Item {
    fn needs_content(&self) -> bool {
        matches!(
            self,
            Item::Envelope | Item::Body | Item::BodyStructure | Item::Section { .. }
        )
    }

    fn sets_seen(&self) -> bool {
        matches!(self, Item::Section { peek: false, .. })
    }
}

fn part_path(p: &Part) -> Vec<u32> {
    p.0.as_ref().iter().map(|n| n.get()).collect()
}

fn part_prefix(p: Option<&Part>) -> String {
    match p {
        Some(p) => {
            let nums: Vec<String> = part_path(p).iter().map(|n| n.to_string()).collect();
            format!("{}.", nums.join("."))
        }
        None => String::new(),
    }
}

fn field_names(names: &[AString<'_>]) -> (Vec<Vec<u8>>, String) {
    let raw: Vec<Vec<u8>> = names.iter().map(|n| n.as_ref().to_vec()).collect();
    let mut o = Out::default();
    for (i, n) in raw.iter().enumerate() {
        if i > 0 {
            o.raw(" ");
        }
        o.astring(n);
    }
    (raw, String::from_utf8_lossy(&o.buf).into_owned())
}

fn section_item(
    section: Option<Section<'_>>,
    partial: Option<(u32, NonZeroU32)>,
    peek: bool,
) -> Item {
    let (spec, text) = match section {
        None => (SectionSpec::Full, String::new()),
        Some(Section::Part(p)) => {
            let text = part_prefix(Some(&p)).trim_end_matches('.').to_string();
            (SectionSpec::Part(part_path(&p)), text)
        }
        Some(Section::Mime(p)) => (
            SectionSpec::Mime(part_path(&p)),
            format!("{}MIME", part_prefix(Some(&p))),
        ),
        Some(Section::Header(p)) => (
            SectionSpec::Header(p.as_ref().map(part_path)),
            format!("{}HEADER", part_prefix(p.as_ref())),
        ),
        Some(Section::Text(p)) => (
            SectionSpec::Text(p.as_ref().map(part_path)),
            format!("{}TEXT", part_prefix(p.as_ref())),
        ),
        Some(Section::HeaderFields(p, names)) => {
            let (names, list) = field_names(names.as_ref());
            let text = format!("{}HEADER.FIELDS ({list})", part_prefix(p.as_ref()));
            let part = p.as_ref().map(part_path);
            (
                SectionSpec::Fields {
                    part,
                    names,
                    keep: true,
                },
                text,
            )
        }
        Some(Section::HeaderFieldsNot(p, names)) => {
            let (names, list) = field_names(names.as_ref());
            let text = format!("{}HEADER.FIELDS.NOT ({list})", part_prefix(p.as_ref()));
            let part = p.as_ref().map(part_path);
            (
                SectionSpec::Fields {
                    part,
                    names,
                    keep: false,
                },
                text,
            )
        }
    };
    Item::Section {
        spec,
        partial: partial.map(|(a, b)| (a, b.get())),
        peek,
        label: format!("BODY[{text}]"),
    }
}

fn items_of(names: MacroOrMessageDataItemNames<'_>, uid: bool) -> Result<Vec<Item>, String> {
    use MessageDataItemName as N;
    let names = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            let mut v = vec![N::Flags, N::InternalDate, N::Rfc822Size];
            if matches!(m, Macro::All | Macro::Full) {
                v.push(N::Envelope);
            }
            if matches!(m, Macro::Full) {
                v.push(N::Body);
            }
            v
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    };
    let mut items = Vec::new();
    if uid {
        items.push(Item::Uid);
    }
    for n in names {
        let item = match n {
            N::Uid => Item::Uid,
            N::Flags => Item::Flags,
            N::InternalDate => Item::InternalDate,
            N::Rfc822Size => Item::Size,
            N::Envelope => Item::Envelope,
            N::Body => Item::Body,
            N::BodyStructure => Item::BodyStructure,
            N::BodyExt {
                section,
                partial,
                peek,
            } => section_item(section, partial, peek),
            N::Rfc822 => Item::Section {
                spec: SectionSpec::Full,
                partial: None,
                peek: false,
                label: "RFC822".into(),
            },
            N::Rfc822Header => Item::Section {
                spec: SectionSpec::Header(None),
                partial: None,
                peek: true,
                label: "RFC822.HEADER".into(),
            },
            N::Rfc822Text => Item::Section {
                spec: SectionSpec::Text(None),
                partial: None,
                peek: false,
                label: "RFC822.TEXT".into(),
            },
            other => return Err(format!("FETCH item {other:?} is not supported")),
        };
        if matches!(item, Item::Uid) && items.iter().any(|i| matches!(i, Item::Uid)) {
            continue;
        }
        items.push(item);
    }
    Ok(items)
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

/// What one message's answer needs.
struct Planned {
    seq: u32,
    uid: Uid,
    content: Option<ContentRecord>,
    /// The byte range to read, if any section needs bytes.
    read: Option<Range<u64>>,
    /// Include FLAGS because this FETCH set `\Seen`.
    seen_now: bool,
}

pub(super) async fn fetch(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    names: MacroOrMessageDataItemNames<'_>,
    uid: bool,
    r: &mut Responder<'_>,
) -> std::io::Result<Next> {
    let items = match items_of(names, uid) {
        Ok(i) => i,
        Err(why) => {
            r.tagged_bad(tag, None, &why);
            return Ok(Next::Continue);
        }
    };
    let user = s.user.clone().expect("authenticated");
    let sel = s.selected().expect("selected");
    let Some(targets) = super::targets(sel, set, uid, false, tag, r) else {
        return Ok(Next::Continue);
    };
    let mailbox = sel.id;
    let needs_content = items.iter().any(Item::needs_content);
    let sets_seen = !sel.read_only && items.iter().any(Item::sets_seen);

    // Non-peek body fetches set \Seen first, so the FLAGS reported are the new ones.
    let mut seen_now = std::collections::HashSet::new();
    if sets_seen {
        let unseen: Vec<Uid> = targets
            .iter()
            .filter(|(_, u)| sel.entry(*u).is_some_and(|e| !e.flags.is_seen()))
            .map(|t| t.1)
            .collect();
        if !unseen.is_empty() {
            match user
                .index()
                .store(
                    mailbox,
                    unseen,
                    StoreOp::Add,
                    Flags::system(SystemFlags::SEEN),
                    None,
                )
                .await
            {
                Ok(outcome) => {
                    let sel = s.selected_mut().expect("selected");
                    for (u, _, m) in outcome.changed {
                        sel.reported(u, m);
                        seen_now.insert(u);
                    }
                }
                Err(e) => {
                    super::store_error(r, tag, &e.into());
                    return Ok(Next::Continue);
                }
            }
        }
    }

    let sel = s.selected().expect("selected");
    let snap = match user.snapshot() {
        Ok(s) => s,
        Err(e) => {
            super::store_error(r, tag, &e);
            return Ok(Next::Continue);
        }
    };
    let want = parts_of(&items);
    // Only when bodies are read is every record needed up front (to plan the reads); otherwise
    // each is decoded as its answer is written and freed at once.
    let plan_content = items.iter().any(reads_body);
    let mut plan = Vec::with_capacity(targets.len());
    let mut missing = false;
    for (seq, u) in targets {
        let mut content = None;
        if needs_content && plan_content {
            // A message another session expunged is still this session's to read until it
            // has been told (RFC 2180 4.1).
            let rec = match sel.entry(u) {
                Some(e) => snap.content_parts(&e.guid, want).ok().flatten(),
                None => user.expunged(mailbox, u).map(|(_, c)| c),
            };
            if rec.is_none() {
                // Expunged by another session; its number stays valid until we may say so.
                missing = true;
                continue;
            }
            content = rec;
        }
        let read = content.as_ref().and_then(|c| covering_range(c, &items));
        plan.push(Planned {
            seq,
            uid: u,
            content,
            read,
            seen_now: seen_now.contains(&u),
        });
    }
    let reads: Vec<_> = plan
        .iter()
        .filter_map(|p| {
            let c = p.content.as_ref()?;
            let range = p.read.clone()?;
            let whole = range.start == 0 && range.end >= c.size;
            Some(BodyRead {
                guid: c.guid,
                location: c.location.clone(),
                range: if whole { None } else { Some(range) },
            })
        })
        .collect();
    let mut bodies = user.bodies(reads);
    let kw = sel.keywords.clone();
    let names = |k| kw.get(&k).cloned();
    for p in &mut plan {
        let (entry, buried) = match sel.entry(p.uid) {
            Some(e) => (e, None),
            None => match user.expunged(mailbox, p.uid) {
                Some((e, c)) => (e, Some(c)),
                None => {
                    missing = true;
                    continue;
                }
            },
        };
        if needs_content && p.content.is_none() {
            p.content = match buried {
                Some(c) => Some(c),
                None => snap.content_parts(&entry.guid, want).ok().flatten(),
            };
            if p.content.is_none() {
                missing = true;
                continue;
            }
        }
        let bytes = if p.read.is_some() {
            match bodies.next().await {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => {
                    drop(bodies);
                    r.flush().await?;
                    super::store_error(r, tag, &e);
                    return Ok(Next::Continue);
                }
                None => None,
            }
        } else {
            None
        };
        let o = &mut r.out;
        o.raw(format!("* {} FETCH (", p.seq));
        let mut first = true;
        let mut flags_done = false;
        for item in &items {
            if !first {
                o.raw(" ");
            }
            first = false;
            match item {
                Item::Uid => {
                    o.raw(format!("UID {}", p.uid));
                }
                Item::Flags => {
                    o.raw("FLAGS ");
                    o.flags(&entry.flags, &names, sel.recent.contains(&p.uid));
                    flags_done = true;
                }
                Item::InternalDate => {
                    o.raw(format!(
                        "INTERNALDATE \"{}\"",
                        internal_date(entry.internal_date)
                    ));
                }
                Item::Size => {
                    o.raw(format!("RFC822.SIZE {}", entry.size));
                }
                Item::Envelope => {
                    o.raw("ENVELOPE ");
                    let c = p.content.as_ref().expect("planned with content");
                    structure::envelope(o, &c.parsed.envelope);
                }
                Item::Body | Item::BodyStructure => {
                    let ext = matches!(item, Item::BodyStructure);
                    o.raw(if ext { "BODYSTRUCTURE " } else { "BODY " });
                    let c = p.content.as_ref().expect("planned with content");
                    structure::body_structure(o, &c.parsed.structure, ext);
                }
                Item::Section {
                    spec,
                    partial,
                    label,
                    ..
                } => {
                    let c = p.content.as_ref().expect("planned with content");
                    let base = p.read.as_ref().map_or(0, |r| r.start);
                    let data = bytes.as_deref().unwrap_or_default();
                    let section = section_data(c, spec, data, base);
                    match partial {
                        Some((start, len)) => {
                            let start = (*start as usize).min(section.len());
                            let end = start.saturating_add(*len as usize).min(section.len());
                            o.raw(format!("{label}<{start}> "));
                            o.literal(&section[start..end]);
                        }
                        None => {
                            o.raw(format!("{label} "));
                            o.literal(&section);
                        }
                    }
                }
            }
        }
        if p.seen_now && !flags_done {
            o.raw(" FLAGS ");
            o.flags(&entry.flags, &names, sel.recent.contains(&p.uid));
        }
        o.raw(")").crlf();
        if !plan_content {
            p.content = None;
        }
        r.flush_if_big().await?;
    }
    drop(bodies);
    let text = if missing {
        "FETCH completed; some messages were expunged by another session"
    } else {
        "FETCH completed"
    };
    super::finish_selected(s, tag, None, text, false, r).await;
    Ok(Next::Continue)
}

/// The parsed parts of the content record that the items are answered from.
fn parts_of(items: &[Item]) -> Parts {
    let mut p = Parts::default();
    for item in items {
        match item {
            Item::Envelope => p.envelope = true,
            Item::Body | Item::BodyStructure => p.structure = true,
            Item::Section { spec, .. } if from_index(spec) => p.headers = true,
            Item::Section { .. } => p.structure = true,
            _ => {}
        }
    }
    p
}

/// Whether an item needs bytes from the backend.
fn reads_body(item: &Item) -> bool {
    matches!(item, Item::Section { spec, .. } if !from_index(spec))
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
fn fields_from_index(c: &ContentRecord, names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in &c.parsed.headers {
        if names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
        {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The smallest byte range of the message that holds every requested section.
fn covering_range(c: &ContentRecord, items: &[Item]) -> Option<Range<u64>> {
    let mut out: Option<Range<u64>> = None;
    for item in items {
        let Item::Section { spec, .. } = item else {
            continue;
        };
        if from_index(spec) {
            continue;
        }
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

/// A section's bytes, cut from `data`, which holds the message from offset `base`.
fn section_data(c: &ContentRecord, spec: &SectionSpec, data: &[u8], base: u64) -> Vec<u8> {
    if let SectionSpec::Fields { names, .. } = spec
        && from_index(spec)
    {
        return fields_from_index(c, names);
    }
    let cut = |r: Range<u64>| -> &[u8] {
        let s = (r.start.saturating_sub(base) as usize).min(data.len());
        let e = (r.end.saturating_sub(base) as usize).clamp(s, data.len());
        &data[s..e]
    };
    match structure::section_bytes(&c.parsed.structure, spec) {
        SectionBytes::Range(r) => cut(r).to_vec(),
        SectionBytes::Fields {
            header,
            names,
            keep,
        } => structure::filter_fields(cut(header), &names, keep),
        SectionBytes::Empty => Vec::new(),
    }
}
