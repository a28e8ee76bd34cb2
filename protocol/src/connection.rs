//! Driving a session over a byte stream: framing with imap-codec's fragmentizer, literal
//! continuation and limits, the AUTHENTICATE and IDLE sub-dialogues, timeouts and shutdown.

use std::time::{Duration, Instant};

use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer, LineEnding};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{broadcast, watch};

use crate::commands;
use crate::respond::Responder;
use crate::session::{Next, Session, State};

/// Limits on what a client may send, and how long it may stay silent.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest command line (without literals), in bytes.
    pub max_command_bytes: u32,
    /// Largest literal, in bytes.
    pub max_literal_bytes: u32,
    /// Silence allowed before login.
    pub login_timeout: Duration,
    /// Silence allowed after login (IDLE is exempt).
    pub idle_timeout: Duration,
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
    /// The client was silent too long; BYE was sent.
    TimedOut,
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
    let max_message = limits
        .max_command_bytes
        .saturating_add(limits.max_literal_bytes)
        .saturating_add(limits.max_command_bytes);
    let mut frag = Fragmentizer::new(max_message);
    // Small enough that idle connections stay cheap; large reads just take more turns.
    let mut buf = vec![0u8; 16 * 1024];
    let mut mode = Mode::Command;
    let mut refused: Option<&'static str> = None;
    let mut events: Option<broadcast::Receiver<_>> = None;
    loop {
        // Read until one whole message (line plus literals) is in.
        let fragment = frag.progress();
        match fragment {
            Some(FragmentInfo::Line {
                start,
                end,
                announcement,
                ending,
            }) => {
                if ending == LineEnding::Lf {
                    frag.poison_message();
                    refused.get_or_insert("lines must end with CRLF");
                }
                if end - start > limits.max_command_bytes as usize {
                    frag.poison_message();
                    refused.get_or_insert("command line too long");
                }
                if let Some(ann) = announcement {
                    let mut w = Responder::new(stream);
                    if !matches!(mode, Mode::Command) {
                        frag.poison_message();
                        refused.get_or_insert("literal not allowed here");
                    } else if ann.length > limits.max_literal_bytes {
                        let tag = frag
                            .decode_tag()
                            .map(|t| t.as_ref().to_string())
                            .unwrap_or_else(|| "*".into());
                        let why = format!(
                            "literal of {} bytes is larger than the limit of {}",
                            ann.length, limits.max_literal_bytes
                        );
                        if ann.mode == LiteralMode::Sync {
                            // The client waits for "+": refuse now, and it sends nothing more.
                            w.tagged_no(&tag, Some("TOOBIG"), &why);
                            w.flush().await?;
                            frag.skip_message();
                            refused = None;
                            continue;
                        }
                        // LITERAL+: the data comes anyway; it is read and dropped.
                        frag.poison_message();
                        refused = Some("TOOBIG");
                    } else if ann.mode == LiteralMode::Sync && refused.is_none() {
                        w.continuation("Ready for literal data");
                        w.flush().await?;
                    }
                }
            }
            Some(FragmentInfo::Literal { .. }) => {}
            None => {
                let timeout = match (&mode, &session.state) {
                    (Mode::Idle, _) => None,
                    (_, State::NotAuthenticated) => Some(limits.login_timeout),
                    _ => Some(limits.idle_timeout),
                };
                match wait(stream, &mut buf, timeout, shutdown, events.as_mut()).await {
                    Event::Data(n) => frag.enqueue_bytes(&buf[..n]),
                    Event::Eof => return Ok(Exit::Closed),
                    Event::Timeout => {
                        let mut w = Responder::new(stream);
                        w.untagged("BYE autologout: idle for too long");
                        w.flush().await?;
                        return Ok(Exit::TimedOut);
                    }
                    Event::Shutdown => {
                        let mut w = Responder::new(stream);
                        w.untagged("BYE server shutting down");
                        w.flush().await?;
                        return Ok(Exit::Shutdown);
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
        if !frag.is_message_complete() {
            continue;
        }
        let mut w = Responder::new(stream);
        match mode {
            Mode::Command => {
                let started = Instant::now();
                let decoded = frag.decode_message(&CommandCodec::default());
                let cmd = match decoded {
                    Ok(cmd) => Ok(cmd.into_static()),
                    Err(e) => Err(match e {
                        DecodeMessageError::MessageTooLong { .. } => Some("TOOBIG"),
                        _ => None,
                    }),
                };
                let tag = frag
                    .decode_tag()
                    .map(|t| t.as_ref().to_string())
                    .unwrap_or_else(|| "*".into());
                match (cmd, refused.take()) {
                    (Ok(cmd), None) => {
                        let name = cmd.body.name();
                        let next = session.handle(cmd, &mut w).await?;
                        tracing::debug!(
                            user = session.user().unwrap_or("-"),
                            command = name,
                            ms = started.elapsed().as_secs_f64() * 1000.0,
                            result = w.last_status,
                            "command"
                        );
                        w.flush().await?;
                        match next {
                            Next::Continue => {}
                            Next::Close => return Ok(Exit::Closed),
                            Next::StartTls => return Ok(Exit::StartTls),
                            Next::Idle => {
                                events = session.user_store().map(|u| u.index().subscribe());
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
                        w.tagged_bad(&tag, Some("PARSE"), "syntax error in command");
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
                    Some(d) => commands::finish_authenticate(session, d, &mut w).await,
                    None => {
                        let tag = session.pending_auth.take().unwrap_or_else(|| "*".into());
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
    timeout: Option<Duration>,
    shutdown: &mut watch::Receiver<bool>,
    events: Option<&mut broadcast::Receiver<std::sync::Arc<strata_index::CommitEvent>>>,
) -> Event {
    if *shutdown.borrow() {
        return Event::Shutdown;
    }
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
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
    }
}
