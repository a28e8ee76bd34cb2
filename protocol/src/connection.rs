//! Driving a session over a byte stream: framing (`framing`, `fragments`), literal
//! continuation and limits, the AUTHENTICATE and IDLE sub-dialogues, timeouts and shutdown.

use std::ops::Range;
use std::time::{Duration, Instant};

use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, LineEnding, LiteralAnnouncement};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Literal;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use strata_mailstore::model::CommitEvent;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use crate::commands;
use crate::compress;
use crate::framing::{Framer, Sizes, Skipped};
use crate::grammar::{self, Detached};
use crate::respond::Responder;
use crate::session::{Next, Session, To};

/// The command with its APPEND message (when it lies in `message`) replaced by an empty
/// one, everything else made owned, and where in `message` that literal was: a message of
/// megabytes is then handed on without being copied again.
fn detach_message(cmd: Command<'_>, message: &[u8]) -> (Command<'static>, Option<Range<usize>>) {
    let Command {
        tag,
        body:
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message: literal,
            },
    } = cmd
    else {
        return (cmd.into_static(), None);
    };
    let data: &[u8] = match &literal {
        LiteralOrLiteral8::Literal(l) => l.as_ref(),
        LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
    };
    // Addresses compared, not dereferenced: where the literal's bytes sit in the buffer.
    let start = (data.as_ptr() as usize).wrapping_sub(message.as_ptr() as usize);
    let inside = start
        .checked_add(data.len())
        .is_some_and(|end| end <= message.len());
    let (literal, range) = if inside {
        let empty = LiteralOrLiteral8::Literal(Literal::unvalidated(&b""[..]));
        (empty, Some(start..start + data.len()))
    } else {
        (literal, None)
    };
    let body = CommandBody::Append {
        mailbox,
        flags,
        date,
        message: literal,
    };
    (Command { tag, body }.into_static(), range)
}

/// Limits on what a client may send, and how long it may take.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest command line (without literals), in bytes, once logged in.
    pub max_command_bytes: u32,
    /// Largest literal, in bytes, once logged in.
    pub max_literal_bytes: u32,
    /// Longest command line before login: a client that has not logged in holds little.
    pub max_command_bytes_before_login: u32,
    /// Largest literal before login (a user name or password).
    pub max_literal_bytes_before_login: u32,
    /// How long after connecting a client has to log in, however busy it keeps the line.
    pub login_timeout: Duration,
    /// How long a command may take to arrive once it has begun (one more second for each
    /// [`LITERAL_BYTES_PER_SECOND`] it announces), so a trickle cannot hold a connection.
    pub command_timeout: Duration,
    /// Silence allowed after login (IDLE is exempt).
    pub idle_timeout: Duration,
}

/// The slowest a literal may arrive before its command times out (64 KiB/s).
pub const LITERAL_BYTES_PER_SECOND: u64 = 64 * 1024;

impl Limits {
    fn sizes(&self, authenticated: bool) -> Sizes {
        if authenticated {
            Sizes {
                line: self.max_command_bytes,
                literal: self.max_literal_bytes,
            }
        } else {
            Sizes {
                line: self
                    .max_command_bytes_before_login
                    .min(self.max_command_bytes),
                literal: self
                    .max_literal_bytes_before_login
                    .min(self.max_literal_bytes),
            }
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The client logged out or closed the connection.
    Closed,
    /// STARTTLS was answered: upgrade the stream, update the session's options, call [`run`]
    /// again (without a greeting).
    StartTls,
    /// The server is shutting down; BYE was sent.
    Shutdown,
    /// The client was silent, or slow, too long; BYE was sent.
    TimedOut,
    /// Another node took the user over; `BYE [UNAVAILABLE]` was sent.
    Fenced,
}

enum Mode {
    Command,
    Authenticate,
    Idle,
}

/// The greeting line.
pub fn greeting(session: &Session) -> String {
    format!(
        "* OK [CAPABILITY {}] Strata ready\r\n",
        session.capabilities()
    )
}

enum Event {
    Data(usize),
    Eof,
    Timeout,
    Shutdown,
    Changed,
    /// Another node took the user over.
    Fenced(String),
}

/// Which clock ran out.
enum Deadline {
    Login,
    Command,
    Idle,
}

/// Serves `session` over `stream` until it ends.
pub async fn run<S>(
    stream: &mut S,
    session: &mut Session,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Exit>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match serve(stream, session, limits, shutdown).await? {
        Ended::Exit(e) => Ok(e),
        Ended::Compress => {
            // From here on both directions are DEFLATE (RFC 4978); nothing was read past the
            // COMPRESS command, which the client sends alone.
            let mut z = compress::deflate(stream);
            session.compressed = true;
            let ended = serve(&mut z, session, limits, shutdown).await;
            let _ = z.shutdown().await;
            match ended? {
                Ended::Exit(e) => Ok(e),
                // COMPRESS is refused once compression is on.
                Ended::Compress => Ok(Exit::Closed),
            }
        }
    }
}

/// How one pass of [`serve`] ended.
enum Ended {
    Exit(Exit),
    /// COMPRESS DEFLATE was answered: wrap the stream and serve on.
    Compress,
}

async fn serve<S>(
    stream: &mut S,
    session: &mut Session,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let authenticated = |s: &Session| s.authenticated();
    let mut framer = Framer::new(limits.sizes(authenticated(session)));
    let login_deadline = session.connected_at + limits.login_timeout;
    // Small enough that idle connections stay cheap; large reads just take more turns.
    let mut buf = vec![0u8; 16 * 1024];
    let mut mode = Mode::Command;
    let mut refused: Option<&'static str> = None;
    let mut events: Option<broadcast::Receiver<_>> = None;
    // When the command being received began, and the extra time its literals earn.
    let mut command_since: Option<Instant> = None;
    let mut literal_time = Duration::ZERO;
    loop {
        // Read until one whole message (line plus literals) is in.
        let fragment = framer.progress();
        match fragment {
            Some(FragmentInfo::Line {
                start,
                end,
                announcement,
                ending,
            }) => {
                let max_line = framer.sizes().line as usize;
                let frag = &mut framer.frag;
                if ending == LineEnding::Lf {
                    frag.poison_message();
                    refused.get_or_insert("lines must end with CRLF");
                }
                if end - start > max_line {
                    frag.poison_message();
                    refused.get_or_insert("command line too long");
                }
                if let Some(ann) = announcement {
                    let max_literal = framer.sizes().literal;
                    let frag = &mut framer.frag;
                    let mut w = Responder::new(stream);
                    if !matches!(mode, Mode::Command) {
                        frag.poison_message();
                        refused.get_or_insert("literal not allowed here");
                    } else if let Some((code, why)) =
                        literal_refusal(session, frag.message_bytes(), ann, max_literal)
                    {
                        let tag = frag
                            .decode_tag()
                            .map(|t| t.as_ref().to_string())
                            .unwrap_or_else(|| "*".into());
                        if ann.mode == LiteralMode::Sync {
                            // The client waits for "+": refuse now, and it sends nothing more.
                            w.tagged_no(&tag, Some(code), &why);
                            w.flush().await?;
                            frag.skip_message();
                            refused = None;
                            command_since = None;
                            literal_time = Duration::ZERO;
                            continue;
                        }
                        // LITERAL+: the data comes anyway; it is read and dropped.
                        frag.poison_message();
                        refused = Some("TOOBIG");
                    } else {
                        literal_time +=
                            Duration::from_secs(u64::from(ann.length) / LITERAL_BYTES_PER_SECOND);
                        if ann.mode == LiteralMode::Sync && refused.is_none() {
                            w.continuation("Ready for literal data");
                            w.flush().await?;
                        }
                    }
                }
            }
            Some(FragmentInfo::Literal { .. }) => {}
            None => {
                // An overlong line is dropped now, not when its CRLF comes.
                framer.overlong();
                framer.idle_point();
                let now = Instant::now();
                let partial = framer.receiving();
                if partial {
                    command_since.get_or_insert(now);
                } else {
                    command_since = None;
                    literal_time = Duration::ZERO;
                }
                let (deadline, which) = if !authenticated(session) {
                    (Some(login_deadline), Deadline::Login)
                } else if let Some(since) = command_since {
                    (
                        Some(since + limits.command_timeout + literal_time),
                        Deadline::Command,
                    )
                } else if matches!(mode, Mode::Idle) {
                    (None, Deadline::Idle)
                } else {
                    (Some(now + limits.idle_timeout), Deadline::Idle)
                };
                let fence = session.user_store().and_then(|u| u.fence_watch());
                match wait(stream, &mut buf, deadline, shutdown, events.as_mut(), fence).await {
                    Event::Data(n) => {
                        if let Skipped::Done(o) = framer.feed(&buf[..n]) {
                            let mut w = Responder::new(stream);
                            match std::mem::replace(&mut mode, Mode::Command) {
                                Mode::Command => {
                                    let tag = o.tag.unwrap_or_else(|| "*".into());
                                    w.tagged_bad(&tag, Some("TOOBIG"), "command line too long");
                                }
                                Mode::Authenticate => {
                                    let tag = commands::take_authenticating(session)
                                        .map_or_else(|| "*".into(), |a| a.tag);
                                    w.tagged_bad(&tag, Some("TOOBIG"), "response line too long");
                                }
                                Mode::Idle => {
                                    events = None;
                                    commands::finish_idle(session, false, &mut w).await;
                                }
                            }
                            w.flush().await?;
                            refused = None;
                            command_since = None;
                            literal_time = Duration::ZERO;
                        }
                    }
                    Event::Eof => return Ok(Ended::Exit(Exit::Closed)),
                    Event::Timeout => {
                        let mut w = Responder::new(stream);
                        w.untagged(match which {
                            Deadline::Login => "BYE login took too long",
                            Deadline::Command => "BYE command took too long to arrive",
                            Deadline::Idle => "BYE autologout: idle for too long",
                        });
                        w.flush().await?;
                        return Ok(Ended::Exit(Exit::TimedOut));
                    }
                    Event::Shutdown => {
                        let mut w = Responder::new(stream);
                        w.untagged("BYE server shutting down");
                        w.flush().await?;
                        return Ok(Ended::Exit(Exit::Shutdown));
                    }
                    Event::Fenced(why) => {
                        // Let go of the user before saying so: a client that logs in again on
                        // hearing BYE must find no session of this server holding it.
                        session.apply(To::Logout);
                        let mut w = Responder::new(stream);
                        w.untagged(&format!(
                            "BYE [UNAVAILABLE] this mailbox is now served by another server: {why}"
                        ));
                        w.flush().await?;
                        return Ok(Ended::Exit(Exit::Fenced));
                    }
                    Event::Changed => {
                        let mut w = Responder::new(stream);
                        commands::idle_update(session, &mut w).await;
                        w.flush().await?;
                    }
                }
                continue;
            }
        }
        let frag = &mut framer.frag;
        if !frag.is_message_complete() {
            continue;
        }
        command_since = None;
        literal_time = Duration::ZERO;
        let mut w = Responder::new(stream);
        match mode {
            Mode::Command => {
                let started = Instant::now();
                // Extension syntax imap-codec lacks first (it never sees a cut message).
                let whole = !frag.is_max_message_size_exceeded() && !frag.is_message_poisoned();
                let in_view = session
                    .selected()
                    .zip(session.user_store())
                    .map(|(sel, user)| crate::selected::InView { sel, user });
                let resolve: &dyn grammar::Resolve = match &in_view {
                    Some(v) => v,
                    None => &grammar::NoMailbox,
                };
                let mut extras = grammar::Extras::default();
                let mut ext_error = None;
                let cmd = match whole.then(|| grammar::parse(frag.message_bytes(), resolve)) {
                    Some(Ok(Some(parsed))) => {
                        extras = parsed.extras;
                        Ok(parsed.command)
                    }
                    Some(Err(why)) => {
                        ext_error = Some(why);
                        Err(None)
                    }
                    _ => match frag.decode_message(&CommandCodec::default()) {
                        Ok(cmd) => {
                            let (cmd, literal) = detach_message(cmd, frag.message_bytes());
                            extras.literal = literal.map(Detached::Range);
                            Ok(cmd)
                        }
                        Err(e) => Err(match e {
                            DecodeMessageError::MessageTooLong { .. } => Some("TOOBIG"),
                            _ => None,
                        }),
                    },
                };
                let tag = frag
                    .decode_tag()
                    .map(|t| t.as_ref().to_string())
                    .unwrap_or_else(|| "*".into());
                if let Some(Detached::Range(range)) = extras.literal.take() {
                    // The APPENDed message leaves in the buffer it arrived in.
                    let message = bytes::Bytes::from(frag.take_message());
                    extras.literal = Some(Detached::Bytes(message.slice(range)));
                }
                match (cmd, refused.take()) {
                    (Ok(cmd), None) => {
                        let name = cmd.body.name();
                        let next = session.handle(cmd, extras, &mut w).await?;
                        strata_metrics::metrics().command(name, w.last_status, started.elapsed());
                        tracing::debug!(
                            user = session.user().unwrap_or("-"),
                            command = name,
                            ms = started.elapsed().as_secs_f64() * 1000.0,
                            result = w.last_status,
                            "command"
                        );
                        w.flush().await?;
                        // Logging in lifts the limits, from the next command on.
                        framer.set_sizes(limits.sizes(authenticated(session)));
                        match next {
                            Next::Continue => {}
                            Next::Close => return Ok(Ended::Exit(Exit::Closed)),
                            Next::StartTls => return Ok(Ended::Exit(Exit::StartTls)),
                            Next::Compress => return Ok(Ended::Compress),
                            Next::Idle => {
                                events = session.user_store().map(|u| u.commits());
                                mode = Mode::Idle;
                                // Anything that happened since the last command.
                                commands::idle_update(session, &mut w).await;
                                w.flush().await?;
                            }
                            Next::AuthContinue => mode = Mode::Authenticate,
                        }
                    }
                    (_, Some("TOOBIG")) | (Err(Some("TOOBIG")), _) => {
                        w.tagged_no(&tag, Some("TOOBIG"), "command or literal too large");
                        w.flush().await?;
                    }
                    (_, Some(why)) => {
                        let code = if why == "command line too long" {
                            "TOOBIG"
                        } else {
                            "PARSE"
                        };
                        w.tagged_bad(&tag, Some(code), why);
                        w.flush().await?;
                    }
                    (Err(_), None) => {
                        let (code, why) = ext_error
                            .as_ref()
                            .map_or(("PARSE", "syntax error in command"), |e| {
                                (e.code, e.text.as_str())
                            });
                        w.tagged_bad(&tag, Some(code), why);
                        w.flush().await?;
                    }
                }
            }
            Mode::Authenticate => {
                mode = Mode::Command;
                let data = match frag.decode_message(&AuthenticateDataCodec::default()) {
                    Ok(AuthenticateData::Continue(d)) => Some(Some(d.declassify().to_vec())),
                    Ok(AuthenticateData::Cancel) => Some(None),
                    Err(_) => None,
                };
                refused = None;
                match data {
                    Some(d) => {
                        if commands::finish_authenticate(session, d, &mut w).await {
                            mode = Mode::Authenticate;
                        }
                    }
                    None => {
                        let tag = commands::take_authenticating(session)
                            .map_or_else(|| "*".into(), |a| a.tag);
                        w.tagged_bad(&tag, None, "malformed base64 in AUTHENTICATE response");
                    }
                }
                w.flush().await?;
            }
            Mode::Idle => {
                mode = Mode::Command;
                events = None;
                let done =
                    frag.decode_message(&IdleDoneCodec::default()).is_ok() && refused.is_none();
                refused = None;
                commands::finish_idle(session, done, &mut w).await;
                w.flush().await?;
            }
        }
    }
}

async fn wait<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Option<Instant>,
    shutdown: &mut watch::Receiver<bool>,
    events: Option<&mut broadcast::Receiver<std::sync::Arc<CommitEvent>>>,
    fence: Option<watch::Receiver<strata_mailstore::ship::Progress>>,
) -> Event {
    if *shutdown.borrow() {
        return Event::Shutdown;
    }
    if let Some(why) = fence.as_ref().and_then(|f| f.borrow().fenced.clone()) {
        return Event::Fenced(why);
    }
    let fenced = async {
        match fence {
            Some(mut rx) => {
                let why = match rx.wait_for(|p| p.fenced.is_some()).await {
                    Ok(p) => Some(p.fenced.clone().unwrap_or_default()),
                    Err(_) => None,
                };
                match why {
                    Some(why) => why,
                    // The shipper is gone (the user is closing): nothing more to learn.
                    None => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    let sleep = async {
        match deadline {
            Some(t) => tokio::time::sleep_until(t.into()).await,
            None => std::future::pending().await,
        }
    };
    let changed = async {
        match events {
            // A lagged receiver still means "something changed".
            Some(rx) => {
                let _ = rx.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = stream.read(buf) => match r {
            Ok(0) | Err(_) => Event::Eof,
            Ok(n) => Event::Data(n),
        },
        _ = sleep => Event::Timeout,
        _ = shutdown.changed() => Event::Shutdown,
        _ = changed => Event::Changed,
        why = fenced => Event::Fenced(why),
    }
}

/// Why a literal announced after `line` is refused, with its response code: larger than the
/// limit (`TOOBIG`), or an APPEND's message that a synchronizing literal announces and that
/// cannot fit its user's quota (`OVERQUOTA`; with LITERAL+ the APPEND itself answers).
fn literal_refusal(
    session: &Session,
    line: &[u8],
    ann: LiteralAnnouncement,
    max_literal: u32,
) -> Option<(&'static str, String)> {
    if ann.length > max_literal {
        let when = if session.authenticated() {
            ""
        } else {
            " before login"
        };
        let why = format!(
            "literal of {} bytes is larger than the limit of {max_literal}{when}",
            ann.length
        );
        return Some(("TOOBIG", why));
    }
    if ann.mode != LiteralMode::Sync {
        return None;
    }
    over_quota(session, line, ann.length).map(|why| ("OVERQUOTA", why))
}

/// Why the message an APPEND announces (`length` octets, after the line `line` so far) cannot
/// fit its user's quota, if it cannot; `None` for any other literal (a mailbox name given as
/// a literal comes before the message, with no argument before it).
fn over_quota(session: &Session, line: &[u8], length: u32) -> Option<String> {
    let user = session.user_store()?;
    let mut words = line.splitn(3, |&b| b == b' ');
    let (_tag, command, rest) = (words.next()?, words.next()?, words.next()?);
    if !command.eq_ignore_ascii_case(b"APPEND") {
        return None;
    }
    // What precedes this literal's `{N}`: the mailbox at least, when the literal is the message.
    let before = &rest[..rest.iter().rposition(|&b| b == b'{')?];
    if before.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    match user.fits(u64::from(length)) {
        Ok(Err(over)) => Some(over.to_string()),
        // Unreadable usage: the APPEND itself will say so.
        Ok(Ok(())) | Err(_) => None,
    }
}
