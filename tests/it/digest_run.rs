//! Digest scheduling with the clock in the test's hands, on a real SQLite store and real spools:
//! a digest goes out at the schedule's tick and not before, once per period per user even when
//! two nodes run at the same instant or a run repeats after a restart, a clock jump back sends
//! nothing, a late run sends one digest covering everything, weekly and opted-out users are
//! respected, and a digest staged before a crash goes out only if its cursor move was recorded.

use arc_swap::ArcSwap;
use moat::config::Config;
use moat::digest::{self, Run};
use moat::quarantine::Quarantine;
use moat::spool::{Envelope, Hold, Spool, Staged};
use moat::store::{Category, DigestFrequency, Preferences};
use moat::verdict::Symbol;
use std::sync::Arc;

const DAY: i64 = 86400;
/// 2026-11-23 00:00:00 UTC.
const MIDNIGHT: i64 = 1_795_392_000;
const EIGHT: i64 = MIDNIGHT + 8 * 3600;

struct Node {
    quarantine: Quarantine,
    delivery: Arc<Spool>,
}

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "hostname = \"mx.example.test\"\nstate_dir = \"{}\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n\
         [downstream]\nhost = \"127.0.0.1\"\n[[domain]]\nname = \"example.test\"\n\
         [web]\nlisten = \"127.0.0.1:8025\"\npublic_url = \"https://q.example.test\"\n[digest]\nschedule = \"0 8 * * *\"\ntimezone = \"UTC\"\n",
        dir.join("state").display()
    );
    moat::config::load_str("test.toml", &text, dir).expect("config")
}

async fn node(dir: &std::path::Path) -> Node {
    let config = config(dir);
    let delivery = Arc::new(Spool::open(&config.spool_dir()).unwrap());
    let quarantine = Quarantine::open(Arc::new(ArcSwap::from_pointee(config)), delivery.clone()).await.unwrap();
    Node { quarantine, delivery }
}

/// Holds one message for `recipient`, created at `at`.
async fn hold(node: &Node, recipient: &str, subject: &str, at: i64) -> String {
    let id = Spool::new_id();
    let envelope = Envelope {
        id: id.clone(),
        received_at: at,
        client_ip: "192.0.2.1".parse().unwrap(),
        helo: "client.test".into(),
        sender: "spam@remote.example".into(),
        recipients: vec![recipient.into()],
        smtputf8: false,
        body_8bit: false,
        tls: None,
        hold: Some(Hold { category: Category::Spam, score: 11.0, symbols: vec![Symbol::scored("LOCAL", 11.0)] }),
        staged: None,
    };
    node.quarantine.holding().store(&envelope, format!("Subject: {subject}\r\n\r\nbody\r\n").as_bytes()).unwrap();
    node.quarantine.ingest().await.unwrap();
    // Items are stamped with the wall clock on ingest; set the creation time the test wants.
    let item = moat::quarantine::item_id(&id, recipient);
    let mut found = node.quarantine.store().get_item(&item).await.unwrap();
    found.created_at = at;
    node.quarantine.store().delete_item(&item).await.unwrap();
    let sealed = moat::store::vault::Vault::open(&node.quarantine.config().vault_key_file()).unwrap().seal(&item, b"x").unwrap();
    node.quarantine.store().insert_item(&found, &sealed).await.unwrap();
    item
}

fn digests(node: &Node) -> Vec<(Vec<String>, String)> {
    node.delivery
        .list()
        .unwrap()
        .into_iter()
        .map(|id| {
            let (envelope, _, body) = node.delivery.load(&id).unwrap();
            (envelope.recipients, String::from_utf8_lossy(&body).into_owned())
        })
        .collect()
}

async fn scheduled(node: &Node, now: i64) -> usize {
    digest::run(&node.quarantine, &Run::Scheduled { now }).await.unwrap().queue_ids.len()
}

#[tokio::test]
async fn a_digest_goes_out_at_the_tick_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    hold(&node, "alice@example.test", "first", MIDNIGHT + 3600).await;
    // The last tick before the message arrived (yesterday 08:00) lists nothing new.
    assert_eq!(scheduled(&node, EIGHT - 60).await, 0);
    assert_eq!(scheduled(&node, EIGHT + 60).await, 1, "at 08:00 the digest goes out");
    assert_eq!(scheduled(&node, EIGHT + 120).await, 0, "once per period");
    let sent = digests(&node);
    assert_eq!(sent[0].0, ["alice@example.test"]);
    assert!(sent[0].1.contains("first"), "{}", sent[0].1);

    hold(&node, "alice@example.test", "second", EIGHT + 3600).await;
    assert_eq!(scheduled(&node, EIGHT + 7200).await, 0, "the next one waits for the next tick");
    assert_eq!(scheduled(&node, EIGHT - DAY).await, 0, "a clock jumped back sends nothing");
    assert_eq!(scheduled(&node, EIGHT + 3 * DAY + 60).await, 1, "a run three days late sends one digest");
    let bodies: Vec<String> = digests(&node).into_iter().map(|(_, body)| body).collect();
    let latest = bodies.iter().find(|b| b.contains("second")).expect("the second digest");
    assert!(!latest.contains("first"), "what the previous digest listed is not listed again");
}

#[tokio::test]
async fn two_nodes_at_the_same_instant_send_one_digest() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path()).await;
    let b = node(dir.path()).await;
    for n in 0..5 {
        hold(&a, &format!("user{n}@example.test"), "race", MIDNIGHT + 3600).await;
    }
    let (one, two) = tokio::join!(scheduled(&a, EIGHT + 60), scheduled(&b, EIGHT + 60));
    assert_eq!(one + two, 5, "one digest per user across both nodes");
    let staging = Spool::open(&a.quarantine.config().release_staging_dir()).unwrap();
    assert!(staging.list().unwrap().is_empty(), "the losers' staged copies are gone");
}

#[tokio::test]
async fn weekly_never_and_opted_out_users_are_respected() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let store = node.quarantine.store();
    for (user, prefs) in [
        ("weekly@example.test", Preferences { digest: Some(DigestFrequency::Weekly), ..Preferences::default() }),
        ("never@example.test", Preferences { digest: Some(DigestFrequency::Never), ..Preferences::default() }),
        ("gone@example.test", Preferences { opt_out: true, ..Preferences::default() }),
    ] {
        store.set_preferences(user, &prefs, MIDNIGHT).await.unwrap();
        hold(&node, user, "weekly", MIDNIGHT + 3600).await;
    }
    assert_eq!(scheduled(&node, EIGHT + 60).await, 1, "only the weekly user's first digest");
    hold(&node, "weekly@example.test", "next", EIGHT + 3600).await;
    assert_eq!(scheduled(&node, EIGHT + DAY + 60).await, 0, "a day later is too soon for a weekly digest");
    assert_eq!(scheduled(&node, EIGHT + 7 * DAY + 60).await, 1, "a week later it goes out");
    assert!(digests(&node).iter().all(|(to, _)| to == &["weekly@example.test".to_string()]));
}

#[tokio::test]
async fn a_digest_staged_before_a_crash_goes_out_only_if_its_cursor_move_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let store = node.quarantine.store();
    let staging = Spool::open(&node.quarantine.config().release_staging_dir()).unwrap();
    let stage = |address: &str| {
        let id = Spool::new_id();
        let envelope = Envelope {
            id: id.clone(),
            received_at: EIGHT,
            client_ip: "127.0.0.1".parse().unwrap(),
            helo: String::new(),
            sender: String::new(),
            recipients: vec![address.into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
            hold: None,
            staged: Some(Staged::Digest { address: address.into() }),
        };
        staging.store(&envelope, b"Subject: digest\r\n\r\nx\r\n").unwrap();
        id
    };
    let recorded = stage("alice@example.test");
    assert!(store.advance_digest_cursor("alice@example.test", None, EIGHT, Some(&recorded)).await.unwrap());
    let unrecorded = stage("bob@example.test");
    assert_eq!(node.quarantine.recover().await.unwrap(), vec![recorded.clone()]);
    assert_eq!(node.delivery.list().unwrap(), vec![recorded]);
    assert!(!staging.contains(&unrecorded), "a digest whose cursor never moved is dropped (the next run sends it)");
}
