//! The sans-IO SMTP core: framing, commands, bodies, replies, envelope addresses, the PROXY
//! protocol, our Received header, and `machine`, the protocol state machine that ties them into
//! a conversation. No sockets here; the async driver is `session`.
pub mod address;
pub mod body;
pub mod command;
pub mod line;
pub mod machine;
pub mod proxy;
pub mod received;
pub mod reply;
