//! Message contents encrypted at rest: XChaCha20-Poly1305 under a key from a key file.
//!
//! * **Keys.** The current key is the key file (32 random bytes, created with mode 0600 when
//!   missing). Older keys live in the keyring directory beside it (`<key_file>.keyring/`, one
//!   `<key id>.key` file each) and are only used to decrypt. [`Vault::rotate`] moves the current
//!   key into the keyring and writes a new key file; items sealed before keep decrypting.
//! * **Key id.** The first 16 hex digits of SHA-256 of the key. It is stored with every blob
//!   ([`Sealed::key_id`]), so a blob names the key it needs without revealing it.
//! * **Blobs.** [`Sealed::bytes`] is a random 24-byte nonce followed by the ciphertext and tag.
//!   The item id and the key id are authenticated as associated data, so a blob moved to another
//!   item, or relabelled with another key id, fails to open like a flipped byte does.
//! * **Where blobs are kept.** In the store's database beside the quarantine row (see
//!   `store::Store::insert_item`), not as files: the row and its contents are written, expired and
//!   purged in one transaction, several PostgreSQL nodes can release an item held by another, and
//!   a backup of the database is a consistent backup of the quarantine.
//! * Contents and keys never reach a log or an error message.

use crate::keys::{KeyError, random, secret_key, sync_dir, write_new_private};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

const KEY_LEN: usize = crate::keys::SECRET_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// What can go wrong with keys or blobs. Never carries contents or key material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("vault key file {path} must hold exactly 32 bytes")]
    BadKey { path: PathBuf },
    #[error("no key {key_id} in the key file or the keyring")]
    UnknownKey { key_id: String },
    #[error("sealed blob of item {item} failed authentication (tampered, truncated or wrong item)")]
    Tampered { item: String },
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

impl From<KeyError> for VaultError {
    fn from(error: KeyError) -> VaultError {
        match error {
            KeyError::Io { path, source } => VaultError::Io { path, source },
            KeyError::BadLength { path } | KeyError::Unusable { path, .. } => VaultError::BadKey { path },
            KeyError::Random(reason) => VaultError::Random(reason),
        }
    }
}

/// A sealed (encrypted and authenticated) message and the id of its key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    /// Nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed {{ key_id: {}, {} bytes }}", self.key_id, self.bytes.len())
    }
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The current key and the keyring of older ones.
pub struct Vault {
    current: Key,
    /// Every known key (current included) by id.
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault {{ current: {}, keys: {} }}", self.current.id, self.keys.len())
    }
}

/// The keyring directory of a key file: `<key_file>.keyring`.
pub fn keyring_dir(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".keyring");
    key_file.with_file_name(name)
}

fn key_id(key: &[u8]) -> String {
    Sha256::digest(key).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io { path: path.to_path_buf(), source }
}

fn read_key(path: &Path) -> Result<Key, VaultError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.len() != KEY_LEN {
        return Err(VaultError::BadKey { path: path.to_path_buf() });
    }
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| VaultError::BadKey { path: path.to_path_buf() })?;
    Ok(Key { id: key_id(&bytes), cipher })
}

/// Writes `bytes` to a new file `path` (mode 0600), fsynced, then fsyncs the directory.
/// Fails if `path` exists, so two processes never both create a key.
impl Vault {
    /// Opens the vault: the key file (created with 32 random bytes and mode 0600 if missing,
    /// with its directory) and every `*.key` in its keyring directory.
    pub fn open(key_file: &Path) -> Result<Vault, VaultError> {
        secret_key(key_file)?;
        let current = read_key(key_file)?;
        let mut keys = HashMap::new();
        let ring = keyring_dir(key_file);
        match std::fs::read_dir(&ring) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry.map_err(io(&ring))?.path();
                    if path.extension().is_some_and(|e| e == "key") {
                        let key = read_key(&path)?;
                        keys.insert(key.id, key.cipher);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&ring)(e)),
        }
        keys.insert(current.id.clone(), current.cipher.clone());
        Ok(Vault { current, keys })
    }

    /// Retires the current key into the keyring and writes a new key file. Reopen the vault
    /// (every process using it) afterwards; old blobs keep decrypting with the retired key.
    pub fn rotate(key_file: &Path) -> Result<(), VaultError> {
        let old = std::fs::read(key_file).map_err(io(key_file))?;
        if old.len() != KEY_LEN {
            return Err(VaultError::BadKey { path: key_file.to_path_buf() });
        }
        let ring = keyring_dir(key_file);
        std::fs::create_dir_all(&ring).map_err(io(&ring))?;
        let retired = ring.join(format!("{}.key", key_id(&old)));
        match write_new_private(&retired, &old) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        // The new key replaces the old one by rename, so the key file is never missing or partial.
        let fresh = key_file.with_extension("new");
        let _ = std::fs::remove_file(&fresh);
        write_new_private(&fresh, &random::<KEY_LEN>()?)?;
        std::fs::rename(&fresh, key_file).map_err(io(key_file))?;
        Ok(sync_dir(key_file)?)
    }

    /// The id of the key new blobs are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    fn aad(item: &str, key_id: &str) -> Vec<u8> {
        format!("moat-vault-v1\0{item}\0{key_id}").into_bytes()
    }

    /// Encrypts `plaintext` for quarantine item `item` with the current key and a random nonce.
    pub fn seal(&self, item: &str, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        let nonce_bytes = random::<NONCE_LEN>()?;
        let nonce = XNonce::from(nonce_bytes);
        let aad = Self::aad(item, &self.current.id);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: &aad })
            .map_err(|_| VaultError::Tampered { item: item.to_string() })?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce_bytes);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: self.current.id.clone(), bytes })
    }

    /// Decrypts the blob of item `item`; any change to the blob, its key id or the item id is
    /// [`VaultError::Tampered`].
    pub fn open_sealed(&self, item: &str, sealed: &Sealed) -> Result<Vec<u8>, VaultError> {
        let cipher = self.keys.get(&sealed.key_id).ok_or_else(|| VaultError::UnknownKey { key_id: sealed.key_id.clone() })?;
        let tampered = || VaultError::Tampered { item: item.to_string() };
        if sealed.bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(tampered());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| tampered())?;
        let aad = Self::aad(item, &sealed.key_id);
        cipher.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).map_err(|_| tampered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/vault.key");
        let vault = Vault::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        let again = Vault::open(&path).unwrap();
        assert_eq!(vault.current_key_id(), again.current_key_id());
        let sealed = vault.seal("q1", b"hello").unwrap();
        assert_eq!(again.open_sealed("q1", &sealed).unwrap(), b"hello");
    }

    #[test]
    fn seal_open_round_trip_and_nonces_differ() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("k")).unwrap();
        let message = b"Subject: secret\r\n\r\nthe plaintext body\r\n";
        let a = vault.seal("item", message).unwrap();
        let b = vault.seal("item", message).unwrap();
        assert_ne!(a.bytes, b.bytes, "random nonces");
        assert_eq!(a.bytes.len(), 24 + message.len() + 16);
        assert!(!a.bytes.windows(9).any(|w| w == b"plaintext"), "no plaintext in the blob");
        assert_eq!(vault.open_sealed("item", &a).unwrap(), message);
        assert_eq!(
            vault.open_sealed("item", &Sealed { key_id: a.key_id.clone(), bytes: vec![] }).unwrap_err().to_string(),
            "sealed blob of item item failed authentication (tampered, truncated or wrong item)"
        );
    }

    #[test]
    fn every_flipped_byte_and_wrong_item_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(&dir.path().join("k")).unwrap();
        let sealed = vault.seal("item", b"some message").unwrap();
        for i in 0..sealed.bytes.len() {
            let mut bad = sealed.clone();
            bad.bytes[i] ^= 0x01;
            assert!(matches!(vault.open_sealed("item", &bad), Err(VaultError::Tampered { .. })), "byte {i}");
        }
        assert!(matches!(vault.open_sealed("other", &sealed), Err(VaultError::Tampered { .. })));
        let relabelled = Sealed { key_id: "0000000000000000".into(), ..sealed };
        assert!(matches!(vault.open_sealed("item", &relabelled), Err(VaultError::UnknownKey { .. })));
    }

    #[test]
    fn rotation_keeps_old_blobs_readable_and_seals_with_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.key");
        let old = Vault::open(&path).unwrap();
        let before = old.seal("a", b"old message").unwrap();
        Vault::rotate(&path).unwrap();
        let new = Vault::open(&path).unwrap();
        assert_ne!(new.current_key_id(), old.current_key_id());
        assert!(keyring_dir(&path).join(format!("{}.key", old.current_key_id())).is_file());
        assert_eq!(new.open_sealed("a", &before).unwrap(), b"old message");
        let after = new.seal("b", b"new message").unwrap();
        assert_eq!(after.key_id, new.current_key_id());
        assert!(matches!(old.open_sealed("b", &after), Err(VaultError::UnknownKey { .. })));
        Vault::rotate(&path).unwrap();
        let newest = Vault::open(&path).unwrap();
        assert_eq!(newest.open_sealed("a", &before).unwrap(), b"old message");
        assert_eq!(newest.open_sealed("b", &after).unwrap(), b"new message");
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(Vault::open(&path), Err(VaultError::BadKey { .. })));
    }
}
