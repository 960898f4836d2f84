//! The one place that knows how DNS is reached: builds the resolver from `[dns]`.
//!
//! Guarantees: every query has a deadline (`timeout` × `attempts`: hickory's own `attempts`
//! counts the retries after the first try, so it gets one less) and answers are cached
//! (bounded by `cache_size`), found and not found alike: within the record's TTL, or the SOA's
//! for a negative answer, and at least [`NEGATIVE_MIN_TTL`] for a negative answer that carries
//! no SOA (which would otherwise not be cached at all); negative answers (NXDOMAIN) from a
//! configured server are trusted, so a test zone or a local resolver answers authoritatively.

use crate::config::Dns;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// How long a "no such name / no such record" answer is kept at least, when the answer itself
/// says nothing (no SOA): a spam run naming the same missing domains asks once, not per message.
pub const NEGATIVE_MIN_TTL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct DnsError(String);

/// Builds the resolver: the configured name servers, or the system's when none are given.
pub fn resolver(config: &Dns) -> Result<TokioResolver, DnsError> {
    let mut options = ResolverOpts::default();
    options.timeout = config.timeout.duration();
    options.attempts = config.attempts.saturating_sub(1);
    options.cache_size = config.cache_size;
    options.negative_min_ttl = Some(NEGATIVE_MIN_TTL);
    let builder = if config.nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| DnsError(e.to_string()))?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|address| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = address.port();
                        c
                    })
                    .collect();
                NameServerConfig::new(address.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
    };
    builder.with_options(options).build().map_err(|e| DnsError(e.to_string()))
}
