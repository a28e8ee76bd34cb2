//! The S3 backend against a real S3-protocol server on loopback (s3s-fs): the conformance
//! suite alone and behind the staging journal, ranges, where objects land, clear errors for
//! wrong credentials, a missing bucket and an unreachable endpoint, and an outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use strata_backend_api::{Backend, Batch, ErrorKind, Key, conformance};
use strata_backend_journal::{Journal, JournalOptions};
use strata_backend_s3::{S3Backend, S3Options};
use strata_integration_tests::s3server::S3Server;
use strata_integration_tests::stores::s3_backend;
use tempfile::TempDir;

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// The options the server would use for the test S3 server, under `prefix`.
fn options(server: &S3Server, prefix: &str) -> S3Options {
    let strata_config::Backend::S3(cfg) = s3_backend(server) else {
        unreachable!("an S3 backend")
    };
    let mut o = strata_server::backends::s3_options(&cfg);
    o.prefix = prefix.to_string();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_conformance_alone_and_behind_the_journal() {
    let root = TempDir::new().unwrap();
    let server = S3Server::start(root.path(), "strata").await.unwrap();
    let n = AtomicU32::new(0);
    let journals = TempDir::new().unwrap();
    conformance::run_all(|| {
        let o = options(&server, &format!("c{}/", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(S3Backend::connect(&o).await.unwrap()) as Arc<dyn Backend> }
    })
    .await;
    conformance::run_all(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        let o = options(&server, &format!("j{i}/"));
        let dir = journals.path().join(i.to_string());
        async move {
            let s3 = Arc::new(S3Backend::connect(&o).await.unwrap());
            Arc::new(Journal::open(s3, JournalOptions::new(dir)).await.unwrap()) as Arc<dyn Backend>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_spread_by_hash_and_read_by_range() {
    let root = TempDir::new().unwrap();
    let server = S3Server::start(root.path(), "strata").await.unwrap();
    let s3 = S3Backend::connect(&options(&server, "mail/"))
        .await
        .unwrap();
    let body = "0123456789".repeat(1000);
    s3.commit(Batch::new().put(k("alice/INBOX/m1"), body.clone()))
        .await
        .unwrap();
    let object = s3.object_key(&k("alice/INBOX/m1"));
    assert!(
        object.starts_with("mail/") && object.ends_with("/alice/INBOX/m1"),
        "{object}"
    );
    assert_eq!(object.len(), "mail/".len() + 5 + "alice/INBOX/m1".len());
    assert!(
        root.path().join("strata").join(&object).is_file(),
        "the object is a file of the store"
    );
    let got = s3
        .get(&k("alice/INBOX/m1"), Some(9995..10_005))
        .await
        .unwrap();
    assert_eq!(got, "56789");
    assert!(
        s3.get(&k("alice/INBOX/m1"), Some(20_000..20_010))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s3.get(&k("alice/INBOX/m1"), Some(5..5))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s3.size(&k("alice/INBOX/m1")).await.unwrap(), 10_000);
    // Expunge-sized deletes go out in DeleteObjects requests of up to 1000 keys.
    let mut batch = Batch::new();
    for i in 0..1205 {
        batch = batch.put(k(&format!("bulk/{i}")), "x");
    }
    s3.commit(batch).await.unwrap();
    let mut batch = Batch::new();
    for i in 0..1205 {
        batch = batch.delete(k(&format!("bulk/{i}")));
    }
    s3.commit(batch).await.unwrap();
    for i in [0, 999, 1000, 1204] {
        let e = s3.get(&k(&format!("bulk/{i}")), None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_a_missing_bucket_and_no_server_are_clear_errors() {
    let root = TempDir::new().unwrap();
    let mut server = S3Server::start(root.path(), "strata").await.unwrap();
    let mut o = options(&server, "");
    o.secret_key = Some("wrong".into());
    let e = S3Backend::connect(&o).await.unwrap_err();
    assert!(
        e.message.contains("access denied") && !e.is_retryable(),
        "{e}"
    );
    assert!(
        !e.to_string().contains("wrong"),
        "the secret stays out of errors: {e}"
    );
    let mut o = options(&server, "");
    o.bucket = "no-such-bucket".into();
    let e = S3Backend::connect(&o).await.unwrap_err();
    assert!(
        e.message.contains("\"no-such-bucket\" does not exist"),
        "{e}"
    );
    server.stop().await;
    let e = S3Backend::connect(&options(&server, "")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(
        e.message.contains("cannot reach") || e.message.contains("timed out"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_the_lag_drains() {
    let root = TempDir::new().unwrap();
    let jdir = TempDir::new().unwrap();
    let mut server = S3Server::start(root.path(), "strata").await.unwrap();
    let mut o = options(&server, "out/");
    o.attempts = 1;
    let s3 = Arc::new(S3Backend::connect(&o).await.unwrap());
    let j = Journal::open(s3.clone(), JournalOptions::new(jdir.path()))
        .await
        .unwrap();
    j.commit(Batch::new().put(k("m/0"), "before"))
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    server.stop().await;
    let mut receipts = Vec::new();
    for i in 1..=40 {
        let r = j
            .commit(Batch::new().put(k(&format!("m/{i}")), format!("during {i}")))
            .await
            .unwrap();
        receipts.push(r);
    }
    // Soft-done and readable while the store is down.
    assert_eq!(j.get(&k("m/17"), None).await.unwrap(), "during 17");
    strata_integration_tests::until("retried", Duration::from_secs(20), || j.stats().retries > 0)
        .await;
    let s = j.stats();
    assert_eq!(s.pending_batches, 40, "{s:?}");
    assert!(s.retries > 0 && !receipts[0].is_acked(), "{s:?}");
    server.restart().await.unwrap();
    for r in &receipts {
        tokio::time::timeout(Duration::from_secs(60), r.acked())
            .await
            .expect("acked after the store came back")
            .unwrap();
    }
    for i in 1..=40 {
        assert_eq!(
            s3.get(&k(&format!("m/{i}")), None).await.unwrap(),
            format!("during {i}")
        );
    }
    assert_eq!(j.stats().pending_batches, 0);
}

/// The IMAP view of an outage: with S3 down, APPEND still answers at soft-done and FETCH
/// reads the bodies from the journal; when S3 is back the lag drains and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_keeps_working_through_an_s3_outage() {
    use strata_integration_tests::TestServer;
    let root = TempDir::new().unwrap();
    let mut s3 = S3Server::start(root.path(), "strata").await.unwrap();
    let backend = s3_backend(&s3);
    let s = TestServer::start_with(|c| {
        c.storage.main.backend = backend;
        c.storage.main.journal.enabled = true;
        c.storage.main.journal.dir = c.data_dir.join("journal");
    })
    .await;
    let mut c = s.login("alice").await;
    s3.stop().await;
    for i in 0..20 {
        let m = format!("Subject: outage {i}\r\n\r\nwritten while the store was down {i}\r\n");
        let r = c.append("INBOX", "", m.as_bytes()).await;
        assert!(r.is_ok(), "{r:?}");
    }
    c.ok("SELECT INBOX").await;
    let r = c.ok("FETCH 1:* BODY.PEEK[TEXT]").await;
    assert_eq!(r.untagged.len(), 20);
    assert!(r.untagged[7].contains("store was down 7"), "{r:?}");
    let lag = s.server().backends.journal_stats().unwrap();
    assert_eq!(lag.pending_batches, 20, "{lag:?}");
    s3.restart().await.unwrap();
    strata_integration_tests::until("drained", Duration::from_secs(60), || {
        s.server().backends.journal_stats().unwrap().pending_batches == 0
    })
    .await;
    let lag = s.server().backends.journal_stats().unwrap();
    assert_eq!(lag.pending_batches, 0, "the lag drained: {lag:?}");
    let r = c.ok("FETCH 1:* BODY.PEEK[TEXT]").await;
    assert!(r.untagged[19].contains("store was down 19"), "{r:?}");
}

/// Two nodes, each with its own client and journal, create one key required absent: the store
/// refuses the second, as `Conflict`, even though the second's journal never saw the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_required_absent_is_refused_to_a_second_node_by_the_store() {
    let root = TempDir::new().unwrap();
    let server = S3Server::start(root.path(), "strata").await.unwrap();
    let mut nodes = Vec::new();
    for n in 0..2 {
        let s3 = Arc::new(
            S3Backend::connect(&options(&server, "shared/"))
                .await
                .unwrap(),
        );
        let j = Journal::open(s3, JournalOptions::new(root.path().join(format!("j{n}"))))
            .await
            .unwrap();
        nodes.push(Arc::new(j));
    }
    let key = k("strata-index/claim");
    // Something of the first node's still waits in its journal: the conditional batch waits
    // for it, then goes to the store.
    nodes[0]
        .commit(Batch::new().put(k("body-1"), "body"))
        .await
        .unwrap();
    nodes[0]
        .commit(
            Batch::new()
                .require_absent(key.clone())
                .put(key.clone(), "node 0"),
        )
        .await
        .unwrap()
        .acked()
        .await
        .unwrap();
    let err = nodes[1]
        .commit(
            Batch::new()
                .require_absent(key.clone())
                .put(key.clone(), "node 1"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(nodes[1].get(&key, None).await.unwrap(), "node 0".as_bytes());
    assert_eq!(
        nodes[1].get(&k("body-1"), None).await.unwrap(),
        "body".as_bytes()
    );
}
