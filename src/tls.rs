//! Inbound TLS: loads our certificate and key into a rustls server configuration.
//!
//! Guarantees: TLS 1.2 and 1.3 only, rustls' default (modern) cipher suites, aws-lc-rs as the one
//! crypto provider. A certificate or key that cannot be loaded is an error, never a silent
//! fallback to plain text.

use crate::config::TlsFiles;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Builds the STARTTLS acceptor from PEM files.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    install_crypto_provider();
    let cert_path = files.certificate.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect())
        .map_err(|e| TlsError::Certificate { path: cert_path.clone(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate { path: cert_path, message: "no certificate found".into() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key { path: files.key.display().to_string(), message: e.to_string() })?;
    let config = ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
