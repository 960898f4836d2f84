//! The sans-IO SMTP core: framing, bodies, replies. No sockets here; the async driver is `session`.
pub mod body;
pub mod command;
pub mod line;
pub mod reply;
