//! A text part's content as a person reads it: transfer encoding undone (base64,
//! quoted-printable), charset converted to UTF-8, HTML reduced to its text. Used by SEARCH and
//! for the preview; never fails (what cannot be decoded is taken as it is).

use base64::Engine as _;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use strata_index::MimePart;

/// Base64 that tolerates line breaks, stray characters and missing padding.
fn base64_lenient(v: &[u8]) -> Vec<u8> {
    let mut clean: Vec<u8> = v
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    ENGINE.decode(&clean).unwrap_or_default()
}

/// The transfer-decoded octets of a part's body.
pub fn transfer_decoded(body: &[u8], encoding: Option<&[u8]>) -> Vec<u8> {
    match encoding.map(<[u8]>::to_ascii_lowercase).as_deref() {
        Some(b"base64") => base64_lenient(body),
        Some(b"quoted-printable") => quoted_printable_decode(body).unwrap_or_else(|| body.to_vec()),
        _ => body.to_vec(),
    }
}

/// The text of a text part whose body is `body`.
pub fn part_text(body: &[u8], part: &MimePart) -> String {
    let octets = transfer_decoded(body, part.encoding.as_deref());
    let charset = part
        .params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(b"charset"))
        .map(|p| p.value.as_slice());
    let text = match charset.and_then(charset_decoder) {
        Some(decode) => decode(&octets),
        None => String::from_utf8_lossy(&octets).into_owned(),
    };
    if part.subtype.eq_ignore_ascii_case(b"html") {
        html_to_text(&text)
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_index::Param;

    #[test]
    fn encodings_and_charsets_are_undone() {
        let mut p = MimePart {
            media_type: b"text".to_vec(),
            subtype: b"plain".to_vec(),
            encoding: Some(b"BASE64".to_vec()),
            ..MimePart::default()
        };
        assert_eq!(part_text(b"aGVs\r\nbG8", &p), "hello");
        p.encoding = Some(b"quoted-printable".to_vec());
        p.params = vec![Param {
            name: b"charset".to_vec(),
            value: b"iso-8859-1".to_vec(),
        }];
        assert_eq!(part_text(b"caf=E9 =\r\nnoir", &p), "café noir");
        p.encoding = None;
        p.subtype = b"html".to_vec();
        p.params.clear();
        assert_eq!(part_text(b"<p>a <b>b</b></p>", &p).trim(), "a b");
    }
}
