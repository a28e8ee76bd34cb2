//! The full-text index: SEARCH BODY, TEXT and the header keys answer exactly what they answer
//! without it (on a generated corpus with charsets, transfer encodings, HTML, encoded words in
//! subjects and addresses, folded fields and attachments), while it catches up, once it has
//! (without reading a body from the store), after expunges, after `strata fts rebuild`, and
//! after the index is damaged.

use std::time::Duration;

use strata_integration_tests::{Client, TestServer, read_delay, until};

/// Words the corpus is made of: ASCII, Latin-1, Greek, German, with case variants.
const WORDS: &[&str] = &[
    "alpha",
    "Beta",
    "GAMMA",
    "café",
    "Grüße",
    "σοφία",
    "ΟΔΟΣ",
    "noon",
    "quarterly",
    "figures",
    "Köln",
    "straße",
    "été",
    "naïve",
    "x-ray",
    "lunch",
    "budget",
    "İstanbul",
];

/// A small deterministic generator, so both servers get the same corpus.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[self.next() % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Quoted-printable of Latin-1 text (every non-ASCII byte as =XX).
fn qp_latin1(text: &str) -> String {
    text.chars()
        .map(|c| match c as u32 {
            0..=0x7f if c != '=' => c.to_string(),
            n if n <= 0xff => format!("={n:02X}"),
            _ => "?".into(),
        })
        .collect()
}

/// Message `i` of the corpus: its shape cycles through seven kinds.
fn message(i: usize, rng: &mut Lcg) -> Vec<u8> {
    let subject = rng.words(3);
    let body = rng.words(12);
    // Addresses as a name, as a comment and as encoded words; a folded field the index does
    // not keep.
    let from = match i % 3 {
        0 => format!("Sender {i} <s{i}@example.org>"),
        1 => format!("s{i}@example.org (Sender {i})"),
        _ => format!("=?UTF-8?Q?S=C3=A9nder_{i}?=\r\n <s{i}@example.org>"),
    };
    let mailer = if i.is_multiple_of(2) {
        format!("Corpus {i}")
    } else {
        format!("Corpus {i}\r\n\tfolded café")
    };
    let head = format!(
        "From: {from}\r\nTo: alice@example.org\r\nMessage-ID: <fts{i}@example.org>\r\nX-Mailer: {mailer}\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
    );
    let mut m = match i % 7 {
        0 => format!("{head}Subject: {subject}\r\n\r\n{body}\r\n").into_bytes(),
        1 => format!(
            "{head}Subject: =?UTF-8?B?{}?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(subject.as_bytes()),
            b64(body.as_bytes())
        )
        .into_bytes(),
        2 => format!(
            "{head}Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{} caf=E9 =3D soft=\r\nbreak\r\n",
            qp_latin1(&body)
        )
        .into_bytes(),
        3 => format!(
            "{head}Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><b>{body}</b> &amp; more</p>\r\n--b{i}--\r\n"
        )
        .into_bytes(),
        4 => format!(
            "{head}Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m{i}\"\r\n\r\n--m{i}\r\nContent-Type: text/plain\r\n\r\n{body}\r\n--m{i}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--m{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsignature {i} noon\r\n--m{i}--\r\n",
            b64(b"secretword inside an attachment")
        )
        .into_bytes(),
        5 => {
            // 8-bit windows-1252 text, and raw 8-bit bytes in a header.
            let mut m = format!("{head}Subject: {subject} ").into_bytes();
            m.extend_from_slice(b"\xe9t\xe9\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            m.extend_from_slice(format!("{} ", body.replace(['é', 'ü', 'σ'], "")).as_bytes());
            m.extend_from_slice(b"caf\xe9 na\xefve \x80uro\r\n");
            m
        }
        _ => format!(
            "{head}Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}=\r\n =C3=89T=C3=89 ends\r\n",
            body.replace('=', "=3D")
        )
        .into_bytes(),
    };
    if i.is_multiple_of(5) {
        // Some longer ones, so candidates are a real subset.
        m.extend_from_slice(format!("{}\r\n", rng.words(200)).as_bytes());
    }
    m
}

/// The searches compared: needles of every kind, alone and combined with other keys.
fn searches() -> Vec<Vec<u8>> {
    let needles: &[&str] = &[
        "alpha",
        "ALPHA",
        "café",
        "CAFÉ",
        "caf=E9",
        "=3D",
        "grüße",
        "GRÜSSE",
        "σοφία",
        "ΣΟΦΊΑ",
        "οδος",
        "<b>",
        "bold",
        "&amp;",
        "& more",
        "x-mailer",
        "corpus 1",
        "a",
        "zz",
        "ox",
        "",
        "secretword",
        "noon",
        "soft",
        "softbreak",
        "été",
        "ÉTÉ",
        "na",
        "naïve",
        "€uro",
        "uro",
        "istanbul",
        "i̇stanbul",
        "straße",
        "STRASSE",
        "ends",
        "pha be",
        "fts3@example",
        "sender 1 <s1@",
        "s4@example.org (sender",
        "sénder",
        "SÉNDER 2",
        "nder 5 <s5",
        "folded caf",
        "folded café",
        "corpus 3",
        "alice@",
    ];
    let literal = |s: &str| format!("{{{}+}}\r\n{s}", s.len());
    let mut out = Vec::new();
    for n in needles {
        for key in [
            "BODY",
            "TEXT",
            "SUBJECT",
            "FROM",
            "TO",
            "HEADER X-Mailer",
            "HEADER Subject",
        ] {
            out.push(format!("UID SEARCH CHARSET UTF-8 {key} {}", literal(n)));
        }
        out.push(format!(
            "UID SEARCH CHARSET UTF-8 BODY {} NOT BODY {}",
            literal(n),
            literal("noon")
        ));
        out.push(format!(
            "UID SEARCH CHARSET UTF-8 OR BODY {} TEXT {} UNSEEN",
            literal(n),
            literal("quarterly")
        ));
    }
    out.push("UID SEARCH BODY lunch SUBJECT budget".into());
    out.push("UID SEARCH TEXT lunch BODY budget FROM sender".into());
    out.push("UID SEARCH NOT TEXT alpha".into());
    out.into_iter().map(String::into_bytes).collect()
}

async fn answers(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for s in searches() {
        let tag = c.tag();
        c.send_raw(&[format!("{tag} ").as_bytes(), &s, b"\r\n"].concat())
            .await;
        let r = c.until_tagged(&tag).await;
        assert!(r.is_ok(), "{}: {r:?}", String::from_utf8_lossy(&s));
        let hits: Vec<&String> = r
            .untagged
            .iter()
            .filter(|l| l.starts_with("SEARCH"))
            .collect();
        out.push(format!("{} => {hits:?}", String::from_utf8_lossy(&s)));
    }
    out
}

fn assert_same(with: &[String], without: &[String], when: &str) {
    for (a, b) in with.iter().zip(without) {
        assert_eq!(a, b, "{when}: with the full-text index / without");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_answers_the_same_with_and_without_the_full_text_index() {
    let mut with = TestServer::start_with(|c| {
        c.storage.main.delay = Some(read_delay(Duration::ZERO, Duration::ZERO))
    })
    .await;
    let without = TestServer::start_with(|c| c.index.fts.enabled = false).await;
    let (mut a, mut b) = (with.login("alice").await, without.login("alice").await);
    let mut rng = Lcg(17);
    for i in 0..70 {
        let m = message(i, &mut rng);
        a.append("INBOX", if i.is_multiple_of(3) { "\\Seen" } else { "" }, &m)
            .await;
        b.append("INBOX", if i.is_multiple_of(3) { "\\Seen" } else { "" }, &m)
            .await;
    }
    a.ok("SELECT INBOX").await;
    b.ok("SELECT INBOX").await;
    let reference = answers(&mut b).await;
    // Some matches must exist, or the comparison says little.
    let matched = reference.iter().filter(|l| l.contains("SEARCH ")).count();
    assert!(matched > reference.len() / 2, "{reference:#?}");
    assert!(
        reference.iter().any(|l| l
            .starts_with("UID SEARCH CHARSET UTF-8 BODY {10+}\r\nsecretword")
            && l.ends_with("[\"SEARCH\"]")),
        "attachments are not searched: {reference:#?}"
    );
    // While the indexer catches up, and after.
    assert_same(&answers(&mut a).await, &reference, "catching up");
    with.fts_caught_up("alice").await;
    let stats = || with.server().backends.delay_stats();
    let before = stats().reads;
    // The indexer read each body once (the counter counts).
    assert!(before >= 70, "{:?}", stats());
    assert_same(&answers(&mut a).await, &reference, "caught up");
    assert_eq!(
        stats().reads,
        before,
        "an indexed body was read from the store"
    );

    // Expunged contents leave the full-text index.
    for c in [&mut a, &mut b] {
        c.ok("UID STORE 1:35 +FLAGS.SILENT (\\Deleted)").await;
        c.ok("EXPUNGE").await;
    }
    let reference = answers(&mut b).await;
    assert_same(&answers(&mut a).await, &reference, "after EXPUNGE");
    let store = with.server().store.clone();
    let alice = store
        .open_users()
        .into_iter()
        .find(|u| u.name() == "alice")
        .unwrap();
    until("expunged contents removed", Duration::from_secs(30), || {
        alice.fts_lag().is_some_and(|l| l.indexed == 35)
    })
    .await;

    // A rebuild through the running server.
    let done = strata_server::fts_admin::rebuild(&with.config, "alice")
        .await
        .unwrap();
    assert_eq!(done, "alice: 35 messages indexed");
    let lines = strata_server::fts_admin::status(&with.config, Some("alice"))
        .await
        .unwrap();
    assert!(lines[0].starts_with("user=alice indexed=35 "), "{lines:?}");
    assert_same(&answers(&mut a).await, &reference, "after a rebuild");
    drop((a, alice));

    // A damaged full-text index is a cache: replaced at the next start, searches stay exact.
    with.stop().await;
    let meta = with.data_dir.join("fts").join("alice").join("meta.json");
    std::fs::write(&meta, b"{ damaged").unwrap();
    with.restart().await;
    let mut a = with.login("alice").await;
    a.ok("SELECT INBOX").await;
    assert_same(&answers(&mut a).await, &reference, "after damage");
    with.fts_caught_up("alice").await;
    assert_same(&answers(&mut a).await, &reference, "rebuilt after damage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_without_a_server_and_refusals() {
    let mut s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.fill("INBOX", 5, "offline").await;
    drop(c);
    s.fts_caught_up("alice").await;
    s.stop().await;
    let done = strata_server::fts_admin::rebuild(&s.config, "alice")
        .await
        .unwrap();
    assert_eq!(done, "alice: 5 messages indexed");
    let e = strata_server::fts_admin::rebuild(&s.config, "nobody")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no mail index"), "{e}");
    let e = strata_server::fts_admin::status(&s.config, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no server is running"), "{e}");
}
