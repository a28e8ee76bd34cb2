//! One IMAP session: its state (RFC 3501 section 3), which commands each state allows, and the
//! dispatch of a decoded command to its handler. State changes only through [`Session::apply`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use imap_codec::imap_types::command::{Command, CommandBody};
use strata_mailstore::{Mailstore, UserStore};

use crate::commands;
use crate::respond::Responder;
use crate::selected::Selected;

/// The RFC 3501 session states.
pub enum State {
    /// Before LOGIN/AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected(Box<Selected>),
    /// LOGOUT was answered.
    Logout,
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
}

/// Checks credentials. The server implements it over its user database, with its failed-login
/// policy (delays, per-address limits).
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Whether `password` is `user`'s password. `Err` carries a reason to give the client
    /// (for example, too many failures from this address).
    async fn verify(&self, user: &str, password: &[u8], peer: IpAddr) -> Result<bool, String>;
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
}

/// An IMAP session.
pub struct Session {
    pub(crate) state: State,
    pub(crate) opts: SessionOptions,
    pub(crate) store: Arc<Mailstore>,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) user: Option<Arc<UserStore>>,
    /// Tag of an AUTHENTICATE waiting for its response line.
    pub(crate) pending_auth: Option<String>,
    /// Tag of the IDLE in progress.
    pub(crate) idle_tag: Option<String>,
    /// Failed logins on this connection (logged; the per-address limit is the server's).
    pub(crate) failed_logins: u32,
    /// When the connection was accepted: the login deadline runs from here.
    pub(crate) connected_at: Instant,
}

impl Session {
    /// A new session in the not-authenticated state.
    pub fn new(opts: SessionOptions, store: Arc<Mailstore>, auth: Arc<dyn Authenticator>) -> Self {
        Session {
            state: State::NotAuthenticated,
            opts,
            store,
            auth,
            user: None,
            pending_auth: None,
            idle_tag: None,
            failed_logins: 0,
            connected_at: Instant::now(),
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name())
    }

    /// The logged-in user's store.
    pub fn user_store(&self) -> Option<&Arc<UserStore>> {
        self.user.as_ref()
    }

    /// The options; the server updates them after STARTTLS.
    pub fn options_mut(&mut self) -> &mut SessionOptions {
        &mut self.opts
    }

    /// Whether the session has a mailbox selected.
    pub fn selected(&self) -> Option<&Selected> {
        match &self.state {
            State::Selected(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut Selected> {
        match &mut self.state {
            State::Selected(s) => Some(s),
            _ => None,
        }
    }

    /// The only place the state changes.
    pub(crate) fn apply(&mut self, next: State) {
        self.state = next;
    }

    /// The greeting's capability list.
    pub fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1");
        let logged_in = !matches!(self.state, State::NotAuthenticated);
        // STARTTLS is for before login, on a connection not yet encrypted (RFC 3501 6.2.1).
        if self.opts.starttls_available && !self.opts.tls_active && !logged_in {
            caps.push_str(" STARTTLS");
        }
        let auth_ok = self.opts.tls_active || self.opts.plaintext_auth;
        if !auth_ok {
            caps.push_str(" LOGINDISABLED");
        }
        if matches!(self.state, State::NotAuthenticated) {
            if auth_ok {
                caps.push_str(" AUTH=PLAIN SASL-IR");
            }
        } else {
            caps.push_str(" IDLE UIDPLUS MOVE NAMESPACE UNSELECT CHILDREN SPECIAL-USE ENABLE");
        }
        caps.push_str(" LITERAL+ ID");
        caps
    }

    /// Handles one command, writing its responses (and any pending untagged updates).
    pub async fn handle(
        &mut self,
        cmd: Command<'static>,
        r: &mut Responder<'_>,
    ) -> std::io::Result<Next> {
        let tag = cmd.tag.as_ref().to_string();
        if !allowed(&self.state, &cmd.body) {
            use CommandBody as C;
            let before_login = matches!(
                cmd.body,
                C::StartTLS | C::Authenticate { .. } | C::Login { .. }
            );
            let why = match (&self.state, before_login) {
                (State::NotAuthenticated, _) => "is not allowed before login",
                (_, true) => "is only allowed before login",
                (State::Authenticated, false) => "needs a selected mailbox",
                _ => "is not allowed now",
            };
            r.tagged_bad(&tag, None, &format!("{} {why}", cmd.body.name()));
            return Ok(Next::Continue);
        }
        commands::dispatch(self, tag, cmd.body, r).await
    }
}

/// Which commands each state allows (RFC 3501 section 6).
fn allowed(state: &State, body: &CommandBody<'_>) -> bool {
    use CommandBody as C;
    let any = matches!(body, C::Capability | C::Noop | C::Logout | C::Id { .. });
    if any {
        return true;
    }
    let not_auth = matches!(body, C::StartTLS | C::Authenticate { .. } | C::Login { .. });
    let auth = matches!(
        body,
        C::Select { .. }
            | C::Examine { .. }
            | C::Create { .. }
            | C::Delete { .. }
            | C::Rename { .. }
            | C::Subscribe { .. }
            | C::Unsubscribe { .. }
            | C::List { .. }
            | C::Lsub { .. }
            | C::Status { .. }
            | C::Append { .. }
            | C::Namespace
            | C::Enable { .. }
            | C::Idle
    );
    let selected = matches!(
        body,
        C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::ExpungeUid { .. }
            | C::Search { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
    );
    match state {
        State::NotAuthenticated => not_auth,
        State::Authenticated => auth,
        State::Selected(_) => auth || selected,
        State::Logout => false,
    }
}
