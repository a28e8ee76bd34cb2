//! The `strata` command line: accounts and configuration checks.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn strata(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses before reading the password has closed its end: not an error.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// `strata --data-dir d ARGS`, with nothing on standard input.
fn at(d: &str, args: &[&str]) -> Output {
    strata(&[&["--data-dir", d], args].concat(), "")
}

/// Starts `strata serve` on `data_dir` with a STARTTLS listener on a free port and `imaps`
/// (an address or `off`); returns it and the STARTTLS address, once it has printed it. Its
/// standard error is read on to the end when `keep_reading`, else closed from then on.
fn serve(data_dir: &str, imaps: &str, keep_reading: bool) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "--data-dir",
            data_dir,
            "--imap",
            "127.0.0.1:0",
            "--imaps",
            imaps,
            "serve",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line.trim().strip_prefix("strata: IMAP (STARTTLS) on ") {
            if keep_reading {
                std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            }
            return (child, a.to_string());
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not print its address");
}

/// Connects to the server at `addr` and reads the start of its greeting (within 20 s, so a
/// server that never answers fails the test instead of hanging it).
fn greeting(addr: &str) -> std::io::Result<(std::net::TcpStream, [u8; 5])> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let mut start = [0u8; 5];
    conn.read_exact(&mut start)?;
    Ok((conn, start))
}

/// Sends `commands` (tagged 1, 2, ...) to the server at `addr` and returns what it answered,
/// through the last command's tagged answer.
fn imap(addr: &str, commands: &[&str]) -> String {
    use std::io::{Read, Write};
    let (mut conn, _) = greeting(addr).unwrap();
    let mut sent = String::new();
    for (i, c) in commands.iter().enumerate() {
        sent.push_str(&format!("{} {c}\r\n", i + 1));
    }
    conn.write_all(sent.as_bytes()).unwrap();
    let last = format!("\r\n{} ", commands.len());
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(&last) || !seen.ends_with("\r\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

/// Sends SIGTERM and waits for the server to exit.
fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn user_commands_manage_the_account_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "x\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    let out = strata(
        &[
            "--data-dir",
            d,
            "user",
            "add",
            "../evil",
            "--password-stdin",
        ],
        "x\n",
    );
    assert!(
        text(&out.stderr).contains("invalid user name"),
        "{}",
        text(&out.stderr)
    );
    strata(
        &["--data-dir", d, "user", "add", "bob", "--password-stdin"],
        "pw\n",
    );
    let out = at(d, &["user", "list"]);
    assert_eq!(text(&out.stdout), "alice\nbob\n");
    let db = strata_server::users::UserDb::new(dir.path().join("users"));
    assert!(db.verify("alice", "s3cret").unwrap());
    let out = strata(
        &[
            "--data-dir",
            d,
            "user",
            "passwd",
            "alice",
            "--password-stdin",
        ],
        "n3w\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(db.verify("alice", "n3w").unwrap());
    let out = at(d, &["user", "del", "bob"]);
    assert!(out.status.success());
    let out = at(d, &["user", "del", "bob"]);
    assert!(!out.status.success());
    assert_eq!(text(&at(d, &["user", "list"]).stdout), "alice\n");
}

#[test]
fn check_config_names_the_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("strata.toml");
    std::fs::write(
        &bad,
        "[imap]\nmax_connections = 0\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    let out = strata(&["--config", bad.to_str().unwrap(), "check-config"], "");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("strata.toml:2: imap.max_connections: must be greater than 0"),
        "{err}"
    );

    std::fs::write(&bad, "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
    let out = strata(&["--config", bad.to_str().unwrap(), "check-config"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tls.cert: cannot read"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(dir.path().join("c.pem"), "garbage").unwrap();
    std::fs::write(dir.path().join("k.pem"), "garbage").unwrap();
    let out = strata(&["--config", bad.to_str().unwrap(), "check-config"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("c.pem: no certificate"),
        "{}",
        text(&out.stderr)
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../strata.example.toml");
    let out = strata(&["--config", example, "check-config"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn index_check_reads_a_users_index_while_it_is_open_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no index for \"alice\""),
        "{}",
        text(&out.stderr)
    );

    let path = strata_server::index_path(dir.path(), "alice");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let index = rt.block_on(async {
        let (index, _) = strata_index::UserIndex::open(&path, Default::default())
            .await
            .unwrap();
        index
            .create_mailbox(strata_index::NewMailbox {
                parent: None,
                name: "INBOX".into(),
                special_use: None,
            })
            .await
            .unwrap();
        index
    });
    // The index stays open for writing in this process while the command reads it.
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok: 1 mailboxes, 0 messages"),
        "{}",
        text(&out.stdout)
    );
    rt.block_on(index.close());

    std::fs::write(&path, b"").unwrap();
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("alice.redb is corrupt"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn import_maildir_then_rebuild_from_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let src = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    std::fs::write(src.join("cur/1.a.h:2,S"), "Subject: one\r\n\r\n1\r\n").unwrap();
    std::fs::write(src.join("new/2.b.h"), "Subject: two\r\n\r\n2\r\n").unwrap();
    std::fs::write(
        src.join(".Sent/cur/3.c.h:2,SR"),
        "Subject: three\r\n\r\n3\r\n",
    )
    .unwrap();
    let src = src.to_str().unwrap();

    let out = at(d, &["import", "maildir", src, "--user", "alice"]);
    assert!(!out.status.success(), "no such account yet");
    assert!(
        text(&out.stderr).contains("no account"),
        "{}",
        text(&out.stderr)
    );
    strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "pw\n",
    );
    let out = at(d, &["import", "maildir", src, "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported: 3 messages in 2 folders"),
        "{}",
        text(&out.stdout)
    );

    let out = at(d, &["index", "rebuild", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("the old index is kept at"), "{stdout}");
    assert!(
        stdout.contains("rebuilt: 3 messages in 2 folders"),
        "{stdout}"
    );
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 messages"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn serve_runs_on_defaults_and_stops_cleanly_on_sigterm() {
    use std::io::{BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let (mut child, addr) = serve(d, "127.0.0.1:0", true);
    let (conn, start) = greeting(&addr).unwrap();
    assert_eq!(&start, b"* OK ");
    assert!(std::path::Path::new(d).join("tls/self-signed.pem").exists());
    let status = sigterm(&mut child);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let mut rest = String::new();
    let _ = BufReader::new(conn).read_to_string(&mut rest);
    assert!(rest.contains("* BYE server shutting down"), "{rest:?}");
}

#[test]
fn index_check_recovers_an_index_a_killed_server_left() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (mut child, addr) = serve(d, "off", true);
    let seen = imap(&addr, &["LOGIN alice alice-password", "SELECT INBOX"]);
    assert!(seen.contains("2 OK"), "{seen}");
    // Killed with the index open: it is left unclean.
    child.kill().unwrap();
    child.wait().unwrap();
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("recovered after an unclean shutdown"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: 6 mailboxes"), "{stdout}");
    // And it is clean now.
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("recovered"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn what_an_admin_meets_first_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    // No listener at all is refused, from the command line as from a file.
    let out = at(d, &["--imap", "off", "--imaps", "off", "serve"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("both listeners are off"),
        "{}",
        text(&out.stderr)
    );
    // A cause is said once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = at(d, &["--imap", &addr, "--imaps", "off", "serve"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    // Accounts are listed in order.
    for name in ["zoe", "alice", "mike"] {
        let out = strata(
            &["--data-dir", d, "user", "add", name, "--password-stdin"],
            "pw\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = at(d, &["user", "list"]);
    assert_eq!(text(&out.stdout), "alice\nmike\nzoe\n");
}

#[test]
fn index_status_export_import_and_restore_a_shipped_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:{}\"\n",
            data.display(),
            dir.path().join("bodies.db").display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let src = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
    }
    std::fs::write(src.join("cur/1.a.h:2,S"), "Subject: one\r\n\r\n1\r\n").unwrap();
    std::fs::write(src.join("new/2.b.h"), "Subject: two\r\n\r\n2\r\n").unwrap();
    std::fs::write(src.join(".Sent/cur/3.c.h:2,SR"), "Subject: 3\r\n\r\n3\r\n").unwrap();
    for name in ["alice", "bob"] {
        strata(
            &["--config", c, "user", "add", name, "--password-stdin"],
            "pw\n",
        );
    }
    let run = |args: &[&str]| {
        let mut all = vec!["--config", c];
        all.extend_from_slice(args);
        strata(&all, "")
    };
    let out = run(&[
        "import",
        "maildir",
        src.to_str().unwrap(),
        "--user",
        "alice",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Shipped when the import closed the user: the store's MODSEQ is the local one.
    let out = run(&["index", "status", "--user", "alice"]);
    let status = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shipped = status
        .split("shipped MODSEQ ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap();
    assert!(
        status.contains(&format!("local MODSEQ {shipped}")),
        "{status}"
    );

    let exported = dir.path().join("export");
    let out = run(&[
        "index",
        "export",
        "--user",
        "alice",
        "--to",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(exported.join("head").exists());

    // The node's index is lost; restore brings it back from the store.
    let index = data.join("index").join("alice.redb");
    std::fs::remove_file(&index).unwrap();
    let out = run(&["index", "restore", "--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("restored at MODSEQ {shipped}")),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["index", "check", "--user", "alice"]);
    assert!(
        text(&out.stdout).contains("3 messages"),
        "{}",
        text(&out.stdout)
    );

    // An export imports the same index; a damaged one is refused, naming the file.
    let out = run(&[
        "index",
        "import",
        "--user",
        "alice",
        "--from",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("imported at MODSEQ {shipped}")));
    let victim = std::fs::read_dir(&exported)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.ends_with("head"))
        .unwrap();
    let mut raw = std::fs::read(&victim).unwrap();
    raw.truncate(raw.len() - 3);
    std::fs::write(&victim, raw).unwrap();
    let out = run(&[
        "index",
        "import",
        "--user",
        "alice",
        "--from",
        exported.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&victim.display().to_string()), "{err}");

    // A user the store holds nothing for: said plainly, and the local index is left alone.
    let out = run(&["index", "restore", "--user", "bob"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds no shipped index"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn accounts_in_the_store_are_the_same_for_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:{}\"\n[auth]\nbackend = \"store\"\n",
                dir.path().join(name).display(),
                dir.path().join("shared.db").display()
            ),
        )
        .unwrap();
        config.to_str().unwrap().to_string()
    };
    let (a, b) = (node("a"), node("b"));
    let out = strata(
        &["--config", &a, "user", "add", "alice", "--password-stdin"],
        "pw1\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Created once, whichever node asks again.
    let out = strata(
        &["--config", &b, "user", "add", "alice", "--password-stdin"],
        "pw2\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    let out = strata(&["--config", &b, "user", "list"], "");
    assert_eq!(text(&out.stdout), "alice\n");
    let out = strata(
        &[
            "--config",
            &b,
            "user",
            "passwd",
            "alice",
            "--password-stdin",
        ],
        "pw3\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = strata(&["--config", &a, "user", "del", "alice"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = strata(&["--config", &b, "user", "list"], "");
    assert_eq!(text(&out.stdout), "");
    let out = strata(&["--config", &b, "user", "del", "alice"], "");
    assert!(
        text(&out.stderr).contains("no user"),
        "{}",
        text(&out.stderr)
    );
    // Neither node keeps a users file of its own.
    assert!(!dir.path().join("a/users").exists() && !dir.path().join("b/users").exists());
}

#[test]
fn deliver_files_standard_input_with_sysexits_codes_alone_and_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "pw\n",
    );
    let deliver = |extra: &[&str], message: &str| {
        let mut args = vec!["--data-dir", d, "deliver"];
        args.extend_from_slice(extra);
        strata(&args, message)
    };
    // No server: the command opens the stores itself. A pipe's LF lines are stored as CRLF.
    let out = deliver(&["--user", "alice"], "Subject: one\n\nbody\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "delivered to INBOX\n");
    let out = deliver(
        &["--user", "alice", "--mailbox", "Sent"],
        "Subject: two\n\n2\n",
    );
    assert_eq!(text(&out.stdout), "delivered to Sent\n");
    let out = deliver(
        &["--user", "alice", "--mailbox", "No such"],
        "Subject: 3\n\n3\n",
    );
    assert_eq!(text(&out.stdout), "delivered to INBOX\n");
    let out = deliver(&["--user", "nobody"], "Subject: x\n\nx\n");
    assert_eq!(
        out.status.code(),
        Some(67),
        "EX_NOUSER: {}",
        text(&out.stderr)
    );
    let out = deliver(&["--user", "alice"], "");
    assert_eq!(
        out.status.code(),
        Some(65),
        "EX_DATAERR: {}",
        text(&out.stderr)
    );

    // A server runs: the message goes through its control socket (it holds the index).
    let (mut child, _) = serve(d, "off", true);
    let out = deliver(&["--user", "alice"], "Subject: four\r\n\r\n4\r\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = deliver(&["--user", "nobody"], "Subject: x\n\nx\n");
    assert_eq!(out.status.code(), Some(67), "{}", text(&out.stderr));
    assert!(sigterm(&mut child).success());
    let out = at(d, &["index", "check", "--user", "alice"]);
    assert!(
        text(&out.stdout).contains("4 messages"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_server_whose_standard_error_is_closed_keeps_serving_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    // Whoever started it stops reading once it has the address: every log line fails now.
    let (mut child, addr) = serve(d, "off", false);
    for _ in 0..3 {
        // A server that broke on its logging would never answer.
        let answered = greeting(&addr);
        if answered.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(&answered.expect("a greeting").1, b"* OK ");
    }
    let status = sigterm(&mut child);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn user_quota_shows_and_sets_limits_and_a_running_server_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = at(d, &["user", "quota", "alice"]);
    assert_eq!(
        text(&out.stdout),
        "storage: unlimited (the default, [quota]), 0 bytes used\n\
         messages: unlimited (the default, [quota]), 0 used\n"
    );
    let out = at(d, &["user", "quota", "alice", "--storage", "2X"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--storage: \"2X\" is not a size"),
        "{}",
        text(&out.stderr)
    );
    let out = at(d, &["user", "quota", "nobody", "--storage", "1G"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no user \"nobody\""),
        "{}",
        text(&out.stderr)
    );
    let out = at(d, &["user", "quota", "alice", "--storage", "2G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("storage: 2.0 GiB (this account's own)"),
        "{}",
        text(&out.stdout)
    );

    let (mut child, addr) = serve(d, "off", true);
    let seen = imap(&addr, &["LOGIN alice alice-password", "GETQUOTAROOT INBOX"]);
    assert!(seen.contains("* QUOTA \"\" (STORAGE 0 2097152)"), "{seen}");
    // Changed while the server runs: it is told, and the next APPEND meets the new limit.
    let out = at(d, &["user", "quota", "alice", "--messages", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = imap(
        &addr,
        &[
            "LOGIN alice alice-password",
            "APPEND INBOX {6+}\r\nhello!",
            "APPEND INBOX {6+}\r\nagain!",
        ],
    );
    assert!(seen.contains("2 OK [APPENDUID"), "{seen}");
    assert!(seen.contains("3 NO [OVERQUOTA]"), "{seen}");
    // The usage comes from the running server.
    let out = at(d, &["user", "quota", "alice"]);
    assert!(
        text(&out.stdout).contains("messages: 1 (this account's own), 1 used"),
        "{}",
        text(&out.stdout)
    );
    assert!(sigterm(&mut child).success());
    // And from the index on disk once it has stopped.
    let out = at(d, &["user", "quota", "alice", "--storage", "default"]);
    assert_eq!(
        text(&out.stdout),
        "storage: unlimited (the default, [quota]), 6 bytes used\n\
         messages: 1 (this account's own), 1 used\n"
    );
}

#[test]
fn json_logs_carry_the_session_id_and_user_on_every_line_of_a_connection() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {d:?}\n[imap]\nstarttls = \"127.0.0.1:0\"\ntls = \"\"\n[log]\nformat = \"json\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no address printed");
        if let Some(a) = line.trim().strip_prefix("strata: IMAP (STARTTLS) on ") {
            break a.to_string();
        }
    };
    let seen = imap(&addr, &["LOGIN alice alice-password", "LOGOUT"]);
    assert!(seen.contains("2 OK"), "{seen}");
    assert!(sigterm(&mut child).success());
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("each log line is one JSON object"))
        .collect();
    let session: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "session")
        .collect();
    let said = |m: &str| {
        session
            .iter()
            .find(|l| l["fields"]["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} line in {lines:#?}"))
    };
    let (opened, gone) = (said("connection"), said("disconnected"));
    assert!(opened["span"]["id"].as_u64().is_some(), "{opened}");
    assert_eq!(opened["span"]["id"], gone["span"]["id"]);
    assert_eq!(gone["span"]["user"], "alice", "{gone}");
    assert_eq!(gone["level"], "INFO");
}

#[test]
fn mailbox_list_status_and_retention_expunge_beside_a_server_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = strata(
        &["--data-dir", d, "user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (mut child, addr) = serve(d, "off", true);
    let seen = imap(
        &addr,
        &[
            "LOGIN alice alice-password",
            "CREATE \"Old mail\"",
            "APPEND \"Old mail\" \"01-Jan-2020 10:00:00 +0000\" {3+}\r\none",
            "APPEND \"Old mail\" \"01-Jan-2021 10:00:00 +0000\" {3+}\r\ntwo",
            "APPEND \"Old mail\" {5+}\r\nthree",
        ],
    );
    assert!(seen.contains("5 OK"), "{seen}");
    let out = at(d, &["mailbox", "list", "--user", "alice"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains("INBOX\n") && listed.contains("Old mail\n"),
        "{listed}{}",
        text(&out.stderr)
    );
    assert!(listed.contains("Trash (\\Trash)\n"), "{listed}");
    let out = at(
        d,
        &[
            "mailbox",
            "status",
            "--user",
            "alice",
            "--mailbox",
            "Old mail",
        ],
    );
    let status = text(&out.stdout);
    let row: Vec<&str> = status.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..6], ["Old", "mail", "3", "3", "0", "11"], "{status}");
    // Through the running server, which holds the index.
    let out = at(
        d,
        &[
            "expunge",
            "--user",
            "alice",
            "--mailbox",
            "Old mail",
            "--before",
            "2021-06-01",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "expunged 2 messages from Old mail\n");
    let seen = imap(
        &addr,
        &["LOGIN alice alice-password", "SELECT \"Old mail\""],
    );
    assert!(seen.contains("* 1 EXISTS"), "{seen}");
    let out = at(
        d,
        &[
            "expunge",
            "--user",
            "alice",
            "--mailbox",
            "Nowhere",
            "--before",
            "1d",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Nowhere"),
        "{}",
        text(&out.stderr)
    );
    assert!(sigterm(&mut child).success());
    // Alone, with no server running.
    let out = at(
        d,
        &[
            "expunge",
            "--user",
            "alice",
            "--mailbox",
            "Old mail",
            "--before",
            "2099-01-01",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "expunged 1 messages from Old mail\n");
    let out = at(d, &["mailbox", "status", "--user", "alice"]);
    let total = text(&out.stdout);
    let total: Vec<&str> = total.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(total, ["total", "0", "0"]);
}
