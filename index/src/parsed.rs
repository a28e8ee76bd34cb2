//! What is parsed from a message once, at APPEND, and kept so that FETCH of anything but body
//! content never reads the backend: envelope, MIME structure with byte offsets, the header
//! fields clients sync, and a preview.
//!
//! Header-derived strings are raw octets as they appear in the message (after unfolding), since
//! headers may carry 8-bit data; decoding is the protocol layer's business.

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize};

/// The deepest MIME tree the index decodes. Strata's parser stops nesting at 100 levels; a
/// record nested deeper (written before that limit existed) is refused rather than decoded with
/// a recursion the record chooses.
pub const MAX_STORED_DEPTH: usize = 128;

/// The message of the decoding error a too-deep tree gives (see [`MAX_STORED_DEPTH`]).
pub(crate) const TOO_DEEP: &str = "MIME tree nested too deeply";

/// A string of raw header octets.
pub type Octets = Vec<u8>;

/// An address as RFC 5322 gives it, split the way ENVELOPE reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Display name.
    #[serde(with = "serde_bytes")]
    pub name: Option<Octets>,
    /// Source route (obsolete syntax).
    #[serde(with = "serde_bytes")]
    pub adl: Option<Octets>,
    /// Local part; for a group start, the group name.
    #[serde(with = "serde_bytes")]
    pub mailbox: Option<Octets>,
    /// Domain; `None` marks a group start or end.
    #[serde(with = "serde_bytes")]
    pub host: Option<Octets>,
}

/// The envelope of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `Date:`
    #[serde(with = "serde_bytes")]
    pub date: Option<Octets>,
    /// `Subject:`
    #[serde(with = "serde_bytes")]
    pub subject: Option<Octets>,
    /// `From:`
    pub from: Vec<Address>,
    /// `Sender:`
    pub sender: Vec<Address>,
    /// `Reply-To:`
    pub reply_to: Vec<Address>,
    /// `To:`
    pub to: Vec<Address>,
    /// `Cc:`
    pub cc: Vec<Address>,
    /// `Bcc:`
    pub bcc: Vec<Address>,
    /// `In-Reply-To:`
    #[serde(with = "serde_bytes")]
    pub in_reply_to: Option<Octets>,
    /// `Message-ID:`
    #[serde(with = "serde_bytes")]
    pub message_id: Option<Octets>,
}

/// A parameter list entry (`charset=utf-8`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Attribute.
    #[serde(with = "serde_bytes")]
    pub name: Octets,
    /// Value.
    #[serde(with = "serde_bytes")]
    pub value: Octets,
}

/// `Content-Disposition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// `inline`, `attachment`...
    #[serde(with = "serde_bytes")]
    pub kind: Octets,
    /// Its parameters.
    pub params: Vec<Param>,
}

/// One MIME part, with the byte offsets of its header and body in the raw message, so that a
/// part fetch reads only its range from the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MimePart {
    /// Media type (`text`).
    #[serde(with = "serde_bytes")]
    pub media_type: Octets,
    /// Subtype (`plain`).
    #[serde(with = "serde_bytes")]
    pub subtype: Octets,
    /// Content-Type parameters.
    pub params: Vec<Param>,
    /// `Content-ID`.
    #[serde(with = "serde_bytes")]
    pub id: Option<Octets>,
    /// `Content-Description`.
    #[serde(with = "serde_bytes")]
    pub description: Option<Octets>,
    /// `Content-Transfer-Encoding`.
    #[serde(with = "serde_bytes")]
    pub encoding: Option<Octets>,
    /// `Content-MD5`.
    #[serde(with = "serde_bytes")]
    pub md5: Option<Octets>,
    /// `Content-Disposition`.
    pub disposition: Option<Disposition>,
    /// `Content-Language`.
    pub language: Vec<String>,
    /// `Content-Location`.
    #[serde(with = "serde_bytes")]
    pub location: Option<Octets>,
    /// Offset of the part's header in the raw message.
    pub header_offset: u64,
    /// Offset of the part's body.
    pub body_offset: u64,
    /// Offset one past the end of the part's body.
    pub end_offset: u64,
    /// Number of lines of the body (text parts and message/rfc822).
    pub lines: Option<u32>,
    /// For message/rfc822: the envelope of the enclosed message (its structure is `children[0]`).
    pub enclosed: Option<Box<Envelope>>,
    /// Sub-parts of a multipart, or the enclosed message's root part.
    #[serde(deserialize_with = "bounded_children")]
    pub children: Vec<MimePart>,
}

thread_local! {
    // How many `children` lists are being decoded on this thread, one inside the other.
    static DECODE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Decodes a part's children, refusing trees deeper than [`MAX_STORED_DEPTH`].
fn bounded_children<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MimePart>, D::Error> {
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DECODE_DEPTH.with(|c| c.set(c.get() - 1));
        }
    }
    let depth = DECODE_DEPTH.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let _level = Level;
    if depth > MAX_STORED_DEPTH {
        return Err(serde::de::Error::custom(TOO_DEEP));
    }
    Vec::<MimePart>::deserialize(d)
}

impl MimePart {
    /// Every part of the tree with its depth (the root is 0), parent before children, in
    /// order; iterative, so a tree's shape never decides the stack's depth.
    pub fn walk(&self) -> impl Iterator<Item = (usize, &MimePart)> {
        let mut stack = vec![(0, self)];
        std::iter::from_fn(move || {
            let (depth, p) = stack.pop()?;
            stack.extend(p.children.iter().rev().map(|c| (depth + 1, c)));
            Some((depth, p))
        })
    }

    /// What stands for a tree that cannot be decoded because it is nested deeper than
    /// [`MAX_STORED_DEPTH`]: one opaque part covering the whole message, so that the message
    /// can still be fetched whole.
    pub fn opaque(size: u64) -> MimePart {
        MimePart {
            media_type: b"application".to_vec(),
            subtype: b"octet-stream".to_vec(),
            end_offset: size,
            ..MimePart::default()
        }
    }
}

/// A header field kept for clients that sync headers (`BODY.PEEK[HEADER.FIELDS (...)]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderField {
    /// Field name as written.
    pub name: String,
    /// Raw value (folded as in the message), without the one space that usually follows the
    /// colon.
    #[serde(with = "serde_bytes")]
    pub value: Octets,
    /// No space followed the colon (`Subject:x`), so the field is written back as `name:value`.
    /// Kept in the content record beside the fields, not in their encoding.
    #[serde(skip)]
    pub unspaced: bool,
}

/// A [`HeaderField`] borrowed from the stored record, for readers that only look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct HeaderFieldRef<'a> {
    /// Field name as written.
    pub name: &'a str,
    /// Raw value (folded as in the message), without the one space after the colon.
    pub value: &'a [u8],
    /// No space followed the colon ([`HeaderField::unspaced`]).
    #[serde(skip)]
    pub unspaced: bool,
}

impl HeaderField {
    /// The field as it stood in the message's header: `name: value`, or `name:value` when no
    /// space followed the colon.
    pub fn write_line(name: &str, value: &[u8], unspaced: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(if unspaced { b":" } else { b": " });
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }

    /// The field borrowed, as readers of the stored record see it.
    pub fn borrowed(&self) -> HeaderFieldRef<'_> {
        HeaderFieldRef {
            name: &self.name,
            value: &self.value,
            unspaced: self.unspaced,
        }
    }
}

/// Everything parsed from a message at APPEND.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedMessage {
    /// ENVELOPE.
    pub envelope: Envelope,
    /// BODYSTRUCTURE, with offsets.
    pub structure: MimePart,
    /// The header fields clients commonly sync, in message order.
    pub headers: Vec<HeaderField>,
    /// A short plain-text preview (RFC 8970 PREVIEW).
    pub preview: String,
}
