//! A real S3-protocol server on loopback for the S3 backend's tests and the benchmark: s3s-fs,
//! which keeps each bucket as a directory and each object as a file, behind SigV4
//! authentication. It can be stopped and started again on the same port (an outage).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "strata-test";
/// The secret key the test server accepts.
pub const SECRET_KEY: &str = "strata-test-secret";

/// A running (or stopped) S3 server.
pub struct S3Server {
    /// Where it listens (kept across a restart).
    pub addr: SocketAddr,
    /// The directory holding its buckets.
    pub root: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server on a free loopback port over `root`, with `bucket` created.
    pub async fn start(root: &Path, bucket: &str) -> std::io::Result<S3Server> {
        Self::start_on(root, bucket, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a server on `addr` over `root`, with `bucket` created.
    pub async fn start_on(
        root: &Path,
        bucket: &str,
        addr: SocketAddr,
    ) -> std::io::Result<S3Server> {
        std::fs::create_dir_all(root.join(bucket))?;
        let listener = TcpListener::bind(addr).await?;
        let mut server = S3Server {
            addr: listener.local_addr()?,
            root: root.to_path_buf(),
            task: None,
        };
        server.serve(listener)?;
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) -> std::io::Result<()> {
        let fs = s3s_fs::FileSystem::new(&self.root)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set, so stopping the server drops every one of them.
            let mut conns = JoinSet::new();
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        // Headers and body go out in separate writes; Nagle would hold the body.
                        let _ = socket.set_nodelay(true);
                        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                        conns.spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        }));
        Ok(())
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The body of a configuration file's `s3` table pointing at this server's `strata` bucket
    /// under `prefix`.
    pub fn toml_table(&self, prefix: &str) -> String {
        format!(
            "endpoint = \"{}\"\nbucket = \"strata\"\nprefix = \"{prefix}\"\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n",
            self.endpoint()
        )
    }

    /// Stops listening and drops every connection: the store is down.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts again on the same port over the same objects.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
