//! Runs `strata migrate` for one user from a configuration file, printing its progress: the
//! migration as a process of its own, for the test that kills it with SIGKILL and runs it
//! again.

use std::path::PathBuf;

use clap::Parser;
use strata_mailstore::RelocateOptions;
use strata_server::migrate::{Users, run};

#[derive(Parser)]
#[command(about = "strata migrate from a configuration file, as a process to kill")]
struct Args {
    /// The configuration file.
    config: PathBuf,
    /// The target store's name.
    to: String,
    /// The user.
    user: String,
    /// Bodies per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cfg = strata_config::load(&args.config)?;
    let opts = RelocateOptions {
        batch: args.batch,
        ..RelocateOptions::default()
    };
    let last = run(&cfg, &args.to, Users::One(args.user), &opts, &mut |l| {
        println!("{l}");
        true
    })
    .await?;
    println!("{last}");
    Ok(())
}
