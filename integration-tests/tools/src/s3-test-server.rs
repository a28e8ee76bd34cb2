//! Serves a directory as an S3-compatible store on loopback (s3s-fs), for the benchmark and for
//! trying the S3 backend by hand: `s3-test-server --root DIR --port 9000 --bucket strata`.
//! Credentials are `strata-test` / `strata-test-secret`.

use std::path::PathBuf;

use clap::Parser;
use strata_integration_tests::s3server::{ACCESS_KEY, S3Server, SECRET_KEY};

#[derive(Parser)]
#[command(about = "An S3-protocol server over a directory, on loopback")]
struct Args {
    /// The directory holding the buckets.
    #[arg(long)]
    root: PathBuf,
    /// The port (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A bucket to create.
    #[arg(long, default_value = "strata")]
    bucket: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let server = S3Server::start_on(&args.root, &args.bucket, addr).await?;
    println!(
        "{} bucket={} access_key={ACCESS_KEY} secret_key={SECRET_KEY}",
        server.endpoint(),
        args.bucket
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
