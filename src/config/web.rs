//! `[web]` and `[notices]`: the small web listener behind the links in moat's emails, and the
//! emails moat sends users besides digests.

use super::Seconds;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[web]`: where the pages behind signed links (release, unsubscribe) are served. Without this
/// section moat sends no email that would need a link (virus notices, digests).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Web {
    /// Address to listen on (plain HTTP; put TLS in front with a reverse proxy), e.g. "127.0.0.1:8025".
    pub listen: SocketAddr,
    /// The base URL users reach that listener at, as written into links, e.g. "https://quarantine.example.net".
    pub public_url: String,
    /// How long a link in an email works.
    #[serde(default = "default_link_lifetime")]
    pub link_lifetime: Seconds,
    /// The key links are signed with: 32 random bytes, created if missing. Default
    /// `<state_dir>/links.key`. Several nodes must share the same file.
    pub key_file: Option<PathBuf>,
    /// How long a Message Center session lasts without use (each page renews it).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime: Seconds,
    /// How long the link in a "send me a login link" email works.
    #[serde(default = "default_session_lifetime")]
    pub login_link_lifetime: Seconds,
    /// Login-link emails one address gets at most per hour.
    #[serde(default = "default_login_per_address")]
    pub login_emails_per_address: u64,
    /// "Send me a link" requests one client (an IPv4 address's /24, an IPv6 address's /64) may
    /// make per hour, whatever addresses they name.
    #[serde(default = "default_login_per_client")]
    pub login_requests_per_client: u64,
    /// Login-link emails sent per hour in all (counted in the store, so for every node together).
    #[serde(default = "default_login_per_hour")]
    pub login_emails_per_hour: u64,
}

fn default_login_per_address() -> u64 {
    3
}

fn default_login_per_client() -> u64 {
    10
}

fn default_login_per_hour() -> u64 {
    200
}

fn default_session_lifetime() -> Seconds {
    Seconds(3600)
}

/// `[admin]`: the admin console and JSON API. Keep it on a private address; every request
/// needs the token in `token_file` (`Authorization: Bearer <token>`, or the console's login form).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: SocketAddr,
    /// A file holding the admin token (created with a random token if missing). Default
    /// `<state_dir>/admin.token`.
    pub token_file: Option<PathBuf>,
}

fn default_link_lifetime() -> Seconds {
    Seconds(30 * 86400)
}

/// `[metrics]`: the operator's listener for `/metrics` (Prometheus), `/healthz` and `/readyz`.
/// Keep it on a private address: it needs no credentials.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: SocketAddr,
}

/// `[notices]`: short emails to a user about their own mail.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Notices {
    /// Tell a recipient when a virus addressed to them is quarantined (needs `[web]` for the
    /// opt-out link; without it no notice is sent).
    pub virus: bool,
    /// The From address of moat's emails. Default `postmaster@<hostname>`.
    pub from: Option<String>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices { virus: true, from: None }
    }
}
