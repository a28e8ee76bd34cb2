//! One LMTP connection: LHLO, MAIL, RCPT, DATA or BDAT, RSET, NOOP, QUIT, pipelined, with
//! the line, message and recipient limits enforced as bytes arrive. After the message, one
//! reply per accepted recipient (RFC 2033 4.2), each given once that recipient's copy is as
//! durable as `append_ack` says.

use std::sync::Arc;
use std::time::Duration;

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, MAX_LINE_LENGTH, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use strata_mailstore::Mailstore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::address::{AddressRules, NotHere, candidates};
use crate::deliver::{Accepted, deliver};

/// Where accounts are looked up.
#[async_trait::async_trait]
pub trait Directory: Send + Sync {
    /// Whether an account of this name exists; `Err` when accounts cannot be read now.
    async fn exists(&self, name: &str) -> Result<bool, String>;
}

/// How sessions behave.
#[derive(Clone, Debug)]
pub struct Options {
    /// The name the server gives in its greeting and LHLO answer.
    pub hostname: String,
    /// How recipient addresses map to accounts.
    pub rules: AddressRules,
    /// `user+detail@` goes to the mailbox `detail` when the user has one.
    pub detail_mailbox: bool,
    /// Largest message, in bytes (announced as SIZE).
    pub max_message_bytes: usize,
    /// Recipients in one transaction.
    pub max_recipients: usize,
    /// How long the client may take to send a command or the next part of a message.
    pub timeout: Duration,
}

/// What the next bytes are.
enum Mode {
    Commands,
    /// A line longer than any command: skipped to its end, then refused.
    SkipLine,
    Data(DataReceiver),
    Bdat(BdatReceiver),
}

/// The transaction under way.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    accepted: Vec<Accepted>,
    /// RCPT commands seen, refused ones included.
    recipients: usize,
    /// The size MAIL FROM declared (0 when it declared none).
    size: usize,
    body: Vec<u8>,
    /// The message grew past the limit: the rest is read and dropped.
    too_big: bool,
}

/// Serves one connection until QUIT, end of input, a timeout or shutdown.
pub async fn run<S>(
    stream: &mut S,
    opts: &Options,
    directory: &dyn Directory,
    store: &Arc<Mailstore>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut out = format!("220 {} Strata LMTP ready\r\n", opts.hostname).into_bytes();
    let mut buf = vec![0u8; 16 * 1024];
    let mut requests = RequestReceiver::default();
    let mut mode = Mode::Commands;
    let mut greeted = false;
    let mut tx = Transaction::default();
    // Bytes of the command line being received.
    let mut line = 0usize;
    loop {
        stream.write_all(&out).await?;
        stream.flush().await?;
        out.clear();
        let idle = matches!(mode, Mode::Commands) && tx.from.is_none();
        let n = tokio::select! {
            r = stream.read(&mut buf) => r?,
            _ = tokio::time::sleep(opts.timeout) => {
                stream.write_all(b"421 4.4.2 timed out waiting for the client\r\n").await?;
                return Ok(());
            }
            _ = shutdown.changed(), if idle => {
                stream.write_all(b"421 4.3.2 server shutting down\r\n").await?;
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        let mut bytes = buf[..n].iter();
        while !bytes.as_slice().is_empty() {
            match &mut mode {
                Mode::SkipLine => {
                    let rest = bytes.as_slice();
                    let Some(lf) = memchr::memchr(b'\n', rest) else {
                        bytes = [].iter();
                        break;
                    };
                    bytes = rest[lf + 1..].iter();
                    reply(&mut out, "500 5.5.2 line too long");
                    mode = Mode::Commands;
                }
                Mode::Data(receiver) => {
                    let done = receiver.ingest(&mut bytes, &mut tx.body);
                    check_size(&mut tx, opts);
                    if done {
                        mode = Mode::Commands;
                        finish(&mut out, &mut tx, opts, store).await;
                    }
                }
                Mode::Bdat(receiver) => {
                    let before = tx.body.len();
                    let done = receiver.ingest(&mut bytes, &mut tx.body);
                    check_size(&mut tx, opts);
                    if done {
                        let last = receiver.is_last;
                        mode = Mode::Commands;
                        if tx.accepted.is_empty() {
                            // The chunk is read either way: its bytes are not commands.
                            tx.body.truncate(before);
                            reply(&mut out, "503 5.5.1 no valid recipients");
                        } else if last {
                            finish(&mut out, &mut tx, opts, store).await;
                        } else {
                            let got = tx.body.len() - before;
                            reply(&mut out, &format!("250 2.0.0 {got} octets received"));
                        }
                    }
                }
                Mode::Commands => {
                    let rest = bytes.as_slice();
                    let upto = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    if line + upto > MAX_LINE_LENGTH {
                        // Refused however it arrives, whole in one read or in pieces.
                        requests = RequestReceiver::default();
                        line = 0;
                        mode = Mode::SkipLine;
                        continue;
                    }
                    let result = requests.ingest(&mut bytes);
                    line = match &result {
                        Err(ProtoError::NeedsMoreData { .. }) => line + rest.len(),
                        _ => 0,
                    };
                    match result {
                        Ok(request) => {
                            let request = request.into_owned();
                            let step =
                                command(request, &mut tx, &mut greeted, opts, directory, store)
                                    .await;
                            reply(&mut out, &step.reply);
                            if let Some(next) = step.mode {
                                mode = next;
                            }
                            if step.quit {
                                stream.write_all(&out).await?;
                                stream.flush().await?;
                                return Ok(());
                            }
                        }
                        Err(ProtoError::NeedsMoreData { .. }) => break,
                        Err(ProtoError::ResponseTooLong) => mode = Mode::SkipLine,
                        Err(e) => reply(&mut out, &refusal(&e)),
                    }
                }
            }
        }
    }
}

/// Why a message of `size` octets (as MAIL FROM declared it) cannot fit `user`'s quota, if
/// it cannot: refused at RCPT, before the message is sent. A user that cannot be opened now is
/// accepted here and answered after DATA.
async fn full(store: &Arc<Mailstore>, user: &str, size: usize) -> Option<String> {
    let user = store.user(user).await.ok()?;
    match user.fits(size as u64) {
        Ok(Err(over)) => Some(over.to_string()),
        _ => None,
    }
}

/// What a command did.
struct Step {
    reply: String,
    mode: Option<Mode>,
    quit: bool,
}

impl Step {
    fn say(reply: impl Into<String>) -> Step {
        Step {
            reply: reply.into(),
            mode: None,
            quit: false,
        }
    }
}

async fn command(
    request: Request<String>,
    tx: &mut Transaction,
    greeted: &mut bool,
    opts: &Options,
    directory: &dyn Directory,
    store: &Arc<Mailstore>,
) -> Step {
    match request {
        Request::Lhlo { .. } => {
            *greeted = true;
            *tx = Transaction::default();
            Step::say(format!(
                "250-{}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n250 SIZE {}",
                opts.hostname, opts.max_message_bytes
            ))
        }
        Request::Ehlo { .. } | Request::Helo { .. } => {
            Step::say("500 5.5.1 this is LMTP (RFC 2033): greet with LHLO")
        }
        Request::Mail { from } => {
            if !*greeted {
                Step::say("503 5.5.1 LHLO first")
            } else if tx.from.is_some() {
                Step::say("503 5.5.1 a transaction is already open; RSET first")
            } else if from.size > opts.max_message_bytes {
                Step::say(format!(
                    "552 5.3.4 a message of {} bytes is larger than the limit of {}",
                    from.size, opts.max_message_bytes
                ))
            } else {
                tx.from = Some(from.address);
                tx.size = from.size;
                Step::say("250 2.1.0 sender OK")
            }
        }
        Request::Rcpt { to } => {
            if tx.from.is_none() {
                return Step::say("503 5.5.1 MAIL first");
            }
            tx.recipients += 1;
            if tx.recipients > opts.max_recipients {
                return Step::say(format!(
                    "452 4.5.3 too many recipients: at most {} in one transaction",
                    opts.max_recipients
                ));
            }
            match resolve(&to.address, opts, directory).await {
                Ok(Some((user, detail))) => {
                    if let Some(over) = full(store, &user, tx.size).await {
                        strata_metrics::metrics().delivery("over_quota");
                        return Step::say(format!(
                            "552 5.2.2 <{}>: mailbox full: {over}",
                            to.address
                        ));
                    }
                    tx.accepted.push(Accepted {
                        address: to.address,
                        user,
                        detail: detail.filter(|_| opts.detail_mailbox),
                    });
                    Step::say("250 2.1.5 recipient OK")
                }
                Ok(None) => {
                    strata_metrics::metrics().delivery("no_user");
                    Step::say(format!("550 5.1.1 <{}>: no such user here", to.address))
                }
                Err(Refused::Domain) => Step::say(format!(
                    "550 5.1.2 <{}>: this server does not take mail for that domain",
                    to.address
                )),
                Err(Refused::Malformed) => Step::say(format!(
                    "501 5.1.3 <{}>: not an address an account can have",
                    to.address
                )),
                Err(Refused::Unavailable(why)) => {
                    Step::say(format!("451 4.3.0 accounts cannot be read now: {why}"))
                }
            }
        }
        Request::Data => {
            if tx.from.is_none() {
                Step::say("503 5.5.1 MAIL first")
            } else if tx.accepted.is_empty() {
                Step::say("503 5.5.1 no valid recipients")
            } else {
                Step {
                    reply: "354 2.0.0 send the message, ending with <CRLF>.<CRLF>".into(),
                    mode: Some(Mode::Data(DataReceiver::new())),
                    quit: false,
                }
            }
        }
        Request::Bdat {
            chunk_size,
            is_last,
        } => {
            // The chunk follows whatever the answer: it is read, and dropped if refused.
            let mode = Some(Mode::Bdat(BdatReceiver::new(chunk_size, is_last)));
            Step {
                reply: String::new(),
                mode,
                quit: false,
            }
        }
        Request::Rset => {
            *tx = Transaction::default();
            Step::say("250 2.0.0 reset")
        }
        Request::Noop { .. } => Step::say("250 2.0.0 OK"),
        Request::Quit => Step {
            reply: "221 2.0.0 bye".into(),
            mode: None,
            quit: true,
        },
        Request::Vrfy { .. } => Step::say("252 2.5.0 cannot verify; send the mail and see"),
        Request::StartTls | Request::Auth { .. } => {
            Step::say("502 5.5.1 not offered: LMTP is for a trusted local mail server")
        }
        other => Step::say(format!("502 5.5.1 {} is not implemented", other.name())),
    }
}

/// Why a recipient was refused.
enum Refused {
    Domain,
    Malformed,
    Unavailable(String),
}

/// The account (and detail) an address names, trying [`candidates`] in order.
async fn resolve(
    address: &str,
    opts: &Options,
    directory: &dyn Directory,
) -> Result<Option<(String, Option<String>)>, Refused> {
    let names = candidates(&opts.rules, address).map_err(|e| match e {
        NotHere::Domain => Refused::Domain,
        NotHere::Malformed => Refused::Malformed,
    })?;
    for (name, detail) in names {
        if directory
            .exists(&name)
            .await
            .map_err(Refused::Unavailable)?
        {
            return Ok(Some((name, detail)));
        }
    }
    Ok(None)
}

/// Drops what arrived past the size limit (the rest of the message is still read).
fn check_size(tx: &mut Transaction, opts: &Options) {
    if tx.body.len() > opts.max_message_bytes {
        tx.too_big = true;
        tx.body = Vec::new();
    }
}

/// The message is in: deliver it, one reply per accepted recipient; the transaction ends.
async fn finish(out: &mut Vec<u8>, tx: &mut Transaction, opts: &Options, store: &Arc<Mailstore>) {
    let tx = std::mem::take(tx);
    if tx.too_big {
        for a in &tx.accepted {
            reply(
                out,
                &format!(
                    "552 5.3.4 <{}>: the message is larger than the limit of {} bytes",
                    a.address, opts.max_message_bytes
                ),
            );
        }
        return;
    }
    let from = tx.from.unwrap_or_default();
    for line in deliver(store, &from, &tx.accepted, tx.body).await {
        reply(out, &line);
    }
}

/// Appends one reply (possibly several lines already joined by CRLF).
fn reply(out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
        return;
    }
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The answer to a command the parser refused.
fn refusal(e: &ProtoError) -> String {
    match e {
        ProtoError::UnknownCommand => "500 5.5.1 unknown command".into(),
        ProtoError::InvalidSenderAddress => "501 5.1.7 bad sender address".into(),
        ProtoError::InvalidRecipientAddress => "501 5.1.3 bad recipient address".into(),
        ProtoError::SyntaxError { syntax } => format!("501 5.5.4 syntax: {syntax}"),
        ProtoError::InvalidParameter { param } => format!("501 5.5.4 invalid parameter {param}"),
        ProtoError::UnsupportedParameter { param } => {
            format!("555 5.5.4 unsupported parameter {param}")
        }
        _ => "500 5.5.2 syntax error".into(),
    }
}
