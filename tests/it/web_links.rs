//! The links in moat's emails, against the real binary's web listener: a release link's GET only
//! shows a page (mail scanners fetch links), its POST releases the held copy to the downstream
//! exactly once, "release and allow" also puts the sender on the user's allow list, and a
//! tampered, expired or other user's link is refused. Hostile subjects and senders render inert.

use crate::support::*;
use moat::links::{Link, LinkAction, LinkKey};
use moat::store::{ItemState, unix_now};
use std::fs;
use std::time::Duration;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\n";

struct Setup {
    _rules: tempfile::TempDir,
    capture: Capture,
    moat: Moat,
    web: u16,
}

fn setup() -> Setup {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let config =
        MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display())).append(&web_section(web));
    let moat = Moat::start(config);
    Setup { _rules: rules, capture, moat, web }
}

fn key(moat: &Moat) -> LinkKey {
    LinkKey::open(&moat.state_dir().join("links.key")).expect("moat's link key")
}

fn link(moat: &Moat, action: LinkAction, address: &str, item: &str, expires: i64) -> String {
    format!("/l/{}", key(moat).sign(&Link { action, address: address.into(), item: item.into(), expires }))
}

/// Holds one message for each recipient; returns the items' ids in recipient order.
fn hold(setup: &Setup, sender: &str, subject: &str, recipients: &[&str]) -> Vec<String> {
    let message = format!("From: {sender}\r\nSubject: {subject}\r\n\r\nYou have won\r\n");
    let reply = setup.moat.smtp_ehlo().send_mail("lottery@remote.example", recipients, message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let held = setup.moat.wait_quarantined(recipients.len());
    recipients.iter().map(|r| held.iter().find(|h| h.item.recipient == *r).expect("item").item.id.clone()).collect()
}

#[test]
fn a_release_link_shows_a_button_and_its_post_releases_exactly_once() {
    let setup = setup();
    let ids = hold(&setup, "<lottery@remote.example>", "Prize", &["alice@example.test"]);
    let path = link(&setup.moat, LinkAction::Release, "alice@example.test", &ids[0], unix_now() + 3600);

    let page = http(setup.web, "GET", &path, "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<form method=\"post\">") && page.body.contains("Prize"), "{}", page.body);
    let csp = page.header("Content-Security-Policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(setup.capture.messages().is_empty(), "a GET never releases");
    assert_eq!(setup.moat.quarantine()[0].item.state, ItemState::Held);

    let done = http(setup.web, "POST", &path, "");
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("on its way"), "{}", done.body);
    let mails = setup.capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["alice@example.test"]);
    let again = http(setup.web, "POST", &path, "");
    assert!(again.body.contains("already released"), "{}", again.body);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(setup.capture.messages().len(), 1, "the second click delivers nothing");
}

#[test]
fn release_and_allow_puts_the_sender_on_the_users_allow_list() {
    let setup = setup();
    let ids = hold(&setup, "<lottery@remote.example>", "Prize", &["bob@example.test"]);
    let path = link(&setup.moat, LinkAction::ReleaseAllow, "bob@example.test", &ids[0], unix_now() + 3600);
    let done = http(setup.web, "POST", &path, "");
    assert!(done.body.contains("will no longer be held"), "{}", done.body);
    setup.capture.wait_for(1, DEADLINE);
    let reply =
        setup.moat.smtp_ehlo().send_mail("lottery@remote.example", &["bob@example.test"], b"Subject: again\r\n\r\nYou have won\r\n");
    assert_eq!(reply.code, 250, "{reply}");
    let mails = setup.capture.wait_for(2, DEADLINE);
    assert!(text(&mails[1].data).contains("Subject: again"), "the allowed sender's next message is delivered, not held");
    setup.moat.assert_quarantine_stays(1);
}

#[test]
fn a_link_page_shows_the_from_name_and_release_and_allow_lists_the_from_address() {
    let setup = setup();
    let ids = hold(&setup, "=?UTF-8?Q?Lottery_=E2=80=AEHQ?= <news@lottery.example>", "Prize", &["bob@example.test"]);
    let path = link(&setup.moat, LinkAction::ReleaseAllow, "bob@example.test", &ids[0], unix_now() + 3600);
    let page = http(setup.web, "GET", &path, "");
    assert!(
        page.body.contains("<bdi>Lottery [U+202E]HQ</bdi> <span class=\"addr\">&lt;<bdi>news@lottery.example</bdi>&gt;</span>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("via <bdi>lottery@remote.example</bdi>") && !page.body.contains('\u{202E}'), "{}", page.body);
    let done = http(setup.web, "POST", &path, "");
    assert!(done.body.contains("Mail from news@lottery.example will no longer be held"), "{}", done.body);
    let allow = setup.moat.store().get_preferences_blocking("bob@example.test").allow;
    assert_eq!(allow.iter().map(ToString::to_string).collect::<Vec<_>>(), ["news@lottery.example"]);
}

#[test]
fn tampered_expired_and_other_users_links_are_refused() {
    let setup = setup();
    let ids = hold(&setup, "<lottery@remote.example>", "Prize", &["carol@example.test", "dave@example.test"]);
    let moat = &setup.moat;
    let valid = link(moat, LinkAction::Release, "carol@example.test", &ids[0], unix_now() + 3600);
    let mut tampered = valid.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let expired = link(moat, LinkAction::Release, "carol@example.test", &ids[0], unix_now() - 1);
    let swapped = link(moat, LinkAction::Release, "carol@example.test", &ids[1], unix_now() + 3600);
    let foreign = format!(
        "/l/{}",
        LinkKey::from_bytes([9; 32]).sign(&Link {
            action: LinkAction::Release,
            address: "carol@example.test".into(),
            item: ids[0].clone(),
            expires: unix_now() + 3600
        })
    );
    for (path, status, what) in [
        (&tampered, 403, "tampered"),
        (&expired, 403, "expired"),
        (&swapped, 404, "another user's item"),
        (&foreign, 403, "signed with another key"),
    ] {
        assert_eq!(http(setup.web, "POST", path, "").status, status, "{what}");
        assert_eq!(http(setup.web, "GET", path, "").status, status, "{what}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(setup.capture.messages().is_empty(), "nothing was released");
    assert!(moat.quarantine().iter().all(|h| h.item.state == ItemState::Held));
}

#[test]
fn hostile_subjects_and_senders_render_as_text() {
    let setup = setup();
    let subject = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let ids = hold(&setup, "\"<b>Boss</b>\" <x@remote.example>", subject, &["erin@example.test"]);
    let page = http(setup.web, "GET", &link(&setup.moat, LinkAction::Release, "erin@example.test", &ids[0], unix_now() + 3600), "");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>") && !page.body.contains("<img"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "shown as text: {}", page.body);
}

#[test]
fn the_view_link_shows_the_users_own_message_as_inert_text_with_attachments_listed_not_served() {
    let setup = setup();
    let message = "From: <x@remote.example>\r\nSubject: html\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
                   --b\r\nContent-Type: text/html\r\n\r\n<p>You have won</p><script>alert(3)</script><img src=\"http://tracker.example/p.gif\">\r\n\
                   --b\r\nContent-Type: application/pdf; name=\"prize.pdf\"\r\nContent-Disposition: attachment; filename=\"prize.pdf\"\r\n\r\n%PDF-1.4\r\n--b--\r\n";
    let reply = setup.moat.smtp_ehlo().send_mail("lottery@remote.example", &["fay@example.test", "gus@example.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let held = setup.moat.wait_quarantined(2);
    let fay = held.iter().find(|h| h.item.recipient == "fay@example.test").unwrap().item.id.clone();
    let page = http(setup.web, "GET", &link(&setup.moat, LinkAction::View, "fay@example.test", &fay, unix_now() + 3600), "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("You have won"), "{}", page.body);
    assert!(
        !page.body.contains("<script") && !page.body.contains("<img") && !page.body.contains("tracker.example/p.gif\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("prize.pdf") && page.body.contains("application/pdf"), "attachments are listed: {}", page.body);
    assert!(page.body.contains("Release and allow sender"), "with the release buttons");
    let other = http(setup.web, "GET", &link(&setup.moat, LinkAction::View, "gus@example.test", &fay, unix_now() + 3600), "");
    assert_eq!(other.status, 404, "another user's link cannot show fay's copy");
}
