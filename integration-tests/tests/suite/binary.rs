//! BINARY (RFC 3516) over TCP: FETCH BINARY[] / BINARY.PEEK / BINARY.SIZE decoded from base64
//! and quoted-printable, partial fetches, literal8 for data with NUL, `[UNKNOWN-CTE]`, and
//! APPEND with a literal8.

use strata_integration_tests::{Client, TestServer, literal_of};

/// A message: part 1 quoted-printable text, part 2 base64 bytes with NULs, part 3 uuencoded.
fn message() -> Vec<u8> {
    b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 =3D soft=\r\nbreak\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAECAwBoaQA=\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
begin 644 x\r\nend\r\n\
--b--\r\n"
        .to_vec()
}

async fn with_message(s: &TestServer) -> Client {
    let mut c = s.login("alice").await;
    c.ok("CREATE Bin").await;
    assert!(c.append("Bin", "", &message()).await.is_ok());
    c.ok("SELECT Bin").await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_undoes_transfer_encodings() {
    let s = TestServer::start().await;
    let mut c = with_message(&s).await;
    let r = c.ok("CAPABILITY").await;
    assert!(r.has(" BINARY"), "{r:?}");
    let r = c.ok("FETCH 1 BINARY.PEEK[1]").await;
    let line = r.with("1 FETCH")[0];
    assert!(line.contains("BINARY[1] {"), "{line}");
    assert_eq!(literal_of(line), "café = softbreak".as_bytes(), "{line}");
    // Bytes with NULs come as a literal8, exactly.
    let r = c.ok("FETCH 1 BINARY.PEEK[2]").await;
    let line = r.with("1 FETCH")[0];
    assert!(line.contains("BINARY[2] ~{8}"), "{line}");
    assert_eq!(literal_of(line), b"\0\x01\x02\x03\0hi\0");
    let r = c.ok("FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])").await;
    let line = r.with("1 FETCH")[0];
    assert!(
        line.contains("BINARY.SIZE[1] 17") && line.contains("BINARY.SIZE[2] 8"),
        "{line}"
    );
    // A range of the decoded bytes.
    let r = c.ok("FETCH 1 BINARY.PEEK[2]<5.2>").await;
    let line = r.with("1 FETCH")[0];
    assert!(line.contains("BINARY[2]<5> {2}"), "{line}");
    assert_eq!(literal_of(line), b"hi");
    // BINARY[] is the whole message as stored.
    let r = c.ok("FETCH 1 BINARY.PEEK[]").await;
    assert_eq!(literal_of(r.with("1 FETCH")[0]), message());
    // Peeking left \Seen alone; BINARY sets it.
    let r = c.ok("FETCH 1 FLAGS").await;
    assert!(!r.has("\\Seen"), "{r:?}");
    let r = c.ok("FETCH 1 BINARY[1]").await;
    assert!(r.has("\\Seen"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_encoding_is_unknown_cte() {
    let s = TestServer::start().await;
    let mut c = with_message(&s).await;
    let r = c.cmd("FETCH 1 BINARY.PEEK[3]").await;
    assert!(r.status.starts_with("NO [UNKNOWN-CTE]"), "{r:?}");
    assert!(r.with("1 FETCH").is_empty(), "nothing half-sent: {r:?}");
    // BODY[3] still works, and so does the connection.
    let r = c.ok("FETCH 1 BODY.PEEK[3]").await;
    assert!(r.has("begin 644 x"), "{r:?}");
    // A part that does not exist is empty, as for BODY.
    let r = c.ok("FETCH 1 BINARY.PEEK[9]").await;
    assert!(r.has("BINARY[9] {0}"), "{r:?}");
    let r = c.cmd("FETCH 1 BINARY[1.MIME]").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_takes_a_literal8() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let body = b"From: a@example.org\r\nSubject: nul\r\n\r\nzero \0 byte\r\n";
    let tag = c.tag();
    let mut cmd = format!("{tag} APPEND INBOX ~{{{}+}}\r\n", body.len()).into_bytes();
    cmd.extend_from_slice(body);
    cmd.extend_from_slice(b"\r\n");
    c.send_raw(&cmd).await;
    let r = c.until_tagged(&tag).await;
    assert!(r.is_ok(), "{r:?}");
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1 BINARY.PEEK[]").await;
    assert_eq!(literal_of(r.with("1 FETCH")[0]), body.to_vec());
}
