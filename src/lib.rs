//! moat: a spam and virus filtering SMTP proxy.
pub mod config;
pub mod relay;
pub mod smtp;
pub mod spool;
