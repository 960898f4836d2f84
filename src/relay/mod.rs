//! Delivery to the downstream: the "after the 250" half of moat.
//!
//! - [`queue`]: the queue manager. Recovers the spool, delivers with bounded concurrency,
//!   keeps per-recipient results, retries with backoff, expires, bounces (RFC 3464 DSNs).
//! - [`client`]: our own SMTP client (STARTTLS per policy, pipelining, byte-exact DATA).
//! - [`pool`]: idle downstream connections cached per route for reuse.
//! - [`dsn`]: building delivery status notifications (pure).
//! - [`wire`], [`tls`]: sans-IO protocol helpers and TLS client configurations.
//! - [`probe_recipient`]: recipient verification ("callout") for the RCPT phase, and
//!   [`recipients`]: the per-domain recipient check that uses it, with its cache.
//!
//! Guarantees: every network step has a deadline and a size bound; every channel is bounded;
//! logs and errors carry envelope metadata and server replies only, never subject or body.

pub mod client;
pub mod dsn;
pub mod pool;
pub mod queue;
pub mod recipients;
pub mod tls;
pub mod wire;

pub use client::{ClientError, ClientSettings, Connection};
pub use queue::{Queue, QueueError, QueueHandle};
pub use recipients::{RecipientVerifier, Validity};

use crate::config::{Config, Route};

/// What the downstream said about a recipient probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// RCPT got 2xx: the address exists.
    Accepted,
    /// RCPT got 5xx: the address does not exist (or is refused for good).
    Rejected { code: u16, enhanced: Option<[u8; 3]>, text: String },
    /// RCPT got 4xx (or anything else): ask again later.
    Temporary { code: u16, enhanced: Option<[u8; 3]>, text: String },
}

/// Why a probe gave no answer about the recipient (connection trouble, or the downstream
/// refused `MAIL FROM:<>`). The caller decides whether to tempfail or accept.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Asks `route`'s server whether it would accept `rcpt`: EHLO (STARTTLS per the route's
/// policy), `MAIL FROM:<>`, `RCPT TO:<rcpt>`, then RSET and QUIT. A fresh connection each
/// time (callers cache the answers). Deadlines from `config.delivery`.
pub async fn probe_recipient(route: &Route, config: &Config, rcpt: &str) -> Result<ProbeAnswer, ProbeError> {
    let settings = ClientSettings::from_config(config);
    let mut conn = Connection::connect(route, &settings).await?;
    let result = conn.probe(rcpt).await;
    conn.quit().await;
    let reply = result?;
    tracing::info!(downstream = %client::peer_of(route), rcpt, reply = %reply, "recipient probe");
    let (code, enhanced, text) = (reply.code, reply.enhanced, reply.text);
    Ok(if (200..300).contains(&code) {
        ProbeAnswer::Accepted
    } else if (500..600).contains(&code) {
        ProbeAnswer::Rejected { code, enhanced, text }
    } else {
        ProbeAnswer::Temporary { code, enhanced, text }
    })
}
