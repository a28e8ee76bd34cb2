//! The control socket, `<data_dir>/control.sock` (mode 0600): admin commands that must run
//! inside the server, because it holds the users' indexes and the journals' locks: `migrate`,
//! `shipping`, `shipped`, the full-text index's status and rebuild, and `deliver` (for
//! `strata deliver`). It is not a remote admin API: it is a Unix socket for the
//! server's own account.
//!
//! The protocol is lines: the client sends one request (`migrate STORE USER [BATCH]`, USER
//! `*` for everyone, BATCH bodies per batch; `shipping [USER]`, how far each open user's
//! index is shipped; `shipped USER`, once the user's index as it is now is in the store;
//! `deliver USER LEN [MAILBOX]` followed by the message's LEN bytes, answered `ok MAILBOX` or
//! `error nouser|refused|full|tempfail WHY`; `account USER`, after `strata user` changed the
//! account, so the server forgets its cached login and reads its limits again; `expunge USER
//! UNIXTIME MAILBOX`, `strata expunge --before`, answered `ok N`; `mailboxes USER`, a line per
//! mailbox for `strata mailbox`; `usage USER`, answered `ok MESSAGES OCTETS`);
//! the
//! server answers progress lines starting with `. `, then one final
//! line, `ok ...` or `error ...`. A client that goes away stops the work after the batch in
//! flight.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_mailstore::{Mailstore, RelocateOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

use crate::accounts::Accounts;
use crate::backends::Backends;
use crate::migrate::{Users, migrate, progress_line};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "control.sock";

/// The control socket of the server running on `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Binds the socket, refusing when another server answers on it (a stale file from a crash is
/// replaced).
pub async fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    if UnixStream::connect(&path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another Strata server answers on {}: one server per data directory",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The largest message `deliver` takes through the socket (the client checks the configured
/// limit first; this only bounds what a bad request can make the server hold).
const MAX_DELIVER_BYTES: usize = 1 << 30;

/// Serves the socket until shutdown.
pub async fn serve(
    listener: UnixListener,
    store: Arc<Mailstore>,
    backends: Arc<Backends>,
    accounts: Arc<Accounts>,
    auth: Arc<crate::auth::PasswordAuth>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((conn, _)) => {
                tokio::spawn(session(
                    conn,
                    store.clone(),
                    backends.clone(),
                    accounts.clone(),
                    auth.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn session(
    conn: UnixStream,
    store: Arc<Mailstore>,
    backends: Arc<Backends>,
    accounts: Arc<Accounts>,
    auth: Arc<crate::auth::PasswordAuth>,
    shutdown: watch::Receiver<bool>,
) {
    let (read, mut write) = conn.into_split();
    let mut request = String::new();
    let mut reader = BufReader::new(read);
    if reader.read_line(&mut request).await.is_err() {
        return;
    }
    if let Some(rest) = request
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("deliver ")
    {
        let mut parts = rest.splitn(3, ' ');
        let (user, len, mailbox) = (parts.next(), parts.next(), parts.next());
        let answer = match (user, len.and_then(|l| l.parse::<usize>().ok())) {
            (Some(user), Some(len)) if len <= MAX_DELIVER_BYTES => {
                let mut message = vec![0u8; len];
                if reader.read_exact(&mut message).await.is_err() {
                    return;
                }
                crate::lda::answer_control(&store, &accounts, user, mailbox, message).await
            }
            _ => "error refused expected \"deliver USER LEN [MAILBOX]\" and LEN bytes\n".into(),
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    let words: Vec<&str> = request.split_whitespace().collect();
    if let ["shipped", user] = words.as_slice() {
        // Waits until the user's index as it is now is acked in the store, then says so.
        let answer = match store.open_users().into_iter().find(|u| u.name() == *user) {
            None => format!("error {user:?} is not open on this server\n"),
            Some(u) => match u.shipped().await {
                Ok(()) => shipping(&store, Some(user))
                    .first()
                    .map_or("ok\n".to_string(), |l| format!("ok {l}\n")),
                Err(e) => format!("error {e}\n"),
            },
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let ["account", user] = words.as_slice() {
        tracing::info!(request = request.trim_end(), "control request");
        // A changed password must not be taken, nor a removed account, from the login cache.
        auth.forget(user);
        let answer = match store.refresh_limits(user).await {
            Ok(()) => "ok\n".to_string(),
            Err(e) => format!("error {e}\n"),
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let Some(["expunge", user, before, _]) = words.get(..4) {
        tracing::info!(request = request.trim_end(), "control request");
        // The mailbox is the rest of the line: a name may hold spaces.
        let mailbox = request
            .trim_end_matches(['\r', '\n'])
            .splitn(4, ' ')
            .nth(3)
            .unwrap_or_default();
        let answer = match before.parse::<i64>() {
            Ok(before) => {
                match crate::mailbox_admin::expunge_before(&store, user, mailbox, before).await {
                    Ok(n) => format!("ok {n}\n"),
                    Err(e) => format!("error {e:#}\n"),
                }
            }
            Err(_) => "error expected \"expunge USER UNIXTIME MAILBOX\"\n".to_string(),
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let ["mailboxes", user] = words.as_slice() {
        let answer = lines_answer(crate::mailbox_admin::answer_control(&store, user).await);
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let ["usage", user] = words.as_slice() {
        let answer = match accounts.account(user).await {
            Ok(Some(_)) => match store.user(user).await.and_then(|u| u.usage()) {
                Ok(u) => format!("ok {} {}\n", u.messages, u.storage),
                Err(e) => format!("error {e}\n"),
            },
            Ok(None) => format!("error no account named {user:?}\n"),
            Err(e) => format!("error {e}\n"),
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    let per_user: Option<PerUser> = match words.first() {
        Some(&"shipping") => Some(shipping),
        Some(&"fts-status") => Some(fts_status),
        _ => None,
    };
    if let Some(report) = per_user {
        // One line per open user, then how many.
        let lines = report(&store, words.get(1).copied());
        let mut out: String = lines.iter().map(|l| format!(". {l}\n")).collect();
        out.push_str(&format!("ok {} users open\n", lines.len()));
        let _ = write.write_all(out.as_bytes()).await;
        return;
    }
    if let ["tier-status", user] = words.as_slice() {
        let answer = lines_answer(crate::tiering::status(&store, &backends, user).await);
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let ["tier-run", user] = words.as_slice() {
        tracing::info!(request = request.trim_end(), "control request");
        let answer = match (backends.tierer(), *user) {
            (None, _) => "error tiering is not configured ([storage.tiering])\n".to_string(),
            (Some(_), u) if u != "*" && crate::users::check_name(u).is_err() => {
                format!("error {u:?} is not a user name\n")
            }
            (Some(tierer), u) => {
                let users = match u {
                    "*" => Users::All,
                    u => Users::One(u.to_string()),
                };
                let mut lines = Vec::new();
                let mut out = |line: String| {
                    lines.push(line);
                    !*shutdown.borrow()
                };
                match tierer.run(&store, users, &mut out).await {
                    Ok(r) => {
                        let mut text: String = lines.iter().map(|l| format!(". {l}\n")).collect();
                        text.push_str(&format!("ok {}\n", progress_line("total", &r)));
                        text
                    }
                    Err(e) => format!("error {e:#}\n"),
                }
            }
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    if let ["fts-rebuild", user] = words.as_slice() {
        tracing::info!(request = request.trim_end(), "control request");
        let answer = match crate::fts_admin::rebuild_in(&store, user).await {
            Ok(n) => format!("ok {user}: {n} messages indexed\n"),
            Err(e) => format!("error {e:#}\n"),
        };
        let _ = write.write_all(answer.as_bytes()).await;
        return;
    }
    let mut opts = RelocateOptions::default();
    let (to, user) = match words.as_slice() {
        ["migrate", to, user] => (to.to_string(), *user),
        ["migrate", to, user, batch] if batch.parse::<usize>().is_ok_and(|b| b > 0) => {
            opts.batch = batch.parse().unwrap_or(opts.batch);
            (to.to_string(), *user)
        }
        _ => {
            let _ = write
                .write_all(b"error unknown request; expected \"migrate STORE USER [BATCH]\" (USER * for all), \"shipping [USER]\", \"shipped USER\", \"fts-status [USER]\", \"fts-rebuild USER\", \"tier-status USER\" or \"tier-run USER\" (USER * for all)\n")
                .await;
            return;
        }
    };
    let users = match user {
        "*" => Users::All,
        u if crate::users::check_name(u).is_ok() => Users::One(u.to_string()),
        u => {
            let _ = write
                .write_all(format!("error {u:?} is not a user name\n").as_bytes())
                .await;
            return;
        }
    };
    tracing::info!(request = request.trim_end(), "control request");
    // Progress goes through a channel so that a slow client never holds the migration.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let work = tokio::spawn(async move {
        let mut out = move |line: String| !*shutdown.borrow() && tx.send(line).is_ok();
        migrate(&store, &backends, &to, users, &opts, &mut out).await
    });
    let mut client_gone = false;
    while let Some(line) = rx.recv().await {
        if !client_gone
            && write
                .write_all(format!(". {line}\n").as_bytes())
                .await
                .is_err()
        {
            // Dropping the receiver makes the next progress call say stop.
            client_gone = true;
            rx.close();
        }
    }
    let last = match work.await {
        Ok(Ok(r)) => format!("ok {}\n", progress_line("total", &r)),
        Ok(Err(e)) => format!("error {e:#}\n"),
        Err(e) => format!("error the migration task failed: {e}\n"),
    };
    let _ = write.write_all(last.as_bytes()).await;
}

/// The answer of a request whose result is lines: each as a progress line, then `ok`.
fn lines_answer(lines: anyhow::Result<Vec<String>>) -> String {
    match lines {
        Ok(lines) => {
            let mut out: String = lines.iter().map(|l| format!(". {l}\n")).collect();
            out.push_str("ok\n");
            out
        }
        Err(e) => format!("error {e:#}\n"),
    }
}

/// How far each open user's index (or `only`'s) is shipped, one line each: the local MODSEQ,
/// the MODSEQ the store has acked, the operations between them (what the node's loss would
/// lose under `append_ack = "soft-done"`), the changes they hold, failures, the epoch.
fn shipping(store: &Mailstore, only: Option<&str>) -> Vec<String> {
    open_users(store, only)
        .iter()
        .filter_map(|u| {
            let p = u.ship_progress()?;
            let local = u.snapshot().ok()?.modseq().0;
            Some(format!(
                "user={} local={local} shipped={} unshipped={} pending_changes={} failures={} epoch={}{}",
                u.name(),
                p.acked.0,
                local.saturating_sub(p.acked.0),
                p.pending_changes,
                p.failures,
                p.chain.map_or(0, |c| c.epoch),
                if p.fenced.is_some() { " fenced" } else { "" },
            ))
        })
        .collect()
}

/// The users open on this server (or only the one named), by name.
fn open_users(store: &Mailstore, only: Option<&str>) -> Vec<Arc<strata_mailstore::UserStore>> {
    let mut users: Vec<_> = store
        .open_users()
        .into_iter()
        .filter(|u| only.is_none_or(|o| o == u.name()))
        .collect();
    users.sort_by(|a, b| a.name().cmp(b.name()));
    users
}

/// A report of one line per open user (or only the one named).
type PerUser = fn(&Mailstore, Option<&str>) -> Vec<String>;

/// Each open user's full-text index (or `only`'s), one line each: messages held, contents
/// waiting and how long the oldest has waited, whether a full comparison is pending.
fn fts_status(store: &Mailstore, only: Option<&str>) -> Vec<String> {
    open_users(store, only)
        .iter()
        .filter_map(|u| {
            let lag = u.fts_lag()?;
            Some(format!(
                "user={} indexed={} queued={} oldest_ms={}{}",
                u.name(),
                lag.indexed,
                lag.queued,
                lag.oldest.as_millis(),
                if lag.resync { " comparing" } else { "" },
            ))
        })
        .collect()
}

/// Sends one request to the server on `data_dir` and hands each progress line to `line`;
/// returns the final line's text after `ok`, or an error with the text after `error`.
/// `Ok(None)` when no server answers on the socket.
pub async fn request(
    data_dir: &Path,
    text: &str,
    line: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Option<String>> {
    exchange(data_dir, text, &[], line).await
}

/// [`request`] whose line is followed by `data` (a message to `deliver`).
pub async fn request_with(
    data_dir: &Path,
    text: &str,
    data: &[u8],
) -> anyhow::Result<Option<String>> {
    exchange(data_dir, text, data, &mut |_| {}).await
}

async fn exchange(
    data_dir: &Path,
    text: &str,
    data: &[u8],
    line: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Option<String>> {
    let mut conn = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => anyhow::bail!("{}: {e}", socket_path(data_dir).display()),
    };
    conn.write_all(format!("{text}\n").as_bytes()).await?;
    conn.write_all(data).await?;
    let mut lines = BufReader::new(conn).lines();
    while let Some(l) = lines.next_line().await? {
        if let Some(p) = l.strip_prefix(". ") {
            line(p);
        } else if let Some(ok) = l.strip_prefix("ok") {
            return Ok(Some(ok.trim_start().to_string()));
        } else if let Some(err) = l.strip_prefix("error ") {
            anyhow::bail!("{err}");
        }
    }
    anyhow::bail!("the server closed the control connection without an answer")
}
