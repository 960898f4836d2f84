//! The Message Center in a real browser (headless Chromium through ChromeDriver), against the
//! real binary: the user opens the link from a real digest email, sees the list, views a
//! message whose subject and HTML carry scripts (nothing runs), releases it with a click (the
//! downstream receives the original), changes preferences and opts out; on a phone-sized screen
//! the page fits, and the list can be worked with the keyboard alone; a user who chooses a time
//! zone sees their times in it, with its name, in the Message Center and the next digest.

use crate::support::browser::Browser;
use crate::support::*;
use std::fs;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims you won a prize\n";
const HOSTILE_SUBJECT: &str = "<img src=x onerror=\"document.title='pwned'\"><script>alert('subject')</script>";

struct Setup {
    moat: Moat,
    capture: Capture,
    _rules: tempfile::TempDir,
}

fn start() -> Setup {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display())).append(&web_section(web)),
    );
    Setup { moat, capture, _rules: rules }
}

/// Holds a spam with a hostile subject and HTML part for alice; returns the marker in its body.
fn hold_hostile(setup: &Setup) -> String {
    let id = marker("browser");
    let message = format!(
        "From: <lottery@remote.example>\r\nSubject: {HOSTILE_SUBJECT}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nYou have won {id}\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n<p>You have won <b>{id}</b></p><script>alert('body')</script>\
         <img src=\"x\" onerror=\"alert('img')\"><a href=\"javascript:alert('link')\">claim</a>\r\n--b--\r\n"
    );
    let reply = setup.moat.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    id
}

/// The digest's text part for alice, sent through moat's relay to the capture.
fn digest_text(setup: &Setup) -> String {
    let config = setup.moat.config_path().to_str().unwrap().to_string();
    let run = setup.moat.cli(&["digest", "run", "--now", "--user", "alice@example.test", "-c", &config]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let digest = setup.capture.wait_for(1, DEADLINE).remove(0);
    text_part(&digest.data)
}

fn assert_nothing_ran(browser: &Browser) {
    assert_eq!(browser.alert(), None, "a script from the mail opened an alert");
    assert_ne!(browser.title(), "pwned", "a script from the mail ran");
}

#[test]
fn from_the_digest_link_a_user_views_releases_and_sets_preferences_in_chromium() {
    let setup = start();
    let marker = hold_hostile(&setup);
    let held = setup.moat.wait_quarantined(1).remove(0);
    let digest = digest_text(&setup);
    let browser = Browser::start(1024, 768);

    browser.goto(&url_after(&digest, "Your whole quarantine, preferences and allow/block lists: "));
    assert!(browser.url().ends_with("/mc"), "{}", browser.url());
    assert_eq!(browser.title(), "Your quarantine");
    let list = browser.body_text();
    assert!(list.contains(HOSTILE_SUBJECT), "the hostile subject shows as text: {list}");
    assert!(list.contains("Claims you won a prize"), "{list}");
    assert_nothing_ran(&browser);

    browser.click(&browser.find(&format!("a[href=\"/mc/m/{}\"]", held.item.id)));
    browser.wait_title("Held message");
    browser.wait_text(&format!("You have won {marker}"));
    let frame = browser.find("iframe[sandbox]");
    browser.frame(Some(&frame));
    assert!(browser.body_text().contains(&format!("You have won {marker}")), "the HTML part is shown");
    assert!(browser.find_all("script, img, a[href]").is_empty(), "sanitised: {}", browser.source());
    browser.frame(None);
    assert_nothing_ran(&browser);

    browser.click(&browser.find("button[value=\"release\"]"));
    browser.wait_title("Done");
    browser.wait_text("1 message released");
    let mails = setup.capture.wait_for(2, DEADLINE);
    assert!(mails.iter().any(|m| m.data == held.contents), "the downstream got the original message");

    browser.click(&browser.find("nav a[href=\"/mc/prefs\"]"));
    browser.wait_title("Preferences");
    browser.type_into(&browser.find("#add-allow"), "friend@remote.example");
    browser.click(&browser.find("#add-allow ~ button"));
    browser.wait_text("Your list is changed");
    browser.click(&browser.find("a[href=\"/mc/prefs\"]"));
    browser.wait_title("Preferences");
    browser.click(&browser.find("#digest option[value=\"weekly\"]"));
    browser.click(&browser.find("form[action=\"/mc/prefs\"] button[type=\"submit\"]"));
    browser.wait_text("Your preferences are saved");
    let prefs = setup.moat.store().get_preferences_blocking("alice@example.test");
    assert_eq!(prefs.digest, Some(moat::store::DigestFrequency::Weekly));
    assert_eq!(prefs.allow.iter().map(ToString::to_string).collect::<Vec<_>>(), ["friend@remote.example"]);
    assert!(!prefs.opt_out);

    // Opting out from the digest's link: the page asks, the button does it.
    browser.goto(&url_after(&digest, "To stop these digests: "));
    assert!(!setup.moat.store().get_preferences_blocking("alice@example.test").opt_out, "opening the link changes nothing");
    browser.click(&browser.find("button[type=\"submit\"]"));
    browser.wait_title("Unsubscribed");
    assert!(setup.moat.store().get_preferences_blocking("alice@example.test").opt_out);
}

#[test]
fn on_a_phone_sized_screen_the_list_fits_and_works_with_the_keyboard() {
    let setup = start();
    hold_hostile(&setup);
    let held = setup.moat.wait_quarantined(1).remove(0);
    let digest = digest_text(&setup);
    let browser = Browser::start(375, 740);
    browser.goto(&url_after(&digest, "Your whole quarantine, preferences and allow/block lists: "));
    assert_eq!(browser.title(), "Your quarantine");
    let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth;");
    assert!(overflow.as_i64().is_some_and(|px| px <= 1), "no sideways scrolling on a phone: {overflow}");
    let unlabelled = browser.script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML);",
    );
    assert_eq!(unlabelled, serde_json::json!([]), "every control has an accessible name");

    // Keyboard only: Tab to the message's checkbox, Space, Tab to Release, Enter.
    let active =
        |b: &Browser| b.script("const e = document.activeElement; return [e.tagName, e.type || '', e.value || '', e.textContent];");
    browser.keys("\u{E004}");
    assert_eq!(active(&browser)[3], "Skip to content", "the first stop skips the navigation");
    let mut presses = 0;
    while active(&browser)[1] != "checkbox" {
        browser.keys("\u{E004}");
        presses += 1;
        assert!(presses < 30, "the checkbox is reachable with Tab");
    }
    browser.keys(" ");
    assert!(browser.selected(&browser.find("input[type=checkbox]")));
    while active(&browser)[2] != "release" {
        browser.keys("\u{E004}");
        presses += 1;
        assert!(presses < 40, "the Release button is reachable with Tab");
    }
    browser.keys("\u{E007}");
    browser.wait_title("Done");
    browser.wait_text("1 message released");
    assert!(setup.capture.wait_for(2, DEADLINE).iter().any(|m| m.data == held.contents));
}

#[test]
fn a_user_who_chooses_tokyo_sees_tokyo_times_and_others_keep_the_domains_zone() {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display()))
            .append(&web_section(web))
            .append("\n[digest]\ntimezone = \"Europe/Berlin\"\n"),
    );
    let setup = Setup { moat, capture, _rules: rules };
    send_prize_spam(&setup.moat, "alice@example.test", "First prize", "tz");
    send_prize_spam(&setup.moat, "bob@example.test", "Bob's prize", "tz");
    let held = setup.moat.wait_quarantined(2);
    let first = held.iter().find(|h| h.item.recipient == "alice@example.test").unwrap().item.clone();
    let bobs = held.iter().find(|h| h.item.recipient == "bob@example.test").unwrap().item.clone();
    let berlin = |at: i64| moat::clock::minute_in(at, "Europe/Berlin");
    let tokyo = |at: i64| moat::clock::minute_in(at, "Asia/Tokyo");
    assert!(berlin(first.date).ends_with(" CET") && tokyo(first.date).ends_with(" JST"), "{} {}", berlin(first.date), tokyo(first.date));

    // Before choosing: the domain's zone, named, in the digest and the Message Center.
    let digest = next_digest(&setup.moat, &setup.capture, "alice@example.test").text;
    assert!(digest.contains(&berlin(first.date)), "{digest}");
    let browser = Browser::start(1024, 768);
    browser.goto(&url_after(&digest, "Your whole quarantine, preferences and allow/block lists: "));
    browser.wait_title("Your quarantine");
    assert!(browser.body_text().contains(&berlin(first.date)), "{}", browser.body_text());

    // A zone the tz database does not know is refused, visibly, and nothing is saved.
    browser.click(&browser.find("nav a[href=\"/mc/prefs\"]"));
    browser.wait_title("Preferences");
    assert!(browser.body_text().contains("Europe/Berlin"), "the default is named: {}", browser.body_text());
    browser.click(&browser.find("#digest option[value=\"weekly\"]"));
    browser.type_into(&browser.find("#time_zone"), "Mars/Olympus");
    browser.click(&browser.find("form[action=\"/mc/prefs\"] button[type=\"submit\"]"));
    let page = browser.wait_text("is not a time zone");
    assert!(page.contains("\u{201c}Mars/Olympus\u{201d} is not a time zone") && page.contains("Nothing was saved"), "{page}");
    assert_eq!(browser.title(), "Preferences", "the form again, with the error");
    let error = browser.find("#time_zone-error");
    assert!(browser.script("return document.getElementById('time_zone-error').getBoundingClientRect().height > 0").as_bool().unwrap());
    assert!(browser.text_of(&error).contains("Mars/Olympus"));
    assert_eq!(browser.script("return document.getElementById('time_zone').getAttribute('aria-invalid')").as_str(), Some("true"));
    let prefs = setup.moat.store().get_preferences_blocking("alice@example.test");
    assert_eq!((prefs.time_zone.as_str(), prefs.digest), ("", None), "nothing saved: {prefs:?}");
    assert!(browser.selected(&browser.find("#digest option[value=\"weekly\"]")), "the form keeps what was chosen");

    // Asia/Tokyo (typed in any case) is saved by its name.
    let field = browser.find("#time_zone");
    browser.clear(&field);
    browser.type_into(&field, "asia/tokyo");
    browser.click(&browser.find("form[action=\"/mc/prefs\"] button[type=\"submit\"]"));
    browser.wait_text("Your preferences are saved");
    let prefs = setup.moat.store().get_preferences_blocking("alice@example.test");
    assert_eq!((prefs.time_zone.as_str(), prefs.digest), ("Asia/Tokyo", Some(moat::store::DigestFrequency::Weekly)), "{prefs:?}");
    browser.click(&browser.find("a[href=\"/mc/prefs\"]"));
    browser.wait_title("Preferences");
    assert_eq!(browser.script("return document.getElementById('time_zone').value").as_str(), Some("Asia/Tokyo"));

    // The Message Center list and view show Tokyo time, named.
    browser.click(&browser.find("nav a[href=\"/mc\"]"));
    browser.wait_title("Your quarantine");
    let list = browser.body_text();
    assert!(list.contains(&tokyo(first.date)) && !list.contains(&berlin(first.date)), "{list}");
    browser.click(&browser.find(&format!("a[href=\"/mc/m/{}\"]", first.id)));
    browser.wait_title("Held message");
    assert!(browser.body_text().contains(&tokyo(first.date)), "{}", browser.body_text());

    // The next digest too, text and HTML, and the page its View link opens.
    send_prize_spam(&setup.moat, "alice@example.test", "Second prize", "tz");
    let second = setup.moat.wait_quarantined(3).into_iter().find(|h| h.item.subject == "Second prize").unwrap().item;
    let Digest { text: digest, html, .. } = next_digest(&setup.moat, &setup.capture, "alice@example.test");
    assert!(digest.contains(&format!("Received: {}", tokyo(second.date))), "{digest}");
    assert!(html.contains(&tokyo(second.date)), "{html}");
    assert!(!digest.contains(" CET") && !html.contains(" CET"), "{digest}");
    browser.goto(&url_after(&digest, "View: "));
    assert!(browser.body_text().contains(&tokyo(second.date)), "{}", browser.body_text());

    // Bob never chose: the domain's zone in his digest, list and link page.
    let digest = next_digest(&setup.moat, &setup.capture, "bob@example.test").text;
    assert!(digest.contains(&berlin(bobs.date)), "{digest}");
    let bob = session_from_link(web, &url_after(&digest, "Your whole quarantine, preferences and allow/block lists: "));
    let list = http_with(web, "GET", "/mc", &[&format!("Cookie: {bob}")], "");
    assert!(list.body.contains(&berlin(bobs.date)) && !list.body.contains(" JST"), "{}", list.body);
    let view = http(web, "GET", &link_path(&url_after(&digest, "View: ")), "");
    assert!(view.body.contains(&berlin(bobs.date)), "{}", view.body);
}
