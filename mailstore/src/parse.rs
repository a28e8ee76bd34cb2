//! Parsing a message once, at APPEND, into what the index keeps: the envelope, the MIME tree with
//! each part's byte offsets, the header fields clients sync, and a preview. MIME itself is
//! mail-parser's work; this module maps its result onto Strata's records.
//!
//! Envelope strings are the header's own octets, unfolded, so clients see encoded words as the
//! sender wrote them. Display names come from the parsed address and are re-encoded as RFC 2047
//! words when they are not ASCII. Defaults that belong to IMAP (Sender and Reply-To falling back
//! to From, `7BIT` and `us-ascii` for absent fields) are left to the protocol layer.

use base64::Engine as _;
use mail_parser::{
    Address as MpAddress, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use strata_index::{Address, Disposition, Envelope, HeaderField, MimePart, Param, ParsedMessage};

/// Raw header octets.
type Octets = Vec<u8>;

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

/// Parses a raw message. Never fails: a message that cannot be parsed as MIME is recorded as a
/// single text/plain part covering all of it.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let Some(message) = MessageParser::default().parse(raw) else {
        return ParsedMessage {
            structure: MimePart {
                media_type: b"text".to_vec(),
                subtype: b"plain".to_vec(),
                end_offset: raw.len() as u64,
                lines: Some(count_lines(raw)),
                ..MimePart::default()
            },
            ..ParsedMessage::default()
        };
    };
    let root = message.root_part();
    ParsedMessage {
        envelope: envelope(raw, root),
        structure: part(raw, &message, 0),
        headers: synced_headers(raw, root),
        preview: preview(&message),
    }
}

/// A header's value as written: without the leading blank and the final line break, unfolded.
fn raw_value(raw: &[u8], start: u32, end: u32) -> Octets {
    let v = raw.get(start as usize..end as usize).unwrap_or_default();
    let v = v
        .strip_suffix(b"\r\n")
        .or_else(|| v.strip_suffix(b"\n"))
        .unwrap_or(v);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\r' if v.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let first = out
        .iter()
        .position(|b| !b" \t".contains(b))
        .unwrap_or(out.len());
    out.drain(..first);
    out
}

fn header_raw(raw: &[u8], part: &MessagePart<'_>, name: &str) -> Option<Octets> {
    part.headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| raw_value(raw, h.offset_start, h.offset_end))
}

/// A display name as an envelope carries it: ASCII as is, anything else as an RFC 2047 word.
fn encode_name(name: &str) -> Octets {
    if name.is_ascii() {
        name.as_bytes().to_vec()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
        .into_bytes()
    }
}

fn address(name: Option<&str>, email: Option<&str>) -> Address {
    let (mailbox, host) = match email {
        Some(e) => match e.rsplit_once('@') {
            Some((m, h)) => (Some(m.as_bytes().to_vec()), Some(h.as_bytes().to_vec())),
            None => (Some(e.as_bytes().to_vec()), Some(Vec::new())),
        },
        None => (None, Some(Vec::new())),
    };
    Address {
        name: name.map(encode_name),
        adl: None,
        mailbox,
        host,
    }
}

/// Addresses in envelope order; a named group is framed by a start (host absent, mailbox the
/// group name) and an end (all absent), as RFC 3501 represents group syntax.
fn addresses(value: Option<&MpAddress<'_>>) -> Vec<Address> {
    let mut out = Vec::new();
    match value {
        None => {}
        Some(MpAddress::List(list)) => {
            for a in list {
                out.push(address(a.name.as_deref(), a.address.as_deref()));
            }
        }
        Some(MpAddress::Group(groups)) => {
            for g in groups {
                if let Some(name) = &g.name {
                    out.push(Address {
                        mailbox: Some(name.as_bytes().to_vec()),
                        ..Address::default()
                    });
                }
                for a in &g.addresses {
                    out.push(address(a.name.as_deref(), a.address.as_deref()));
                }
                if g.name.is_some() {
                    out.push(Address::default());
                }
            }
        }
    }
    out
}

fn parsed_addresses(part: &MessagePart<'_>, name: HeaderName<'_>) -> Vec<Address> {
    let value = part
        .headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_address());
    addresses(value)
}

fn envelope(raw: &[u8], root: &MessagePart<'_>) -> Envelope {
    Envelope {
        date: header_raw(raw, root, "Date"),
        subject: header_raw(raw, root, "Subject"),
        from: parsed_addresses(root, HeaderName::From),
        sender: parsed_addresses(root, HeaderName::Sender),
        reply_to: parsed_addresses(root, HeaderName::ReplyTo),
        to: parsed_addresses(root, HeaderName::To),
        cc: parsed_addresses(root, HeaderName::Cc),
        bcc: parsed_addresses(root, HeaderName::Bcc),
        in_reply_to: header_raw(raw, root, "In-Reply-To"),
        message_id: header_raw(raw, root, "Message-ID"),
    }
}

fn count_lines(body: &[u8]) -> u32 {
    let lf = body.iter().filter(|&&b| b == b'\n').count() as u32;
    lf + u32::from(!body.is_empty() && !body.ends_with(b"\n"))
}

fn params_of(attrs: Option<&[mail_parser::Attribute<'_>]>) -> Vec<Param> {
    attrs
        .unwrap_or_default()
        .iter()
        .map(|a| Param {
            name: a.name.as_bytes().to_vec(),
            value: a.value.as_bytes().to_vec(),
        })
        .collect()
}

/// The MIME part at `id` of `message`, with its children.
fn part(raw: &[u8], message: &Message<'_>, id: u32) -> MimePart {
    let Some(p) = message.parts.get(id as usize) else {
        return MimePart::default();
    };
    let (media_type, subtype, params) = match p.content_type() {
        Some(ct) => (
            ct.c_type.to_ascii_lowercase().into_bytes(),
            ct.c_subtype
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .into_bytes(),
            params_of(ct.attributes.as_deref()),
        ),
        None => (b"text".to_vec(), b"plain".to_vec(), Vec::new()),
    };
    let body = raw
        .get(p.offset_body as usize..p.offset_end as usize)
        .unwrap_or_default();
    let is_text = media_type == b"text";
    let mut out = MimePart {
        id: header_raw(raw, p, "Content-ID"),
        description: header_raw(raw, p, "Content-Description"),
        encoding: header_raw(raw, p, "Content-Transfer-Encoding"),
        md5: header_raw(raw, p, "Content-MD5"),
        disposition: p.content_disposition().map(|d| Disposition {
            kind: d.c_type.to_ascii_lowercase().into_bytes(),
            params: params_of(d.attributes.as_deref()),
        }),
        language: header_raw(raw, p, "Content-Language")
            .map(|v| {
                String::from_utf8_lossy(&v)
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        location: header_raw(raw, p, "Content-Location"),
        header_offset: u64::from(p.offset_header),
        body_offset: u64::from(p.offset_body),
        end_offset: u64::from(p.offset_end),
        lines: is_text.then(|| count_lines(body)),
        media_type,
        subtype,
        params,
        enclosed: None,
        children: Vec::new(),
    };
    match &p.body {
        PartType::Multipart(ids) => {
            out.children = ids.iter().map(|&c| part(raw, message, c)).collect();
        }
        PartType::Message(inner) => {
            let inner_root = inner.root_part();
            out.enclosed = Some(Box::new(envelope(raw, inner_root)));
            out.children = vec![part(raw, inner, 0)];
            out.lines = Some(count_lines(body));
        }
        _ => {}
    }
    out
}

fn synced_headers(raw: &[u8], root: &MessagePart<'_>) -> Vec<HeaderField> {
    root.headers
        .iter()
        .filter(|h| {
            SYNCED_HEADERS
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_str()))
        })
        .map(|h| {
            let value = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            let value = value
                .strip_suffix(b"\r\n")
                .or_else(|| value.strip_suffix(b"\n"))
                .unwrap_or(value);
            let value = value.strip_prefix(b" ").unwrap_or(value);
            HeaderField {
                name: raw
                    .get(h.offset_field as usize..)
                    .and_then(|rest| rest.iter().position(|&b| b == b':').map(|i| &rest[..i]))
                    .map(|n| String::from_utf8_lossy(n).trim().to_string())
                    .unwrap_or_else(|| h.name.as_str().to_string()),
                value: value.to_vec(),
            }
        })
        .collect()
}

fn preview(message: &Message<'_>) -> String {
    let text = message.body_preview(PREVIEW_CHARS * 2).unwrap_or_default();
    let mut out = String::new();
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > PREVIEW_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}
