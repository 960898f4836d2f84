//! The quarantine's crash windows, driven step by step on a real SQLite store and real spools:
//! an ingest interrupted after the store insert, a release interrupted after staging its copy
//! (before the store decided), after the store decided (before the copy joined the delivery
//! spool), and a staged copy whose release another node won. Each must end with every message
//! held or delivered exactly once.

use arc_swap::ArcSwap;
use moat::config::Config;
use moat::quarantine::{Quarantine, item_id};
use moat::spool::{Envelope, Hold, Spool, Staged};
use moat::store::{Category, ItemState, ReleaseVia, unix_now};
use moat::verdict::Symbol;
use std::sync::Arc;

struct Setup {
    _dir: tempfile::TempDir,
    config: Config,
    quarantine: Quarantine,
    delivery: Arc<Spool>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname = \"mx.example.test\"\nstate_dir = \"{}\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n[[domain]]\nname = \"example.test\"\n",
        dir.path().join("state").display()
    );
    let config = moat::config::load_str("test.toml", &text, dir.path()).expect("config");
    let delivery = Arc::new(Spool::open(&config.spool_dir()).unwrap());
    let quarantine = Quarantine::open(Arc::new(ArcSwap::from_pointee(config.clone())), delivery.clone()).await.unwrap();
    Setup { _dir: dir, config, quarantine, delivery }
}

fn envelope(id: &str, recipients: &[&str], hold: Option<Hold>, staged: Option<Staged>) -> Envelope {
    Envelope {
        id: id.to_string(),
        received_at: unix_now(),
        client_ip: "192.0.2.1".parse().unwrap(),
        helo: "client.test".into(),
        sender: "spam@remote.example".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        smtputf8: false,
        body_8bit: false,
        tls: None,
        hold,
        staged,
    }
}

const MESSAGE: &[u8] = b"Subject: held\r\n\r\nheld body\r\n";

/// Holds a copy for `recipients` the way a session does and ingests it; returns the spool id.
async fn hold(setup: &Setup, recipients: &[&str]) -> String {
    let id = Spool::new_id();
    let hold = Hold { category: Category::Spam, score: 11.0, symbols: vec![Symbol::scored("LOCAL", 11.0)] };
    setup.quarantine.holding().store(&envelope(&id, recipients, Some(hold), None), MESSAGE).unwrap();
    assert_eq!(setup.quarantine.ingest().await.unwrap().copies, 1);
    id
}

fn staging(setup: &Setup) -> Spool {
    Spool::open(&setup.config.release_staging_dir()).unwrap()
}

/// Stages a release copy of `item` as `release` does before asking the store.
fn stage(setup: &Setup, item: &str, recipient: &str) -> String {
    let id = Spool::new_id();
    staging(setup).store(&envelope(&id, &[recipient], None, Some(Staged::Release { item: item.to_string() })), MESSAGE).unwrap();
    id
}

#[tokio::test]
async fn an_ingest_repeated_after_a_crash_adds_nothing_twice() {
    let setup = setup().await;
    let spool_id = hold(&setup, &["a@example.test", "b@example.test"]).await;
    // The crash: the store has the items but the holding copy was not removed yet.
    let hold = Hold { category: Category::Spam, score: 11.0, symbols: vec![] };
    setup.quarantine.holding().store(&envelope(&spool_id, &["a@example.test", "b@example.test"], Some(hold), None), MESSAGE).unwrap();
    assert_eq!(setup.quarantine.ingest().await.unwrap().copies, 1, "the copy is taken again");
    let items = setup.quarantine.store().list_items("", None, 10, 0).await.unwrap();
    assert_eq!(items.len(), 2, "still one item per recipient");
    assert!(setup.quarantine.holding().list().unwrap().is_empty());
}

#[tokio::test]
async fn a_copy_staged_before_the_store_decided_is_dropped_and_the_item_stays_releasable() {
    let setup = setup().await;
    let spool_id = hold(&setup, &["a@example.test"]).await;
    let item = item_id(&spool_id, "a@example.test");
    stage(&setup, &item, "a@example.test");
    assert!(setup.quarantine.recover().await.unwrap().is_empty());
    assert!(staging(&setup).list().unwrap().is_empty(), "the orphan copy is gone");
    assert!(setup.delivery.list().unwrap().is_empty(), "and was not delivered");
    assert_eq!(setup.quarantine.store().get_item(&item).await.unwrap().state, ItemState::Held);
    let released = setup.quarantine.release(&item, "a@example.test", ReleaseVia::Link).await.unwrap();
    assert_eq!(setup.delivery.list().unwrap(), vec![released.queue_id.clone()], "the real release goes out once");
    let (envelope, _, body) = setup.delivery.load(&released.queue_id).unwrap();
    assert_eq!((envelope.recipients, body), (vec!["a@example.test".to_string()], MESSAGE.to_vec()));
}

#[tokio::test]
async fn a_copy_whose_release_was_recorded_is_delivered_after_the_crash() {
    let setup = setup().await;
    let spool_id = hold(&setup, &["a@example.test"]).await;
    let item = item_id(&spool_id, "a@example.test");
    let staged = stage(&setup, &item, "a@example.test");
    setup.quarantine.store().release(&item, "a@example.test", ReleaseVia::Link, unix_now(), Some(&staged)).await.unwrap();
    // The crash came here, before the staged copy joined the delivery spool.
    assert_eq!(setup.quarantine.recover().await.unwrap(), vec![staged.clone()]);
    assert_eq!(setup.delivery.list().unwrap(), [staged]);
    assert!(staging(&setup).list().unwrap().is_empty());
    assert!(setup.quarantine.release(&item, "a@example.test", ReleaseVia::Link).await.is_err(), "released once only");
    assert_eq!(setup.delivery.list().unwrap().len(), 1);
}

#[tokio::test]
async fn a_copy_staged_on_a_node_that_lost_the_race_is_dropped() {
    let setup = setup().await;
    let spool_id = hold(&setup, &["a@example.test"]).await;
    let item = item_id(&spool_id, "a@example.test");
    let ours = stage(&setup, &item, "a@example.test");
    setup.quarantine.store().release(&item, "admin", ReleaseVia::Admin, unix_now(), Some("OTHERNODECOPY")).await.unwrap();
    assert!(setup.quarantine.recover().await.unwrap().is_empty());
    assert!(!staging(&setup).contains(&ours));
    assert!(setup.delivery.list().unwrap().is_empty(), "the other node delivers it, not us");
}

#[tokio::test]
async fn a_held_copy_still_being_written_by_a_session_is_not_ingested_until_it_is_done() {
    let setup = setup().await;
    let id = Spool::new_id();
    setup.quarantine.begin_hold(&id);
    let hold = Hold { category: Category::Spam, score: 11.0, symbols: vec![] };
    setup.quarantine.holding().store(&envelope(&id, &["a@example.test"], Some(hold), None), MESSAGE).unwrap();
    assert_eq!(setup.quarantine.ingest().await.unwrap().copies, 0, "the session may still undo it");
    setup.quarantine.end_holds([id.as_str()]);
    assert_eq!(setup.quarantine.ingest().await.unwrap().copies, 1);
}
