//! `strata`: the command line of the Strata mail server.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use strata_config::Config;
use strata_server::users::UserDb;

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata, an IMAP server")]
struct Cli {
    /// The configuration file (without one, the embedded defaults apply).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides the configuration's data_dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the configuration and reports every problem with its key and line.
    CheckConfig,
    /// Manages accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Inspects users' mail indexes.
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
}

#[derive(Subcommand)]
enum IndexAction {
    /// Checks every row and invariant of a user's index, read-only (works while the server runs).
    Check {
        /// The account.
        #[arg(long)]
        user: String,
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
}

/// The configuration from the file (if any) with the command line's overrides.
fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => strata_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
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
        Command::CheckConfig => {
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
            match &cli.config {
                Some(p) => println!("{}: ok", p.display()),
                None => println!("no configuration file: the embedded defaults apply"),
            }
        }
        Command::Index {
            action: IndexAction::Check { user },
        } => index_check(&config(&cli)?, user)?,
        Command::User { action } => {
            let cfg = config(&cli)?;
            let db = UserDb::new(cfg.data_dir.join("users"));
            match action {
                UserAction::Add {
                    name,
                    password_stdin,
                } => {
                    strata_server::users::check_name(name)?;
                    db.add(name, &read_password(*password_stdin)?)?;
                    println!("added {name}");
                }
                UserAction::Passwd {
                    name,
                    password_stdin,
                } => {
                    db.set_password(name, &read_password(*password_stdin)?)?;
                    println!("changed the password of {name}");
                }
                UserAction::Del { name } => {
                    db.remove(name)?;
                    println!("removed {name}");
                }
                UserAction::List => {
                    for name in db.list()? {
                        println!("{name}");
                    }
                }
            }
        }
    }
    Ok(())
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
    let index = strata_index::ReadOnlyIndex::open(&path)?;
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}
