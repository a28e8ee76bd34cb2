//! Tricky messages and what RFC 3501 (over RFC 2045-2049, 2231 and 5322) says a server answers
//! for them: BODYSTRUCTURE, ENVELOPE and body sections, each expectation worked out from the
//! RFCs' text (and agreeing with what mature servers answer). A change to the parser or the
//! renderer that alters any answer fails here.

use strata_protocol::encode::Out;
use strata_protocol::structure::{
    SectionBytes, SectionSpec, body_structure, envelope, filter_fields, section_bytes,
};

struct Case {
    name: &'static str,
    raw: &'static [u8],
    bodystructure: &'static str,
    envelope: Option<&'static str>,
    sections: &'static [(&'static str, &'static str)],
}

fn spec(s: &str) -> SectionSpec {
    let upper = s.to_ascii_uppercase();
    let (path, rest): (Vec<u32>, &str) = {
        let mut nums = Vec::new();
        let mut rest = upper.as_str();
        loop {
            let end = rest.find('.').unwrap_or(rest.len());
            match rest[..end].parse() {
                Ok(n) => {
                    nums.push(n);
                    rest = rest.get(end + 1..).unwrap_or("");
                }
                Err(_) => break,
            }
        }
        (nums, rest)
    };
    let part = (!path.is_empty()).then(|| path.clone());
    match rest {
        "" if path.is_empty() => SectionSpec::Full,
        "" => SectionSpec::Part(path),
        "MIME" => SectionSpec::Mime(path),
        "HEADER" => SectionSpec::Header(part),
        "TEXT" => SectionSpec::Text(part),
        fields => {
            let (keep, list) = match fields.strip_prefix("HEADER.FIELDS.NOT ") {
                Some(l) => (false, l),
                None => (
                    true,
                    fields.strip_prefix("HEADER.FIELDS ").expect("a section"),
                ),
            };
            SectionSpec::Fields {
                part,
                names: list
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(' ')
                    .map(|n| n.as_bytes().to_vec())
                    .collect(),
                keep,
            }
        }
    }
}

fn section(raw: &[u8], root: &strata_index::MimePart, s: &str) -> Vec<u8> {
    match section_bytes(root, &spec(s)) {
        SectionBytes::Range(r) => raw[r.start as usize..r.end as usize].to_vec(),
        SectionBytes::Fields {
            header,
            names,
            keep,
        } => filter_fields(
            &raw[header.start as usize..header.end as usize],
            &names,
            keep,
        ),
        SectionBytes::Empty => Vec::new(),
    }
}

const TEXT: &str = r#""text" "plain" ("charset" "us-ascii") NIL NIL "7BIT""#;

fn text_part(size: usize, lines: usize) -> String {
    format!("({TEXT} {size} {lines} NIL NIL NIL NIL)")
}

fn cases() -> Vec<(Case, String)> {
    // Expectations that are easier to build than to write out.
    let mut out = Vec::new();
    let mut add = |c: Case, expect: String| out.push((c, expect));

    // RFC 2046 5.1.1: a body part may be empty, and an empty part between two boundaries
    // is a part (numbering does not skip it); the CRLF before a boundary is the boundary's.
    add(
        Case {
            name: "empty parts between boundaries are parts",
            raw: b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\r\n--b\r\n--b\r\nContent-Type: text/plain\r\n\r\nthree\r\n--b--\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[("1", ""), ("2", ""), ("3", "three"), ("3.MIME", "Content-Type: text/plain\r\n\r\n")],
        },
        format!(
            "({}{}{} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)",
            text_part(0, 0),
            text_part(0, 0),
            text_part(5, 0)
        ),
    );

    // RFC 2046 5.1.2: an outer boundary ends the parts inside it even when an inner
    // multipart was never closed.
    add(
        Case {
            name: "an outer boundary ends an unclosed inner multipart",
            raw: b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--outer\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--outer--\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[("1.1", "inner text"), ("2", "second"), ("1.2", "")],
        },
        format!(
            "(({} \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL){} \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
            text_part(10, 0),
            text_part(6, 0)
        ),
    );

    // RFC 2046 5.1.5: in a digest, a part without Content-Type is message/rfc822.
    add(
        Case {
            name: "digest parts default to message/rfc822",
            raw: b"Content-Type: multipart/digest; boundary=\"d\"\r\n\r\n--d\r\n\r\nFrom: a@b.c\r\nSubject: one\r\n\r\nbody one\r\n--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[
                ("1", "From: a@b.c\r\nSubject: one\r\n\r\nbody one"),
                ("1.HEADER", "From: a@b.c\r\nSubject: one\r\n\r\n"),
                ("1.TEXT", "body one"),
                ("1.1", "body one"),
                ("2", "not a message"),
            ],
        },
        format!(
            "((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 37 (NIL \"one\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL) {} 3 NIL NIL NIL NIL){} \"digest\" (\"boundary\" \"d\") NIL NIL NIL)",
            text_part(8, 0),
            text_part(13, 0)
        ),
    );

    // A multipart must have a part (RFC 2046 5.1.1); without a boundary it has one, empty.
    add(
        Case {
            name: "a multipart without a boundary has one empty part",
            raw: b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\njust text\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[("1", ""), ("TEXT", "just text\r\n")],
        },
        format!("({} \"mixed\" NIL NIL NIL NIL)", text_part(0, 0)),
    );
    add(
        Case {
            name: "a multipart whose boundary never appears has one empty part",
            raw: b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno parts here\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[("1", "")],
        },
        format!(
            "({} \"mixed\" (\"boundary\" \"zz\") NIL NIL NIL)",
            text_part(0, 0)
        ),
    );

    // RFC 3501 6.4.5: a message that is not multipart has only a part 1, its body.
    add(
        Case {
            name: "a single-part message has only part 1",
            raw: b"Subject: one\r\n\r\nline one\r\nline two\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[
                ("1", "line one\r\nline two\r\n"),
                ("1.1", ""),
                ("2", ""),
                ("1.MIME", "Subject: one\r\n\r\n"),
                ("TEXT", "line one\r\nline two\r\n"),
            ],
        },
        format!("({TEXT} 20 2 NIL NIL NIL NIL)"),
    );

    // RFC 3501 6.4.5: the parts of a message/rfc822 part are those of the enclosed message,
    // and part 1 of a message that is itself message/rfc822 is the whole enclosed message.
    add(
        Case {
            name: "a message whose type is message/rfc822",
            raw: b"Content-Type: message/rfc822\r\n\r\nFrom: x@y.z\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\npart one\r\n--q--\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[
                ("1", "From: x@y.z\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\npart one\r\n--q--\r\n"),
                ("1.HEADER", "From: x@y.z\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"),
                ("1.HEADER.FIELDS (SUBJECT)", "Subject: inner\r\n\r\n"),
                ("1.HEADER.FIELDS.NOT (SUBJECT CONTENT-TYPE)", "From: x@y.z\r\n\r\n"),
                ("1.TEXT", "--q\r\n\r\npart one\r\n--q--\r\n"),
                ("1.MIME", "Content-Type: message/rfc822\r\n\r\n"),
                ("1.1", "part one"),
                ("1.1.MIME", "\r\n"),
                ("1.2", ""),
                ("HEADER", "Content-Type: message/rfc822\r\n\r\n"),
            ],
        },
        format!(
            "(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 98 (NIL \"inner\" ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) ((NIL NIL \"x\" \"y.z\")) NIL NIL NIL NIL NIL) ({} \"mixed\" (\"boundary\" \"q\") NIL NIL NIL) 8 NIL NIL NIL NIL)",
            text_part(8, 0)
        ),
    );

    // RFC 2045 5.2: charset us-ascii is the default of text types; a Content-Type that does
    // not parse, or has no subtype, means text/plain; charset=us-ascii.
    add(
        Case {
            name: "text parts always say their charset",
            raw: b"MIME-Version: 1.0\r\nContent-Type: text/plain; format=flowed\r\n\r\nx\r\n",
            bodystructure: "(\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"us-ascii\") NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL)",
            envelope: None,
            sections: &[],
        },
        String::new(),
    );
    add(
        Case {
            name: "an invalid Content-Type means text/plain",
            raw: b"MIME-Version: 1.0\r\nContent-Type: image\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n",
            bodystructure: "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"base64\" 6 1 NIL NIL NIL NIL)",
            envelope: None,
            sections: &[],
        },
        String::new(),
    );
    // RFC 2045 4: without MIME-Version (or a Content-Type), Content-* fields are not MIME's.
    add(
        Case {
            name: "Content-* fields without MIME are ignored",
            raw: b"Content-Transfer-Encoding: base64\r\nContent-ID: <x@y>\r\n\r\nplain\r\n",
            bodystructure: "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL)",
            envelope: None,
            sections: &[],
        },
        String::new(),
    );

    // Lines are counted in the part's own body; the CRLF before a boundary is not in it.
    add(
        Case {
            name: "line counts",
            raw: b"Content-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n\r\n--foo bar\r\nContent-Type: text/html; charset=us-ascii\r\n\r\nhello\r\n\r\n--foo bar--\r\n",
            bodystructure: "",
            envelope: None,
            sections: &[("1", "hello\r\n")],
        },
        "((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)".into(),
    );

    // RFC 2231: continuations joined; an encoded value stays encoded under `name*`.
    add(
        Case {
            name: "RFC 2231 parameters",
            raw: b"MIME-Version: 1.0\r\nContent-Type: application/pdf; name*0=\"long\"; name*1=\"name.pdf\"\r\nContent-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\r\nContent-Language: en, de\r\n\r\nx",
            bodystructure: "(\"application\" \"pdf\" (\"name\" \"longname.pdf\") NIL NIL \"7BIT\" 1 NIL (\"attachment\" (\"filename*\" \"utf-8''%E2%82%AC.pdf\")) (\"en\" \"de\") NIL)",
            envelope: None,
            sections: &[],
        },
        String::new(),
    );

    // RFC 3501 7.4.2 and RFC 5322 3.4, 4.4, 4.5.3: groups, routes, comments, what is missing,
    // repeated destination fields.
    add(
        Case {
            name: "envelope address forms",
            raw: b"Date: Sat, 01 Feb 2007 01:02:03 +0200\r\nFrom: foo\r\nSender: <@route:user@domain>\r\nReply-To: user@domain (Real Name)\r\nTo: a@b.c\r\nCc: group:;, group2: (foo) ;\r\nTo: \"D, E\" <d@e.f>\r\nSubject: s\r\n\r\n",
            bodystructure: "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
            envelope: Some("(\"Sat, 01 Feb 2007 01:02:03 +0200\" \"s\" ((NIL NIL \"foo\" \"MISSING_DOMAIN\")) ((NIL \"@route\" \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) ((NIL NIL \"a\" \"b.c\")(\"D, E\" NIL \"d\" \"e.f\")) ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)"),
            sections: &[],
        },
        String::new(),
    );
    add(
        Case {
            name: "empty Sender and Reply-To fall back to From",
            raw: b"From: user@domain (Real Name)\r\nSender: \r\nReply-To: \r\n\r\nbody\r\n",
            bodystructure: "",
            envelope: Some(
                "(NIL NIL ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)",
            ),
            sections: &[],
        },
        text_part(6, 1),
    );

    // Bare LF line ends, as some tools store mail.
    add(
        Case {
            name: "LF-only mail",
            raw: b"Content-Type: multipart/mixed; boundary=b\n\npreamble\n--b\n\none\ntwo\n--b--\n",
            bodystructure: "",
            envelope: None,
            sections: &[
                ("1", "one\ntwo"),
                ("TEXT", "preamble\n--b\n\none\ntwo\n--b--\n"),
            ],
        },
        format!(
            "({} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)",
            text_part(7, 1)
        ),
    );

    // A boundary line inside a part's header ends the part there (the part has no body).
    add(
        Case {
            name: "a part cut short by a boundary in its header",
            raw: b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n--b\r\n\r\nlast\r\n--b--",
            bodystructure: "",
            envelope: None,
            sections: &[("1", ""), ("1.MIME", "Content-Type: text/html"), ("2", "last")],
        },
        format!(
            "((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL){} \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)",
            text_part(4, 0)
        ),
    );
    out
}

#[test]
fn every_case_answers_what_the_rfcs_say() {
    let mut failures = Vec::new();
    for (case, built) in cases() {
        let parsed = strata_mailstore::parse(case.raw);
        let want = if case.bodystructure.is_empty() {
            built
        } else {
            case.bodystructure.to_string()
        };
        let mut o = Out::default();
        body_structure(&mut o, &parsed.structure, true);
        let got = String::from_utf8_lossy(&o.buf).into_owned();
        if got != want {
            failures.push(format!(
                "{}: BODYSTRUCTURE\n  got  {got}\n  want {want}",
                case.name
            ));
        }
        if let Some(want) = case.envelope {
            let mut o = Out::default();
            envelope(&mut o, &parsed.envelope);
            let got = String::from_utf8_lossy(&o.buf).into_owned();
            if got != want {
                failures.push(format!(
                    "{}: ENVELOPE\n  got  {got}\n  want {want}",
                    case.name
                ));
            }
        }
        for (s, want) in case.sections {
            let got = section(case.raw, &parsed.structure, s);
            if got != want.as_bytes() {
                failures.push(format!(
                    "{}: BODY[{s}]\n  got  {:?}\n  want {want:?}",
                    case.name,
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
