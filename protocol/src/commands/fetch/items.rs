//! The items a FETCH asks for, decoded from imap-codec's names into what Strata answers, and
//! the command's modifiers (CONDSTORE's CHANGEDSINCE, QRESYNC's VANISHED).

use std::num::NonZeroU32;

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section,
};
use strata_mailstore::model::Modseq;

use crate::encode::Out;
use crate::grammar::FetchItem;
use crate::session::Enabled;
use crate::structure::SectionSpec;

/// A FETCH as decoded: its items, in the order answered, and its modifiers.
pub(super) struct Request {
    pub(super) items: Vec<Item>,
    /// CHANGEDSINCE: only messages whose MODSEQ is above this.
    pub(super) changed_since: Option<Modseq>,
    /// VANISHED (QRESYNC): also tell which UIDs in the set were expunged since then.
    pub(super) vanished: bool,
    /// The FETCH uses CONDSTORE (MODSEQ or CHANGEDSINCE), which turns it on (RFC 7162 3.1).
    pub(super) condstore: bool,
}

impl Request {
    /// Decodes the items and modifiers, or says why they are refused (BAD).
    pub(super) fn new(
        names: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: Vec<FetchModifier>,
        enabled: Enabled,
        ext: &[FetchItem],
        stand_in: bool,
    ) -> Result<Request, String> {
        let mut items = items_of(names, uid)?;
        if stand_in && !uid {
            // The `UID` that stood in for items imap-codec does not know.
            items.retain(|i| !matches!(i, Item::Uid));
        }
        items.extend(ext.iter().map(|e| match e {
            FetchItem::SaveDate => Item::SaveDate,
            FetchItem::Preview => Item::Preview,
            FetchItem::EmailId => Item::EmailId,
            FetchItem::ThreadId => Item::ThreadId,
        }));
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => {
                    if changed_since.replace(Modseq(n.get())).is_some() {
                        return Err("CHANGEDSINCE given twice".into());
                    }
                }
                FetchModifier::Vanished => {
                    if !enabled.qresync {
                        return Err("VANISHED needs QRESYNC, which has not been enabled".into());
                    }
                    if !uid {
                        return Err("VANISHED is only allowed in UID FETCH".into());
                    }
                    vanished = true;
                }
            }
        }
        if vanished && changed_since.is_none() {
            // RFC 7162 3.2.6.
            return Err("VANISHED needs CHANGEDSINCE".into());
        }
        let asked = items.iter().any(|i| matches!(i, Item::ModSeq));
        // CHANGEDSINCE implies MODSEQ (RFC 7162 3.1.4.1); once CONDSTORE is on, FLAGS come
        // with their MODSEQ.
        let flags = items.iter().any(|i| matches!(i, Item::Flags));
        if !asked && (changed_since.is_some() || (enabled.condstore && flags)) {
            items.push(Item::ModSeq);
        }
        Ok(Request {
            items,
            changed_since,
            vanished,
            condstore: asked || changed_since.is_some(),
        })
    }
}

/// One requested item.
#[derive(Clone, Debug)]
pub(super) enum Item {
    Uid,
    /// RFC 7162 MODSEQ.
    ModSeq,
    /// RFC 8514 SAVEDATE.
    SaveDate,
    /// RFC 8970 PREVIEW, from the index.
    Preview,
    /// RFC 8474 EMAILID: the content's GUID.
    EmailId,
    /// RFC 8474 THREADID.
    ThreadId,
    Flags,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    /// RFC 3516 BINARY[part] (or BINARY.SIZE[part] with `size_only`): the part's body with its
    /// transfer encoding undone.
    Binary {
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
        peek: bool,
        size_only: bool,
    },
    /// A body section, with the name it is answered under.
    Section {
        spec: SectionSpec,
        partial: Option<(u32, u32)>,
        peek: bool,
        label: String,
    },
}

impl Item {
    pub(super) fn needs_content(&self) -> bool {
        matches!(
            self,
            Item::Envelope
                | Item::Preview
                | Item::Body
                | Item::BodyStructure
                | Item::Section { .. }
                | Item::Binary { .. }
        )
    }

    pub(super) fn sets_seen(&self) -> bool {
        matches!(
            self,
            Item::Section { peek: false, .. } | Item::Binary { peek: false, .. }
        )
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

pub(super) fn items_of(
    names: MacroOrMessageDataItemNames<'_>,
    uid: bool,
) -> Result<Vec<Item>, String> {
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
            N::Binary {
                section,
                partial,
                peek,
            } => Item::Binary {
                part: section.iter().map(|n| n.get()).collect(),
                partial: partial.map(|(a, b)| (a, b.get())),
                peek,
                size_only: false,
            },
            N::BinarySize { section } => Item::Binary {
                part: section.iter().map(|n| n.get()).collect(),
                partial: None,
                peek: true,
                size_only: true,
            },
            N::ModSeq => Item::ModSeq,
        };
        if matches!(item, Item::Uid) && items.iter().any(|i| matches!(i, Item::Uid)) {
            continue;
        }
        items.push(item);
    }
    Ok(items)
}
