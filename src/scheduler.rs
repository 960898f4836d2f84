//! The scheduler: the cluster's periodic work (quarantine digests and the retention sweep; later
//! model maintenance), run by the one node that holds the `scheduler` lease in the store.
//!
//! Guarantees: at most one node does scheduled work at a time while the store answers (it
//! renews the lease every [`LEASE_CHECK`]; another node takes over [`SCHEDULER_LEASE`] after the
//! holder stops renewing, at once when it stops cleanly and gives the lease up); exactly-once
//! digests still rest on the store's compare-and-set per user, so a holder that dies mid-run
//! causes neither a duplicate nor a gap. A store that does not answer means no scheduled work
//! until it does.

use crate::digest;
use crate::quarantine::Quarantine;
use crate::store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the digest schedule is checked.
const DIGEST_CHECK: Duration = Duration::from_secs(30);
/// How often retention runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The scheduler lease: the node holding it runs the cluster's scheduled work and renews it at
/// every check; another node takes over this long after the holder stops renewing.
pub const SCHEDULER_LEASE: Duration = Duration::from_secs(90);
/// How often a node asks for (or renews) the lease.
const LEASE_CHECK: Duration = Duration::from_secs(10);
const LEASE_NAME: &str = "scheduler";

/// Runs the scheduled work whenever this node holds the lease, until shutdown; then gives the
/// lease up so another node takes over at once. `submit` hands the digests written to the
/// delivery queue.
pub async fn run(quarantine: Arc<Quarantine>, submit: impl Fn(String) + Send + 'static, mut shutdown: watch::Receiver<bool>) {
    let holder = match store::new_item_id() {
        Ok(random) => format!("{}/{}/{}", quarantine.config().hostname, std::process::id(), &random[..8]),
        Err(error) => {
            tracing::error!(event = "scheduler_lease", error = %error, note = "no scheduled work on this node");
            return;
        }
    };
    let mut leader = false;
    let mut last_sweep: Option<Instant> = None;
    let mut last_digests: Option<Instant> = None;
    loop {
        leader = take_turn(&quarantine, &holder, leader).await;
        if leader {
            if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                match quarantine.sweep(store::unix_now()).await {
                    Ok(_) => last_sweep = Some(Instant::now()),
                    Err(error) => tracing::warn!(event = "retention_sweep", error = %error),
                }
            }
            if last_digests.is_none_or(|at| at.elapsed() >= DIGEST_CHECK) {
                last_digests = Some(Instant::now());
                match digest::run(&quarantine, &digest::Run::Scheduled { now: store::unix_now() }).await {
                    Ok(sent) => sent.queue_ids.into_iter().for_each(&submit),
                    Err(error) => tracing::warn!(event = "digest_run", error = %error, note = "retried at the next check"),
                }
            }
        }
        let stopping = tokio::select! {
            _ = tokio::time::sleep(LEASE_CHECK) => false,
            _ = shutdown.wait_for(|down| *down) => true,
        };
        if stopping {
            if leader {
                let _ = quarantine.store().release_lease(LEASE_NAME, &holder).await;
            }
            return;
        }
    }
}

/// Takes or renews the lease; returns whether this node holds it now (logging when that changes).
async fn take_turn(quarantine: &Quarantine, holder: &str, was_leader: bool) -> bool {
    let held = match quarantine.store().acquire_lease(LEASE_NAME, holder, SCHEDULER_LEASE, store::unix_now()).await {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(event = "scheduler_lease", error = %error, note = "no scheduled work until the store answers");
            false
        }
    };
    if held != was_leader {
        tracing::info!(event = "scheduler_lease", holder, outcome = if held { "acquired" } else { "lost" });
    }
    held
}
