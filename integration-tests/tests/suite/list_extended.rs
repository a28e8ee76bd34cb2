//! LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and CREATE-SPECIAL-USE (RFC 6154) over
//! TCP, after the RFCs' examples and their error cases.

use strata_integration_tests::{Client, Reply, TestServer};

/// The names a LIST answered with, and each one's line.
fn listed(r: &Reply) -> Vec<String> {
    r.with("LIST").iter().map(|l| l.to_string()).collect()
}

fn line_of<'a>(lines: &'a [String], name: &str) -> Option<&'a String> {
    lines
        .iter()
        .find(|l| l.ends_with(&format!("\"/\" {name}")) || l.contains(&format!("\"/\" {name} (")))
}

/// Foo, Foo/Bar (subscribed), Baz (subscribed), and a subscription to a name with no mailbox.
async fn tree(c: &mut Client) {
    for m in ["Foo", "Foo/Bar", "Baz", "Gone"] {
        c.ok(&format!("CREATE {m}")).await;
    }
    for m in ["Foo/Bar", "Baz", "Gone"] {
        c.ok(&format!("SUBSCRIBE {m}")).await;
    }
    // A subscription outlives its mailbox (RFC 3501 6.3.4).
    c.ok("DELETE Gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_selection_and_recursive_match() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    let caps = c.ok("CAPABILITY").await;
    for cap in [" LIST-EXTENDED", " LIST-STATUS", " CREATE-SPECIAL-USE"] {
        assert!(caps.has(cap), "{cap}: {caps:?}");
    }
    tree(&mut c).await;
    // A new user is subscribed to INBOX and the special-use mailboxes too.
    let r = c.ok("LIST (SUBSCRIBED) \"\" \"*\"").await;
    let l = listed(&r);
    assert!(
        line_of(&l, "INBOX").is_some() && line_of(&l, "Baz").is_some(),
        "{r:?}"
    );
    let subscribed = l.len();
    assert!(
        line_of(&l, "Foo/Bar").unwrap().contains("\\Subscribed"),
        "{l:?}"
    );
    let gone = line_of(&l, "Gone").unwrap();
    assert!(
        gone.contains("\\NonExistent") && gone.contains("\\Subscribed"),
        "{gone}"
    );
    assert!(line_of(&l, "Foo").is_none(), "{l:?}");
    // RECURSIVEMATCH: Foo is not subscribed but has a subscribed child.
    let r = c.ok("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"").await;
    let l = listed(&r);
    let foo = line_of(&l, "Foo").unwrap();
    assert!(
        foo.ends_with("\"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))")
            && !foo.contains("\\Subscribed"),
        "{foo}"
    );
    assert!(
        line_of(&l, "Baz").unwrap().contains("\\Subscribed"),
        "{l:?}"
    );
    assert!(line_of(&l, "Foo/Bar").is_none(), "{l:?}");
    // Without RECURSIVEMATCH, `%` lists only subscribed names at that level.
    let r = c.ok("LIST (SUBSCRIBED) \"\" \"%\"").await;
    let l = listed(&r);
    assert!(
        line_of(&l, "Foo").is_none() && line_of(&l, "Baz").is_some(),
        "{l:?}"
    );
    // REMOTE selects nothing more here: there are no remote mailboxes.
    let r = c.ok("LIST (REMOTE SUBSCRIBED) \"\" \"*\"").await;
    assert_eq!(listed(&r).len(), subscribed, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_options_and_pattern_lists() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    tree(&mut c).await;
    let r = c
        .ok("LIST \"\" (\"Foo\" Baz {3+}\r\nNil) RETURN (CHILDREN SUBSCRIBED)")
        .await;
    let l = listed(&r);
    assert_eq!(l.len(), 2, "{r:?}");
    let foo = line_of(&l, "Foo").unwrap();
    assert!(
        foo.contains("\\HasChildren") && !foo.contains("\\Subscribed"),
        "{foo}"
    );
    let baz = line_of(&l, "Baz").unwrap();
    assert!(
        baz.contains("\\HasNoChildren") && baz.contains("\\Subscribed"),
        "{baz}"
    );
    // An empty selection list is a basic LIST.
    let r = c.ok("LIST () \"\" \"Foo*\"").await;
    assert_eq!(listed(&r).len(), 2, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_status_follows_each_selectable_mailbox() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    tree(&mut c).await;
    c.fill("Baz", 2, "status").await;
    let r = c
        .ok("LIST (SUBSCRIBED) \"\" \"*\" RETURN (STATUS (MESSAGES UNSEEN SIZE))")
        .await;
    let lines: Vec<&String> = r.untagged.iter().collect();
    let baz = lines.iter().position(|l| l.ends_with("\"/\" Baz")).unwrap();
    assert!(
        lines[baz + 1].starts_with("STATUS Baz (MESSAGES 2 UNSEEN 2 SIZE "),
        "{lines:?}"
    );
    // A name with no mailbox gets no STATUS.
    assert!(!r.has("STATUS Gone"), "{r:?}");
    assert_eq!(r.with("STATUS").len(), r.with("LIST").len() - 1, "{r:?}");
    let r = c.ok("LIST \"\" Baz RETURN (STATUS (HIGHESTMODSEQ))").await;
    assert!(
        r.with("STATUS")[0].starts_with("STATUS Baz (HIGHESTMODSEQ "),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_use_selection_and_create() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    c.ok("CREATE Outbox/Sent2 (USE (\\Sent))").await;
    c.ok("CREATE \"Old mail\" (USE (\\Archive))").await;
    let r = c.ok("LIST (SPECIAL-USE) \"\" \"*\"").await;
    let l = listed(&r);
    assert!(
        !l.is_empty()
            && l.iter().all(|line| {
                ["\\Sent", "\\Archive", "\\Drafts", "\\Trash", "\\Junk"]
                    .iter()
                    .any(|a| line.contains(a))
            }),
        "{l:?}"
    );
    assert!(
        line_of(&l, "Outbox/Sent2").unwrap().contains("\\Sent"),
        "{l:?}"
    );
    assert!(
        line_of(&l, "\"Old mail\"").unwrap().contains("\\Archive"),
        "{l:?}"
    );
    assert!(
        line_of(&l, "Outbox").is_none(),
        "the parent has no special use: {l:?}"
    );
    let r = c.ok("LIST \"\" \"Outbox*\" RETURN (SPECIAL-USE)").await;
    assert_eq!(listed(&r).len(), 2, "{r:?}");
    for (cmd, code) in [
        ("CREATE Every (USE (\\All))", "NO [USEATTR]"),
        ("CREATE Odd (USE (\\Bogus))", "NO [USEATTR]"),
        ("CREATE Two (USE (\\Sent \\Drafts))", "NO [USEATTR]"),
        ("CREATE Odd (USE \\Sent)", "BAD"),
        ("CREATE Odd (SIZE 5)", "BAD"),
    ] {
        let r = c.cmd(cmd).await;
        assert!(r.status.starts_with(code), "{cmd}: {r:?}");
    }
    let r = c.ok("LIST \"\" \"*\"").await;
    assert!(!r.has("Every") && !r.has("Odd") && !r.has("Two"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_options_are_bad() {
    let s = TestServer::start().await;
    let mut c = s.login("alice").await;
    for cmd in [
        "LIST (BOGUS) \"\" \"*\"",
        "LIST (RECURSIVEMATCH) \"\" \"*\"",
        "LIST \"\" \"*\" RETURN (BOGUS)",
        "LIST \"\" \"*\" RETURN CHILDREN",
        "LIST \"\" () RETURN (CHILDREN)",
        "LIST \"\" \"*\" RETURN (STATUS (BOGUS))",
        "LIST (SUBSCRIBED \"\" \"*\"",
    ] {
        let r = c.cmd(cmd).await;
        assert!(r.status.starts_with("BAD"), "{cmd}: {r:?}");
    }
    c.ok("LIST \"\" \"*\"").await;
}
