//! Signed links in the emails moat sends: release, release and always allow the sender, view,
//! and unsubscribe. A link is a capability for one user and (except unsubscribe) one item.
//!
//! Token: `base64url(payload) "." base64url(HMAC-SHA256(key, "moat-link-v1\0" ‖ payload))`, the
//! payload being `action \0 address \0 item \0 expires` (Unix seconds). The key is 32 random
//! bytes in a key file (created on first use; every node of a cluster must have the same file).
//!
//! Guarantees: [`LinkKey::verify`] accepts only a token this key signed, unchanged (constant-time
//! comparison), not expired; any edit to the action, the user, the item or the expiry makes it
//! fail. Tokens carry no message content, only the address and the item id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::Path;

const DOMAIN_SEPARATION: &[u8] = b"moat-link-v1\0";
/// Longest token accepted (a long address and item id fit well inside).
pub const MAX_TOKEN: usize = 1024;

/// What a link does when its page's button is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Release,
    /// Release and add the sender to the user's allow list.
    ReleaseAllow,
    View,
    /// Stop the digests and notices to this user.
    Unsubscribe,
    /// Open the user's Message Center (in a digest or a login email): starts a session.
    Login,
    /// A Message Center session (the cookie's value), not a link in an email.
    Session,
}

impl LinkAction {
    fn code(self) -> &'static str {
        match self {
            LinkAction::Release => "r",
            LinkAction::ReleaseAllow => "a",
            LinkAction::View => "v",
            LinkAction::Unsubscribe => "u",
            LinkAction::Login => "l",
            LinkAction::Session => "s",
        }
    }

    fn from_code(code: &str) -> Option<LinkAction> {
        Some(match code {
            "r" => LinkAction::Release,
            "a" => LinkAction::ReleaseAllow,
            "v" => LinkAction::View,
            "u" => LinkAction::Unsubscribe,
            "l" => LinkAction::Login,
            "s" => LinkAction::Session,
            _ => return None,
        })
    }
}

/// What a verified link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub action: LinkAction,
    /// The user (lower-cased address) the link was made for.
    pub address: String,
    /// The quarantine item ("" for unsubscribe).
    pub item: String,
    pub expires: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// The link-signing key.
#[derive(Clone)]
pub struct LinkKey {
    key: [u8; 32],
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// The key in `path`, created if missing.
    pub fn open(path: &Path) -> Result<LinkKey, crate::keys::KeyError> {
        Ok(LinkKey { key: crate::keys::secret_key(path)? })
    }

    pub fn from_bytes(key: [u8; 32]) -> LinkKey {
        LinkKey { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(DOMAIN_SEPARATION);
        mac.update(payload);
        mac
    }

    /// A value bound to `data` for one `purpose` (e.g. a session's CSRF token): base64url of
    /// HMAC-SHA256 under a domain separation of its own, so it can never pass as a link.
    pub fn derive(&self, purpose: &str, data: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"moat-derive-v1\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `candidate` is [`LinkKey::derive`]`(purpose, data)` (constant-time).
    pub fn check_derived(&self, purpose: &str, data: &str, candidate: &str) -> bool {
        let expected = self.derive(purpose, data);
        expected.len() == candidate.len() && expected.bytes().zip(candidate.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// A token for `link` made now, valid for `lifetime` seconds.
    pub fn token(&self, action: LinkAction, address: &str, item: &str, now: i64, lifetime: u64) -> String {
        let expires = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
        self.sign(&Link { action, address: address.to_ascii_lowercase(), item: item.to_string(), expires })
    }

    /// A token for `link`.
    pub fn sign(&self, link: &Link) -> String {
        let payload = format!("{}\0{}\0{}\0{}", link.action.code(), link.address.to_ascii_lowercase(), link.item, link.expires);
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The URL of a link under `web.public_url`, valid for `web.link_lifetime` from `now`.
    pub fn url(&self, web: &crate::config::Web, action: LinkAction, address: &str, item: &str, now: i64) -> String {
        self.url_for(web, action, address, item, now, web.link_lifetime.0)
    }

    /// [`LinkKey::url`] valid for `lifetime` seconds (a login email's link is short-lived).
    pub fn url_for(&self, web: &crate::config::Web, action: LinkAction, address: &str, item: &str, now: i64, lifetime: u64) -> String {
        format!("{}/l/{}", web.public_url.trim_end_matches('/'), self.token(action, address, item, now, lifetime))
    }

    /// The link a token stands for, if this key signed it and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Link, LinkError> {
        if token.len() > MAX_TOKEN {
            return Err(LinkError::Malformed);
        }
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
        self.mac(&payload).verify_slice(&tag).map_err(|_| LinkError::BadSignature)?;
        let payload = String::from_utf8(payload).map_err(|_| LinkError::Malformed)?;
        let fields: Vec<&str> = payload.split('\0').collect();
        let [action, address, item, expires] = fields[..] else { return Err(LinkError::Malformed) };
        let link = Link {
            action: LinkAction::from_code(action).ok_or(LinkError::Malformed)?,
            address: address.to_string(),
            item: item.to_string(),
            expires: expires.parse().map_err(|_| LinkError::Malformed)?,
        };
        if link.expires < now {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(action: LinkAction) -> Link {
        Link { action, address: "alice@example.test".into(), item: "0123abcd".into(), expires: 2_000 }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let key = LinkKey::from_bytes([7; 32]);
        let token = key.sign(&link(LinkAction::Release));
        assert_eq!(key.verify(&token, 1_000), Ok(link(LinkAction::Release)));
        assert_eq!(key.verify(&token, 2_001), Err(LinkError::Expired));
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'), "URL-safe: {token}");
    }

    #[test]
    fn any_change_or_another_key_is_refused() {
        let key = LinkKey::from_bytes([7; 32]);
        let token = key.sign(&link(LinkAction::Release));
        assert_eq!(LinkKey::from_bytes([8; 32]).verify(&token, 0), Err(LinkError::BadSignature));
        let (_, tag) = token.split_once('.').unwrap();
        for other in [
            Link { action: LinkAction::ReleaseAllow, ..link(LinkAction::Release) },
            Link { address: "mallory@example.test".into(), ..link(LinkAction::Release) },
            Link { item: "0123abce".into(), ..link(LinkAction::Release) },
            Link { expires: 9_999, ..link(LinkAction::Release) },
        ] {
            let forged = format!("{}.{tag}", key.sign(&other).split_once('.').unwrap().0);
            assert_eq!(key.verify(&forged, 0), Err(LinkError::BadSignature), "{other:?}");
        }
        assert_eq!(key.verify("garbage", 0), Err(LinkError::Malformed));
        assert_eq!(key.verify("a.b.c", 0), Err(LinkError::Malformed));
        assert_eq!(key.verify(&"x".repeat(MAX_TOKEN + 1), 0), Err(LinkError::Malformed));
    }

    #[test]
    fn derived_values_are_bound_to_purpose_data_and_key() {
        let key = LinkKey::from_bytes([7; 32]);
        let csrf = key.derive("csrf", "session-a");
        assert!(key.check_derived("csrf", "session-a", &csrf));
        assert!(!key.check_derived("csrf", "session-b", &csrf));
        assert!(!key.check_derived("other", "session-a", &csrf));
        assert!(!LinkKey::from_bytes([8; 32]).check_derived("csrf", "session-a", &csrf));
        assert!(!key.check_derived("csrf", "session-a", ""));
        assert_eq!(key.verify(&format!("{}.{csrf}", URL_SAFE_NO_PAD.encode("s\0a@b\0\09999")), 0), Err(LinkError::BadSignature));
    }
}
