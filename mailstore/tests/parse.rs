//! Parsing at APPEND: envelope, MIME structure with offsets, synced headers, preview.

use strata_index::{Address, MimePart};
use strata_mailstore::mime::{MAX_DEPTH, MAX_PARTS};
use strata_mailstore::parse;

fn s(v: &Option<Vec<u8>>) -> &str {
    std::str::from_utf8(v.as_deref().expect("present")).unwrap()
}

fn body<'a>(raw: &'a [u8], p: &MimePart) -> &'a str {
    std::str::from_utf8(&raw[p.body_offset as usize..p.end_offset as usize]).unwrap()
}

fn addr(a: &Address) -> (Option<String>, Option<String>, Option<String>) {
    let f = |v: &Option<Vec<u8>>| v.as_ref().map(|b| String::from_utf8(b.clone()).unwrap());
    (f(&a.name), f(&a.mailbox), f(&a.host))
}

const SIMPLE: &[u8] = b"Date: Mon, 23 Nov 2026 12:00:00 +0100\r\n\
From: Alice Example <alice@example.org>\r\n\
To: bob@example.net, \"Carol C.\" <carol@example.com>\r\n\
Subject: Lunch\r\n\x20tomorrow?\r\n\
Message-ID: <1@example.org>\r\n\
X-Unsynced: ignored\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Shall we meet at noon?\r\n\
Bring the   report.\r\n";

#[test]
fn a_plain_message_gives_its_envelope_structure_headers_and_preview() {
    let p = parse(SIMPLE);
    let e = &p.envelope;
    assert_eq!(s(&e.date), "Mon, 23 Nov 2026 12:00:00 +0100");
    assert_eq!(
        s(&e.subject),
        "Lunch tomorrow?",
        "folded subjects are unfolded"
    );
    assert_eq!(s(&e.message_id), "<1@example.org>");
    assert_eq!(
        e.from.iter().map(addr).collect::<Vec<_>>(),
        [(
            Some("Alice Example".into()),
            Some("alice".into()),
            Some("example.org".into())
        )]
    );
    assert_eq!(
        e.to.iter().map(addr).collect::<Vec<_>>(),
        [
            (None, Some("bob".into()), Some("example.net".into())),
            (
                Some("Carol C.".into()),
                Some("carol".into()),
                Some("example.com".into())
            ),
        ]
    );
    assert!(e.sender.is_empty() && e.reply_to.is_empty() && e.cc.is_empty());
    assert_eq!(e.in_reply_to, None);

    let st = &p.structure;
    assert_eq!(
        (st.media_type.as_slice(), st.subtype.as_slice()),
        (&b"text"[..], &b"plain"[..])
    );
    assert_eq!(st.params.len(), 1);
    assert_eq!(st.params[0].name, b"charset");
    assert_eq!(st.params[0].value, b"utf-8");
    assert_eq!(
        body(SIMPLE, st),
        "Shall we meet at noon?\r\nBring the   report.\r\n"
    );
    assert_eq!(st.header_offset, 0);
    assert_eq!(st.end_offset, SIMPLE.len() as u64);
    assert_eq!(st.lines, Some(2));

    let names: Vec<&str> = p.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Date",
            "From",
            "To",
            "Subject",
            "Message-ID",
            "Content-Type"
        ]
    );
    assert_eq!(
        p.headers[3].value, b"Lunch\r\n tomorrow?",
        "synced headers keep their folding"
    );
    assert_eq!(p.preview, "Shall we meet at noon? Bring the report.");
}

#[test]
fn encoded_words_stay_as_written_and_8bit_names_are_encoded() {
    let raw = "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
To: Renée <renee@example.fr>\r\n\r\nhi\r\n"
        .as_bytes();
    let p = parse(raw);
    assert_eq!(s(&p.envelope.subject), "=?utf-8?q?Gr=C3=BC=C3=9Fe?=");
    assert_eq!(s(&p.envelope.from[0].name), "=?utf-8?q?J=C3=B6rg?=");
    assert_eq!(s(&p.envelope.to[0].name), "=?utf-8?b?UmVuw6ll?=");
}

#[test]
fn groups_are_framed_as_rfc_3501_says() {
    let raw = b"To: a@b.c, Friends: x@y.z, w@y.z;\r\nFrom: f@g.h\r\n\r\n.\r\n";
    let p = parse(raw);
    let to: Vec<_> = p.envelope.to.iter().map(addr).collect();
    assert_eq!(
        to,
        [
            (None, Some("a".into()), Some("b.c".into())),
            (None, Some("Friends".into()), None),
            (None, Some("x".into()), Some("y.z".into())),
            (None, Some("w".into()), Some("y.z".into())),
            (None, None, None),
        ]
    );
}

const MIXED: &[u8] = b"From: a@example.org\r\n\
Subject: Report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is a multi-part message.\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
See the attachment.\r\n\
--alt\r\n\
Content-Type: text/html; charset=us-ascii\r\n\
\r\n\
<p>See the attachment.</p>\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"report.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
Content-ID: <part1@example.org>\r\n\
Content-Language: en, de\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
Subject: Forwarded\r\n\
\r\n\
inner body\r\n\
--outer--\r\n";

#[test]
fn multipart_trees_keep_every_part_with_its_offsets() {
    let p = parse(MIXED);
    let root = &p.structure;
    assert_eq!(root.subtype, b"mixed");
    assert_eq!(root.children.len(), 3);

    let alt = &root.children[0];
    assert_eq!(
        (alt.media_type.as_slice(), alt.subtype.as_slice()),
        (&b"multipart"[..], &b"alternative"[..])
    );
    assert_eq!(alt.children.len(), 2);
    assert_eq!(body(MIXED, &alt.children[0]), "See the attachment.");
    // The CRLF before a boundary is the boundary's: the body has no line break.
    assert_eq!(alt.children[0].lines, Some(0));
    assert_eq!(alt.children[1].subtype, b"html");
    assert_eq!(body(MIXED, &alt.children[1]), "<p>See the attachment.</p>");

    let pdf = &root.children[1];
    assert_eq!(pdf.media_type, b"application");
    assert_eq!(pdf.encoding.as_deref(), Some(&b"base64"[..]));
    assert_eq!(body(MIXED, pdf), "JVBERi0xLjQK");
    assert_eq!(pdf.lines, None);
    assert_eq!(pdf.id.as_deref(), Some(&b"<part1@example.org>"[..]));
    assert_eq!(pdf.language, ["en", "de"]);
    let d = pdf.disposition.as_ref().unwrap();
    assert_eq!(d.kind, b"attachment");
    assert_eq!(
        (d.params[0].name.as_slice(), d.params[0].value.as_slice()),
        (&b"filename"[..], &b"report.pdf"[..])
    );
    let header =
        std::str::from_utf8(&MIXED[pdf.header_offset as usize..pdf.body_offset as usize]).unwrap();
    assert!(
        header.starts_with("Content-Type: application/pdf"),
        "{header:?}"
    );

    let fwd = &root.children[2];
    assert_eq!(fwd.subtype, b"rfc822");
    assert_eq!(s(&fwd.enclosed.as_ref().unwrap().subject), "Forwarded");
    assert_eq!(fwd.children.len(), 1);
    assert_eq!(body(MIXED, &fwd.children[0]), "inner body");
    assert!(fwd.lines.is_some());

    for c in &root.children {
        assert!(root.body_offset <= c.header_offset && c.end_offset <= root.end_offset);
    }
    assert_eq!(p.preview, "See the attachment.");
}

#[test]
fn odd_input_never_panics_and_still_gives_a_structure() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"no header separator at all",
        b"Subject: lf only\n\nbody\n",
        b"\xff\xfe\x00binary\r\n\r\n\x00\x01",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nunterminated",
        b"Subject: \xe9t\xe9 8-bit\r\nFrom: <>\r\n\r\nx",
    ];
    for raw in inputs {
        let p = parse(raw);
        assert!(p.structure.end_offset <= raw.len() as u64);
        assert!(!p.structure.media_type.is_empty());
    }
    let p = parse(b"Subject: lf only\n\nbody\n");
    assert_eq!(s(&p.envelope.subject), "lf only");
    assert_eq!(body(b"Subject: lf only\n\nbody\n", &p.structure), "body\n");
}

/// The deepest any part of `p` is nested, and the number of parts.
fn depth_and_parts(p: &MimePart) -> (usize, usize) {
    p.walk()
        .fold((0, 0), |(d, n), (depth, _)| (d.max(depth), n + 1))
}

/// Runs `f` on a thread with a small stack: a walk whose depth followed the message's would
/// overflow it.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn nested_multiparts(levels: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for i in 0..levels {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\nthe bottom\r\n");
    for i in (0..levels).rev() {
        raw.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    raw
}

#[test]
fn deep_multipart_nesting_is_cut_at_the_limit_without_recursion() {
    for levels in [1_500, 10_000] {
        let raw = nested_multiparts(levels);
        let p = on_small_stack(move || parse(&raw));
        let (depth, _) = depth_and_parts(&p.structure);
        assert_eq!(depth, MAX_DEPTH - 1, "{levels} levels");
        let deepest = p
            .structure
            .walk()
            .find(|(d, _)| *d == MAX_DEPTH - 1)
            .unwrap()
            .1;
        assert_eq!(
            (deepest.media_type.as_slice(), deepest.subtype.as_slice()),
            (&b"application"[..], &b"octet-stream"[..]),
            "a container past the limit is one opaque part"
        );
        assert!(deepest.children.is_empty());
    }
}

#[test]
fn deep_message_rfc822_nesting_is_cut_at_the_limit_without_recursion() {
    let mut raw = Vec::new();
    for i in 0..2_000 {
        raw.extend_from_slice(
            format!("Subject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"Subject: bottom\r\n\r\nbody\r\n");
    let p = on_small_stack(move || parse(&raw));
    let (depth, parts) = depth_and_parts(&p.structure);
    assert_eq!(depth, MAX_DEPTH - 1);
    assert_eq!(parts, MAX_DEPTH);
    assert_eq!(s(&p.envelope.subject), "level 0");
    assert_eq!(
        s(&p.structure.enclosed.as_ref().unwrap().subject),
        "level 1"
    );
}

#[test]
fn the_number_of_parts_is_bounded() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..30_000 {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    raw.extend_from_slice(b"--b--\r\n");
    let p = parse(&raw);
    let (_, parts) = depth_and_parts(&p.structure);
    assert_eq!(parts, MAX_PARTS);
    assert_eq!(p.structure.end_offset, raw.len() as u64);
}

#[test]
fn a_preview_holds_no_control_characters() {
    let p = parse(b"Subject: x\r\n\r\nnul\0here \x01\x0fbell\x07 and\tTAB\r\n");
    assert_eq!(p.preview, "nul here bell and TAB");
    assert!(!p.preview.chars().any(char::is_control));
}
