//! Every response Strata writes is IMAP a client's parser reads. A session runs over an
//! in-memory duplex, a generated corpus of messages (odd headers, 8-bit and NUL bytes, nested
//! MIME, broken boundaries) is appended, and every command's responses — FETCH with every item,
//! ENVELOPE, BODYSTRUCTURE, LIST, LSUB, STATUS, SEARCH, STORE, errors — are decoded one by one
//! with imap-codec's response decoder, which must take each whole.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imap_codec::decode::Decoder;
use imap_codec::{GreetingCodec, ResponseCodec};
use proptest::prelude::*;
use strata_backend_api::MemoryBackend;
use strata_index::{IndexOptions, StoreId};
use strata_mailstore::{AckPolicy, BodyStores, Mailstore, MailstoreOptions};
use strata_protocol::{Authenticator, Limits, Session, SessionOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Passwords;

#[async_trait]
impl Authenticator for Passwords {
    async fn verify(&self, _user: &str, password: &[u8], _peer: IpAddr) -> Result<bool, String> {
        Ok(password == b"pw")
    }
}

/// A session on a fresh store, and the client's end of its connection.
async fn session(dir: &std::path::Path) -> DuplexStream {
    let backend = Arc::new(MemoryBackend::new());
    let store = Arc::new(Mailstore::new(
        MailstoreOptions {
            index_dir: dir.to_path_buf(),
            append_ack: AckPolicy::SoftDone,
            read_concurrency: 8,
            index: IndexOptions::default(),
            ship: None,
            fts: None,
        },
        Arc::new(move |_| Ok(BodyStores::new(StoreId(0), backend.clone()))),
    ));
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let opts = SessionOptions {
        starttls_available: false,
        tls_active: true,
        plaintext_auth: true,
        failed_login_delay: Duration::ZERO,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        append_limit: 16 << 20,
    };
    let limits = Limits {
        max_command_bytes: 64 * 1024,
        max_literal_bytes: 16 << 20,
        max_command_bytes_before_login: 8 * 1024,
        max_literal_bytes_before_login: 8 * 1024,
        login_timeout: Duration::from_secs(60),
        command_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
    };
    tokio::spawn(async move {
        let mut session = Session::new(opts, store, Arc::new(Passwords));
        let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
        let greeting = strata_protocol::greeting(&session);
        server.write_all(greeting.as_bytes()).await.unwrap();
        let _ = strata_protocol::run(&mut server, &mut session, &limits, &mut shutdown).await;
    });
    client
}

/// Reads one response: a line and the literals it announces, whole.
async fn response(c: &mut DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = [0u8];
        c.read_exact(&mut byte).await.expect("the session answers");
        out.push(byte[0]);
        if !out.ends_with(b"\r\n") {
            continue;
        }
        let line = &out[..out.len() - 2];
        let announced = line
            .strip_suffix(b"}")
            .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|i| &l[i + 1..]))
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
        match announced {
            Some(n) => {
                let mut lit = vec![0u8; n];
                c.read_exact(&mut lit).await.unwrap();
                out.extend_from_slice(&lit);
            }
            None => return out,
        }
    }
}

/// Sends a command and decodes every response up to its tagged status; returns them.
async fn run(c: &mut DuplexStream, tag: &str, command: &[u8]) -> Vec<String> {
    c.write_all(command).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let r = response(c).await;
        let shown = String::from_utf8_lossy(&r).into_owned();
        if r.starts_with(b"+ ") {
            seen.push(shown);
            continue;
        }
        let ext_fetch = command.starts_with(b"v1 ") || command.starts_with(b"v3 ");
        let r = if ext_fetch && r.starts_with(b"* ") && !r.starts_with(b"* OK") {
            // imap-codec decodes neither SAVEDATE nor PREVIEW: their values are checked here
            // against RFC 8514 and RFC 8970, and the rest decoded as usual.
            without_savedate_and_preview(&r)
                .unwrap_or_else(|| panic!("bad SAVEDATE/PREVIEW: {shown:?}"))
        } else {
            r
        };
        let fetch_or_status = r.starts_with(b"* STATUS ")
            || (r.starts_with(b"* ") && r.windows(8).any(|w| w == b" FETCH ("));
        let r = if fetch_or_status {
            // imap-codec decodes no RFC 8474 item: their syntax is checked here.
            without_object_ids(&r).unwrap_or_else(|| panic!("bad object id: {shown:?}"))
        } else {
            r
        };
        if r.starts_with(b"* ESEARCH") {
            // imap-codec has no ESEARCH decoder: RFC 4731's grammar is checked instead.
            assert!(esearch_grammar(&shown), "not RFC 4731 ESEARCH: {shown:?}");
            seen.push(shown);
            continue;
        }
        // imap-codec decodes no LIST extended data (RFC 5258's `mbox-list-extended`): the one
        // item Strata sends, CHILDINFO, is checked here and the rest decoded as usual.
        const CHILDINFO: &[u8] = b" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n";
        let r = match r.strip_suffix(CHILDINFO) {
            Some(basic) if r.starts_with(b"* LIST ") => [basic, b"\r\n"].concat(),
            _ => r,
        };
        match ResponseCodec::default().decode(&r) {
            Ok((rest, _)) => assert!(
                rest.is_empty(),
                "{:?} left over from {shown:?}",
                String::from_utf8_lossy(rest)
            ),
            Err(e) => panic!(
                "undecodable response to {:?}: {e:?}\n{shown}",
                String::from_utf8_lossy(command)
            ),
        }
        let done = r.starts_with(format!("{tag} ").as_bytes());
        seen.push(shown);
        if done {
            return seen;
        }
    }
}

/// A FETCH response's SAVEDATE and PREVIEW items taken out, once their values have RFC 8514's
/// and RFC 8970's syntax: they must be its last items.
fn without_savedate_and_preview(r: &[u8]) -> Option<Vec<u8>> {
    let find = |name: &[u8]| r.windows(name.len()).position(|w| w == name);
    let start = find(b" SAVEDATE ").or_else(|| find(b" PREVIEW "))?;
    let (head, mut rest) = (&r[..start], &r[start..]);
    if let Some(after) = rest.strip_prefix(b" SAVEDATE ") {
        // date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
        let date = after.get(..28)?;
        let text = std::str::from_utf8(&date[1..27]).ok()?;
        let ok = date[0] == b'"'
            && date[27] == b'"'
            && chrono::DateTime::parse_from_str(text, "%d-%b-%Y %H:%M:%S %z").is_ok();
        if !ok {
            return None;
        }
        rest = &after[28..];
    }
    if let Some(after) = rest.strip_prefix(b" PREVIEW ") {
        rest = if let Some(a) = after.strip_prefix(b"NIL") {
            a
        } else if let Some(q) = after.strip_prefix(b"\"") {
            // quoted = DQUOTE *(TEXT-CHAR except quoted-specials / "\\" quoted-specials) DQUOTE
            let mut i = 0;
            loop {
                match *q.get(i)? {
                    b'"' => break,
                    b'\\' if matches!(q.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                    b'\\' | b'\r' | b'\n' | 0 | 0x80.. => return None,
                    _ => i += 1,
                }
            }
            &q[i + 1..]
        } else {
            let open = after.strip_prefix(b"{")?;
            let close = open.iter().position(|&b| b == b'}')?;
            let n: usize = std::str::from_utf8(&open[..close]).ok()?.parse().ok()?;
            let data = open.get(close + 3..close + 3 + n)?;
            // At most 256 characters of UTF-8 (RFC 8970 3).
            if std::str::from_utf8(data).ok()?.chars().count() > 256 {
                return None;
            }
            &open[close + 3 + n..]
        };
    }
    (rest == b")\r\n").then(|| [head, rest].concat())
}

/// A FETCH or STATUS response with its EMAILID, THREADID and MAILBOXID items taken out, once
/// each has RFC 8474's syntax: `NAME (objectid)` (or `THREADID NIL`), objectid being 1 to 255
/// letters, digits, `_` or `-`.
fn without_object_ids(r: &[u8]) -> Option<Vec<u8>> {
    let mut out = r.to_vec();
    for name in [&b"EMAILID "[..], b"THREADID ", b"MAILBOXID "] {
        while let Some(at) = out.windows(name.len()).position(|w| w == name) {
            let value = &out[at + name.len()..];
            let len = if name == b"THREADID " && value.starts_with(b"NIL") {
                3
            } else {
                let inner = value.strip_prefix(b"(")?;
                let close = inner.iter().position(|&b| b == b')')?;
                let id = &inner[..close];
                let ok = (1..=255).contains(&id.len())
                    && id
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return None;
                }
                close + 2
            };
            let mut end = at + name.len() + len;
            let mut start = at;
            if out.get(end) == Some(&b' ') {
                end += 1;
            } else if start > 0 && out[start - 1] == b' ' {
                start -= 1;
            }
            out.drain(start..end);
        }
    }
    // A FETCH of object ids alone leaves an empty list, which msg-att does not allow: a
    // stand-in item lets the rest be decoded.
    if let Some(at) = out.windows(9).position(|w| w == b" FETCH ()") {
        out.splice(at + 8..at + 8, b"FLAGS ()".iter().copied());
    }
    Some(out)
}

/// Whether `line` is an ESEARCH response as RFC 4731 section 5 (with RFC 7162's MODSEQ and
/// RFC 9394's PARTIAL) writes it.
fn esearch_grammar(line: &str) -> bool {
    let Some(rest) = line
        .strip_prefix("* ESEARCH")
        .and_then(|r| r.strip_suffix("\r\n"))
    else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let nz = |s: &str| number(s) && !s.starts_with('0');
    let set = |s: &str| {
        s.split(',').all(|r| {
            let mut ends = r.splitn(2, ':');
            ends.all(|e| nz(e) || e == "*")
        })
    };
    let mut words = rest.split(' ').skip(1).peekable();
    if words.peek().is_some_and(|w| *w == "(TAG") {
        words.next();
        let Some(tag) = words.next() else {
            return false;
        };
        if !(tag.starts_with('"') && tag.ends_with("\")")) || tag.len() < 4 {
            return false;
        }
    }
    if words.peek() == Some(&"UID") {
        words.next();
    }
    while let Some(name) = words.next() {
        let Some(value) = words.next() else {
            return false;
        };
        let ok = match name {
            "MIN" | "MAX" => nz(value),
            "ALL" => set(value),
            "COUNT" | "MODSEQ" => number(value),
            "PARTIAL" => {
                let Some(range) = value.strip_prefix('(') else {
                    return false;
                };
                let Some(found) = words.next().and_then(|f| f.strip_suffix(')')) else {
                    return false;
                };
                let (a, b) = range.split_once(':').unwrap_or(("", ""));
                let neg = a.starts_with('-') && b.starts_with('-');
                let (a, b) = if neg { (&a[1..], &b[1..]) } else { (a, b) };
                nz(a) && nz(b) && (found == "NIL" || set(found))
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A header value from a few troublesome pieces.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"plain words".to_vec()),
            Just(b"\"quoted \\\" name\" <q@example.org>".to_vec()),
            Just(b"=?utf-8?q?J=C3=B6rg?= <j@example.org>".to_vec()),
            Just("Renée Ünïcode <r@exämple.org>".as_bytes().to_vec()),
            Just(b"group: a@b.c, d@e.f;".to_vec()),
            Just(b"<@route:user@domain> (comment (nested))".to_vec()),
            Just(b"bare".to_vec()),
            Just(b"\\ back\\slash \"".to_vec()),
            Just(b"with \x01 control and \x7f del".to_vec()),
            Just(b"\xff\xfe raw 8-bit".to_vec()),
            Just(b"(unclosed comment".to_vec()),
            Just(b"tab\there".to_vec()),
            "[ -~]{0,40}".prop_map(|s| s.into_bytes()),
        ],
        1..4,
    )
    .prop_map(|parts| parts.join(&b" "[..]))
}

/// A body part, possibly a multipart or a message of its own, `depth` levels deep at most.
fn part(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (
        prop_oneof![
            Just("text/plain; charset=utf-8"),
            Just("text/html"),
            Just("application/octet-stream; name=\"a b.bin\""),
            Just("image/png; name*0=\"lo\"; name*1=\"ng.png\""),
            Just("garbage"),
            Just("text/plain; format=flowed; charset*=us-ascii'en'x"),
        ],
        prop_oneof![
            Just(""),
            Just("base64"),
            Just("quoted-printable"),
            Just("8bit")
        ],
        prop::option::of(Just("attachment; filename=\"x.txt\"")),
        // Any byte but NUL, which an RFC 3501 literal cannot carry (APPEND refuses it).
        prop::collection::vec(1u8.., 0..200),
    )
        .prop_map(|(ct, cte, disp, body)| {
            let mut p = format!("Content-Type: {ct}\r\n").into_bytes();
            if !cte.is_empty() {
                p.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
            }
            if let Some(d) = disp {
                p.extend_from_slice(
                    format!("Content-Disposition: {d}\r\nContent-Language: en, de\r\n").as_bytes(),
                );
            }
            p.extend_from_slice(b"\r\n");
            p.extend_from_slice(&body);
            p
        })
        .boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        3 => leaf,
        1 => (prop::collection::vec(part(depth - 1), 0..4), any::<bool>()).prop_map(
            move |(children, closed)| {
                let b = format!("b{depth}");
                let mut p = format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\npreamble\r\n").into_bytes();
                for c in children {
                    p.extend_from_slice(format!("--{b}\r\n").as_bytes());
                    p.extend_from_slice(&c);
                    p.extend_from_slice(b"\r\n");
                }
                if closed {
                    p.extend_from_slice(format!("--{b}--\r\n").as_bytes());
                }
                p
            }
        ),
        1 => (header_value(), part(depth - 1)).prop_map(|(subject, inner)| {
            let mut p = b"Content-Type: message/rfc822\r\n\r\nSubject: ".to_vec();
            p.extend_from_slice(&subject);
            p.extend_from_slice(b"\r\n");
            p.extend_from_slice(&inner);
            p
        }),
    ]
    .boxed()
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (header_value(), header_value(), header_value(), part(4)).prop_map(|(from, to, subject, body)| {
        let mut m = Vec::new();
        for (name, v) in [("From", &from), ("To", &to), ("Cc", &to), ("Subject", &subject)] {
            m.extend_from_slice(name.as_bytes());
            m.extend_from_slice(b": ");
            m.extend_from_slice(v);
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"Date: Mon, 23 Nov 2026 12:00:00 +0100\r\nMessage-ID: <x@y>\r\nMIME-Version: 1.0\r\n");
        m.extend_from_slice(&body);
        m
    })
}

const COMMANDS: &[&str] = &[
    "f1 FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE)",
    "f2 FETCH 1:* (BODY.PEEK[] BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[1.1] BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.10>)",
    "f3 FETCH 1:* (BODY.PEEK[1.MIME] BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[HEADER.FIELDS (From Subject X-None)] BODY.PEEK[HEADER.FIELDS.NOT (To)])",
    "f4 FETCH 1:* (RFC822 RFC822.HEADER RFC822.TEXT)",
    "f5 FETCH 1:* ALL",
    "f6 FETCH 1:* FULL",
    "s1 STORE 1:* +FLAGS (\\Flagged $Custom)",
    "s2 SEARCH TEXT body",
    "s3 UID SEARCH FROM example OR SUBJECT x NOT SEEN",
    "s4 SEARCH HEADER X-None \"\"",
    "l1 LIST \"\" *",
    "l2 LSUB \"\" %",
    "l3 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
    "l4 STATUS INBOX (DELETED DELETED-STORAGE)",
    "c1 ENABLE CONDSTORE",
    "f7 FETCH 1:* (UID FLAGS MODSEQ)",
    "f8 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
    "c2 STORE 1:* (UNCHANGEDSINCE 1) +FLAGS.SILENT (\\Answered)",
    "c3 STORE 1:* -FLAGS (\\Answered)",
    "c4 SEARCH MODSEQ 1",
    "c5 STATUS INBOX (HIGHESTMODSEQ MESSAGES)",
    "c6 EXAMINE INBOX (CONDSTORE)",
    "c7 SELECT INBOX",
    "e1 FETCH 99 FLAGS",
    "e2 FROBNICATE",
    "e3 SELECT \"no such\"",
    "e4 STORE 1 +FLAGS (\\Bogus)",
    "e5 NAMESPACE",
    "e6 ID NIL",
    "e7 CAPABILITY",
    "e8 NOOP",
    "x1 STATUS INBOX (SIZE)",
    "x2 SEARCH YOUNGER 100000 NOT OLDER 5",
    "b1 FETCH 1:* (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[]<0.20>)",
    "q1 ENABLE QRESYNC",
    "q2 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
    "q3 SELECT INBOX (QRESYNC (1 1 1:5))",
    "q4 STORE 1 +FLAGS.SILENT (\\Deleted)",
    "q5 EXPUNGE",
    "q6 EXAMINE INBOX (QRESYNC (1 1))",
    "r1 SEARCH RETURN (MIN MAX COUNT ALL) ALL",
    "r2 UID SEARCH RETURN (PARTIAL -1:-2 COUNT) TEXT body",
    "r3 UID SEARCH RETURN (SAVE MIN) MODSEQ 1",
    "r4 FETCH $ (UID FLAGS)",
    "r5 SEARCH RETURN () NOT ALL",
    "r6 SEARCH RETURN (PARTIAL 1:1 MAX) $",
    "r7 SEARCH RETURN (BOGUS) ALL",
    "m1 CREATE Kids/Sent (USE (\\Sent))",
    "m2 SUBSCRIBE Kids/Sent",
    "m3 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN STATUS (MESSAGES SIZE))",
    "m4 LIST (SPECIAL-USE) \"\" (INBOX \"K*\") RETURN (SUBSCRIBED)",
    "m5 LIST \"\" * RETURN (STATUS (UNSEEN HIGHESTMODSEQ))",
    "m6 CREATE Bad (USE (\\All))",
    "v1 FETCH 1:* (UID SAVEDATE PREVIEW)",
    "v2 SEARCH OR SAVEDSINCE 1-Jan-2000 SAVEDBEFORE \"1-Jan-2000\" SAVEDATESUPPORTED",
    "v3 UID FETCH 1:* PREVIEW (LAZY)",
    "z1 ENABLE IMAP4rev2",
    "z2 SELECT INBOX",
    "z3 UID SEARCH ALL",
    "z4 FETCH 1:* (FLAGS)",
    "z5 CREATE \"Überraschung/été\"",
    "z6 LIST \"\" *",
    "z7 DELETE \"Überraschung\"",
    "z8 STATUS INBOX (RECENT)",
    "z9 STATUS \"Überraschung/été\" (MESSAGES)",
    "o1 FETCH 1:* (UID EMAILID THREADID)",
    "o2 FETCH 1:* (THREADID)",
    "o3 STATUS INBOX (MAILBOXID MESSAGES)",
    "o4 STATUS INBOX (MAILBOXID)",
    "o5 CREATE Obj",
    "o6 LIST \"\" Obj RETURN (STATUS (MAILBOXID UIDNEXT))",
    "o7 SEARCH OR EMAILID M00 NOT THREADID T00",
    "o8 EXAMINE Obj",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_response_decodes(messages in prop::collection::vec(message(), 1..5)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut c = session(dir.path()).await;
            let greeting = response(&mut c).await;
            GreetingCodec::default().decode(&greeting).expect("the greeting decodes");
            run(&mut c, "a1", b"a1 LOGIN alice pw\r\n").await;
            for (i, m) in messages.iter().enumerate() {
                let tag = format!("p{i}");
                let mut cmd = format!("{tag} APPEND INBOX (\\Seen) {{{}+}}\r\n", m.len()).into_bytes();
                cmd.extend_from_slice(m);
                cmd.extend_from_slice(b"\r\n");
                let seen = run(&mut c, &tag, &cmd).await;
                assert!(seen.last().is_some_and(|s| s.starts_with(&format!("{tag} OK"))), "{seen:?}");
            }
            run(&mut c, "a2", b"a2 SELECT INBOX\r\n").await;
            for cmd in COMMANDS {
                let tag = cmd.split(' ').next().unwrap();
                let seen = run(&mut c, tag, format!("{cmd}\r\n").as_bytes()).await;
                if tag.starts_with('f') {
                    let fetches = seen.iter().filter(|r| r.contains(" FETCH (")).count();
                    assert_eq!(fetches, messages.len(), "{cmd}: {seen:?}");
                }
            }
            run(&mut c, "z1", b"z1 LOGOUT\r\n").await;
        });
    }
}
