//! Decoding for search: header values with RFC 2047 encoded words, and Date headers. SEARCH
//! matches what a person reads, not the wire bytes (text parts: [`crate::mime::part_text`]).

use mail_parser::MessageParser;

/// A header value with encoded words decoded (`=?UTF-8?B?...?=` becomes text).
pub fn decode_header(raw: &[u8]) -> String {
    // Parsed as an unstructured field, which decodes encoded words and keeps everything else.
    let mut msg = Vec::with_capacity(raw.len() + 16);
    msg.extend_from_slice(b"Subject: ");
    msg.extend_from_slice(raw);
    msg.extend_from_slice(b"\r\n\r\n");
    MessageParser::default()
        .parse_headers(&msg)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
}

/// A Date header as (UNIX seconds, offset in minutes).
pub fn parse_date(raw: &[u8]) -> Option<(i64, i16)> {
    let text = std::str::from_utf8(raw).ok()?;
    let dt = mail_parser::DateTime::parse_rfc822(text)?;
    let offset = i16::try_from(dt.tz_hour as i32 * 60 + dt.tz_minute as i32).ok()?;
    let offset = if dt.tz_before_gmt { -offset } else { offset };
    Some((dt.to_timestamp(), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_and_dates_decode() {
        assert_eq!(decode_header(b"=?UTF-8?B?w6l0w6k=?= plain"), "été plain");
        let (t, off) = parse_date(b"Tue, 1 Jul 2003 10:52:37 +0200").unwrap();
        assert_eq!((t, off), (1057049557, 120));
    }
}
