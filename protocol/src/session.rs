//! One IMAP session: its state (RFC 3501 section 3), which commands each state allows, and the
//! dispatch of a decoded command to its handler. State changes only through [`Session::apply`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use imap_codec::imap_types::command::Command;
use strata_mailstore::{Mailstore, UserStore};

use crate::commands;
use crate::grammar::Extras;
use crate::respond::Responder;
use crate::selected::Selected;

/// The RFC 3501 session states, each holding what it needs: no state can be reached without the
/// user or mailbox it is about.
pub enum State {
    /// Before login; `authenticating` is an AUTHENTICATE waiting for a response line.
    NotAuthenticated {
        /// The AUTHENTICATE in progress.
        authenticating: Option<crate::commands::Authenticating>,
    },
    /// Logged in, no mailbox selected.
    Authenticated {
        /// The user's mail.
        user: Arc<UserStore>,
        /// Tag of the IDLE in progress.
        idling: Option<String>,
    },
    /// A mailbox is selected.
    Selected {
        /// The user's mail.
        user: Arc<UserStore>,
        /// The selected mailbox as this session sees it.
        mailbox: Box<Selected>,
        /// Tag of the IDLE in progress.
        idling: Option<String>,
    },
    /// LOGOUT was answered.
    Logout,
}

impl State {
    /// Its name in the metrics.
    fn label(&self) -> &'static str {
        match self {
            State::NotAuthenticated { .. } => "not_authenticated",
            State::Authenticated {
                idling: Some(_), ..
            }
            | State::Selected {
                idling: Some(_), ..
            } => "idle",
            State::Authenticated { .. } => "authenticated",
            State::Selected { .. } => "selected",
            State::Logout => "logout",
        }
    }
}

/// A change of state a handler asks for; [`Session::apply`] makes it.
pub(crate) enum To {
    /// LOGIN or AUTHENTICATE succeeded.
    LoggedIn(Arc<UserStore>),
    /// AUTHENTICATE waits for the client's response line.
    Authenticating(crate::commands::Authenticating),
    /// The AUTHENTICATE exchange ended without a login.
    NotAuthenticating,
    /// SELECT or EXAMINE succeeded.
    Select(Box<Selected>),
    /// CLOSE, UNSELECT, a failed SELECT, or the selected mailbox's deletion.
    Deselect,
    /// IDLE began.
    Idling(String),
    /// IDLE ended.
    NotIdling,
    /// LOGOUT.
    Logout,
}

/// What a handler returns: what the connection does next, and the state change, if any.
pub(crate) struct Step {
    pub(crate) next: Next,
    pub(crate) to: Option<To>,
}

impl Step {
    /// Read the next command; the state stays.
    pub(crate) const CONTINUE: Step = Step {
        next: Next::Continue,
        to: None,
    };

    /// Read the next command after the state changes.
    pub(crate) fn to(to: To) -> Step {
        Step {
            next: Next::Continue,
            to: Some(to),
        }
    }

    /// Do `next` after the state changes.
    pub(crate) fn then(next: Next, to: To) -> Step {
        Step { next, to: Some(to) }
    }
}

/// Extensions the client turned on with ENABLE (RFC 5161) or, for CONDSTORE, by using them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    /// RFC 7162 CONDSTORE: MODSEQ in every untagged FETCH.
    pub condstore: bool,
    /// RFC 7162 QRESYNC: VANISHED instead of EXPUNGE, and SELECT's QRESYNC parameter.
    pub qresync: bool,
    /// RFC 9051 IMAP4rev2's rules (Appendix E): no `\Recent`, ESEARCH answers to SEARCH, a LIST
    /// response and no UNSEEN code from SELECT.
    pub rev2: bool,
    /// CONDSTORE was turned on by the command in progress, with a mailbox selected whose
    /// HIGHESTMODSEQ the client must now be told (RFC 7162 3.1).
    pub(crate) condstore_news: bool,
}

impl Enabled {
    /// Whether mailbox names go both ways in UTF-8 rather than modified UTF-7 (RFC 9051 5.1).
    pub(crate) fn utf8_names(&self) -> bool {
        self.rev2
    }

    /// Turns CONDSTORE on, as an enabling command does.
    pub(crate) fn condstore(&mut self) {
        if !self.condstore {
            self.condstore = true;
            self.condstore_news = true;
        }
    }
}

/// What the connection must do after a command.
#[derive(Debug)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Close the connection (LOGOUT answered).
    Close,
    /// Upgrade the connection to TLS, then continue.
    StartTls,
    /// Wait for DONE, reporting changes as they happen.
    Idle,
    /// Wait for a SASL response line for this AUTHENTICATE.
    AuthContinue,
    /// Turn on DEFLATE in both directions, then continue (RFC 4978).
    Compress,
}

/// Checks credentials. The server implements it over its user database, with its failed-login
/// policy (delays, per-address limits).
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Whether `password` is `user`'s password. `Err` carries a reason to give the client
    /// (for example, too many failures from this address).
    async fn verify(&self, user: &str, password: &[u8], peer: IpAddr) -> Result<bool, String>;

    /// Begins a SCRAM-SHA-256 exchange for `user`: the keys to check the proof against (for a
    /// user without any, keys that no proof matches and that do not say so), and the attempt,
    /// counted against the login limits until it is told it succeeded or is dropped (a
    /// failure). `Err` as for [`Authenticator::verify`].
    async fn scram(
        &self,
        user: &str,
        peer: IpAddr,
    ) -> Result<(crate::scram::ScramKeys, Box<dyn LoginAttempt>), String> {
        let _ = (user, peer);
        Err("SCRAM-SHA-256 is not available".into())
    }
}

/// A login attempt in progress; dropped without [`LoginAttempt::succeeded`], it failed.
pub trait LoginAttempt: Send + Sync {
    /// The client proved it knows the password.
    fn succeeded(self: Box<Self>);
}

/// What a session may do, decided by the server for each connection.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// The connection can still be upgraded with STARTTLS.
    pub starttls_available: bool,
    /// The connection is encrypted.
    pub tls_active: bool,
    /// LOGIN and AUTHENTICATE PLAIN are allowed without TLS (loopback, or configured).
    pub plaintext_auth: bool,
    /// Pause before answering a failed login.
    pub failed_login_delay: Duration,
    /// The peer's address.
    pub peer: IpAddr,
    /// The largest message APPEND takes once logged in (RFC 7889's APPENDLIMIT).
    pub append_limit: u32,
}

/// An IMAP session.
pub struct Session {
    pub(crate) state: State,
    pub(crate) opts: SessionOptions,
    pub(crate) store: Arc<Mailstore>,
    pub(crate) auth: Arc<dyn Authenticator>,
    /// What the client enabled.
    pub(crate) enabled: Enabled,
    /// COMPRESS DEFLATE is on.
    pub(crate) compressed: bool,
    /// Failed logins on this connection (logged; the per-address limit is the server's).
    pub(crate) failed_logins: u32,
    /// When the connection was accepted: the login deadline runs from here.
    pub(crate) connected_at: Instant,
    /// The state the session is counted in (`strata_imap_sessions`).
    counted: strata_metrics::SessionState,
}

impl Session {
    /// A new session in the not-authenticated state.
    pub fn new(opts: SessionOptions, store: Arc<Mailstore>, auth: Arc<dyn Authenticator>) -> Self {
        Session {
            state: State::NotAuthenticated {
                authenticating: None,
            },
            opts,
            store,
            auth,
            enabled: Enabled::default(),
            compressed: false,
            failed_logins: 0,
            connected_at: Instant::now(),
            counted: strata_metrics::metrics().session("not_authenticated"),
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user_store().map(|u| u.name())
    }

    /// The logged-in user's store.
    pub fn user_store(&self) -> Option<&Arc<UserStore>> {
        match &self.state {
            State::Authenticated { user, .. } | State::Selected { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether the session is logged in.
    pub fn authenticated(&self) -> bool {
        self.user_store().is_some()
    }

    /// The options; the server updates them after STARTTLS.
    pub fn options_mut(&mut self) -> &mut SessionOptions {
        &mut self.opts
    }

    /// The selected mailbox, if any.
    pub fn selected(&self) -> Option<&Selected> {
        match &self.state {
            State::Selected { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// The only place the state changes.
    pub(crate) fn apply(&mut self, to: To) {
        let logged_in = matches!(to, To::LoggedIn(_));
        let state = std::mem::replace(&mut self.state, State::Logout);
        self.state = match (state, to) {
            (_, To::Logout) => State::Logout,
            (_, To::LoggedIn(user)) => State::Authenticated { user, idling: None },
            (State::NotAuthenticated { .. }, To::Authenticating(a)) => State::NotAuthenticated {
                authenticating: Some(a),
            },
            (State::NotAuthenticated { .. }, To::NotAuthenticating) => State::NotAuthenticated {
                authenticating: None,
            },
            (
                State::Authenticated { user, .. } | State::Selected { user, .. },
                To::Select(mailbox),
            ) => State::Selected {
                user,
                mailbox,
                idling: None,
            },
            (State::Authenticated { user, .. } | State::Selected { user, .. }, To::Deselect) => {
                State::Authenticated { user, idling: None }
            }
            (State::Authenticated { user, .. }, To::Idling(tag)) => State::Authenticated {
                user,
                idling: Some(tag),
            },
            (State::Selected { user, mailbox, .. }, To::Idling(tag)) => State::Selected {
                user,
                mailbox,
                idling: Some(tag),
            },
            (State::Authenticated { user, .. }, To::NotIdling) => {
                State::Authenticated { user, idling: None }
            }
            (State::Selected { user, mailbox, .. }, To::NotIdling) => State::Selected {
                user,
                mailbox,
                idling: None,
            },
            // A transition that does not apply to this state leaves it as it was.
            (state, _) => state,
        };
        self.counted.set(self.state.label());
        if logged_in {
            // Every later log line of the connection names the user.
            tracing::Span::current().record("user", self.user().unwrap_or("-"));
        }
    }

    /// The capability list for the session's state.
    pub fn capabilities(&self) -> String {
        self.capability_list(self.authenticated())
    }

    /// The capability list before or after login.
    pub(crate) fn capability_list(&self, logged_in: bool) -> String {
        // Both revisions: an IMAP4rev2 client turns its rules on with ENABLE (RFC 9051 7.2.2).
        let mut caps = String::from("IMAP4rev1 IMAP4rev2");
        // STARTTLS is for before login, on a connection not yet encrypted (RFC 3501 6.2.1).
        if self.opts.starttls_available && !self.opts.tls_active && !logged_in {
            caps.push_str(" STARTTLS");
        }
        let auth_ok = self.opts.tls_active || self.opts.plaintext_auth;
        if !auth_ok {
            caps.push_str(" LOGINDISABLED");
        }
        if !logged_in {
            if auth_ok {
                caps.push_str(" AUTH=PLAIN AUTH=SCRAM-SHA-256 SASL-IR");
            }
        } else {
            caps.push_str(
                " IDLE UIDPLUS MOVE NAMESPACE UNSELECT CHILDREN SPECIAL-USE ENABLE CONDSTORE \
                 QRESYNC",
            );
            caps.push_str(" STATUS=SIZE WITHIN BINARY ESEARCH SEARCHRES PARTIAL");
            caps.push_str(
                " LIST-EXTENDED LIST-STATUS CREATE-SPECIAL-USE SAVEDATE PREVIEW OBJECTID",
            );
            caps.push_str(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE");
            caps.push_str(&format!(" APPENDLIMIT={}", self.opts.append_limit));
            if !self.compressed {
                caps.push_str(" COMPRESS=DEFLATE");
            }
        }
        caps.push_str(" LITERAL+ ID");
        caps
    }

    /// Handles one command, writing its responses (and any pending untagged updates).
    pub(crate) async fn handle(
        &mut self,
        cmd: Command<'static>,
        extras: Extras,
        r: &mut Responder<'_>,
    ) -> std::io::Result<Next> {
        let tag = cmd.tag.as_ref().to_string();
        let step = commands::dispatch(self, tag, cmd.body, extras, r).await?;
        if let Some(to) = step.to {
            self.apply(to);
        }
        Ok(step.next)
    }
}
