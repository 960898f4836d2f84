//! The sans-IO SMTP core: framing, commands, bodies, replies, envelope addresses, the PROXY
//! protocol and our Received header. No sockets here; the async driver is `session`.
pub mod address;
pub mod body;
pub mod command;
pub mod line;
pub mod proxy;
pub mod received;
pub mod reply;
