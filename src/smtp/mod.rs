//! Sans-IO SMTP helpers: pure functions over bytes and strings, no sockets, no async.
//!
//! * [`proxy`]: the PROXY protocol (v1 text and v2 binary) header a load balancer puts in front of a connection.
//! * [`address`]: envelope address policy for MAIL FROM and RCPT TO; the open-relay guard lives here.
//! * [`received`]: the one `Received:` trace header moat prepends to every message it accepts.
//!
//! Every function here is total: it returns a value or a typed error for any input and never panics,
//! so each can be fed arbitrary bytes by a fuzz target.
pub mod address;
pub mod proxy;
pub mod received;
