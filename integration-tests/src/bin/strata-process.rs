//! Strata as a process of its own, for the tests that kill it with SIGKILL and start it again:
//! `strata-process serve CONFIG` runs the server and prints `listening <STARTTLS port>` once it
//! accepts connections; `strata-process migrate CONFIG TO USER` runs `strata migrate` for one
//! user, printing its progress. One binary for both: each would link the whole server.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata_mailstore::RelocateOptions;
use strata_server::migrate::{Users, run};

#[derive(Parser)]
#[command(about = "Strata from a configuration file, as a process to kill")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server until it is killed.
    Serve {
        /// The configuration file.
        config: PathBuf,
    },
    /// Moves one user's bodies to another store.
    Migrate {
        /// The configuration file.
        config: PathBuf,
        /// The target store's name.
        to: String,
        /// The user.
        user: String,
        /// Bodies per batch.
        #[arg(long, default_value_t = 128)]
        batch: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Serve { config } => {
            let cfg = strata_config::load(&config)?;
            let running = strata_server::serve::start(cfg).await?;
            let port = running.imap.map_or(0, |a| a.port());
            println!("listening {port}");
            std::future::pending::<()>().await;
        }
        Command::Migrate {
            config,
            to,
            user,
            batch,
        } => {
            let cfg = strata_config::load(&config)?;
            let opts = RelocateOptions {
                batch,
                ..RelocateOptions::default()
            };
            let last = run(&cfg, &to, Users::One(user), &opts, &mut |l| {
                println!("{l}");
                true
            })
            .await?;
            println!("{last}");
        }
    }
    Ok(())
}
