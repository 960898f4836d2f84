//! Key files moat reads: 32-byte secret keys created on first use (the vault's key, the
//! link-signing key) and the PEM private key ARC seals are made with.
//!
//! Guarantees: a secret key file is created atomically (written to a temporary file, fsynced,
//! hard-linked into place, directory fsynced), with mode 0600, and never overwritten; an
//! existing file of the wrong length is an error, never replaced. Errors name the file, never
//! key material.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Length of a secret key file.
pub const SECRET_LEN: usize = 32;

/// What can go wrong with a key file. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {path} must hold exactly 32 bytes")]
    BadLength { path: PathBuf },
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// A PEM key that cannot be used.
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

/// `N` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// Writes `bytes` to a new file at `path` (mode 0600) atomically; fails with `AlreadyExists`
/// (as [`KeyError::Io`]) if the file exists.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(&tmp))?;
    drop(file);
    // A hard link fails if the target exists: creation is atomic and never overwrites a key.
    let linked = std::fs::hard_link(&tmp, path).map_err(io(path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, so a rename or link into it is durable.
pub fn sync_dir(path: &Path) -> Result<(), KeyError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The 32 secret bytes in `path`, created (random, mode 0600, with its directory) when the file
/// is missing.
pub fn secret_key(path: &Path) -> Result<[u8; SECRET_LEN], KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if !path.exists() {
        match write_new_private(path, &random::<SECRET_LEN>()?) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    bytes.try_into().map_err(|_| KeyError::BadLength { path: path.to_path_buf() })
}

/// A private key for ARC sealing.
pub enum SealKey {
    Ed25519(Ed25519Key),
    Rsa(RsaKey<Sha256>),
}

/// Reads a PEM private key: Ed25519 (PKCS#8) or RSA (PKCS#1 or PKCS#8).
pub fn load_seal_key(path: &Path) -> Result<SealKey, KeyError> {
    let failed = |reason: String| KeyError::Unusable { path: path.to_path_buf(), reason };
    let pem = std::fs::read(path).map_err(|e| failed(format!("cannot read: {e}")))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| failed(format!("no PEM private key: {e}")))?;
    match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                return Ok(SealKey::Ed25519(key));
            }
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(pkcs8))
                .map(SealKey::Rsa)
                .map_err(|e| failed(format!("neither an Ed25519 nor an RSA key: {e}")))
        }
        PrivateKeyDer::Pkcs1(pkcs1) => {
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(pkcs1)).map(SealKey::Rsa).map_err(|e| failed(format!("bad RSA key: {e}")))
        }
        _ => Err(failed("unsupported key type (use Ed25519 or RSA)".to_string())),
    }
}
