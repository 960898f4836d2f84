//! The store's behaviour, written once and run against both backends: SQLite in a temporary
//! directory (`sqlite::*`) and a real PostgreSQL server started for the test (`postgres::*`,
//! see `support/postgres.rs`). Time is passed in, so expiry, greylisting and rate windows are
//! tested without sleeping.

use crate::support::postgres::PgServer;
use moat::lists::{Entry, Lists};
use moat::store::vault::{Sealed, Vault, VaultError};
use moat::store::{
    AdminRecord, Category, DigestFrequency, Greylist, ItemQuery, ItemState, ListKind, Preferences, QuarantineItem, ReleaseVia, Store,
    StoreError, Triplet, latest_version,
};
use moat::verdict::Symbol;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A fixed "now" for the tests: 2026-11-23 00:00:00 UTC.
const NOW: i64 = 1_795_392_000;
const DAY: i64 = 86_400;

/// One backend's database for one test, and how to open more handles on it.
struct Db {
    dir: tempfile::TempDir,
    url: Option<String>,
    _pg: Option<Arc<PgServer>>,
}

impl Db {
    fn sqlite() -> Db {
        Db { dir: tempfile::tempdir().expect("temp dir"), url: None, _pg: None }
    }

    async fn postgres() -> Db {
        let pg = PgServer::shared();
        let url = pg.create_database().await;
        Db { dir: tempfile::tempdir().expect("temp dir"), url: Some(url), _pg: Some(pg) }
    }

    /// A new handle (its own connection) on this test's database; runs the migrations.
    async fn open(&self) -> Store {
        match &self.url {
            Some(url) => Store::open_postgres(url).await.expect("open postgres store"),
            None => Store::open_sqlite(&self.dir.path().join("state/moat.db")).await.expect("open sqlite store"),
        }
    }

    fn vault(&self) -> Vault {
        Vault::open(&self.dir.path().join("state/vault.key")).expect("vault")
    }

    /// Runs `sql` on this test's database directly, not through the store (to build the
    /// database an older moat left).
    async fn raw(&self, sql: &str) {
        match &self.url {
            Some(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(connection);
                client.batch_execute(sql).await.expect("raw sql");
            }
            None => {
                let path = self.dir.path().join("state/moat.db");
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                rusqlite::Connection::open(&path).unwrap().execute_batch(&sql.replace("BYTEA", "BLOB")).expect("raw sql");
            }
        }
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("state/vault.key")
    }
}

/// Generates one test per case per backend.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::postgres().await).await;
                }
            )*
        }
    };
}

both_backends!(
    migrations_are_idempotent,
    quarantine_insert_get_and_list_newest_first_paginated,
    release_happens_exactly_once_under_concurrent_releasers,
    states_change_only_from_held,
    expiry_removes_items_contents_and_old_audit_records,
    purge_user_removes_everything_about_one_address_only,
    preferences_round_trip_and_build_user_lists,
    contents_are_sealed_tamper_evident_and_survive_key_rotation,
    greylist_defers_then_passes_after_the_delay,
    rate_counters_count_in_fixed_windows,
    digest_cursor_advances_once_per_expected_value,
    items_are_found_by_text_category_and_state_and_counted,
    admin_actions_are_audited_and_expire_with_the_retention,
    one_holder_at_a_time_has_a_lease_until_it_expires,
    the_classifier_model_is_replaced_only_by_compare_and_set,
    lessons_are_kept_found_by_teacher_forgotten_and_expire,
    signing_out_records_when_sessions_stop_counting,
    purging_a_domain_removes_its_users_and_nothing_else,
    an_item_held_before_the_from_field_was_kept_still_lists_by_its_envelope_sender,
    a_user_who_set_preferences_before_time_zones_keeps_them_and_the_domains_zone,
    a_user_who_set_preferences_before_languages_keeps_them_and_reads_the_domains_language,
);

fn item(id: &str, recipient: &str, created_at: i64) -> QuarantineItem {
    QuarantineItem {
        id: id.to_string(),
        recipient: recipient.to_string(),
        sender: format!("spammer-{id}@bulk.test"),
        subject: format!("Subject {id} <b>ünïcödé</b>"),
        from_name: format!("Bulk Sender {id}"),
        from_address: format!("news-{id}@brand.test"),
        date: created_at - 30,
        size: 1234,
        score: 12.5,
        symbols: vec![
            Symbol { name: "BAYES_99".into(), score: 3.5, detail: None },
            Symbol { name: "RBL_ZEN_SBL".into(), score: 4.0, detail: Some("127.0.0.2".into()) },
        ],
        category: Category::Spam,
        state: ItemState::Held,
        created_at,
        expires_at: created_at + 30 * DAY,
    }
}

fn sealed(vault: &Vault, id: &str) -> Sealed {
    vault.seal(id, format!("Subject: {id}\r\n\r\nbody of {id}\r\n").as_bytes()).expect("seal")
}

async fn insert(store: &Store, vault: &Vault, item: &QuarantineItem) {
    store.insert_item(item, &sealed(vault, &item.id)).await.expect("insert item");
}

async fn migrations_are_idempotent(db: Db) {
    let first = db.open().await;
    assert_eq!(first.schema_version().await.unwrap(), latest_version());
    assert!(latest_version() >= 1);
    insert(&first, &db.vault(), &item("a", "alice@example.test", NOW)).await;
    // Opening again (a restart, or a second node) applies nothing and loses nothing.
    let second = db.open().await;
    let third = db.open().await;
    assert_eq!(third.schema_version().await.unwrap(), latest_version());
    assert_eq!(second.get_item("a").await.unwrap().recipient, "alice@example.test");
    drop(first);
    assert_eq!(db.open().await.list_items("alice@example.test", None, 10, 0).await.unwrap().len(), 1);
}

async fn quarantine_insert_get_and_list_newest_first_paginated(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    for i in 0..5 {
        insert(&store, &vault, &item(&format!("a{i}"), "Alice@Example.TEST", NOW + i * 60)).await;
    }
    insert(&store, &vault, &item("b0", "bob@example.test", NOW + 1000)).await;

    let mut expected = item("a3", "alice@example.test", NOW + 180);
    assert_eq!(store.get_item("a3").await.unwrap(), expected, "every field round-trips; recipient lower-cased");
    assert!(matches!(store.get_item("nope").await, Err(StoreError::NotFound { id }) if id == "nope"));

    let ids = |items: Vec<QuarantineItem>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_items("alice@example.test", None, 2, 0).await.unwrap()), ["a4", "a3"]);
    assert_eq!(ids(store.list_items("ALICE@example.test", None, 2, 2).await.unwrap()), ["a2", "a1"]);
    assert_eq!(ids(store.list_items("alice@example.test", None, 2, 4).await.unwrap()), ["a0"]);
    assert!(store.list_items("alice@example.test", None, 2, 6).await.unwrap().is_empty());
    assert_eq!(ids(store.list_items("bob@example.test", None, 10, 0).await.unwrap()), ["b0"]);

    store.release("a3", "alice@example.test", ReleaseVia::Link, NOW + DAY, None).await.unwrap();
    expected.state = ItemState::Released;
    assert_eq!(store.get_item("a3").await.unwrap(), expected);
    assert_eq!(ids(store.list_items("alice@example.test", Some(ItemState::Held), 10, 0).await.unwrap()), ["a4", "a2", "a1", "a0"]);
    assert_eq!(ids(store.list_items("alice@example.test", Some(ItemState::Released), 10, 0).await.unwrap()), ["a3"]);
    assert_eq!(ids(store.held_since("alice@example.test", NOW + 60, 10).await.unwrap()), ["a1", "a2", "a4"]);
    assert_eq!(store.recipients_with_held_since(NOW + 240).await.unwrap(), ["alice@example.test", "bob@example.test"]);
    assert_eq!(store.recipients_with_held_since(NOW + 300).await.unwrap(), ["bob@example.test"]);

    // The same id twice is an error, not a silent overwrite.
    assert!(store.insert_item(&item("a0", "eve@example.test", NOW), &sealed(&vault, "a0")).await.is_err());
    assert_eq!(store.get_item("a0").await.unwrap().recipient, "alice@example.test");
}

async fn release_happens_exactly_once_under_concurrent_releasers(db: Db) {
    // Two handles with their own connections: two web workers, or two nodes.
    let one = db.open().await;
    let two = db.open().await;
    let vault = db.vault();
    for round in 0..20 {
        let id = format!("r{round}");
        insert(&one, &vault, &item(&id, "alice@example.test", NOW)).await;
        let (a, b) = (one.clone(), two.clone());
        let (ida, idb) = (id.clone(), id.clone());
        let first = tokio::spawn(async move { a.release(&ida, "alice@example.test", ReleaseVia::Link, NOW + 1, None).await });
        let second = tokio::spawn(async move { b.release(&idb, "admin", ReleaseVia::Admin, NOW + 2, None).await });
        let results = [first.await.expect("task"), second.await.expect("task")];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: exactly one release wins: {results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).expect("a loser");
        assert!(
            matches!(loser, StoreError::NotHeld { current: ItemState::Released, id: lost } if *lost == id),
            "round {round}: the loser sees 'already released': {loser:?}"
        );
        let records = one.releases(&id).await.unwrap();
        assert_eq!(records.len(), 1, "round {round}: one audit record: {records:?}");
        let winner_is_first = results[0].is_ok();
        let (actor, via, at) =
            if winner_is_first { ("alice@example.test", ReleaseVia::Link, NOW + 1) } else { ("admin", ReleaseVia::Admin, NOW + 2) };
        assert_eq!((records[0].actor.as_str(), records[0].via, records[0].at), (actor, via, at));
        assert_eq!(records[0].recipient, "alice@example.test");
    }
    // A third click later is refused the same way and records nothing.
    let err = one.release("r0", "alice@example.test", ReleaseVia::Cli, NOW + 9, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotHeld { current: ItemState::Released, .. }), "{err:?}");
    assert_eq!(err.to_string(), "quarantine item r0 is already released");
    assert_eq!(one.releases("r0").await.unwrap().len(), 1);
    assert!(matches!(one.release("ghost", "x", ReleaseVia::Cli, NOW, None).await, Err(StoreError::NotFound { .. })));
}

async fn states_change_only_from_held(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    insert(&store, &vault, &item("d", "alice@example.test", NOW)).await;
    insert(&store, &vault, &item("r", "alice@example.test", NOW)).await;
    assert!(matches!(store.set_state("d", ItemState::Held).await, Err(StoreError::BackToHeld)));
    store.set_state("d", ItemState::Deleted).await.unwrap();
    assert!(matches!(store.get_content("d").await, Err(StoreError::NotFound { .. })), "deleting drops the contents");
    assert_eq!(store.get_item("d").await.unwrap().state, ItemState::Deleted);
    let err = store.release("d", "alice@example.test", ReleaseVia::Link, NOW, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotHeld { current: ItemState::Deleted, .. }), "{err:?}");
    assert!(store.releases("d").await.unwrap().is_empty());
    store.set_state("r", ItemState::Released).await.unwrap();
    assert!(matches!(store.set_state("r", ItemState::Deleted).await, Err(StoreError::NotHeld { current: ItemState::Released, .. })));
    assert!(store.get_content("r").await.is_ok(), "released contents stay until expiry");
    assert!(store.delete_item("r").await.unwrap());
    assert!(!store.delete_item("r").await.unwrap());
    assert!(matches!(store.get_item("r").await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.get_content("r").await, Err(StoreError::NotFound { .. })));
}

async fn expiry_removes_items_contents_and_old_audit_records(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    let mut old = item("old", "alice@example.test", NOW - 40 * DAY);
    old.expires_at = NOW - DAY;
    let mut edge = item("edge", "alice@example.test", NOW - 30 * DAY);
    edge.expires_at = NOW;
    let fresh = item("fresh", "alice@example.test", NOW - DAY);
    for i in [&old, &edge, &fresh] {
        insert(&store, &vault, i).await;
    }
    store.release("old", "alice@example.test", ReleaseVia::Link, NOW - 35 * DAY, None).await.unwrap();
    store.release("fresh", "alice@example.test", ReleaseVia::Link, NOW - DAY, None).await.unwrap();

    let expired = store.expire(NOW, Duration::from_secs(30 * 86400), Duration::from_secs(7 * 86400)).await.unwrap();
    assert_eq!((expired.items, expired.audit_records), (2, 1), "{expired:?}");
    for id in ["old", "edge"] {
        assert!(matches!(store.get_item(id).await, Err(StoreError::NotFound { .. })), "{id}");
        assert!(matches!(store.get_content(id).await, Err(StoreError::NotFound { .. })), "{id} contents");
    }
    assert!(store.get_item("fresh").await.is_ok());
    assert!(store.get_content("fresh").await.is_ok());
    assert!(store.releases("old").await.unwrap().is_empty());
    assert_eq!(store.releases("fresh").await.unwrap().len(), 1);
    // Nothing left to do: a second sweep removes nothing.
    let again = store.expire(NOW, Duration::from_secs(30 * 86400), Duration::from_secs(7 * 86400)).await.unwrap();
    assert_eq!(again, Default::default());
}

async fn purge_user_removes_everything_about_one_address_only(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    for (id, rcpt) in [("a1", "alice@example.test"), ("a2", "ALICE@example.test"), ("b1", "bob@example.test")] {
        insert(&store, &vault, &item(id, rcpt, NOW)).await;
    }
    store.release("a1", "alice@example.test", ReleaseVia::Link, NOW, None).await.unwrap();
    store.release("b1", "bob@example.test", ReleaseVia::Link, NOW, None).await.unwrap();
    let prefs = Preferences {
        digest: Some(DigestFrequency::Weekly),
        allow: vec![Entry::parse("friend@x.test").unwrap()],
        ..Preferences::default()
    };
    for user in ["alice@example.test", "bob@example.test"] {
        store.set_preferences(user, &prefs, NOW).await.unwrap();
        assert!(store.advance_digest_cursor(user, None, NOW, None).await.unwrap());
    }
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let grey = Duration::from_secs(300);
    let life = Duration::from_secs(7 * 86400);
    store.check_greylist(&Triplet::new(ip, "x@y.test", "alice@example.test"), grey, life, NOW).await.unwrap();
    store.check_greylist(&Triplet::new(ip, "alice@example.test", "z@elsewhere.test"), grey, life, NOW).await.unwrap();
    store.check_greylist(&Triplet::new(ip, "x@y.test", "bob@example.test"), grey, life, NOW).await.unwrap();

    let purged = store.purge_user("Alice@Example.test").await.unwrap();
    // 1 audit record, 1 prefs row, 1 list entry, 1 cursor, 2 greylist rows.
    assert_eq!((purged.items, purged.other_rows), (2, 6), "{purged:?}");
    assert!(store.list_items("alice@example.test", None, 10, 0).await.unwrap().is_empty());
    for id in ["a1", "a2"] {
        assert!(matches!(store.get_content(id).await, Err(StoreError::NotFound { .. })), "{id}");
        assert!(store.releases(id).await.unwrap().is_empty());
    }
    assert_eq!(store.get_preferences("alice@example.test").await.unwrap(), Preferences::default());
    assert_eq!(store.digest_cursor("alice@example.test").await.unwrap(), None);
    // The triplet starts over: deferred again.
    let again = store.check_greylist(&Triplet::new(ip, "x@y.test", "alice@example.test"), grey, life, NOW + 600).await.unwrap();
    assert!(matches!(again, Greylist::Defer { .. }), "{again:?}");
    // Bob is untouched.
    assert_eq!(store.list_items("bob@example.test", None, 10, 0).await.unwrap().len(), 1);
    assert!(store.get_content("b1").await.is_ok());
    assert_eq!(store.releases("b1").await.unwrap().len(), 1);
    assert_eq!(store.get_preferences("bob@example.test").await.unwrap(), prefs);
    assert_eq!(store.digest_cursor("bob@example.test").await.unwrap(), Some(NOW));
    let bob = store.check_greylist(&Triplet::new(ip, "x@y.test", "bob@example.test"), grey, life, NOW + 600).await.unwrap();
    assert_eq!(bob, Greylist::Pass);
}

async fn preferences_round_trip_and_build_user_lists(db: Db) {
    let store = db.open().await;
    assert_eq!(store.get_preferences("new@example.test").await.unwrap(), Preferences::default());
    let entries = |list: &[&str]| list.iter().map(|e| Entry::parse(e).unwrap()).collect::<Vec<_>>();
    let prefs = Preferences {
        digest: Some(DigestFrequency::Never),
        opt_out: true,
        filtering: Some(false),
        time_zone: "Asia/Tokyo".into(),
        language: "de".into(),
        allow: entries(&[".partner.test", "friend@x.test"]),
        block: entries(&["198.51.100.0/24"]),
    };
    store.set_preferences("Carol@Example.test", &prefs, NOW).await.unwrap();
    assert_eq!(store.get_preferences("carol@example.test").await.unwrap(), prefs);
    // Replacing is a replacement, lists included.
    let fewer = Preferences { digest: Some(DigestFrequency::Daily), allow: entries(&["friend@x.test"]), ..Preferences::default() };
    store.set_preferences("carol@example.test", &fewer, NOW + 1).await.unwrap();
    assert_eq!(store.get_preferences("carol@example.test").await.unwrap(), fewer);
    // "Release and always allow the sender".
    let sender = Entry::parse("news@shop.test").unwrap();
    assert!(store.add_list_entry("carol@example.test", ListKind::Allow, &sender).await.unwrap());
    assert!(!store.add_list_entry("carol@example.test", ListKind::Allow, &sender).await.unwrap(), "already there");
    assert!(store.add_list_entry("dave@example.test", ListKind::Block, &Entry::parse("spam.test").unwrap()).await.unwrap());
    store.set_preferences("erin@example.test", &Preferences { filtering: Some(false), ..Preferences::default() }, NOW).await.unwrap();
    let got = store.get_preferences("carol@example.test").await.unwrap();
    assert_eq!(got.allow.iter().map(Entry::as_str).collect::<Vec<_>>(), ["friend@x.test", "news@shop.test"]);

    let policies = store.user_policies().await.unwrap();
    let names: Vec<&str> = policies.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["carol@example.test", "dave@example.test", "erin@example.test"]);
    let mut lists = Lists::default();
    store.apply_user_lists(&mut lists).await.unwrap();
    let hit = lists.check("news@shop.test", None, "carol@example.test").expect("allow hit");
    assert_eq!((hit.symbol, hit.entry.as_str()), ("ALLOW_LIST", "news@shop.test"));
    assert!(lists.check("news@shop.test", None, "dave@example.test").is_none(), "lists are per user");
    assert_eq!(lists.check("a@spam.test", None, "dave@example.test").map(|h| h.symbol), Some("BLOCK_LIST"));
    assert!(!lists.filtering_enabled("erin@example.test"));
    assert!(lists.filtering_enabled("carol@example.test"));

    assert!(store.remove_list_entry("carol@example.test", ListKind::Allow, &sender).await.unwrap());
    assert!(!store.remove_list_entry("carol@example.test", ListKind::Allow, &sender).await.unwrap());
    assert_eq!(store.get_preferences("carol@example.test").await.unwrap(), fewer);
}

async fn contents_are_sealed_tamper_evident_and_survive_key_rotation(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    let plaintext = b"Subject: lottery\r\n\r\nYou have won PLAINTEXT-MARKER-42\r\n".to_vec();
    store.insert_item(&item("v1", "alice@example.test", NOW), &vault.seal("v1", &plaintext).unwrap()).await.unwrap();
    let stored = store.get_content("v1").await.unwrap();
    assert_eq!(stored.key_id, vault.current_key_id());
    assert_eq!(vault.open_sealed("v1", &stored).unwrap(), plaintext);
    if db.url.is_none() {
        // Nothing under the state directory (database, WAL, key files) holds the plaintext.
        let marker = b"PLAINTEXT-MARKER-42";
        for entry in std::fs::read_dir(db.dir.path().join("state")).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(marker.len()).any(|w| w == marker), "plaintext in {}", path.display());
            }
        }
    }
    // One flipped byte anywhere in the stored blob: refused.
    let mut tampered = stored.clone();
    let middle = tampered.bytes.len() / 2;
    tampered.bytes[middle] ^= 0x20;
    assert!(matches!(vault.open_sealed("v1", &tampered), Err(VaultError::Tampered { .. })));
    // A blob moved to another item: refused.
    assert!(matches!(vault.open_sealed("v2", &stored), Err(VaultError::Tampered { .. })));

    // Rotate: old items still open, new ones use the new key.
    Vault::rotate(&db.key_file()).unwrap();
    let rotated = db.vault();
    assert_ne!(rotated.current_key_id(), vault.current_key_id());
    store.insert_item(&item("v2", "alice@example.test", NOW), &rotated.seal("v2", b"after rotation").unwrap()).await.unwrap();
    let old = store.get_content("v1").await.unwrap();
    let new = store.get_content("v2").await.unwrap();
    assert_eq!(new.key_id, rotated.current_key_id());
    assert_eq!(rotated.open_sealed("v1", &old).unwrap(), plaintext);
    assert_eq!(rotated.open_sealed("v2", &new).unwrap(), b"after rotation");
}

async fn greylist_defers_then_passes_after_the_delay(db: Db) {
    let store = db.open().await;
    let delay = Duration::from_secs(300);
    let lifetime = Duration::from_secs(4 * 3600);
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    let t = Triplet::new(client, "Sender@Bulk.test", "alice@example.test");
    assert_eq!(t.network, "192.0.2.0/24");
    assert_eq!(t.sender, "sender@bulk.test");

    assert_eq!(store.check_greylist(&t, delay, lifetime, NOW).await.unwrap(), Greylist::Defer { retry_in: 300 });
    assert_eq!(store.check_greylist(&t, delay, lifetime, NOW + 299).await.unwrap(), Greylist::Defer { retry_in: 1 });
    // A retry from a neighbour in the same /24 counts as the same client.
    let neighbour = Triplet::new("192.0.2.200".parse().unwrap(), "sender@bulk.test", "alice@example.test");
    assert_eq!(store.check_greylist(&neighbour, delay, lifetime, NOW + 300).await.unwrap(), Greylist::Pass);
    assert_eq!(store.check_greylist(&t, delay, lifetime, NOW + 3600).await.unwrap(), Greylist::Pass, "stays passed");
    // Another network, another sender or recipient: a new triplet.
    for other in [
        Triplet::new("192.0.3.7".parse().unwrap(), "sender@bulk.test", "alice@example.test"),
        Triplet::new(client, "other@bulk.test", "alice@example.test"),
        Triplet::new(client, "sender@bulk.test", "bob@example.test"),
    ] {
        assert!(matches!(store.check_greylist(&other, delay, lifetime, NOW + 3600).await.unwrap(), Greylist::Defer { .. }), "{other:?}");
    }
    // IPv6 clients are grouped by /64.
    let v6 = Triplet::new("2001:db8:1:2:aaaa::1".parse().unwrap(), "s@x.test", "alice@example.test");
    assert_eq!(v6.network, "2001:db8:1:2::/64");
    assert!(matches!(store.check_greylist(&v6, delay, lifetime, NOW).await.unwrap(), Greylist::Defer { .. }));
    let v6b = Triplet::new("2001:db8:1:2:bbbb::9".parse().unwrap(), "s@x.test", "alice@example.test");
    assert_eq!(store.check_greylist(&v6b, delay, lifetime, NOW + 400).await.unwrap(), Greylist::Pass);
    // Not seen for longer than the lifetime: forgotten, deferred again.
    let later = NOW + 3600 + 4 * 3600 + 1;
    assert_eq!(store.check_greylist(&t, delay, lifetime, later).await.unwrap(), Greylist::Defer { retry_in: 300 });
    assert_eq!(store.check_greylist(&t, delay, lifetime, later + 300).await.unwrap(), Greylist::Pass);
    // The sweep removes rows not seen within the lifetime, and only those.
    let expired = store.expire(later + 300, Duration::from_secs(30 * 86400), lifetime).await.unwrap();
    assert_eq!(expired.greylist, 4, "the three other triplets and the IPv6 one: {expired:?}");
    assert_eq!(store.check_greylist(&t, delay, lifetime, later + 301).await.unwrap(), Greylist::Pass, "the live row stays");
    // A zero delay passes at once.
    let zero = Triplet::new(client, "z@x.test", "alice@example.test");
    assert_eq!(store.check_greylist(&zero, Duration::ZERO, lifetime, NOW).await.unwrap(), Greylist::Pass);
}

async fn rate_counters_count_in_fixed_windows(db: Db) {
    let store = db.open().await;
    let minute = Duration::from_secs(60);
    let start = NOW + 120; // a multiple of 60
    for n in 1..=5 {
        assert_eq!(store.hit_rate("ip:192.0.2.7", minute, start + n * 10).await.unwrap(), n as u64);
    }
    assert_eq!(store.hit_rate("ip:192.0.2.8", minute, start + 10).await.unwrap(), 1, "keys are independent");
    assert_eq!(store.hit_rate("ip:192.0.2.7", Duration::from_secs(3600), start + 10).await.unwrap(), 1, "window lengths are independent");
    // The next window starts at zero again; the window is fixed, not sliding.
    assert_eq!(store.hit_rate("ip:192.0.2.7", minute, start + 60).await.unwrap(), 1);
    assert_eq!(store.hit_rate("ip:192.0.2.7", minute, start + 119).await.unwrap(), 2);
    // Concurrent hits are all counted.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.hit_rate("from:a@b.test", Duration::from_secs(60), NOW).await }));
    }
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("task").unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<u64>>());
    // Ended windows are swept; the current one stays.
    let expired = store.expire(start + 125, Duration::from_secs(86400), Duration::from_secs(86400)).await.unwrap();
    // Ended: both of .7's minutes, .8's minute and from:a@b.test's; .7's hour is still running.
    assert_eq!(expired.rate_counters, 4, "{expired:?}");
    assert_eq!(store.hit_rate("ip:192.0.2.7", minute, start + 125).await.unwrap(), 1);
    assert_eq!(store.hit_rate("ip:192.0.2.7", Duration::from_secs(3600), start + 125).await.unwrap(), 2);
}

async fn digest_cursor_advances_once_per_expected_value(db: Db) {
    let one = db.open().await;
    let two = db.open().await;
    assert_eq!(one.digest_cursor("alice@example.test").await.unwrap(), None);
    assert!(one.advance_digest_cursor("alice@example.test", None, NOW, None).await.unwrap());
    assert!(!two.advance_digest_cursor("Alice@example.test", None, NOW, None).await.unwrap(), "second first digest refused");
    assert_eq!(two.digest_cursor("ALICE@example.test").await.unwrap(), Some(NOW));
    assert!(two.advance_digest_cursor("alice@example.test", Some(NOW), NOW + DAY, None).await.unwrap());
    assert!(!one.advance_digest_cursor("alice@example.test", Some(NOW), NOW + DAY, None).await.unwrap(), "stale cursor refused");
    assert_eq!(one.digest_cursor("alice@example.test").await.unwrap(), Some(NOW + DAY));
}

/// A PostgreSQL restart or a killed backend must not leave the store broken: the connection
/// is re-established on its next use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reconnects_after_its_connections_are_killed() {
    let db = Db::postgres().await;
    let store = db.open().await;
    insert(&store, &db.vault(), &item("k", "alice@example.test", NOW)).await;
    let url = db.url.clone().expect("postgres");
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("admin connection");
    let task = tokio::spawn(connection);
    let killed = admin
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[])
        .await
        .expect("terminate backends");
    assert!(killed.len() >= moat::store::postgres::CONNECTIONS, "the store's connections were killed: {}", killed.len());
    drop(admin);
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every pooled connection notices it is closed and reconnects.
    for _ in 0..2 * moat::store::postgres::CONNECTIONS {
        assert_eq!(store.get_item("k").await.expect("after reconnect").recipient, "alice@example.test");
    }
}

async fn items_are_found_by_text_category_and_state_and_counted(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    let mut virus = item("v1", "alice@example.test", NOW - 3);
    virus.category = Category::Virus;
    virus.subject = "Invoice 100%_done".into();
    let mut other = item("o1", "alice@example.test", NOW - 2);
    other.subject = "Invoice 100 done".into();
    for i in [&item("a1", "alice@example.test", NOW - 4), &virus, &other, &item("b1", "bob@example.test", NOW - 1)] {
        insert(&store, &vault, i).await;
    }
    store.release("a1", "alice@example.test", ReleaseVia::Web, NOW, None).await.unwrap();
    let find = |query: ItemQuery| {
        let store = store.clone();
        async move {
            (
                store.find_items(&query, 10, 0).await.unwrap().into_iter().map(|i| i.id).collect::<Vec<_>>(),
                store.count_items(&query).await.unwrap(),
            )
        }
    };
    let alice = || ItemQuery { recipient: "Alice@Example.test".into(), search_subjects: true, ..ItemQuery::default() };
    assert_eq!(find(alice()).await, (vec!["o1".to_string(), "v1".into(), "a1".into()], 3), "newest first, recipient case-insensitive");
    assert_eq!(find(ItemQuery { state: Some(ItemState::Held), ..alice() }).await.1, 2);
    assert_eq!(find(ItemQuery { category: Some(Category::Virus), ..alice() }).await.0, ["v1"]);
    // Text matches sender or subject, case-insensitively; % and _ are literal characters.
    assert_eq!(find(ItemQuery { text: "INVOICE".into(), ..alice() }).await.1, 2);
    assert_eq!(find(ItemQuery { text: "100%_".into(), ..alice() }).await.0, ["v1"]);
    assert_eq!(find(ItemQuery { text: "INVOICE".into(), search_subjects: false, ..alice() }).await.1, 0, "admins search senders only");
    assert_eq!(find(ItemQuery { text: "spammer-b1".into(), ..ItemQuery::default() }).await.0, ["b1"]);
    // The user's search also matches the From field's name and address; an admin's does not.
    assert_eq!(find(ItemQuery { text: "bulk SENDER v1".into(), ..alice() }).await.0, ["v1"]);
    assert_eq!(find(ItemQuery { text: "news-o1@brand".into(), ..alice() }).await.0, ["o1"]);
    assert_eq!(find(ItemQuery { text: "news-o1@brand".into(), search_subjects: false, ..alice() }).await.1, 0);
    assert_eq!(find(ItemQuery::default()).await.1, 4, "every recipient's");
    assert_eq!(store.find_items(&alice(), 1, 1).await.unwrap()[0].id, "v1", "paging");
}

async fn admin_actions_are_audited_and_expire_with_the_retention(db: Db) {
    let store = db.open().await;
    let record = |at: i64, action: &str| AdminRecord {
        at,
        actor: "admin (api)".into(),
        action: action.into(),
        target: "item-1".into(),
        recipient: "Alice@example.test".into(),
        outcome: "done".into(),
    };
    store.audit_admin(&record(NOW - 40 * DAY, "delete")).await.unwrap();
    store.audit_admin(&record(NOW - DAY, "release")).await.unwrap();
    let records = store.admin_audit(10).await.unwrap();
    assert_eq!(records.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["release", "delete"], "newest first");
    assert_eq!(records[0].recipient, "alice@example.test");
    let expired = store.expire(NOW, Duration::from_secs(30 * 86400), Duration::from_secs(7 * 86400)).await.unwrap();
    assert_eq!(expired.audit_records, 1);
    assert_eq!(store.admin_audit(10).await.unwrap().len(), 1);
    store.purge_user("alice@example.test").await.unwrap();
    assert!(store.admin_audit(10).await.unwrap().is_empty(), "a purge removes the user's audit records");
}

async fn one_holder_at_a_time_has_a_lease_until_it_expires(db: Db) {
    let store = db.open().await;
    let ttl = Duration::from_secs(90);
    assert!(store.acquire_lease("scheduler", "node-a", ttl, NOW).await.unwrap(), "a free lease is taken");
    assert!(!store.acquire_lease("scheduler", "node-b", ttl, NOW + 10).await.unwrap(), "not while node-a's runs");
    assert!(store.acquire_lease("scheduler", "node-a", ttl, NOW + 60).await.unwrap(), "the holder renews it");
    assert!(!store.acquire_lease("scheduler", "node-b", ttl, NOW + 120).await.unwrap(), "renewed until NOW + 150");
    assert!(store.acquire_lease("other", "node-b", ttl, NOW + 120).await.unwrap(), "leases are independent");
    // node-a dies: node-b takes over once the lease has run out, and node-a cannot take it back.
    assert!(store.acquire_lease("scheduler", "node-b", ttl, NOW + 150).await.unwrap());
    assert!(!store.acquire_lease("scheduler", "node-a", ttl, NOW + 151).await.unwrap());
    // Given up on shutdown: free at once.
    store.release_lease("scheduler", "node-a").await.unwrap();
    assert!(!store.acquire_lease("scheduler", "node-a", ttl, NOW + 152).await.unwrap(), "only the holder can give it up");
    store.release_lease("scheduler", "node-b").await.unwrap();
    assert!(store.acquire_lease("scheduler", "node-a", ttl, NOW + 152).await.unwrap());
    // Two nodes asking at the same instant: exactly one wins.
    let (a, b) = tokio::join!(store.acquire_lease("race", "node-a", ttl, NOW), store.acquire_lease("race", "node-b", ttl, NOW));
    assert!(a.unwrap() ^ b.unwrap(), "exactly one of two concurrent takers wins");
}

async fn the_classifier_model_is_replaced_only_by_compare_and_set(db: Db) {
    let store = db.open().await;
    assert_eq!(store.load_model().await.unwrap(), None);
    assert_eq!(store.model_version().await.unwrap(), 0);
    assert!(store.commit_model(0, b"first", NOW, &[]).await.unwrap(), "the first model is saved");
    assert!(!store.commit_model(0, b"lost", NOW, &[]).await.unwrap(), "a second first save loses");
    let read = store.load_model().await.unwrap().expect("a model");
    assert_eq!((read.version, read.data.as_slice()), (1, &b"first"[..]));
    // Two nodes learning from the same version: exactly one save wins; the other must reload.
    let (a, b) = tokio::join!(store.commit_model(1, b"node-a", NOW + 1, &[]), store.commit_model(1, b"node-b", NOW + 1, &[]));
    assert!(a.unwrap() ^ b.unwrap(), "exactly one of two concurrent saves wins");
    assert_eq!(store.model_version().await.unwrap(), 2);
    let winner = store.load_model().await.unwrap().unwrap();
    assert!(winner.data == b"node-a" || winner.data == b"node-b");
    assert!(store.commit_model(2, b"third", NOW + 2, &[]).await.unwrap(), "the loser's retry on the new version is saved");
    assert_eq!(store.load_model().await.unwrap().unwrap(), moat::store::StoredModel { version: 3, data: b"third".to_vec() });
}

async fn lessons_are_kept_found_by_teacher_forgotten_and_expire(db: Db) {
    use moat::store::{Lesson, LessonChange, Recorded};
    let store = db.open().await;
    let lesson = |digest: &str, spam: bool, by: &str, at: i64| Lesson {
        digest: digest.into(),
        spam,
        taught_by: by.into(),
        via: "release".into(),
        at,
        features: vec![1, 2, 3, 4],
        in_model: None,
    };
    assert_eq!(store.put_lesson(&lesson("d1", true, "Alice@Example.test", NOW)).await.unwrap(), Recorded::New);
    assert_eq!(store.put_lesson(&lesson("d1", true, "dave@example.test", NOW + 5)).await.unwrap(), Recorded::Already);
    store.put_lesson(&lesson("d2", false, "alice@example.test", NOW + 10)).await.unwrap();
    store.put_lesson(&lesson("d3", true, "bob@example.test", NOW + 20)).await.unwrap();
    assert_eq!(
        store.get_lesson("d1").await.unwrap(),
        Some(lesson("d1", true, "alice@example.test", NOW)),
        "teachers are stored lower-cased; the same label again changed nothing"
    );
    // Folded into a model: the marks are saved with it, and only with a model saved on the version read.
    let pending: Vec<String> = store.pending_lessons(10).await.unwrap().into_iter().map(|l| l.digest).collect();
    assert_eq!(pending, ["d1", "d2", "d3"]);
    let fold = |digest: &str, spam: bool| LessonChange::Folded { digest: digest.into(), in_model: Some(spam) };
    assert!(store.commit_model(0, b"m1", NOW, &[fold("d1", true), fold("d2", false)]).await.unwrap());
    assert!(!store.commit_model(0, b"stale", NOW, &[fold("d3", true)]).await.unwrap(), "a stale version saves nothing");
    let pending: Vec<String> = store.pending_lessons(10).await.unwrap().into_iter().map(|l| l.digest).collect();
    assert_eq!(pending, ["d3"], "the stale save marked nothing");
    assert_eq!(store.get_lesson("d1").await.unwrap().unwrap().in_model, Some(true));
    // Relabelled: the same message's row moves to the new label and is pending again; the
    // model still holds the old label (and the features first recorded) until the next fold.
    let relabel = Lesson { features: vec![9, 9], ..lesson("d1", false, "carol@example.test", NOW + 30) };
    assert_eq!(store.put_lesson(&relabel).await.unwrap(), Recorded::Relabelled);
    let d1 = store.get_lesson("d1").await.unwrap().unwrap();
    assert!(!d1.spam && d1.in_model == Some(true) && d1.is_pending() && d1.features == vec![1, 2, 3, 4], "{d1:?}");
    let alices: Vec<String> = store.lessons_by("ALICE@example.test").await.unwrap().into_iter().map(|l| l.digest).collect();
    assert_eq!(alices, ["d2"]);
    assert_eq!(store.lessons_since("carol@example.test", NOW).await.unwrap(), 1);
    assert_eq!(store.lessons_since("carol@example.test", NOW + 31).await.unwrap(), 0);
    assert!(store.delete_lesson("d2").await.unwrap());
    assert!(!store.delete_lesson("d2").await.unwrap(), "forgetting twice finds nothing the second time");
    // Purging a user takes their name off what they taught; the lesson stays (the model learnt it).
    store.hit_rate("login:bob@example.test", Duration::from_secs(3600), NOW).await.unwrap();
    store.hit_rate("from:bob@example.test", Duration::from_secs(3600), NOW).await.unwrap();
    store.hit_rate("login:carol@example.test", Duration::from_secs(3600), NOW).await.unwrap();
    store.purge_user("bob@example.test").await.unwrap();
    assert_eq!(store.get_lesson("d3").await.unwrap().unwrap().taught_by, "");
    assert_eq!(store.hit_rate("login:bob@example.test", Duration::from_secs(3600), NOW).await.unwrap(), 1, "bob's counters are gone");
    assert_eq!(store.hit_rate("from:bob@example.test", Duration::from_secs(3600), NOW).await.unwrap(), 1);
    assert_eq!(store.hit_rate("login:carol@example.test", Duration::from_secs(3600), NOW).await.unwrap(), 2, "carol's stay");
    assert!(store.lessons_by("bob@example.test").await.unwrap().is_empty());
    // Lessons expire with the retention.
    let expired = store.expire(NOW + 30 + 86_400, Duration::from_secs(86_400), Duration::from_secs(86_400)).await.unwrap();
    assert_eq!(expired.lessons, 1, "d3 is older than the retention, d1 (relabelled at NOW + 30) is not");
    assert!(store.get_lesson("d3").await.unwrap().is_none() && store.get_lesson("d1").await.unwrap().is_some());
}

async fn signing_out_records_when_sessions_stop_counting(db: Db) {
    let store = db.open().await;
    assert_eq!(store.sessions_revoked_before("alice@example.test").await.unwrap(), 0, "nothing revoked yet");
    store.revoke_sessions("Alice@Example.test", NOW).await.unwrap();
    store.revoke_sessions("alice@example.test", NOW + 60).await.unwrap();
    assert_eq!(store.sessions_revoked_before("ALICE@example.test").await.unwrap(), NOW + 60, "the latest sign-out counts");
    assert_eq!(store.sessions_revoked_before("bob@example.test").await.unwrap(), 0, "other users are untouched");
    store.purge_user("alice@example.test").await.unwrap();
    assert_eq!(store.sessions_revoked_before("alice@example.test").await.unwrap(), 0, "purged with the user");
}

async fn purging_a_domain_removes_its_users_and_nothing_else(db: Db) {
    let store = db.open().await;
    let vault = db.vault();
    let users = ["alice@leaving.test", "BOB@Leaving.test", "carol@sub.leaving.test", "dave@staying.test"];
    for (n, rcpt) in users.iter().enumerate() {
        insert(&store, &vault, &item(&format!("i{n}"), rcpt, NOW)).await;
        store.set_preferences(rcpt, &Preferences { opt_out: true, ..Preferences::default() }, NOW).await.unwrap();
        store.revoke_sessions(rcpt, NOW).await.unwrap();
        store.hit_rate(&format!("login:{}", rcpt.to_ascii_lowercase()), Duration::from_secs(3600), NOW).await.unwrap();
    }
    store.release("i0", "alice@leaving.test", ReleaseVia::Link, NOW, None).await.unwrap();
    store
        .put_lesson(&moat::store::Lesson {
            digest: "d".into(),
            spam: true,
            taught_by: "bob@leaving.test".into(),
            via: "report".into(),
            at: NOW,
            features: vec![1],
            in_model: None,
        })
        .await
        .unwrap();

    let purged = store.purge_domain("Leaving.test.", "root", NOW + 1).await.unwrap();
    assert_eq!(purged.items, 2, "{purged:?}");
    for (id, rcpt) in [("i0", "alice@leaving.test"), ("i1", "bob@leaving.test")] {
        assert!(matches!(store.get_content(id).await, Err(StoreError::NotFound { .. })), "{id}");
        assert!(store.releases(id).await.unwrap().is_empty());
        assert_eq!(store.get_preferences(rcpt).await.unwrap(), Preferences::default());
        assert_eq!(store.sessions_revoked_before(rcpt).await.unwrap(), 0);
        assert_eq!(store.hit_rate(&format!("login:{rcpt}"), Duration::from_secs(3600), NOW).await.unwrap(), 1, "counter gone");
    }
    assert_eq!(store.get_lesson("d").await.unwrap().unwrap().taught_by, "", "the teacher's name is gone, the lesson stays");
    // A subdomain is another customer, and other domains are untouched.
    for (id, rcpt) in [("i2", "carol@sub.leaving.test"), ("i3", "dave@staying.test")] {
        assert!(store.get_content(id).await.is_ok(), "{id}");
        assert!(store.get_preferences(rcpt).await.unwrap().opt_out);
    }
    // The purge itself is recorded by domain, time and actor only.
    let audit = store.admin_audit(10).await.unwrap();
    let record = audit.iter().find(|r| r.action == "domain_purge").expect("the purge is audited");
    assert_eq!(
        (record.actor.as_str(), record.target.as_str(), record.recipient.as_str(), record.at),
        ("root", "leaving.test", "", NOW + 1)
    );
}

/// A database at schema version 8 (before the From field was kept) with one held item: after
/// the migration it still lists, reads and searches by its envelope sender, and is shown by it.
async fn an_item_held_before_the_from_field_was_kept_still_lists_by_its_envelope_sender(db: Db) {
    let mut old = String::from("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);\n");
    for (version, sql) in moat::store::MIGRATIONS.iter().filter(|(v, _)| *v <= 8) {
        old.push_str(sql);
        old.push_str(&format!("\nINSERT INTO schema_version (version, applied_at) VALUES ({version}, 0);\n"));
    }
    old.push_str(&format!(
        "INSERT INTO quarantine (id, recipient, sender, subject, msg_date, size, score, symbols, category, state, created_at, expires_at)
         VALUES ('old1', 'alice@example.test', 'bounce-8f3a91@mailer.test', 'Old news', {NOW}, 10, 11.5, '[]', 'spam', 'held', {NOW}, {});",
        NOW + DAY
    ));
    db.raw(&old).await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let item = store.get_item("old1").await.unwrap();
    assert_eq!((item.sender.as_str(), item.from_name.as_str(), item.from_address.as_str()), ("bounce-8f3a91@mailer.test", "", ""));
    assert_eq!(item.sender_to_list(), "bounce-8f3a91@mailer.test", "allow/block name the envelope sender, as before");
    let shown = moat::digest::build::Author::of(&item, 60, 120, moat::i18n::Lang::En.catalog());
    assert_eq!((shown.name, shown.address.as_str(), shown.via), (None, "bounce-8f3a91@mailer.test", None));
    let listed = store.list_items("alice@example.test", Some(ItemState::Held), 10, 0).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["old1"]);
    let query = ItemQuery { recipient: "alice@example.test".into(), text: "8f3a91".into(), search_subjects: true, ..ItemQuery::default() };
    assert_eq!(store.count_items(&query).await.unwrap(), 1);
    // New items keep theirs next to it.
    insert(&store, &db.vault(), &item_new()).await;
    assert_eq!(store.get_item("new1").await.unwrap().from_address, "news-new1@brand.test");
}

async fn a_user_who_set_preferences_before_time_zones_keeps_them_and_the_domains_zone(db: Db) {
    let mut old = String::from("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);\n");
    for (version, sql) in moat::store::MIGRATIONS.iter().filter(|(v, _)| *v <= 9) {
        old.push_str(sql);
        old.push_str(&format!("\nINSERT INTO schema_version (version, applied_at) VALUES ({version}, 0);\n"));
    }
    old.push_str(&format!(
        "INSERT INTO user_prefs (address, digest, opt_out, filtering, updated_at) VALUES ('alice@example.test', 'weekly', FALSE, TRUE, {NOW});"
    ));
    db.raw(&old).await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let prefs = store.get_preferences("alice@example.test").await.unwrap();
    assert_eq!((prefs.digest, prefs.opt_out, prefs.filtering), (Some(DigestFrequency::Weekly), false, Some(true)), "{prefs:?}");
    assert_eq!(prefs.time_zone, "", "no choice: the domain's zone");
    let config = moat::config::load_str(
        "t.toml",
        "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n\
         [[domain]]\nname = \"example.test\"\n[digest]\ntimezone = \"Europe/Berlin\"\n",
        std::path::Path::new("."),
    )
    .expect("config");
    assert_eq!(config.time_zone_for("alice@example.test", &prefs.time_zone), "Europe/Berlin");
    // Choosing a zone afterwards keeps the rest.
    store.set_preferences("alice@example.test", &Preferences { time_zone: "Asia/Tokyo".into(), ..prefs.clone() }, NOW + 1).await.unwrap();
    let chosen = store.get_preferences("alice@example.test").await.unwrap();
    assert_eq!((chosen.digest, chosen.time_zone.as_str()), (Some(DigestFrequency::Weekly), "Asia/Tokyo"));
    assert_eq!(config.time_zone_for("alice@example.test", &chosen.time_zone), "Asia/Tokyo");
}

async fn a_user_who_set_preferences_before_languages_keeps_them_and_reads_the_domains_language(db: Db) {
    let mut old = String::from("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);\n");
    for (version, sql) in moat::store::MIGRATIONS.iter().filter(|(v, _)| *v <= 10) {
        old.push_str(sql);
        old.push_str(&format!("\nINSERT INTO schema_version (version, applied_at) VALUES ({version}, 0);\n"));
    }
    old.push_str(&format!(
        "INSERT INTO user_prefs (address, digest, opt_out, filtering, time_zone, updated_at) \
         VALUES ('alice@example.test', 'weekly', FALSE, TRUE, 'Asia/Tokyo', {NOW});"
    ));
    db.raw(&old).await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), latest_version());
    let prefs = store.get_preferences("alice@example.test").await.unwrap();
    assert_eq!((prefs.digest, prefs.time_zone.as_str()), (Some(DigestFrequency::Weekly), "Asia/Tokyo"), "{prefs:?}");
    assert_eq!(prefs.language, "", "no choice: the domain's language");
    let config = moat::config::load_str(
        "t.toml",
        "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n\
         [[domain]]\nname = \"example.test\"\nlanguage = \"de\"\n",
        std::path::Path::new("."),
    )
    .expect("config");
    assert_eq!(config.language_for("alice@example.test", &prefs.language), moat::i18n::Lang::De);
    // Choosing English afterwards keeps the rest.
    store.set_preferences("alice@example.test", &Preferences { language: "en".into(), ..prefs.clone() }, NOW + 1).await.unwrap();
    let chosen = store.get_preferences("alice@example.test").await.unwrap();
    assert_eq!((chosen.digest, chosen.time_zone.as_str(), chosen.language.as_str()), (Some(DigestFrequency::Weekly), "Asia/Tokyo", "en"));
    let locale = config.locale_for("alice@example.test", &chosen.language, &chosen.time_zone);
    assert_eq!((locale.lang, locale.zone.as_str()), (moat::i18n::Lang::En, "Asia/Tokyo"));
}

fn item_new() -> QuarantineItem {
    item("new1", "alice@example.test", NOW + 1)
}
