//! Postfix, from Debian's package, relays mail submitted with Python's smtplib into Strata over
//! LMTP: the messages appear in INBOX (and in `detail` for `user+detail@`), an unknown user
//! bounces, and while the store is down Postfix keeps the mail queued and delivers it once the
//! store is back. Postfix runs with its own configuration and queue under a temporary
//! directory, on loopback ports; starting it needs root, as Postfix does.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use strata_integration_tests::{TestServer, read_delay};

/// A Postfix instance of its own.
struct Postfix {
    dir: tempfile::TempDir,
    smtp: u16,
}

impl Postfix {
    /// Starts Postfix, delivering `example.org` to `lmtp`, and waits for its SMTP port.
    async fn start(lmtp: SocketAddr) -> Postfix {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        let smtp = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = root.join("etc");
        for d in ["etc", "queue", "data"] {
            std::fs::create_dir_all(root.join(d)).expect("directory");
        }
        let status = Command::new("chown")
            .args(["postfix"])
            .arg(root.join("data"))
            .status()
            .expect("chown");
        assert!(
            status.success(),
            "the postfix user exists (Debian's postfix package)"
        );
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {root}/queue\n\
             data_directory = {root}/data\n\
             maillog_file = {root}/maillog\n\
             maillog_file_prefixes = {root}\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = mta.example.net\n\
             myorigin = example.net\n\
             mydestination =\n\
             alias_maps =\n\
             alias_database =\n\
             virtual_mailbox_domains = example.org\n\
             virtual_transport = lmtp:inet:{lmtp}\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 1s\n\
             biff = no\n\
             smtputf8_enable = no\n",
            root = root.display()
        );
        std::fs::write(conf.join("main.cf"), main).expect("main.cf");
        // Debian's services, none chrooted (the queue is not set up for it).
        let services = [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ];
        let master = format!(
            "127.0.0.1:{smtp} inet n - n - - smtpd\n{}\n",
            services.join("\n")
        );
        std::fs::write(conf.join("master.cf"), master).expect("master.cf");
        let pf = Postfix { dir, smtp };
        let out = pf.postfix("start");
        assert!(
            out.status.success(),
            "postfix start (needs root): {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.maillog()
        );
        pf.until("Postfix's SMTP port", || {
            std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
        })
        .await;
        pf
    }

    fn postfix(&self, verb: &str) -> std::process::Output {
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        let postfix = ["/usr/sbin/postfix", "postfix"]
            .into_iter()
            .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
            .unwrap_or("postfix");
        Command::new(postfix)
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg(verb)
            .output()
            .expect("run postfix (Debian's postfix package)")
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Waits for `done` (Postfix's log and spool are only seen from outside: polled).
    async fn until(&self, what: &str, done: impl FnMut() -> bool) {
        strata_integration_tests::until(what, Duration::from_secs(60), done).await;
    }

    /// Submits a message over SMTP with Python's smtplib.
    fn submit(&self, to: &[&str], subject: &str) {
        let script = "import smtplib, sys\n\
            port, subject, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3:]\n\
            msg = ('From: sender@example.net\\r\\nSubject: %s\\r\\n\\r\\nHello from Postfix.\\r\\n' % subject).encode()\n\
            with smtplib.SMTP('127.0.0.1', port) as s:\n\
            \x20   s.sendmail('sender@example.net', rcpts, msg)\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(self.smtp.to_string())
            .arg(subject)
            .args(to)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "smtplib: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("abort");
    }
}

/// Waits until `user`'s `mailbox` holds `n` messages, told by IDLE; returns them.
async fn wait_for(
    s: &TestServer,
    pf: &Postfix,
    user: &str,
    mailbox: &str,
    n: usize,
) -> Vec<String> {
    let mut c = s.login(user).await;
    let selected = c.ok(&format!("SELECT {mailbox}")).await;
    let mut exists = selected
        .with("")
        .iter()
        .find_map(|l| l.strip_suffix(" EXISTS")?.parse::<usize>().ok())
        .unwrap_or(0);
    if exists < n {
        c.send_raw(b"w IDLE\r\n").await;
        while exists < n {
            let Some(line) = c.read_response_within(Duration::from_secs(60)).await else {
                panic!(
                    "{user}/{mailbox} has {exists} of {n} messages after a minute; Postfix's log:\n{}",
                    pf.maillog()
                );
            };
            if let Some(count) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXISTS"))
            {
                exists = count.parse().unwrap_or(exists);
            }
        }
    }
    s.messages(user, mailbox).await
}

fn logged(pf: &Postfix, to: &str, status: &str) -> bool {
    pf.maillog()
        .lines()
        .any(|l| l.contains(&format!("to=<{to}>")) && l.contains(&format!("status={status}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_delivers_over_lmtp_bounces_the_unknown_and_retries_through_an_outage() {
    let s = TestServer::start_with(|c| {
        c.lmtp.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        c.lmtp.domains = vec!["example.org".into()];
        // A store that can be taken down and brought back.
        c.storage.main.delay = Some(read_delay(Duration::ZERO, Duration::ZERO));
    })
    .await;
    let mut bob = s.login("bob").await;
    bob.ok("CREATE lists").await;
    let pf = Postfix::start(s.server().lmtp.expect("LMTP listener")).await;

    pf.submit(&["alice@example.org", "bob+lists@example.org"], "first");
    pf.submit(&["nobody@example.org"], "to nobody");
    let alice = wait_for(&s, &pf, "alice", "INBOX", 1).await;
    assert!(
        alice[0].starts_with("Return-Path: <sender@example.net>\r\n"),
        "{}",
        alice[0]
    );
    assert!(
        alice[0].contains("Received: from "),
        "Postfix's trace is kept"
    );
    assert!(alice[0].contains("\r\nSubject: first\r\n"), "{}", alice[0]);
    assert!(
        alice[0].ends_with("\r\n\r\nHello from Postfix.\r\n"),
        "{}",
        alice[0]
    );
    let lists = wait_for(&s, &pf, "bob", "lists", 1).await;
    assert!(lists[0].contains("Subject: first\r\n"));
    pf.until("the bounce of nobody@", || {
        logged(&pf, "nobody@example.org", "bounced")
    })
    .await;

    // The store goes down: Postfix is told to try again later and keeps the message.
    s.server().backends.set_error_rate(1.0);
    pf.submit(&["alice@example.org"], "during the outage");
    pf.until("the deferral", || {
        logged(&pf, "alice@example.org", "deferred")
    })
    .await;
    s.server().backends.set_error_rate(0.0);
    let alice = wait_for(&s, &pf, "alice", "INBOX", 2).await;
    assert_eq!(alice.len(), 2, "delivered once");
    assert!(alice[1].contains("Subject: during the outage\r\n"));
}
