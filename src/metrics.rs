//! Prometheus metrics: recording only (a leaf every module may record into). The operator's
//! HTTP endpoint that renders them (`[metrics] listen`: `/metrics`, `/healthz`, `/readyz`) lives
//! in `web::operator`.
//!
//! Every metric is recorded through the `metrics` crate facade, so recording is a cheap no-op
//! until [`install`] has set the Prometheus recorder (tests and short-lived commands never do).
//! Names follow Prometheus conventions (`moat_` prefix, `_total` counters, `_seconds`
//! histograms with the buckets in [`BUCKETS`], base units); labels have small, bounded value sets
//! (verdicts, reply classes, filter and symbol names from the loaded rules) — never addresses.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `moat_connections_total` | counter | `ending` (quit, client_closed, timeout, …, pregreet, too_many_connections, bad_proxy_header) |
//! | `moat_connections_open` | gauge | |
//! | `moat_stress` | gauge | (1 while `[limits] stress_threshold` of `max_connections` is open, else 0) |
//! | `moat_messages_total` | counter | `outcome` (accepted, refused) |
//! | `moat_message_bytes_total` | counter | |
//! | `moat_verdicts_total` | counter | `action` (accept, tag, quarantine, reject, tempfail, discard) |
//! | `moat_symbols_total` | counter | `symbol` |
//! | `moat_tls_sessions_total` | counter | (inbound STARTTLS handshakes completed) |
//! | `moat_spool_messages`, `moat_spool_oldest_age_seconds` | gauge | (read at scrape time) |
//! | `moat_holding_messages`, `moat_holding_oldest_age_seconds` | gauge | held copies not yet in the quarantine store (read at scrape time; grows while the store is down or slower than the traffic) |
//! | `moat_delivery_attempts_total` | counter | `outcome` (delivered, deferred, failed, partial) |
//! | `moat_filter_seconds` | histogram | `filter`, `phase` |
//! | `moat_dns_lookup_seconds` | histogram | `kind` (dnsbl) |
//! | `moat_clamd_scan_seconds` | histogram | `outcome` (clean, virus, failure) |
//! | `moat_rule_reloads_total` | counter | `outcome` (applied, refused) |
//! | `moat_rules_info` | gauge (1) | `hash` of the rule set in force |
//! | `moat_quarantined_total` | counter | `category` |
//! | `moat_releases_total` | counter | `via` |
//! | `moat_digests_sent_total`, `moat_virus_notices_total` | counter | |

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for every `_seconds` histogram: 1 ms to 30 s.
pub const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Sets the process-wide Prometheus recorder. Returns `None` (and logs) if one was set already.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS).ok()?;
    match builder.install_recorder() {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(event = "metrics", error = %error, note = "metrics not recorded");
            None
        }
    }
}

/// Marks the rule set with `hash` as the one in force (`moat_rules_info{hash} 1`, the previous 0).
pub fn rules_in_force(hash: &str) {
    static IN_FORCE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut in_force = IN_FORCE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(old) = in_force.as_deref().filter(|old| *old != hash) {
        metrics::gauge!("moat_rules_info", "hash" => old.to_string()).set(0.0);
    }
    metrics::gauge!("moat_rules_info", "hash" => hash.to_string()).set(1.0);
    *in_force = Some(hash.to_string());
}
