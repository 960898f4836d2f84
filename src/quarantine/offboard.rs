//! A customer domain leaves: everything moat holds about it and its users goes (the store's
//! records, held copies not yet in the store), and its queued mail is listed for the caller to
//! drop (`moat domain purge`, the admin API).
//!
//! Guarantees: held copies addressed only to the domain are removed before the store is purged,
//! so none is stored after it; the purge is audited by domain name, time and actor only.

use super::{Quarantine, QuarantineError};
use crate::clock::blocking;
use crate::spool::{QueueEntry, SpoolError};

/// What a domain purge removed and found.
#[derive(Debug)]
pub struct DomainPurged {
    pub domain: String,
    pub items: u64,
    pub held_copies: u64,
    pub other_rows: u64,
    /// Queued messages with a recipient in the domain.
    pub queued: Vec<QueueEntry>,
}

impl DomainPurged {
    /// The queued messages addressed to the domain alone (those the caller may drop).
    pub fn only_theirs(&self) -> Vec<String> {
        self.queued.iter().filter(|e| e.recipients.iter().all(|r| in_domain(&r.address, &self.domain))).map(|e| e.id.clone()).collect()
    }
}

fn in_domain(address: &str, domain: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(_, d)| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
}

impl Quarantine {
    /// Purges `domain` (already checked by the caller not to be configured, or forced).
    pub async fn purge_domain(&self, domain: &str, actor: &str) -> Result<DomainPurged, QuarantineError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let (holding, wanted) = (self.holding().clone(), domain.clone());
        let held_copies = blocking(move || {
            let mut removed = 0;
            for id in holding.list()? {
                let Ok((envelope, _, _)) = holding.load_envelope(&id) else { continue };
                if envelope.recipients.iter().all(|r| in_domain(r, &wanted)) && holding.remove(&id)? {
                    removed += 1;
                }
            }
            Ok::<_, SpoolError>(removed)
        })
        .await?;
        let spool_dir = self.config.load().spool_dir();
        let wanted = domain.clone();
        let queued = blocking(move || {
            Ok::<_, SpoolError>(
                crate::spool::list_queue(&spool_dir)?
                    .into_iter()
                    .filter(|entry| entry.recipients.iter().any(|r| in_domain(&r.address, &wanted)))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
        let purged = self.store.purge_domain(&domain, actor, crate::clock::unix_now()).await?;
        tracing::info!(event = "domain_purged", domain = %domain, actor, items = purged.items, held_copies, queued = queued.len());
        Ok(DomainPurged { domain, items: purged.items, held_copies, other_rows: purged.other_rows, queued })
    }
}
