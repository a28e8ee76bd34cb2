//! The staging journal under a crash: the server, as a process of its own, takes APPENDs into
//! S3 that answers 50 ms late, and is killed with SIGKILL in the middle, again and again.
//! After it restarts, every APPEND that was answered OK is there, and ends up in the store.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_integration_tests::process::ServerProcess;
use strata_integration_tests::s3server::S3Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

fn config(root: &Path, s3: &S3Server) -> String {
    format!(
        r#"data_dir = "{data}"
[imap]
starttls = "127.0.0.1:0"
tls = ""
[storage]
backend = "s3"
append_ack = "soft-done"
[storage.s3]
{s3}[storage.delay]
write_ms = 50
read_ms = 50
[log]
level = "warn"
"#,
        data = root.join("data").display(),
        s3 = s3.toml_table("crash/"),
    )
}

/// Starts the server process.
fn spawn(config: &Path) -> ServerProcess {
    ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_strata-process")), config)
}

fn message(id: &str) -> String {
    format!(
        "From: load@example.com\r\nTo: alice@example.com\r\nSubject: {id}\r\nMessage-ID: <{id}@crash>\r\n\r\nbody of {id}\r\n{}\r\n",
        "x".repeat(2000)
    )
}

type Lines = tokio::io::Lines<AsyncBufReader<tokio::net::tcp::OwnedReadHalf>>;

/// Reads until the line tagged `tag` (or a continuation, for `+`); whether it was OK.
async fn answer(lines: &mut Lines, tag: &str) -> bool {
    while let Ok(Some(l)) = lines.next_line().await {
        if tag == "+" && l.starts_with('+') {
            return true;
        }
        if l.starts_with(&format!("{tag} ")) {
            return l.starts_with(&format!("{tag} OK"));
        }
    }
    false
}

/// APPENDs until the connection dies, recording each message answered OK.
async fn append_until_killed(
    port: u16,
    client: usize,
    round: usize,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut lines = AsyncBufReader::new(r).lines();
    if !answer(&mut lines, "*").await
        || w.write_all(b"l LOGIN alice alice-password\r\n")
            .await
            .is_err()
        || !answer(&mut lines, "l").await
    {
        return;
    }
    for i in 0.. {
        let id = format!("r{round}c{client}m{i}");
        let body = message(&id);
        let cmd = format!("a{i} APPEND INBOX {{{}}}\r\n", body.len());
        if w.write_all(cmd.as_bytes()).await.is_err()
            || !answer(&mut lines, "+").await
            || w.write_all(format!("{body}\r\n").as_bytes()).await.is_err()
            || !answer(&mut lines, &format!("a{i}")).await
        {
            return;
        }
        acked.lock().unwrap().push(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_to_slow_s3_loses_no_acknowledged_message() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&root.path().join("s3"), "strata")
        .await
        .unwrap();
    let cfg_path = root.path().join("strata.toml");
    std::fs::write(&cfg_path, config(root.path(), &s3)).unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    strata_server::users::UserDb::new(root.path().join("data").join("users"))
        .add("alice", "alice-password")
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..6 {
        let mut server = spawn(&cfg_path);
        let port = server.port;
        let clients: Vec<_> = (0..4)
            .map(|c| tokio::spawn(append_until_killed(port, c, round, acked.clone())))
            .collect();
        // Kill at a different moment each round, while APPENDs and uploads are in flight:
        // once this round has had a few more APPENDs answered than the one before.
        let before = acked.lock().unwrap().len();
        let wanted = before + 5 + 4 * round;
        strata_integration_tests::until("APPENDs answered", Duration::from_secs(60), || {
            acked.lock().unwrap().len() >= wanted
        })
        .await;
        server.kill();
        for c in clients {
            c.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load ran: {} APPENDs answered OK",
        acked.len()
    );

    // The kills left batches the store had not acked: the restart has something to replay.
    let journal_bytes: u64 = std::fs::read_dir(root.path().join("data").join("journal"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
        .map(|e| e.metadata().unwrap().len().saturating_sub(8))
        .sum();
    eprintln!(
        "{} APPENDs answered OK over 6 kills; {journal_bytes} journal bytes at the last kill",
        acked.len()
    );
    assert!(journal_bytes > 0, "nothing was in flight at the last kill");

    // Restarted: every acknowledged message is there, bodies included.
    let server = spawn(&cfg_path);
    let mut c = strata_integration_tests::Client::plain(([127, 0, 0, 1], server.port).into()).await;
    c.ok("LOGIN alice alice-password").await;
    c.ok("SELECT INBOX").await;
    let r = c
        .ok("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
        .await;
    let all = r.untagged.join("\n");
    for id in &acked {
        assert!(
            all.contains(&format!("Subject: {id}")),
            "{id} was answered OK and is missing"
        );
        assert!(
            all.contains(&format!("body of {id}")),
            "the body of {id} is missing"
        );
    }
    // And the store ends up with every one of them: the journal's replays were uploaded.
    let bucket = root.path().join("s3").join("strata");
    let mut missing = acked.clone();
    strata_integration_tests::until("reached the store", Duration::from_secs(60), || {
        let stored = stored_text(&bucket);
        missing.retain(|id| !stored.contains(&format!("body of {id}\r\n")));
        missing.is_empty()
    })
    .await;
}

/// Every object file under the bucket, concatenated.
fn stored_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push_str(&stored_text(&p));
        } else if let Ok(t) = std::fs::read_to_string(&p) {
            out.push_str(&t);
        }
    }
    out
}
