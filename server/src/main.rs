//! `strata`: the command line of the Strata mail server.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use strata_config::Config;

// mimalloc returns freed memory to the system: under glibc's allocator every password check
// (argon2, ~19 MiB) left its memory resident, and the parsed-record churn of FETCH was slower.
// Built without transparent huge pages, and told to purge at once (see main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata, an IMAP server")]
struct Cli {
    /// The configuration file (without one, the embedded defaults apply).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides the configuration's data_dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Overrides imap.starttls: the plaintext listener that offers STARTTLS ("off" for none).
    #[arg(long, global = true)]
    imap: Option<String>,
    /// Overrides imap.tls: the implicit-TLS listener ("off" for none).
    #[arg(long, global = true)]
    imaps: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the IMAP server until SIGTERM or SIGINT.
    Serve,
    /// Checks the configuration and reports every problem with its key and line.
    CheckConfig {
        /// Also connect to the configured storage (database URL and credentials, schema).
        #[arg(long)]
        connect: bool,
    },
    /// Manages accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Imports mail from elsewhere.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Lists a user's mailboxes, or shows their counts.
    Mailbox {
        #[command(subcommand)]
        action: MailboxAction,
    },
    /// Expunges a mailbox's messages older than a date (retention), through the running server
    /// or alone.
    Expunge {
        /// The account.
        #[arg(long)]
        user: String,
        /// The mailbox (levels separated by `/`).
        #[arg(long)]
        mailbox: String,
        /// Messages whose INTERNALDATE is before this go: a date (2024-01-31, UTC) or an age
        /// (30d).
        #[arg(long)]
        before: String,
    },
    /// Inspects and repairs users' mail indexes.
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Manages users' full-text indexes (`[index.fts]`), which SEARCH BODY and TEXT answer
    /// from.
    Fts {
        #[command(subcommand)]
        action: FtsAction,
    },
    /// Delivers the message on standard input into a user's mailbox, as a local delivery
    /// agent for a mail server (Postfix's `pipe`): through the running server when there is
    /// one. Exits 0 when delivered, 67 for an unknown user, 65 for a message never taken (too
    /// large, empty), 75 to be tried again later.
    Deliver {
        /// The account.
        #[arg(long)]
        user: String,
        /// The mailbox (`/` between levels); INBOX when absent or when there is no such mailbox.
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// Moves users' message bodies to another configured store (`[storage]` or
    /// `[stores.NAME]`), batch by batch: copied, acked there, switched in the index, then
    /// deleted from where they were. Through the running server when there is one (users keep
    /// working); safe to interrupt and run again.
    Migrate {
        /// The store to move bodies to, by name (`main` is `[storage]` unless it sets a name).
        #[arg(long)]
        to: String,
        /// The account.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        user: Option<String>,
        /// Every account with mail.
        #[arg(long)]
        all: bool,
        /// Bodies per batch (each batch is acked by the target before the index switches).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
        batch: u16,
    },
    /// Tiering (`[storage.tiering]`): cold bodies moved from the main store to a colder one.
    Tier {
        #[command(subcommand)]
        action: TierAction,
    },
}

#[derive(Subcommand)]
enum TierAction {
    /// Shows what each store holds of a user (by the index and by the store's own listing)
    /// and what this node's read cache holds.
    Status {
        /// The account.
        #[arg(long)]
        user: String,
    },
    /// Moves what the rules make cold now, rather than at the next periodic run; through the
    /// running server when there is one, at the configured rate.
    Run {
        /// The account (default: every account with mail).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum FtsAction {
    /// Empties a user's full-text index and indexes every message again from the stores.
    /// Through the running server when there is one (searches stay exact meanwhile: what is
    /// not indexed yet is read from the store).
    Rebuild {
        /// The account.
        #[arg(long)]
        user: String,
    },
    /// Shows each open user's full-text index on the running server: messages indexed,
    /// messages waiting and how long the oldest has waited.
    Status {
        /// The account (default: every open one).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// Imports a Maildir++ tree (for example Dovecot's): folders, flags from file names, dates
    /// from file times. Run it while the server is stopped or the user is not logged in.
    Maildir {
        /// The Maildir's top directory (the one holding cur/, new/ and the .Folder directories).
        path: PathBuf,
        /// The account to import into.
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum IndexAction {
    /// Checks every row and invariant of a user's index. Read-only beside a running server
    /// (see README for when it can read an index the server has open); with the server stopped,
    /// an index a crash left unclean is recovered first.
    Check {
        /// The account.
        #[arg(long)]
        user: String,
    },
    /// Rebuilds a user's index from the bodies the store holds, the last resort when no
    /// shipped index is left: a Maildir's folders and file names (flags kept), or an SQL or S3
    /// store's body metadata (mailboxes and dates; new UIDs, no flags). The old index is kept
    /// beside it. The server must not be serving the user.
    Rebuild {
        /// The account.
        #[arg(long)]
        user: String,
        /// Deletes the user's shipped index in the store first (a rebuild refuses to run
        /// while one is there: `strata index restore` is what brings it back).
        #[arg(long)]
        discard_shipped: bool,
    },
    /// Replaces a user's index with the one shipped to their main store (`[index.ship]`),
    /// every object checked; the old index is kept beside it. The server must not be serving
    /// the user (it restores a missing or damaged index by itself at the user's first login).
    Restore {
        /// The account.
        #[arg(long)]
        user: String,
    },
    /// Shows what the store holds of users' shipped indexes: epoch, base, objects and bytes,
    /// the MODSEQ shipped and the local index's.
    Status {
        /// The account (default: every account with an index on this node).
        #[arg(long)]
        user: Option<String>,
    },
    /// Copies a user's shipped index (base and diffs, each checked) into a new directory.
    Export {
        /// The account.
        #[arg(long)]
        user: String,
        /// The directory to create.
        #[arg(long)]
        to: PathBuf,
    },
    /// Builds a user's index from a directory `index export` wrote, every object checked; the
    /// old index is kept beside it. The server ships it as the user's new chain.
    Import {
        /// The account.
        #[arg(long)]
        user: String,
        /// The exported directory.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum MailboxAction {
    /// The user's mailboxes, with their special use.
    List {
        /// The account.
        #[arg(long)]
        user: String,
    },
    /// Messages, unseen, deleted, size, UIDNEXT and UIDVALIDITY of each mailbox (or one).
    Status {
        /// The account.
        #[arg(long)]
        user: String,
        /// Only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Adds an account; the password is asked for, or read from standard input.
    Add {
        /// The account name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Changes an account's password.
    Passwd {
        /// The account name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Removes an account (its mail and index stay on disk).
    Del {
        /// The account name.
        name: String,
    },
    /// Lists the accounts.
    List,
    /// Shows an account's quota limits and usage; sets its own limits with the options.
    Quota {
        /// The account name.
        name: String,
        /// Storage limit: a size (2G, 500M, 1048576), `unlimited`, or `default` for [quota]'s.
        #[arg(long)]
        storage: Option<String>,
        /// Message limit: a number, `unlimited`, or `default` for [quota]'s.
        #[arg(long)]
        messages: Option<String>,
    },
}

/// The configuration from the file (if any) with the command line's overrides.
fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => strata_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    if let Some(d) = &cli.data_dir {
        // A maildir root left at its default follows the data directory.
        if let strata_config::Backend::Maildir { root } = &mut cfg.storage.main.backend
            && *root == cfg.data_dir.join("mail")
        {
            *root = d.join("mail");
        }
        cfg.data_dir = d.clone();
    }
    for (flag, value, slot) in [
        ("--imap", &cli.imap, &mut cfg.imap.starttls),
        ("--imaps", &cli.imaps, &mut cfg.imap.tls),
    ] {
        if let Some(v) = value {
            *slot = if v == "off" {
                None
            } else {
                Some(
                    v.parse()
                        .with_context(|| format!("{flag} {v:?}: expected ADDRESS:PORT or off"))?,
                )
            };
        }
    }
    if cfg.imap.starttls.is_none() && cfg.imap.tls.is_none() {
        bail!(
            "both listeners are off (--imap and --imaps, or imap.starttls and imap.tls): \
             the server would accept no connection"
        );
    }
    Ok(cfg)
}

/// Sets the log filter of a running server (a reload); says why a filter was not taken.
type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Starts the logs on standard error as `cfg` says, returning what changes their level.
fn start_logs(cfg: &Config) -> SetLogLevel {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // RUST_LOG, when set, rules over the configuration, at start and at every reload.
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // On a failed write it would report with eprintln!, which panics when stderr is gone
        // (a supervisor that stopped reading): a lost log line must not stop the server.
        .log_internal_errors(false);
    macro_rules! init {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |level: &str| {
                if from_env {
                    return Ok(());
                }
                let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            })
        }};
    }
    match cfg.log.format {
        strata_config::LogFormat::Text => init!(logs.with_ansi(std::io::stderr().is_terminal())),
        // One object per line; the connection's span (its id, and the user once logged in)
        // is in each line's "span" and "spans".
        strata_config::LogFormat::Json => init!(logs.json().with_current_span(true)),
    }
}

fn serve(cli: &Cli, cfg: Config) -> anyhow::Result<()> {
    let set_log_level = start_logs(&cfg);
    let problems = strata_config::check_files(&cfg);
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!("{}", text.join("\n"));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed before the addresses are printed: whoever reads them may signal at once.
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let running = strata_server::serve::start(cfg).await?;
        if let Some(a) = running.imap {
            strata_server::say(&format!("strata: IMAP (STARTTLS) on {a}"));
        }
        if let Some(a) = running.imaps {
            strata_server::say(&format!("strata: IMAPS on {a}"));
        }
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = hup.recv() => reload(cli, &running, &set_log_level).await,
            }
        }
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

/// SIGHUP: reads the configuration again and applies it, or logs why not and keeps the one
/// that runs.
async fn reload(cli: &Cli, running: &strata_server::serve::Running, set_log_level: &SetLogLevel) {
    let refused = |why: String| {
        tracing::error!("reload refused, the running configuration is kept: {why}");
    };
    let cfg = match config(cli) {
        Ok(cfg) => cfg,
        Err(e) => return refused(format!("{e:#}")),
    };
    let level = cfg.log.level.clone();
    match running.reload(cfg).await {
        Err(e) => refused(e.to_string()),
        Ok(done) => {
            if !done.needs_restart.is_empty() {
                tracing::warn!(
                    "changed settings that take effect at the next restart: {}",
                    done.needs_restart.join(", ")
                );
            }
            // The new level first: what is logged after this line is logged at that level.
            if let Err(e) = set_log_level(&level) {
                tracing::warn!(error = %e, "the log level was not changed");
            }
            tracing::info!("configuration reloaded");
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Again: ").context("reading the password")?;
    if first != again {
        bail!("the passwords differ");
    }
    Ok(first)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve => serve(&cli, config(&cli)?)?,
        Command::CheckConfig { connect } => {
            let cfg = config(&cli)?;
            let problems = strata_config::check_files(&cfg);
            if !problems.is_empty() {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                bail!("{}", text.join("\n"));
            }
            // Configured certificate files must also make a working TLS setup (a self-signed
            // one is only made by the server, not by a check).
            if matches!(cfg.tls, strata_config::Tls::Files { .. }) {
                strata_server::tls::server_config(&cfg.tls, &cfg.data_dir)?;
            }
            if *connect {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the runtime")?;
                for store in cfg.storage.stores() {
                    runtime
                        .block_on(strata_server::backends::reach(store))
                        .with_context(|| format!("store {:?}", store.name))?;
                    println!("store {:?}: reachable", store.name);
                }
            }
            match &cli.config {
                Some(p) => println!("{}: ok", p.display()),
                None => println!("no configuration file: the embedded defaults apply"),
            }
        }
        Command::Index {
            action: IndexAction::Check { user },
        } => index_check(&config(&cli)?, user)?,
        Command::Index {
            action:
                IndexAction::Rebuild {
                    user,
                    discard_shipped,
                },
        } => fill(&config(&cli)?, user, None, *discard_shipped)?,
        Command::Index { action } => index_admin(&config(&cli)?, action)?,
        Command::Import {
            source: ImportSource::Maildir { path, user },
        } => fill(&config(&cli)?, user, Some(path), false)?,
        Command::Fts { action } => {
            let cfg = config(&cli)?;
            let runtime = runtime()?;
            runtime.block_on(async {
                match action {
                    FtsAction::Rebuild { user } => {
                        println!("{}", strata_server::fts_admin::rebuild(&cfg, user).await?)
                    }
                    FtsAction::Status { user } => {
                        for l in strata_server::fts_admin::status(&cfg, user.as_deref()).await? {
                            println!("{l}");
                        }
                    }
                }
                anyhow::Ok(())
            })?;
        }
        Command::Deliver { user, mailbox } => {
            // Anything but a verdict on the message keeps it queued at the mail server.
            let outcome = match config(&cli) {
                Ok(cfg) => deliver(&cfg, user, mailbox.as_deref()),
                Err(e) => strata_server::lda::Outcome::TryLater(format!("{e:#}")),
            };
            match &outcome {
                strata_server::lda::Outcome::Delivered(m) => println!("delivered to {m}"),
                strata_server::lda::Outcome::NoUser(why)
                | strata_server::lda::Outcome::Refused(why)
                | strata_server::lda::Outcome::Full(why)
                | strata_server::lda::Outcome::TryLater(why) => eprintln!("strata deliver: {why}"),
            }
            std::process::exit(outcome.exit_code());
        }
        Command::Migrate {
            to,
            user,
            all,
            batch,
        } => {
            let cfg = config(&cli)?;
            let users = match (user, all) {
                (Some(u), false) => {
                    strata_server::users::check_name(u)?;
                    strata_server::migrate::Users::One(u.clone())
                }
                _ => strata_server::migrate::Users::All,
            };
            let runtime = runtime()?;
            let opts = strata_mailstore::RelocateOptions {
                batch: usize::from(*batch),
                ..Default::default()
            };
            let last = runtime.block_on(strata_server::migrate::run(
                &cfg,
                to,
                users,
                &opts,
                &mut |line| {
                    println!("{line}");
                    true
                },
            ))?;
            println!("{last}");
        }
        Command::Tier { action } => {
            let cfg = config(&cli)?;
            let runtime = runtime()?;
            match action {
                TierAction::Status { user } => {
                    strata_server::users::check_name(user)?;
                    for line in runtime.block_on(strata_server::tiering::status_cli(&cfg, user))? {
                        println!("{line}");
                    }
                }
                TierAction::Run { user } => {
                    let users = match user {
                        Some(u) => {
                            strata_server::users::check_name(u)?;
                            strata_server::migrate::Users::One(u.clone())
                        }
                        None => strata_server::migrate::Users::All,
                    };
                    let last = runtime.block_on(strata_server::tiering::run_cli(
                        &cfg,
                        users,
                        &mut |l| {
                            println!("{l}");
                            true
                        },
                    ))?;
                    println!("{last}");
                }
            }
        }
        Command::Mailbox { action } => {
            let cfg = config(&cli)?;
            let shown = runtime()?.block_on(async {
                match action {
                    MailboxAction::List { user } => {
                        strata_server::mailbox_admin::list(&cfg, user).await
                    }
                    MailboxAction::Status { user, mailbox } => {
                        strata_server::mailbox_admin::status(&cfg, user, mailbox.as_deref()).await
                    }
                }
            })?;
            print!("{shown}");
        }
        Command::Expunge {
            user,
            mailbox,
            before,
        } => {
            let cfg = config(&cli)?;
            let before =
                strata_server::mailbox_admin::parse_before(before, chrono::Utc::now().timestamp())?;
            let n = runtime()?.block_on(strata_server::mailbox_admin::expunge(
                &cfg, user, mailbox, before,
            ))?;
            println!("expunged {n} messages from {mailbox}");
        }
        Command::User { action } => {
            let cfg = config(&cli)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(async {
                let db = strata_server::accounts::Accounts::open_direct(&cfg).await?;
                match action {
                    UserAction::Add {
                        name,
                        password_stdin,
                    } => {
                        strata_server::users::check_name(name)?;
                        db.add(name, &read_password(*password_stdin)?).await?;
                        println!("added {name}");
                    }
                    UserAction::Passwd {
                        name,
                        password_stdin,
                    } => {
                        db.set_password(name, &read_password(*password_stdin)?)
                            .await?;
                        account_changed(&cfg, name).await;
                        println!("changed the password of {name}");
                    }
                    UserAction::Del { name } => {
                        db.remove(name).await?;
                        account_changed(&cfg, name).await;
                        println!("removed {name}");
                    }
                    UserAction::Quota {
                        name,
                        storage,
                        messages,
                    } => {
                        let Some(account) = db.account(name).await? else {
                            bail!("no user {name:?}");
                        };
                        let mut own = account.quota;
                        if let Some(s) = storage {
                            own.storage = strata_server::quota::parse_limit(s, true)
                                .map_err(|e| anyhow::anyhow!("--storage: {e}"))?;
                        }
                        if let Some(m) = messages {
                            own.messages = strata_server::quota::parse_limit(m, false)
                                .map_err(|e| anyhow::anyhow!("--messages: {e}"))?;
                        }
                        if own != account.quota {
                            db.set_quota(name, own).await?;
                            account_changed(&cfg, name).await;
                        }
                        let usage = match usage(&cfg, name).await {
                            Ok(u) => Some(u),
                            Err(e) => {
                                eprintln!("strata: the usage of {name} cannot be read: {e:#}");
                                None
                            }
                        };
                        print!("{}", strata_server::quota::describe(own, cfg.quota, usage));
                    }
                    UserAction::List => {
                        for name in db.list().await? {
                            println!("{name}");
                        }
                    }
                }
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}

/// Tells a running server that `name`'s account changed (its limits, its password, or that it
/// is gone); with no server running there is nobody to tell.
async fn account_changed(cfg: &Config, name: &str) {
    let asked =
        strata_server::control::request(&cfg.data_dir, &format!("account {name}"), &mut |_| {})
            .await;
    if let Err(e) = asked {
        eprintln!("strata: the running server was not told of the change: {e:#}");
    }
}

/// `name`'s usage: from the running server, else from the index on disk (none yet: nothing).
async fn usage(cfg: &Config, name: &str) -> anyhow::Result<strata_mailstore::quota::Usage> {
    let asked =
        strata_server::control::request(&cfg.data_dir, &format!("usage {name}"), &mut |_| {})
            .await?;
    if let Some(answer) = asked {
        let mut words = answer.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(messages)), Some(Ok(storage))) = (words.next(), words.next()) {
            return Ok(strata_mailstore::quota::Usage { messages, storage });
        }
        bail!("the server answered {answer:?}");
    }
    let path = strata_server::index_path(&cfg.data_dir, name);
    if !path.exists() {
        return Ok(strata_mailstore::quota::Usage::default());
    }
    let index = strata_index::ReadOnlyIndex::open(&path)?;
    Ok(index.snapshot()?.usage()?)
}

/// Imports the Maildir at `from` into `user`'s mail, or (without `from`) rebuilds the user's
/// index from their store: a Maildir's files, or an SQL or S3 store's body metadata.
fn fill(
    cfg: &Config,
    user: &str,
    from: Option<&PathBuf>,
    discard_shipped: bool,
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages {elapsed}")
            .expect("progress template"),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let from = from.map(PathBuf::as_path);
    let done = runtime.block_on(strata_server::fill::fill(
        cfg,
        user,
        from,
        discard_shipped,
        &progress,
    ))?;
    bar.finish_and_clear();
    if done.discarded > 0 {
        println!("deleted the shipped index ({} objects)", done.discarded);
    }
    if let Some(aside) = &done.aside {
        println!("the old index is kept at {}", aside.display());
    }
    println!(
        "{}: {} messages in {} folders",
        if from.is_some() {
            "imported"
        } else {
            "rebuilt"
        },
        done.report.messages,
        done.report.folders
    );
    Ok(())
}

/// `index restore | status | export | import`.
fn index_admin(cfg: &Config, action: &IndexAction) -> anyhow::Result<()> {
    use strata_server::index_admin as admin;
    let runtime = runtime()?;
    runtime.block_on(async {
        match action {
            IndexAction::Restore { user } => {
                let r = admin::restore(cfg, user).await?;
                if let Some(aside) = &r.aside {
                    println!("the old index is kept at {}", aside.display());
                }
                println!(
                    "{user}: restored at MODSEQ {} from {} objects ({} bytes, epoch {}) in {:.0} ms",
                    r.restored.modseq.0,
                    r.restored.objects,
                    r.restored.bytes,
                    r.restored.head.epoch,
                    r.took.as_secs_f64() * 1000.0
                );
            }
            IndexAction::Status { user } => {
                for s in admin::status(cfg, user.as_deref()).await? {
                    match s.head {
                        None => println!("{}: nothing shipped", s.user),
                        Some(h) => println!(
                            "{}: epoch {}, base at position {}, {} objects ({} bytes base, {} bytes diffs), shipped MODSEQ {}, local MODSEQ {}",
                            s.user,
                            h.epoch,
                            h.base,
                            s.objects,
                            s.base_bytes,
                            s.diff_bytes,
                            s.shipped.map_or("-".into(), |m| m.to_string()),
                            s.local.map_or("- (no index here, or in use)".into(), |m| m.to_string()),
                        ),
                    }
                }
                // A running server knows the lag of the users it holds open.
                let ask = match user {
                    Some(u) => format!("shipping {u}"),
                    None => "shipping".to_string(),
                };
                let mut live = Vec::new();
                let answered = strata_server::control::request(&cfg.data_dir, &ask, &mut |l| {
                    live.push(l.to_string())
                })
                .await?;
                if answered.is_some() {
                    for l in live {
                        println!("live: {l}");
                    }
                }
            }
            IndexAction::Export { user, to } => {
                let (n, bytes) = admin::export(cfg, user, to).await?;
                println!("{user}: {n} objects, {bytes} bytes, in {}", to.display());
            }
            IndexAction::Import { user, from } => {
                let (modseq, aside) = admin::import(cfg, user, from).await?;
                if let Some(aside) = aside {
                    println!("the old index is kept at {}", aside.display());
                }
                println!("{user}: imported at MODSEQ {modseq}");
            }
            IndexAction::Check { .. } | IndexAction::Rebuild { .. } => {
                unreachable!("handled before")
            }
        }
        Ok(())
    })
}

fn index_check(cfg: &Config, user: &str) -> anyhow::Result<()> {
    strata_server::users::check_name(user)?;
    let path = strata_server::index_path(&cfg.data_dir, user);
    if !path.exists() {
        bail!(
            "{}: no index for {user:?} (it is created at the first login)",
            path.display()
        );
    }
    let index = match strata_index::ReadOnlyIndex::open(&path) {
        Err(strata_index::IndexError::NeedsRecovery { .. }) => {
            recover(cfg, &path, user)?;
            strata_index::ReadOnlyIndex::open(&path)?
        }
        other => other?,
    };
    let report = index.verify()?;
    println!(
        "{}: ok: {} mailboxes, {} messages, {} contents, {} change-log entries, MODSEQ {}",
        path.display(),
        report.mailboxes,
        report.messages,
        report.contents,
        report.changes,
        report.modseq
    );
    Ok(())
}

/// Recovers an index left by a process that was killed, by opening it for writing as the
/// server would; if a server has it open, says what to do instead.
fn recover(cfg: &Config, path: &std::path::Path, user: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let opts = strata_index::IndexOptions {
            cache_bytes: cfg.index.cache_bytes as usize,
            ..Default::default()
        };
        match strata_index::UserIndex::open(path, opts).await {
            Ok((index, report)) => {
                println!(
                    "{}: recovered after an unclean shutdown in {:.1} ms",
                    path.display(),
                    report.duration.as_secs_f64() * 1000.0
                );
                index.close().await;
                Ok(())
            }
            Err(strata_index::IndexError::Locked { holder, .. }) => bail!(
                "{}: cannot be read now: {holder} has it open for writing, and a reader can \
                 open it beside its writer only with [index] flag_sync_delay_ms = 0. The server \
                 closes an index 5 minutes after its last session, and at shutdown: run \
                 `strata index check --user {user}` again then, or stop the server first.",
                path.display()
            ),
            Err(e) => Err(e.into()),
        }
    })
}

/// An error with its causes, each said once: many errors already name their cause.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `mi_option_purge_delay` in mimalloc 3.3's `mimalloc.h` (the option enum's 16th member);
/// libmimalloc-sys 0.1.49 names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed goes back to the system at once rather than after mimalloc's default second:
/// bodies of megabytes are read and dropped all the time, and a second's worth of them held
/// kept the server's resident memory at three times what it used. `MIMALLOC_PURGE_DELAY` in
/// the environment still decides, for an operator who prefers fewer system calls.
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set stores an integer in mimalloc's option table and keeps no pointer.
    // It runs first thing in main, before this process has a second thread, so its plain store
    // races with no reader. 15 is purge_delay in the pinned mimalloc (see the constant), and 0
    // is a documented value of it ("0 for immediate purging").
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

fn main() -> ExitCode {
    return_freed_memory_at_once();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// `strata deliver`: reads the message (at most one byte past the limit, to know it is over)
/// and files it.
fn deliver(
    cfg: &strata_config::Config,
    user: &str,
    mailbox: Option<&str>,
) -> strata_server::lda::Outcome {
    use std::io::Read;
    use strata_server::lda::Outcome;
    let mut message = Vec::new();
    let limit = cfg.lmtp.max_message_bytes.saturating_add(1);
    if let Err(e) = std::io::stdin().take(limit).read_to_end(&mut message) {
        return Outcome::TryLater(format!("reading the message: {e}"));
    }
    match runtime() {
        Ok(rt) => rt.block_on(strata_server::lda::run(cfg, user, mailbox, message)),
        Err(e) => Outcome::TryLater(format!("{e:#}")),
    }
}

/// The multi-threaded runtime every long-running command runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
