//! The delivery queue as `moat queue list` and the admin console show it, read from the spool
//! alone (no server needed).

use super::{DeliveryState, Origin, RecipientState, Spool, SpoolError};
use serde::Serialize;
use std::path::Path;

/// One queued message, as `moat queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    pub id: String,
    /// Unix seconds when it was accepted.
    pub received_at: i64,
    pub sender: String,
    /// Message size in bytes.
    pub size: u64,
    /// True for a delivery status notification moat generated.
    pub dsn: bool,
    pub attempts: u32,
    /// Unix seconds of the next attempt (0: as soon as possible).
    pub next_attempt: i64,
    /// Each recipient with its status and the last reply.
    pub recipients: Vec<RecipientState>,
}

/// Lists the queue by reading the spool (no server needed). Corrupt records are skipped.
pub fn list_queue(dir: &Path) -> Result<Vec<QueueEntry>, SpoolError> {
    if !dir.join("queue").is_dir() {
        return Ok(Vec::new());
    }
    let spool = Spool::open(dir)?;
    let mut entries = Vec::new();
    for id in spool.list()? {
        let (envelope, origin, size) = match spool.load_envelope(&id) {
            Ok(found) => found,
            Err(SpoolError::NotFound(_) | SpoolError::Corrupt(_)) => continue,
            Err(error) => return Err(error),
        };
        let state: DeliveryState = spool.read_state(&id, &envelope)?;
        entries.push(QueueEntry {
            id,
            received_at: envelope.received_at,
            sender: envelope.sender,
            size,
            dsn: origin == Origin::Dsn,
            attempts: state.attempts,
            next_attempt: state.next_attempt,
            recipients: state.recipients,
        });
    }
    Ok(entries)
}
