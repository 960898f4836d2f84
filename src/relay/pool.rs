//! Idle downstream connections, cached per route so consecutive messages reuse them.
//!
//! Guarantees: a connection is cached only between transactions (the caller RSETs before
//! reusing it); at most `max_idle_per_route` are kept per route; none is handed out after
//! `idle_timeout` (expired ones are returned to the caller to QUIT); connections that reached
//! `max_messages_per_connection` are never cached. The lock is held only to move entries.

use super::client::Connection;
use crate::config::Route;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Identifies a route: connections are shared only between identical routes.
pub fn route_key(route: &Route) -> String {
    format!("{}|{}|{:?}|{:?}|{:?}", route.host, route.port, route.tls, route.tls_name, route.ca_file)
}

struct Idle {
    conn: Connection,
    since: Instant,
}

/// The cache.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Takes the most recently used live connection for `key`, plus expired ones to close.
    pub fn take(&self, key: &str, idle_timeout: Duration) -> (Option<Connection>, Vec<Connection>) {
        let Ok(mut idle) = self.idle.lock() else { return (None, Vec::new()) };
        let Some(list) = idle.get_mut(key) else { return (None, Vec::new()) };
        let (live, expired): (Vec<Idle>, Vec<Idle>) = list.drain(..).partition(|i| i.since.elapsed() < idle_timeout);
        *list = live;
        let conn = list.pop().map(|i| i.conn);
        if list.is_empty() {
            idle.remove(key);
        }
        (conn, expired.into_iter().map(|i| i.conn).collect())
    }

    /// Caches `conn` for reuse, or gives it back (to be closed) when it has carried
    /// `max_messages` or the route already has `max_idle` cached.
    pub fn put(&self, key: &str, conn: Connection, max_messages: u32, max_idle: usize) -> Option<Connection> {
        if conn.messages() >= max_messages {
            return Some(conn);
        }
        let Ok(mut idle) = self.idle.lock() else { return Some(conn) };
        let list = idle.entry(key.to_string()).or_default();
        if list.len() >= max_idle {
            return Some(conn);
        }
        list.push(Idle { conn, since: Instant::now() });
        None
    }

    /// Removes and returns every connection idle for `idle_timeout` or longer.
    pub fn expired(&self, idle_timeout: Duration) -> Vec<Connection> {
        let Ok(mut idle) = self.idle.lock() else { return Vec::new() };
        let mut out = Vec::new();
        for list in idle.values_mut() {
            let (live, expired): (Vec<Idle>, Vec<Idle>) = list.drain(..).partition(|i| i.since.elapsed() < idle_timeout);
            *list = live;
            out.extend(expired.into_iter().map(|i| i.conn));
        }
        idle.retain(|_, list| !list.is_empty());
        out
    }

    /// Removes and returns every cached connection (shutdown).
    pub fn drain(&self) -> Vec<Connection> {
        let Ok(mut idle) = self.idle.lock() else { return Vec::new() };
        idle.drain().flat_map(|(_, list)| list.into_iter().map(|i| i.conn)).collect()
    }

    /// How many connections are cached (for tests and status).
    pub fn len(&self) -> usize {
        self.idle.lock().map(|idle| idle.values().map(Vec::len).sum()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
