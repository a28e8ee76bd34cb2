//! QUOTA (RFC 9208) against a real server: APPEND, COPY and MOVE at the limit, GETQUOTA and
//! GETQUOTAROOT, usage after EXPUNGE and after a restart, an account's own limits over the
//! default, and concurrent APPENDs that together would pass the limit.

use strata_integration_tests::{Client, TestServer, USERS, number_after, plain_message};
use strata_server::users::{Limit, QuotaOverride, UserDb};

/// `* QUOTA "" (...)`'s numbers after `resource`: (usage, limit).
fn quota(r: &strata_integration_tests::Reply, resource: &str) -> (u64, u64) {
    let line = r.with("QUOTA \"\"");
    let line = line
        .first()
        .unwrap_or_else(|| panic!("no QUOTA line: {r:?}"));
    let usage = number_after(line, resource).unwrap_or_else(|| panic!("{resource}: {line}"));
    let rest = &line[line.find(resource).unwrap() + resource.len()..];
    let limit = number_after(rest, &format!("{usage} ")).unwrap();
    (usage, limit)
}

async fn login(s: &TestServer, user: &str) -> Client {
    s.login(user).await
}

#[tokio::test]
async fn append_and_copy_stop_at_the_message_limit_and_expunge_makes_room_again() {
    let mut s = TestServer::start_with(|c| c.quota.messages = Some(3)).await;
    let mut a = login(&s, "alice").await;
    let caps = a.ok("CAPABILITY").await;
    assert!(
        caps.has(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE") && caps.has(" APPENDLIMIT="),
        "{caps:?}"
    );
    a.fill("INBOX", 3, "fits").await;
    // A synchronizing literal that cannot fit is refused before the client sends it.
    let r = a.append("INBOX", "", &plain_message(4, "no room")).await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
    assert!(r.status.contains("3 of 3 messages"), "{r:?}");
    // LITERAL+ sends it anyway: refused after, and the connection goes on.
    let r = a
        .append_dated(
            "INBOX",
            "01-Jan-2024 10:00:00 +0000",
            &plain_message(5, "no room"),
        )
        .await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
    a.ok("SELECT INBOX").await;
    let r = a.cmd("COPY 1 Archive").await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
    // MOVE adds nothing to the user's one quota root: it is allowed at the limit.
    a.ok("MOVE 1 Archive").await;
    let r = a.ok("GETQUOTAROOT INBOX").await;
    assert!(r.has("QUOTAROOT INBOX \"\""), "{r:?}");
    assert_eq!(quota(&r, "MESSAGE"), (3, 3));
    // A mailbox that does not exist has the same root (RFC 9208 4.1.2).
    assert!(
        a.ok("GETQUOTAROOT Nowhere")
            .await
            .has("QUOTAROOT Nowhere \"\"")
    );
    let r = a.cmd("SETQUOTA \"\" (MESSAGE 10)").await;
    assert!(r.status.starts_with("NO [NOPERM]"), "{r:?}");
    let r = a.cmd("GETQUOTA \"#user/alice\"").await;
    assert!(r.status.starts_with("NO [NONEXISTENT]"), "{r:?}");

    a.ok("STORE 1 +FLAGS (\\Deleted)").await;
    a.ok("EXPUNGE").await;
    assert_eq!(quota(&a.ok("GETQUOTA \"\"").await, "MESSAGE"), (2, 3));
    let r = a.append("INBOX", "", &plain_message(6, "room again")).await;
    assert!(r.is_ok(), "{r:?}");
    a.ok("LOGOUT").await;

    // Usage is in the index: the same after a restart, and still enforced.
    s.restart().await;
    let mut a = login(&s, "alice").await;
    assert_eq!(quota(&a.ok("GETQUOTA \"\"").await, "MESSAGE"), (3, 3));
    let r = a.append("INBOX", "", &plain_message(7, "no room")).await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
}

#[tokio::test]
async fn storage_counts_octets_in_kibibytes_and_an_account_may_set_its_own() {
    let s = TestServer::start_with(|c| c.quota.storage = Some(10 * 1024)).await;
    let mut a = login(&s, "alice").await;
    let big = vec![b'x'; 6 * 1024];
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    message.extend_from_slice(&big);
    assert!(a.append("INBOX", "", &message).await.is_ok());
    let (used, limit) = quota(&a.ok("GETQUOTA \"\"").await, "STORAGE");
    assert_eq!((used, limit), (7, 10), "6 KiB and a header, rounded up");
    let r = a.append("INBOX", "", &message).await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
    // A small one still fits.
    assert!(
        a.append("INBOX", "", b"Subject: small\r\n\r\nhi\r\n")
            .await
            .is_ok()
    );
    // The same in another mailbox, through COPY: each copy counts.
    a.ok("SELECT INBOX").await;
    let r = a.cmd("COPY 1 Archive").await;
    assert!(r.status.starts_with("NO [OVERQUOTA]"), "{r:?}");
    assert!(a.cmd("COPY 2 Archive").await.is_ok());

    // bob's own limit: unlimited storage, whatever the default says.
    let db = UserDb::new(s.data_dir.join("users"));
    db.set_quota(
        "bob",
        QuotaOverride {
            storage: Some(Limit::Unlimited),
            messages: Some(Limit::At(50)),
        },
    )
    .unwrap();
    s.server().store.refresh_limits("bob").await.unwrap();
    let mut b = login(&s, "bob").await;
    for _ in 0..3 {
        assert!(b.append("INBOX", "", &message).await.is_ok());
    }
    let r = b.ok("GETQUOTAROOT INBOX").await;
    assert_eq!(quota(&r, "MESSAGE"), (3, 50));
    assert!(!r.has("STORAGE"), "no storage limit, none reported: {r:?}");
    // A user with no limit at all has no quota root.
    db.set_quota(
        "bob",
        QuotaOverride {
            storage: Some(Limit::Unlimited),
            messages: None,
        },
    )
    .unwrap();
    s.server().store.refresh_limits("bob").await.unwrap();
    let r = b.ok("GETQUOTAROOT INBOX").await;
    assert_eq!(r.with("QUOTAROOT"), vec!["QUOTAROOT INBOX"], "{r:?}");
    assert!(r.with("QUOTA ").is_empty(), "{r:?}");
    // The account file keeps the limits beside the hash (and the SCRAM keys).
    let text = std::fs::read_to_string(s.data_dir.join("users")).unwrap();
    let attrs = |l: &str| {
        l.rsplit_once(':')
            .map(|(_, a)| a.split(',').any(|a| a == "storage=unlimited"))
    };
    assert!(
        text.lines()
            .any(|l| l.starts_with("bob:$argon2id$") && attrs(l) == Some(true)),
        "{text}"
    );
    assert!(db.verify("bob", USERS[1].1).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_never_pass_the_limit_together() {
    let s = TestServer::start_with(|c| c.quota.messages = Some(5)).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(login(&s, "alice").await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let start = start.clone();
        // LITERAL+: each APPEND passes the check made when its literal is announced.
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            c.append_dated(
                "INBOX",
                "01-Jan-2024 10:00:00 +0000",
                &plain_message(i as u32, "race"),
            )
            .await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers.iter().filter(|r| r.is_ok()).count();
    let over = answers
        .iter()
        .filter(|r| r.status.starts_with("NO [OVERQUOTA]"))
        .count();
    assert_eq!((ok, over), (5, 5), "{answers:?}");
    assert_eq!(s.messages("alice", "INBOX").await.len(), 5);
    // The bodies of the refused ones, written before the index refused them, are gone.
    let bodies = s
        .files()
        .iter()
        .filter(|f| {
            let f = f.to_string_lossy();
            f.contains("mail/alice/") && (f.contains("/cur/") || f.contains("/new/"))
        })
        .count();
    assert_eq!(bodies, 5);
}
