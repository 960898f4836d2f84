//! Message Center sessions and CSRF protection, without server-side state (so any node of a
//! cluster serves any request): the session cookie holds a signed token for one user (action
//! `WebSession`, item = when the session started), renewed on each page for `session_lifetime`;
//! a session never outlives [`MAX_SESSION_AGE`]. Every form carries a CSRF token derived from
//! the user and the session's start with the link key, so a page on another site cannot post
//! for the user; cross-site requests (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not
//! this host) are refused as well.
//!
//! Guarantees: a request acts for the user whose session it carries, never for an address it
//! names; the cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when the public URL is
//! HTTPS.

use crate::links::{Link, LinkAction, LinkKey};
use axum::http::{HeaderMap, HeaderValue, header};

pub const COOKIE: &str = "moat_session";
/// The longest a session lasts, however often it is renewed.
pub const MAX_SESSION_AGE: i64 = 12 * 3600;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The user's address (lower case).
    pub address: String,
    /// When the session started (Unix seconds).
    pub started: i64,
}

impl WebSession {
    /// The session in the request's cookie, if it is valid at `now`.
    pub fn from_headers(key: &LinkKey, headers: &HeaderMap, now: i64) -> Option<WebSession> {
        let token = cookie(headers, COOKIE)?;
        let link = key.verify(token, now).ok()?;
        WebSession::from_link(&link, now)
    }

    fn from_link(link: &Link, now: i64) -> Option<WebSession> {
        let started: i64 = link.item.parse().ok()?;
        let fresh = link.action == LinkAction::Session && started <= now && now - started <= MAX_SESSION_AGE;
        fresh.then(|| WebSession { address: link.address.clone(), started })
    }

    /// The `Set-Cookie` value that (re)issues this session for `lifetime` seconds from `now`.
    pub fn cookie(&self, key: &LinkKey, now: i64, lifetime: u64, secure: bool) -> HeaderValue {
        let remaining = u64::try_from(self.started + MAX_SESSION_AGE - now).unwrap_or(0);
        let lifetime = lifetime.min(remaining);
        let token = key.token(LinkAction::Session, &self.address, &self.started.to_string(), now, lifetime);
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={lifetime}{secure}"))
            .unwrap_or_else(|_| HeaderValue::from_static("moat_session=; Path=/; Max-Age=0"))
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear() -> HeaderValue {
        HeaderValue::from_static("moat_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }

    /// This session's CSRF token.
    pub fn csrf(&self, key: &LinkKey) -> String {
        key.derive("csrf", &format!("{}\0{}", self.address, self.started))
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_ok(&self, key: &LinkKey, token: &str) -> bool {
        key.check_derived("csrf", &format!("{}\0{}", self.address, self.started), token)
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether a state-changing request comes from another site (refused whatever its token):
/// `Sec-Fetch-Site` other than same-origin or none (browsers send it), or an `Origin` that is
/// not this host. (An `Origin` of `null`, which browsers send under `Referrer-Policy:
/// no-referrer`, proves nothing either way; the CSRF token decides.)
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else { return false };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else { return true };
    origin != "null" && origin.split_once("://").map(|(_, rest)| rest) != Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_session_cookie_round_trips_and_expires() {
        let key = LinkKey::from_bytes([3; 32]);
        let session = WebSession { address: "alice@example.test".into(), started: 1_000 };
        let set = session.cookie(&key, 1_000, 3600, true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"), "{set}");
        let value = set.split(';').next().unwrap();
        let request = headers(&[("cookie", &format!("other=1; {value}"))]);
        assert_eq!(WebSession::from_headers(&key, &request, 2_000), Some(session.clone()));
        assert_eq!(WebSession::from_headers(&key, &request, 1_000 + 3601), None, "expired");
        assert_eq!(WebSession::from_headers(&LinkKey::from_bytes([4; 32]), &request, 2_000), None, "another key");
        // Renewal cannot stretch a session past its maximum age.
        let late = session.cookie(&key, 1_000 + MAX_SESSION_AGE - 10, 3600, false);
        assert!(late.to_str().unwrap().contains("Max-Age=10"), "{late:?}");
    }

    #[test]
    fn a_link_token_is_not_a_session() {
        let key = LinkKey::from_bytes([3; 32]);
        let token = key.token(LinkAction::Login, "alice@example.test", "1000", 1_000, 3600);
        assert_eq!(WebSession::from_headers(&key, &headers(&[("cookie", &format!("{COOKIE}={token}"))]), 1_500), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = LinkKey::from_bytes([3; 32]);
        let alice = WebSession { address: "alice@example.test".into(), started: 1_000 };
        let bob = WebSession { address: "bob@example.test".into(), started: 1_000 };
        assert!(alice.csrf_ok(&key, &alice.csrf(&key)));
        assert!(!alice.csrf_ok(&key, &bob.csrf(&key)));
        assert!(!alice.csrf_ok(&key, ""));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("origin", "https://evil.example"), ("host", "q.example.test")])));
        assert!(!cross_site(&headers(&[("origin", "https://q.example.test"), ("host", "q.example.test")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&headers(&[("origin", "null"), ("host", "q.example.test")])));
        assert!(!cross_site(&HeaderMap::new()));
    }
}
