//! The quarantine end to end, with the real binary: spam held over SMTP lands in the encrypted
//! store (one item per recipient, metadata for the index, contents sealed), the operator's
//! `moat quarantine` commands list it without its contents, release delivers the held copy to
//! the downstream exactly once (twice asked, or asked concurrently, or while moat is stopped),
//! delete and `moat user purge` remove it; greylisting and rate limits defer with their state in
//! the store, and users' own block lists from the store are honoured.

use crate::support::*;
use moat::store::{Category, ItemState, ListKind};
use std::fs;
use std::time::Duration;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims a prize\n";

fn config(downstream: u16, rules: &tempfile::TempDir) -> MoatConfig {
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    MoatConfig::new(downstream).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display()))
}

fn prize(marker: &str) -> Vec<u8> {
    format!("From: <lottery@remote.example>\r\nSubject: Prize {marker}\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nYou have won {marker}\r\n").into_bytes()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "moat exited with {}: {}{}", output.status, text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

/// Every file of moat's store (database, WAL) as bytes.
fn store_files(moat: &Moat) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs::read_dir(moat.state_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("moat.db")) {
            all.extend(fs::read(path).unwrap());
        }
    }
    all
}

#[test]
fn spam_is_held_encrypted_listed_without_contents_and_released_exactly_once() {
    let rules = temp_dir();
    let capture = Capture::new();
    let moat = Moat::start(config(capture.port, &rules));
    let id = marker("held");
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test", "bob@example.test"], &prize(&id));
    assert_reply(&reply, 250, "2.0.0", "held mail is accepted");

    let held = moat.wait_quarantined(2);
    let alice = held.iter().find(|h| h.item.recipient == "alice@example.test").expect("alice's item");
    assert!(held.iter().any(|h| h.item.recipient == "bob@example.test"), "one item per recipient");
    assert_eq!(alice.item.subject, format!("Prize {id}"));
    assert_eq!(alice.item.sender, "lottery@remote.example");
    assert_eq!(alice.item.date, 1_700_000_000);
    assert_eq!((alice.item.category, alice.item.state), (Category::Spam, ItemState::Held));
    assert_eq!(alice.item.score, 12.0);
    assert!(alice.item.symbols.iter().any(|s| s.name == "LOCAL_PRIZE"));
    assert!(text(&alice.contents).contains(&format!("You have won {id}")), "the held copy is the message");
    assert!(text(&alice.contents).contains("X-Spam-Flag: YES"), "with its explanation");
    let on_disk = store_files(&moat);
    assert!(!on_disk.is_empty());
    assert!(!text(&on_disk).contains(&format!("You have won {id}")), "contents are encrypted at rest");
    assert!(
        moat::spool::Spool::open(&moat.state_dir().join("quarantine")).unwrap().list().unwrap().is_empty(),
        "the holding spool is emptied"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(capture.messages().is_empty(), "held mail is not delivered");

    let listing = stdout(&moat.cli(&["quarantine", "list", "-c", moat.config_path().to_str().unwrap()]));
    assert!(listing.contains(&alice.item.id) && listing.contains("alice@example.test") && listing.contains("spam"), "{listing}");
    assert!(listing.contains("2 item(s)"), "{listing}");
    let meta = stdout(&moat.cli(&["quarantine", "show-meta", &alice.item.id, "-c", moat.config_path().to_str().unwrap()]));
    assert!(meta.contains("LOCAL_PRIZE") && meta.contains("\"score\": 12.0"), "{meta}");
    assert!(!listing.contains("You have won") && !meta.contains("You have won"), "the operator never sees contents");

    let config = moat.config_path();
    let config = config.to_str().unwrap();
    let released = stdout(&moat.cli(&["quarantine", "release", &alice.item.id, "--actor", "postmaster", "-c", config]));
    assert!(released.contains("queued as"), "{released}");
    let mails = capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["alice@example.test"], "released to that recipient only");
    assert_eq!(mails[0].sender, "lottery@remote.example");
    assert_eq!(mails[0].data, alice.contents, "the held copy, byte for byte");

    let again = moat.cli(&["quarantine", "release", &alice.item.id, "-c", config]);
    assert!(!again.status.success(), "a second release is refused");
    assert!(text(&again.stderr).contains("already released"), "{}", text(&again.stderr));
    let meta = stdout(&moat.cli(&["quarantine", "show-meta", &alice.item.id, "-c", config]));
    assert!(meta.contains("\"actor\": \"postmaster\"") && meta.contains("\"via\": \"cli\""), "the release is audited: {meta}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 1, "delivered once");
    moat.assert_log_lacks("You have won");
    moat.assert_log_lacks(&format!("Prize {id}"));
}

#[test]
fn concurrent_releases_deliver_once_and_a_release_while_stopped_goes_out_at_start() {
    let rules = temp_dir();
    let capture = Capture::new();
    let mut moat = Moat::start(config(capture.port, &rules));
    let id = marker("race");
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["carol@example.test", "dave@example.test"], &prize(&id));
    assert_eq!(reply.code, 250, "{reply}");
    let held = moat.wait_quarantined(2);
    let carol = held.iter().find(|h| h.item.recipient == "carol@example.test").unwrap().item.id.clone();
    let dave = held.iter().find(|h| h.item.recipient == "dave@example.test").unwrap().item.id.clone();

    let config = moat.config_path().to_str().unwrap().to_string();
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4).map(|_| scope.spawn(|| moat.cli(&["quarantine", "release", &carol, "-c", &config]))).collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(outputs.iter().filter(|o| o.status.success()).count(), 1, "exactly one of four concurrent releases wins");
    capture.wait_for(1, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 1);

    moat.sigterm();
    moat.wait_exit(DEADLINE);
    let released = stdout(&moat.cli(&["quarantine", "release", &dave, "-c", &config]));
    assert!(released.contains("delivered when moat starts"), "{released}");
    moat.restart();
    let mails = capture.wait_for(2, DEADLINE);
    assert!(mails.iter().any(|m| m.recipients == ["dave@example.test"]), "the release made while stopped is delivered");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 2);
}

#[test]
fn delete_and_user_purge_remove_items_and_their_contents() {
    let rules = temp_dir();
    let capture = Capture::new();
    let moat = Moat::start(config(capture.port, &rules));
    let id = marker("purge");
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["erin@example.test", "frank@example.test"], &prize(&id));
    assert_eq!(reply.code, 250, "{reply}");
    let held = moat.wait_quarantined(2);
    let erin = held.iter().find(|h| h.item.recipient == "erin@example.test").unwrap().item.id.clone();
    let config = moat.config_path().to_str().unwrap().to_string();

    stdout(&moat.cli(&["quarantine", "delete", &erin, "-c", &config]));
    let after = moat.quarantine();
    let erin_item = after.iter().find(|h| h.item.id == erin).expect("the row stays until expiry");
    assert_eq!(erin_item.item.state, ItemState::Deleted);
    assert!(erin_item.contents.is_empty(), "contents are gone at once");
    let refused = moat.cli(&["quarantine", "release", &erin, "-c", &config]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("already deleted"), "{}", text(&refused.stderr));

    let purged = stdout(&moat.cli(&["user", "purge", "FRANK@example.test", "-c", &config]));
    assert!(purged.contains("1 quarantined item(s)"), "{purged}");
    let left: Vec<String> = moat.quarantine().into_iter().map(|h| h.item.recipient).collect();
    assert_eq!(left, ["erin@example.test"], "only frank's data is gone");
    assert!(capture.messages().is_empty());
}

#[test]
fn a_leaving_domain_is_purged_whole_and_its_queued_mail_listed_and_dropped() {
    let rules = temp_dir();
    let capture = Capture::new();
    let dead = free_port();
    let moat = Moat::start(config(capture.port, &rules).append(&format!(
        "\n[[domain]]\nname = \"leaving.test\"\nrecipient_check = \"any\"\nroute = {{ host = \"127.0.0.1\", port = {dead}, tls = \"none\" }}\n"
    )));
    let id = marker("domain");
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["gus@leaving.test", "erin@example.test"], &prize(&id));
    assert_eq!(reply.code, 250, "{reply}");
    moat.wait_quarantined(2);
    // Clean mail for the leaving domain waits in the queue: its downstream does not answer.
    let clean = b"From: <friend@remote.example>\r\nSubject: hello\r\n\r\nnothing to see\r\n";
    assert_eq!(moat.smtp_ehlo().send_mail("friend@remote.example", &["hana@leaving.test"], clean).code, 250);
    let config = moat.config_path().to_str().unwrap().to_string();
    let queued = wait_until("the queued message", DEADLINE, || {
        let listing = stdout(&moat.cli(&["queue", "list", "-c", &config]));
        listing.contains("hana@leaving.test").then_some(listing)
    });

    let refused = moat.cli(&["domain", "purge", "leaving.test", "-c", &config]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("still a [[domain]]"), "{}", text(&refused.stderr));
    assert_eq!(moat.quarantine().len(), 2, "nothing purged while the domain is configured");

    let purged = stdout(&moat.cli(&["domain", "purge", "Leaving.test", "--force", "--drop-queued", "-c", &config]));
    assert!(purged.contains("purged leaving.test: 1 quarantined item(s)"), "{purged}");
    assert!(purged.contains("queued for leaving.test") && purged.contains("dropped 1 queued message(s)"), "{purged}\n{queued}");
    let left: Vec<String> = moat.quarantine().into_iter().map(|h| h.item.recipient).collect();
    assert_eq!(left, ["erin@example.test"], "only the leaving domain's data is gone");
    let listing = stdout(&moat.cli(&["queue", "list", "-c", &config]));
    assert!(!listing.contains("hana@leaving.test"), "{listing}");
    moat.assert_log_lacks(&format!("You have won {id}"));
}

#[test]
fn a_forced_quarantine_is_filed_as_policy() {
    let rules = temp_dir();
    let capture = Capture::new();
    let moat = Moat::start(
        config(capture.port, &rules).append("\n[lists]\nblock = [\"bulk.example\"]\n[policy.forced]\nBLOCK_LIST = \"quarantine\"\n"),
    );
    let reply = moat.smtp_ehlo().send_mail("news@bulk.example", &["gina@example.test"], b"Subject: weekly\r\n\r\nhello\r\n");
    assert_eq!(reply.code, 250, "{reply}");
    let held = moat.wait_quarantined(1);
    assert_eq!(held[0].item.category, Category::Policy);
    assert!(held[0].item.symbols.iter().any(|s| s.name == "BLOCK_LIST"));
}

#[test]
fn greylisting_defers_a_new_triplet_until_the_delay_has_passed_but_not_allow_listed_senders() {
    let capture = Capture::new();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append("\n[greylist]\nenabled = true\ndelay = \"2s\"\n[lists]\nallow = [\"friend@partner.example\"]\n"),
    );
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<new@remote.example>"), 250, "2.1.0", "sender");
    let first = smtp.cmd("RCPT TO:<henry@example.test>");
    assert_reply(&first, 451, "4.7.1", "a new triplet is greylisted");
    assert!(first.text().contains("Greylisted"), "{first}");
    assert_reply(&smtp.cmd("RCPT TO:<henry@example.test>"), 451, "4.7.1", "an immediate retry is still too early");
    assert_reply(&smtp.cmd("RSET"), 250, "2.0.0", "reset");
    assert_reply(&smtp.cmd("MAIL FROM:<friend@partner.example>"), 250, "2.1.0", "sender");
    assert_reply(&smtp.cmd("RCPT TO:<henry@example.test>"), 250, "2.1.5", "allow-listed senders are not greylisted");
    assert_reply(&smtp.cmd("RSET"), 250, "2.0.0", "reset");
    std::thread::sleep(Duration::from_millis(2200));
    let reply = smtp.send_mail("new@remote.example", &["henry@example.test"], b"Subject: retry\r\n\r\nhello\r\n");
    assert_reply(&reply, 250, "2.0.0", "the retry after the delay passes");
    assert_eq!(capture.wait_for(1, DEADLINE)[0].recipients, ["henry@example.test"]);
    assert!(moat.log().contains("event=\"greylisted\""), "{}", moat.log());
}

#[test]
fn rate_limits_defer_a_client_over_its_limit() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port).append("\n[rate_limits]\nper_ip = 2\nwindow = \"1h\"\n"));
    for n in 0..2 {
        let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["ivy@example.test"], format!("Subject: {n}\r\n\r\nx\r\n").as_bytes());
        assert_reply(&reply, 250, "2.0.0", "within the limit");
    }
    let mut smtp = moat.smtp_ehlo();
    let third = smtp.cmd("MAIL FROM:<a@remote.example>");
    assert_reply(&third, 450, "4.7.1", "the third message in the window is deferred");
    assert!(moat.log().contains("event=\"rate_limited\""));
}

#[test]
fn a_users_own_block_list_in_the_store_refuses_that_sender_for_that_user_only() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let store = moat.store();
    let entry = moat::lists::Entry::parse("pest@remote.example").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(store.add_list_entry("jack@example.test", ListKind::Block, &entry)).unwrap();
    moat.sighup();
    wait_until("the user's list to be loaded", DEADLINE, || {
        let mut smtp = moat.smtp_ehlo();
        smtp.cmd("MAIL FROM:<pest@remote.example>");
        (smtp.cmd("RCPT TO:<jack@example.test>").code == 550).then_some(())
    });
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<pest@remote.example>"), 250, "2.1.0", "sender");
    assert_reply(&smtp.cmd("RCPT TO:<kate@example.test>"), 250, "2.1.5", "another user still gets mail from that sender");
}

#[test]
fn items_past_their_retention_are_swept_with_their_contents() {
    let rules = temp_dir();
    let capture = Capture::new();
    let mut moat = Moat::start(config(capture.port, &rules));
    for n in 0..2 {
        let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["olga@example.test"], &prize(&format!("{n}")));
        assert_eq!(reply.code, 250, "{reply}");
    }
    let held = moat.wait_quarantined(2);
    moat.sigterm();
    moat.wait_exit(DEADLINE);
    // Age one item past its retention, as 31 days would.
    let store = moat.store();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let old = &held[0].item;
    let sealed = runtime.block_on(store.get_content(&old.id)).unwrap();
    runtime.block_on(store.delete_item(&old.id)).unwrap();
    let expired = moat::store::QuarantineItem { expires_at: moat::store::unix_now() - 1, ..old.clone() };
    runtime.block_on(store.insert_item(&expired, &sealed)).unwrap();
    moat.restart();
    wait_until("the retention sweep", DEADLINE, || (moat.quarantine().len() == 1).then_some(()));
    assert_eq!(moat.quarantine()[0].item.id, held[1].item.id, "the fresh item stays");
    assert!(runtime.block_on(store.get_content(&old.id)).is_err(), "the expired item's contents are gone");
    assert!(moat.log().contains("event=\"retention_sweep\""));
}
