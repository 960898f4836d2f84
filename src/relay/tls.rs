//! TLS client configurations for STARTTLS towards the downstream.
//!
//! - `opportunistic`: encrypts but accepts any certificate (as Postfix's "may": an attacker
//!   who can strip STARTTLS can do anything anyway, and refusing a self-signed certificate
//!   would push mail to plain text).
//! - `required`: the certificate must chain to the system roots or the route's `ca_file` and
//!   match `tls_name` (default: the route's host).
//!
//! Guarantees: only the aws-lc-rs provider is used (never the process default, so two
//! providers in the graph cannot panic here); failures are values ([`TlsSetupError`]).

use crate::config::{Route, TlsPolicy};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Why no TLS configuration could be built for a route.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {detail}")]
    CaFile { path: String, detail: String },
    #[error("no trusted root certificates (system store empty and no ca_file)")]
    NoRoots,
    #[error("invalid TLS name {0:?}")]
    BadName(String),
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(aws_lc_rs::default_provider())).clone()
}

/// The TLS client configuration and server name to use for `route`, or `None` for
/// `tls = "none"`.
pub fn client_config(route: &Route) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>, TlsSetupError> {
    match route.tls {
        TlsPolicy::None => Ok(None),
        TlsPolicy::Opportunistic => {
            // Any syntactically valid name will do, since nothing is verified.
            let name = ServerName::try_from(route.host.clone()).unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
            Ok(Some((opportunistic()?, name)))
        }
        TlsPolicy::Required => {
            let wanted = route.tls_name.clone().unwrap_or_else(|| route.host.clone());
            let name = ServerName::try_from(wanted.clone()).map_err(|_| TlsSetupError::BadName(wanted))?;
            Ok(Some((verified(route.ca_file.as_deref())?, name)))
        }
    }
}

fn opportunistic() -> Result<Arc<ClientConfig>, TlsSetupError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCertificate { algorithms: provider.signature_verification_algorithms });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

fn verified(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let certs = read_pem_certificates(path)?;
        roots.add_parsable_certificates(certs);
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let error = |detail: String| TlsSetupError::CaFile { path: path.display().to_string(), detail };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))?;
    let certs: Vec<_> = iter.collect::<Result<_, _>>().map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no certificates in file".into()));
    }
    Ok(certs)
}

/// The system's trusted roots, read once from the usual bundle locations
/// (`SSL_CERT_FILE` first).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let candidates = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from).into_iter().chain(
            ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"]
                .into_iter()
                .map(std::path::PathBuf::from),
        );
        candidates.filter_map(|path| read_pem_certificates(&path).ok()).next().unwrap_or_default()
    })
}

/// For opportunistic TLS: any certificate is accepted, but handshake signatures are still
/// checked (so the session keys really belong to whoever holds the certificate's key).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
