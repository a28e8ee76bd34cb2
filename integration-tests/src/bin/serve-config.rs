//! Runs Strata's server from a configuration file until it is killed, and prints
//! `listening <STARTTLS port>` once it accepts connections: the server as a process of its
//! own, for the tests that kill it (SIGKILL during APPENDs) and start it again.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Strata's server from a configuration file, as a process to kill")]
struct Args {
    /// The configuration file.
    config: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cfg = strata_config::load(&args.config)?;
    let running = strata_server::serve::start(cfg).await?;
    let port = running.imap.map_or(0, |a| a.port());
    println!("listening {port}");
    std::future::pending::<()>().await;
    Ok(())
}
