//! The integration tests: one test binary (`cargo test --test it`), one module per area, and one
//! harness ([`support`]) that starts real peers on loopback.
//!
//! A test's name is `module::function` (e.g. `smtp_session::pipelined_commands_...`), so a
//! filter such as `scripts/test smtp_` selects a whole area. Every test runs on a thread of this
//! one process under `cargo test` (and in a process of its own under `cargo nextest`), so a test
//! must not change process-wide state (environment, working directory, signal handlers) and
//! takes its peers, ports and directories from [`support`], never fixed ones.

mod support;

mod attachments_corpus;
mod attachments_smtp;
mod auth_dns;
mod clamav_smtp;
mod cli_config;
mod cluster_pg;
mod digest_run;
mod digest_smtp;
mod e2e_faults;
mod e2e_relay;
mod faults_load;
mod harness_selftest;
mod log_privacy;
mod metrics_http;
mod quarantine_recovery;
mod quarantine_smtp;
mod relay_control;
mod relay_smtp_sink;
mod reputation_dnsbl;
mod reputation_rdns;
mod ruleset_agreement;
mod ruleset_bench;
mod ruleset_corpus;
mod ruleset_stock;
mod scoring_corpus;
mod scoring_smtp;
mod smtp_limits;
mod smtp_open_relay;
mod smtp_proxy_protocol;
mod smtp_recipient_callout;
mod smtp_session;
mod smtp_smuggling;
mod smtp_starttls;
mod store;
mod web_browser;
mod web_center;
mod web_links;
