//! The quarantine as a test sees it: moat's own store (SQLite in its state directory) and key,
//! opened directly.

use super::{DEADLINE, Moat, wait_until};
use moat::store::vault::Vault;
use moat::store::{QuarantineItem, Store};
use std::time::Duration;

/// A quarantine item with its contents opened with moat's key.
pub struct Held {
    pub item: QuarantineItem,
    pub contents: Vec<u8>,
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

impl Moat {
    /// moat's store, opened beside the running server.
    pub fn store(&self) -> Store {
        block_on(Store::open_sqlite(&self.state_dir().join("moat.db"))).expect("open moat's store")
    }

    /// Every item in the quarantine (any state), newest first, contents opened.
    pub fn quarantine(&self) -> Vec<Held> {
        let vault = Vault::open(&self.state_dir().join("vault.key")).expect("open moat's key");
        block_on(async {
            let store = Store::open_sqlite(&self.state_dir().join("moat.db")).await.expect("open moat's store");
            let items = store.list_items("", None, 1000, 0).await.expect("list quarantine");
            let mut held = Vec::new();
            for item in items {
                let contents = match store.get_content(&item.id).await {
                    Ok(sealed) => vault.open_sealed(&item.id, &sealed).expect("contents open with moat's key"),
                    Err(_) => Vec::new(),
                };
                held.push(Held { item, contents });
            }
            held
        })
    }

    /// Waits until the quarantine holds `n` items (copies move into the store just after the
    /// 250) and returns them; panics if it holds more.
    pub fn wait_quarantined(&self, n: usize) -> Vec<Held> {
        let held = wait_until(&format!("{n} quarantined item(s)"), DEADLINE, || {
            let held = self.quarantine();
            (held.len() >= n).then_some(held)
        });
        assert_eq!(held.len(), n, "more items quarantined than expected");
        held
    }

    /// Asserts that the quarantine stays at `n` items for a moment (nothing more arrives).
    pub fn assert_quarantine_stays(&self, n: usize) {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(self.quarantine().len(), n, "quarantine size");
    }
}
