//! moat: a spam and virus filtering SMTP proxy.
//!
//! The flow (see README.md for the picture): `server` accepts a connection, a `session` speaks
//! SMTP through the sans-IO core in `smtp`, checks recipients, and at the end of data writes the
//! message to the `spool` (fsynced) before answering 250. The `relay` queue then delivers it to
//! the downstream server, retrying with backoff, and sends a DSN when it must give up.
//!
//! Module map, by layer (top first; a module imports only from its own layer or below, which
//! `layers` checks in a test; where a lower layer must call up it takes a trait or a channel):
//!
//! - **top**: `server` (listeners, limits, signals, start and drain), `scheduler` (the
//!   cluster's periodic work under a lease: digests, retention), `control` (the socket between
//!   the CLI and a running server), `scan` (`moat scan`); the binary's `main`.
//! - **front services**: `session` (the async driver of `smtp::machine`, one per connection:
//!   I/O, deadlines, filters, spool), `web` (signed-link pages, the Message Center, the admin
//!   console and API, the operator's `/metrics`).
//! - **application**: `app` (what every service of a node shares, and reload), `admission`
//!   (open connections, their limits and stress mode).
//! - **back services**: `relay` (downstream delivery, retries, DSNs, recipient callouts),
//!   `quarantine` (held copies into the store, exactly-once release), `digest` and `notices`
//!   (the emails moat sends users).
//! - **storage**: `spool` (the durable queue on disk), `store` (SQLite or PostgreSQL: quarantine
//!   index and encrypted contents, preferences, lists, greylisting, rates, leases, audit).
//! - **message**: `filter` (the filter chain: auth, DNS lists, reverse DNS, clamd, attachments,
//!   rules), `classifier` (the statistical spam classifier: tokenizer and model, pure; not yet
//!   in the filter chain), `ruleset` (SpamAssassin-syntax rule files), `scoring` (filters + scores + policy as
//!   one value), `verdict` (symbols × policy → action, pure), `stats` (verdict counts).
//! - **leaves**: `config` (typed TOML, validate-all), `smtp` (the sans-IO core: the protocol
//!   state machine, framing, commands, bodies, replies, addresses, PROXY protocol, Received),
//!   `headers` (the one header-field parser), `html` (the templates' escaper,
//!   text from mail made safe to show), `i18n` (the catalogs of the words users read), `lists`
//!   (allow/block lists), `links` (signed link tokens), `keys` (key files), `clock` (time, dates,
//!   blocking work), `metrics` (recording), `dns`, `tls`, `systemd` (sd_notify).
pub mod admission;
pub mod allocator;
pub mod app;
pub mod classifier;
pub mod clock;
pub mod config;
pub mod control;
pub mod digest;
pub mod dns;
pub mod domains;
pub mod filter;
pub mod headers;
pub mod html;
pub mod i18n;
pub mod keys;
pub mod layers;
pub mod learning;
pub mod links;
pub mod lists;
pub mod mailbox;
pub mod metrics;
pub mod mime;
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
