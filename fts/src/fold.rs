//! The two case foldings SEARCH compares under, applied alike to what is indexed and to what
//! is searched for, so that a match under a folding implies every trigram of the folded needle
//! is in the folded text.

/// Bytes with ASCII letters lowercased, as text (invalid UTF-8 becomes U+FFFD, which never
/// breaks up a valid sequence, so a valid needle found in the bytes is found in the text).
pub(crate) fn ascii(raw: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(raw).into_owned();
    s.make_ascii_lowercase();
    s
}

/// Decoded text lowercased as Unicode says (what SEARCH does with decoded text).
pub(crate) fn text(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_span_survives_invalid_neighbours() {
        let raw = [&[0xE2, 0x82][..], "Été".as_bytes(), &[0xC3]].concat();
        assert!(ascii(&raw).contains("Été"));
        assert_eq!(ascii(b"HeLLo"), "hello");
        assert_eq!(text("ÉTÉ ΟΔΟΣ"), "été οδος");
    }
}
