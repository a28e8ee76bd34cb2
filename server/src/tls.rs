//! TLS for the listeners: the configured certificate chain and key, or a self-signed
//! certificate generated on first start under `data_dir/tls` and reused afterwards, so that a
//! client that accepted it once is not asked again. Errors name the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use strata_config::Tls;

/// What went wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file cannot be read or is not PEM of the expected kind.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The certificate and key do not make a usable TLS configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// Generating the self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn file_err(path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// The certificate and key files a TLS setting stands for, generating the self-signed pair if
/// it does not exist yet.
pub fn certificate_files(tls: &Tls, data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    match tls {
        Tls::Files { cert, key } => Ok((cert.clone(), key.clone())),
        Tls::SelfSigned => {
            let dir = data_dir.join("tls");
            let (cert, key) = (dir.join("self-signed.pem"), dir.join("self-signed.key"));
            if !(cert.exists() && key.exists()) {
                generate(&dir, &cert, &key)?;
            }
            Ok((cert, key))
        }
    }
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1`; the key is written
/// with owner-only permissions, and both files appear atomically.
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let pair = rcgen::generate_simple_self_signed(names)?;
    write_atomic(key, pair.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert, pair.cert.pem().as_bytes(), 0o644)?;
    announce_generated(cert);
    Ok(())
}

/// Says on standard error where the generated certificate is, once, when it is made.
fn announce_generated(cert: &Path) {
    crate::say(&format!(
        "strata: generated a self-signed certificate at {}",
        cert.display()
    ));
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(data).map_err(|e| file_err(&tmp, e))?;
    f.sync_all().map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// A rustls server configuration for the setting.
pub fn server_config(tls: &Tls, data_dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = certificate_files(tls, data_dir)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, e))?;
    if certs.is_empty() {
        return Err(file_err(&cert_path, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}
