//! The durable queue on disk (to be written: see the spool/relay helper task).
//!
//! Guarantees: `store` returns only after the message file and its directory are fsynced.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Everything known about a message besides its bytes. Envelope metadata only (no subject, no body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Queue id: unique, sortable, safe as a file name.
    pub id: String,
    /// Unix seconds when we said 250.
    pub received_at: i64,
    pub client_ip: IpAddr,
    pub helo: String,
    /// Reverse path; "" is the null sender.
    pub sender: String,
    /// Forward paths, already validated as ours.
    pub recipients: Vec<String>,
    /// MAIL FROM had SMTPUTF8.
    pub smtputf8: bool,
    /// MAIL FROM had BODY=8BITMIME.
    pub body_8bit: bool,
    /// Inbound TLS, e.g. "TLSv1.3 TLS13_AES_256_GCM_SHA384", when used.
    pub tls: Option<String>,
}
