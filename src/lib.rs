//! moat: a spam and virus filtering SMTP proxy.
//!
//! The flow (see README.md for the picture): `server` accepts a connection, a `session` speaks
//! SMTP through the sans-IO core in `smtp`, checks recipients, and at the end of data writes the
//! message to the `spool` (fsynced) before answering 250. The `relay` queue then delivers it to
//! the downstream server, retrying with backoff, and sends a DSN when it must give up.
//!
//! Module map: `config` (typed TOML, validate-all), `smtp` (the sans-IO core: `smtp::machine`,
//! the protocol state machine, over framing, commands, bodies, replies, addresses, PROXY
//! protocol, Received), `ruleset` (SpamAssassin-compatible rule files:
//! parse, compile, evaluate against a parsed message), `filter` (the filter chain: auth, DNS lists,
//! reverse DNS, clamd, attachment policy), `classifier` (the statistical spam classifier: tokenizer and model, pure), `scoring` and `verdict` (symbols × policy → action), `session` (the async driver of `smtp::machine`, one per connection: I/O, deadlines, filters, spool), `server`
//! (listeners, limits, signals), `tls`, `spool`, `relay`, `store` (quarantine index, encrypted contents, user preferences, greylisting;
//! SQLite or PostgreSQL), `quarantine` (held copies into the store, exactly-once release),
//! `digest` and `notices` (the emails moat sends users), `links` and `web` (signed links, the
//! pages behind them, the Message Center and the admin console/API), `stats` (verdict counts for
//! the console), `metrics` (Prometheus), `systemd` (sd_notify).
pub mod app;
pub mod classifier;
pub mod config;
pub mod control;
pub mod digest;
pub mod dns;
pub mod filter;
pub mod headers;
pub mod html;
pub mod keys;
pub mod layers;
pub mod links;
pub mod lists;
pub mod metrics;
pub mod notices;
pub mod quarantine;
pub mod relay;
pub mod ruleset;
pub mod scan;
pub mod scheduler;
pub mod scoring;
pub mod server;
pub mod session;
pub mod smtp;
pub mod spool;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod verdict;
pub mod web;
