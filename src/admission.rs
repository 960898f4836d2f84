//! Connection admission: counts open SMTP connections in total and per client IP, refuses
//! those over the limits, and says when the server is under stress.
//!
//! Guarantees:
//! - a [`Permit`] holds one slot and gives it back when dropped, whatever ended the session;
//! - stress mode turns on when the open connections reach `[limits] stress_threshold` of
//!   `max_connections` (like Postfix's `${stress}`) and off when they fall below nine tenths of
//!   that (so a server hovering at the mark does not flap and wake every waiting session each
//!   time); it is re-evaluated on every admission and every close, so sessions shorten their
//!   deadlines the moment a flood starts and lengthen them when it ends; the gauge
//!   `moat_stress` (0 or 1) and one log line per change show it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;

/// Counts open connections in total and per client IP.
pub struct Limiter {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Open connections at which stress mode turns on (0: never), from the last admission's
    /// configuration.
    stress_at: AtomicUsize,
    /// Whether stress mode is on; sessions waiting for input watch it to re-take their deadlines.
    stressed: watch::Sender<bool>,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter {
            total: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            stress_at: AtomicUsize::new(0),
            stressed: watch::Sender::new(false),
        }
    }
}

/// The bounds one admission is checked against (read from the configuration in force).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_total: usize,
    pub max_per_ip: usize,
    /// Share of `max_total` at which stress mode turns on; 0 turns it off.
    pub stress_threshold: f64,
}

impl Bounds {
    fn stress_at(&self) -> usize {
        if self.stress_threshold <= 0.0 {
            return 0;
        }
        ((self.max_total as f64 * self.stress_threshold).ceil() as usize).max(1)
    }
}

/// Holds one connection slot; released on drop.
pub struct Permit<'a> {
    limiter: &'a Limiter,
    ip: IpAddr,
}

impl Limiter {
    /// A slot for a connection from `ip`, or None when either bound is reached.
    pub fn acquire(&self, ip: IpAddr, bounds: Bounds) -> Option<Permit<'_>> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        self.stress_at.store(bounds.stress_at(), Ordering::SeqCst);
        if self.total.load(Ordering::SeqCst) >= bounds.max_total || from_ip >= bounds.max_per_ip {
            return None;
        }
        per_ip.insert(ip, from_ip + 1);
        let open = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.update_stress(open);
        Some(Permit { limiter: self, ip })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Whether the server is under stress now.
    pub fn stressed(&self) -> bool {
        *self.stressed.borrow()
    }

    /// Sees every change of stress mode (a session waiting for input wakes to re-take its
    /// deadline).
    pub fn watch_stress(&self) -> watch::Receiver<bool> {
        self.stressed.subscribe()
    }

    fn update_stress(&self, open: usize) {
        let at = self.stress_at.load(Ordering::SeqCst);
        let off_below = at - at / 10;
        let changed = self.stressed.send_if_modified(|on| {
            let now = at > 0 && if *on { open >= off_below } else { open >= at };
            std::mem::replace(on, now) != now
        });
        let now = self.stressed();
        if changed {
            metrics::gauge!("moat_stress").set(if now { 1.0 } else { 0.0 });
            tracing::warn!(event = "stress", on = now, open_connections = open, threshold = at);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut per_ip = self.limiter.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        let open = self.limiter.total.fetch_sub(1, Ordering::SeqCst) - 1;
        self.limiter.update_stress(open);
    }
}

#[cfg(test)]
mod tests {
    use super::{Bounds, Limiter};

    fn bounds(max_total: usize, max_per_ip: usize, stress_threshold: f64) -> Bounds {
        Bounds { max_total, max_per_ip, stress_threshold }
    }

    #[test]
    fn limiter_counts_per_ip_and_total() {
        let limiter = Limiter::default();
        let a = "192.0.2.1".parse().unwrap();
        let b = "192.0.2.2".parse().unwrap();
        let p1 = limiter.acquire(a, bounds(3, 2, 0.0)).unwrap();
        let _p2 = limiter.acquire(a, bounds(3, 2, 0.0)).unwrap();
        assert!(limiter.acquire(a, bounds(3, 2, 0.0)).is_none(), "per-IP limit");
        let _p3 = limiter.acquire(b, bounds(3, 2, 0.0)).unwrap();
        assert!(limiter.acquire(b, bounds(3, 2, 0.0)).is_none(), "total limit");
        drop(p1);
        assert!(limiter.acquire(a, bounds(3, 2, 0.0)).is_some());
        assert!(!limiter.stressed(), "a threshold of 0 never turns stress on");
    }

    #[test]
    fn stress_turns_on_at_the_threshold_share_and_off_below_nine_tenths_of_it_and_watchers_see_each_change() {
        let limiter = Limiter::default();
        let mut watcher = limiter.watch_stress();
        let ip = "192.0.2.1".parse().unwrap();
        let b = bounds(100, 100, 0.5);
        let mut held: Vec<_> = (0..49).map(|_| limiter.acquire(ip, b).unwrap()).collect();
        assert!(!limiter.stressed(), "49 of 100 open, threshold 50");
        assert!(!watcher.has_changed().unwrap());
        held.push(limiter.acquire(ip, b).unwrap());
        assert!(limiter.stressed(), "50 of 100 open");
        assert!(watcher.has_changed().unwrap() && *watcher.borrow_and_update());
        held.truncate(45);
        assert!(limiter.stressed(), "45 open: still at least nine tenths of the mark");
        assert!(!watcher.has_changed().unwrap(), "no change, no wake-up");
        held.pop();
        assert!(!limiter.stressed(), "off below 45");
        assert!(watcher.has_changed().unwrap() && !*watcher.borrow_and_update());
        held.push(limiter.acquire(ip, b).unwrap());
        assert!(!limiter.stressed(), "back at 45: off until the mark is reached again");
    }
}
