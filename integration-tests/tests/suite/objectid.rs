//! OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID, kept across RENAME, COPY and restarts.

use strata_integration_tests::{Client, Reply, TestServer};

fn message(id: &str, refs: Option<&str>, subject: &str) -> Vec<u8> {
    let mut m = format!("From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <{id}>\r\n");
    if let Some(r) = refs {
        m.push_str(&format!("In-Reply-To: <{r}>\r\nReferences: <{r}>\r\n"));
    }
    m.push_str(&format!("Subject: {subject}\r\n\r\nbody of {id}\r\n"));
    m.into_bytes()
}

/// The id in `KEY (id)` in `line`.
fn id_after(line: &str, key: &str) -> String {
    let at = line
        .find(&format!("{key} ("))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    let rest = &line[at + key.len() + 2..];
    rest[..rest.find(')').unwrap()].to_string()
}

/// EMAILID and THREADID of messages 1..=n of the selected mailbox.
async fn ids(c: &mut Client, n: u32) -> Vec<(String, String)> {
    let r = c.ok(&format!("FETCH 1:{n} (EMAILID THREADID)")).await;
    let lines: Vec<&String> = r
        .untagged
        .iter()
        .filter(|l| l.contains(" FETCH "))
        .collect();
    assert_eq!(lines.len(), n as usize, "{r:?}");
    lines
        .iter()
        .map(|l| (id_after(l, "EMAILID"), id_after(l, "THREADID")))
        .collect()
}

fn mailbox_id(r: &Reply) -> String {
    id_after(&r.status, "MAILBOXID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_ids_follow_rfc_8474() {
    let mut s = TestServer::start().await;
    let mut c = s.login("alice").await;
    assert!(c.ok("CAPABILITY").await.has(" OBJECTID"));

    // MAILBOXID: told by CREATE, SELECT and STATUS; kept by RENAME; never reused.
    let made = c.ok("CREATE Projects").await;
    let projects = mailbox_id(&made);
    assert!(
        projects.starts_with('F') && projects.len() <= 255,
        "{made:?}"
    );
    let r = c.ok("STATUS Projects (MAILBOXID)").await;
    assert_eq!(
        r.with("STATUS"),
        vec![format!("STATUS Projects (MAILBOXID ({projects}))").as_str()]
    );
    let r = c.ok("STATUS Projects (MESSAGES MAILBOXID)").await;
    assert!(
        r.has(&format!("MAILBOXID ({projects})")) && r.has("MESSAGES 0"),
        "{r:?}"
    );
    let r = c.ok("EXAMINE Projects").await;
    assert!(r.has(&format!("OK [MAILBOXID ({projects})]")), "{r:?}");
    c.ok("CLOSE").await;
    c.ok("RENAME Projects Work").await;
    let r = c.ok("STATUS Work (MAILBOXID)").await;
    assert!(r.has(&format!("MAILBOXID ({projects})")), "{r:?}");
    c.ok("DELETE Work").await;
    let again = mailbox_id(&c.ok("CREATE Work").await);
    assert_ne!(again, projects);
    let r = c.ok("LIST \"\" Work RETURN (STATUS (MAILBOXID))").await;
    assert!(
        r.has(&format!("STATUS Work (MAILBOXID ({again}))")),
        "{r:?}"
    );

    // EMAILID and THREADID: a reply joins its original's thread, a stranger does not.
    assert!(
        c.append("INBOX", "", &message("a@x", None, "Lunch"))
            .await
            .is_ok()
    );
    assert!(
        c.append("INBOX", "", &message("b@x", Some("a@x"), "Re: Lunch"))
            .await
            .is_ok()
    );
    assert!(
        c.append("INBOX", "", &message("c@x", Some("a@x"), "Budget"))
            .await
            .is_ok()
    );
    assert!(
        c.append("INBOX", "", &message("d@x", None, "Trip"))
            .await
            .is_ok()
    );
    c.ok("SELECT INBOX").await;
    let inbox = ids(&mut c, 4).await;
    let emails: std::collections::HashSet<_> = inbox.iter().map(|(e, _)| e).collect();
    assert_eq!(emails.len(), 4, "{inbox:?}");
    assert!(
        inbox
            .iter()
            .all(|(e, t)| e.starts_with('M') && t.starts_with('T'))
    );
    assert_eq!(inbox[0].1, inbox[1].1, "{inbox:?}");
    assert_ne!(inbox[0].1, inbox[2].1, "{inbox:?}");
    assert_ne!(inbox[0].1, inbox[3].1, "{inbox:?}");

    // SEARCH by id.
    let r = c.ok(&format!("UID SEARCH EMAILID {}", inbox[1].0)).await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 2"], "{r:?}");
    let r = c.ok(&format!("SEARCH THREADID {}", inbox[0].1)).await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 1 2"], "{r:?}");
    let r = c
        .ok(&format!(
            "SEARCH NOT THREADID {} EMAILID {}",
            inbox[0].1, inbox[3].0
        ))
        .await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH 4"], "{r:?}");
    let r = c.ok("SEARCH OR EMAILID Mnothing THREADID T0123").await;
    assert_eq!(r.with("SEARCH"), vec!["SEARCH"], "{r:?}");

    // COPY keeps both ids; a later reply to the copy's thread joins it.
    c.ok("COPY 1:2 Archive").await;
    assert!(
        c.append("INBOX", "", &message("e@x", Some("b@x"), "RE: lunch"))
            .await
            .is_ok()
    );
    let r = c.ok("FETCH 5 THREADID").await;
    assert!(r.has(&format!("THREADID ({})", inbox[0].1)), "{r:?}");
    c.ok("SELECT Archive").await;
    assert_eq!(ids(&mut c, 2).await, inbox[..2].to_vec());

    // A restart keeps them all.
    drop(c);
    s.restart().await;
    let mut c = s.login("alice").await;
    let r = c.ok("STATUS Work (MAILBOXID)").await;
    assert!(r.has(&format!("MAILBOXID ({again})")), "{r:?}");
    c.ok("SELECT INBOX").await;
    assert_eq!(ids(&mut c, 4).await, inbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_id_syntax_errors_are_answered() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("SELECT INBOX").await;
    // A key without its id, an id of every other shape: BAD or no match, never a crash.
    let r = c.cmd("SEARCH EMAILID").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    for id in ["\"\"", "M", "(M1)", "{3+}\r\nabc", &"M0".repeat(300)] {
        let r = c.cmd(&format!("SEARCH EMAILID {id}")).await;
        assert!(r.is_ok() || r.status.starts_with("BAD"), "{id}: {r:?}");
    }
    let r = c.cmd("STATUS INBOX (MAILBOXID").await;
    assert!(r.status.starts_with("BAD"), "{r:?}");
    c.ok("NOOP").await;
}
