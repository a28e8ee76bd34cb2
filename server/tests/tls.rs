//! TLS setup: the self-signed certificate is made once and reused, a real handshake works with
//! it, and bad certificate files are reported by name.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use strata_config::Tls;
use strata_server::tls::{certificate_files, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn the_self_signed_certificate_is_made_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    server_config(&Tls::SelfSigned, dir.path()).unwrap();
    let (cert, key) = certificate_files(&Tls::SelfSigned, dir.path()).unwrap();
    let first = std::fs::read(&cert).unwrap();
    server_config(&Tls::SelfSigned, dir.path()).unwrap();
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        first,
        "the certificate changed on restart"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is readable by others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_the_certificate_completes_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server_config(&Tls::SelfSigned, dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        tls.write_all(b"* OK ready\r\n").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let (cert, _) = certificate_files(&Tls::SelfSigned, dir.path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut greeting = String::new();
    tls.read_to_string(&mut greeting).await.unwrap();
    assert_eq!(greeting, "* OK ready\r\n");
    server.await.unwrap();
}

#[test]
fn missing_or_wrong_files_are_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    let files = Tls::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    let e = server_config(&files, dir.path()).unwrap_err();
    assert!(e.to_string().contains("chain.pem"), "{e}");
    std::fs::write(&cert, "not a certificate").unwrap();
    let e = server_config(&files, dir.path()).unwrap_err();
    assert!(e.to_string().contains("chain.pem"), "{e}");
    // A real certificate with a key that is not PEM.
    let (good, _) = certificate_files(&Tls::SelfSigned, dir.path()).unwrap();
    std::fs::copy(good, &cert).unwrap();
    std::fs::write(&key, "-----BEGIN NOTHING-----\n").unwrap();
    let e = server_config(&files, dir.path()).unwrap_err();
    assert!(e.to_string().contains("key.pem"), "{e}");
}
