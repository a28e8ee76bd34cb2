//! Modified UTF-7 (RFC 3501 5.1.3), the wire form IMAP4rev1 gives non-ASCII mailbox names and
//! the form Strata keeps every name in; IMAP4rev2 clients see and send the UTF-8 it stands for.
//!
//! Strict: a name that does not decode (a bare `&`, 8-bit bytes, printable ASCII or a control
//! character encoded, an odd byte, a lone surrogate) is not modified UTF-7, and `decode` says so.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// RFC 3501's base64: `,` for `/`, no padding, no stray trailing bits.
const B64: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Whether a character stands for itself in modified UTF-7.
fn direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// `text` in modified UTF-7.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&B64.encode(&run));
            out.push('-');
            run.clear();
        }
    };
    for c in text.chars() {
        if direct(c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                run.extend_from_slice(&u.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The text a modified UTF-7 name stands for, or `None` when it is not modified UTF-7.
pub fn decode(wire: &str) -> Option<String> {
    let literal_ok = |s: &str| s.chars().all(direct);
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        let (plain, after) = (&rest[..amp], &rest[amp + 1..]);
        if !literal_ok(plain) {
            return None;
        }
        out.push_str(plain);
        let end = after.find('-')?;
        let shifted = &after[..end];
        if shifted.is_empty() {
            out.push('&');
        } else {
            let bytes = B64.decode(shifted).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            for c in char::decode_utf16(units) {
                let c = c.ok()?;
                // What could be written directly must be, and a name holds no control character.
                if direct(c) || c.is_control() {
                    return None;
                }
                out.push(c);
            }
        }
        rest = &after[end + 1..];
    }
    if !literal_ok(rest) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_round_trip() {
        // RFC 3501 5.1.3's example, and names clients create every day.
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("R&D", "R&-D"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("📬 in", "&2D3c7A- in"),
            ("plain", "plain"),
        ];
        for (text, wire) in cases {
            assert_eq!(encode(text), wire, "{text}");
            assert_eq!(decode(wire).as_deref(), Some(text), "{wire}");
        }
    }

    #[test]
    fn refuses_what_is_not_modified_utf7() {
        for bad in [
            "a&b",      // unterminated shift
            "&Jjo",     // no closing '-'
            "&AGE-",    // "a", which must be written directly
            "&AAA-",    // NUL
            "&2D0-",    // a lone high surrogate
            "&APw",     // unterminated
            "&AP-",     // an odd number of bytes
            "&APx-",    // trailing bits set
            "Entwürfe", // 8-bit
            "a\tb",     // a control character written directly
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_string_round_trips(s in "\\PC{0,24}") {
            let wire = encode(&s);
            proptest::prop_assert!(wire.is_ascii());
            proptest::prop_assert_eq!(decode(&wire), Some(s));
        }
    }
}
