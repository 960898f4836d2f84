//! The integration tests: one test binary (`cargo test --test it`), a module per area, and one
//! harness, [`support`], that runs moat and real peers on loopback.
//!
//! A test is named `module::function` (e.g. `smtp_session::greeting_names_the_host`), so a filter
//! such as `scripts/test smtp_` selects whole areas. Under `cargo test` every test runs on a
//! thread of this one process (under `cargo nextest`, in a process of its own), so a test leaves
//! process-wide state alone: no `std::env::set_var` or `set_current_dir` (a child gets its own
//! with `Command::current_dir` and `Command::env`), no signal handlers, no fixed port that
//! something binds (ports come from [`support::free_port`] or a peer the harness started), no
//! system-wide service (a private [`support::Postfix`], never the system's). Shared on purpose:
//! [`support::postgres::PgServer::shared`] (one server, a database per test) and
//! [`support::load_lock`], held by the tests that load the machine and judge throughput.

mod support;

mod attachments_corpus;
mod attachments_smtp;
mod auth_dns;
mod clamav_smtp;
mod classifier_learning;
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
mod web_language;
mod web_links;
mod web_look;
