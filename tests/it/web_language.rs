//! Languages, end to end through the real binary: a user of a domain with `language = "de"`
//! gets a German digest (subject, text part, HTML part), German link pages and a German Message
//! Center (in headless Chromium, checked with axe-core), and a German login email; once they
//! choose English in their preferences, the pages and their next digest are English. A language
//! moat does not ship is refused in the form with an error next to the field, and nothing on
//! the form is saved. The sign-in page, which cannot tell whose it is, follows the browser.

use crate::support::browser::Browser;
use crate::support::*;
use crate::web_look::{assert_accessible, assert_fits, axe_core, screenshot};
use std::fs;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims you won a prize\n";
const ANNA: &str = "anna@de.test";
const CENTER_DE: &str = "Ihre ganze Quarantäne, Einstellungen sowie Zulassungs- und Sperrlisten: ";
const CENTER_EN: &str = "Your whole quarantine, preferences and allow/block lists: ";

/// The item's plain-language sentence, in English and (SpamAssassin's `lang` prefix) German.
const REASONS: &str = "reason LOCAL_* Looks like a lottery scam.\nlang de reason LOCAL_PRIZE Sieht nach einem Lotteriebetrug aus.\n";

struct Setup {
    moat: Moat,
    capture: Capture,
    web: u16,
    _rules: tempfile::TempDir,
}

/// moat with a German domain (`de.test`) beside the harness's English `example.test`.
fn start() -> Setup {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), format!("{HOLD_RULE}{REASONS}")).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display()))
            .append("\n[[domain]]\nname = \"de.test\"\nrecipient_check = \"any\"\ndisplay_name = \"Beispiel GmbH\"\nlanguage = \"de\"\n")
            .append(&web_section(web))
            .append("\n[digest]\ntimezone = \"Europe/Berlin\"\n"),
    );
    Setup { moat, capture, web, _rules: rules }
}

/// Words of the English catalog that must not show on a German page or in a German email (each
/// is in the English version of the same page or email).
const ENGLISH: &[&str] = &["Release", "Subject", "Received", "Preferences", "Sign out", "digest", "message", "Score"];

fn assert_german(what: &str, shown: &str) {
    for english in ENGLISH {
        assert!(!shown.contains(english), "{what}: {english:?} is English: {shown}");
    }
    assert!(!shown.contains('{') && !shown.contains('}'), "{what}: a placeholder left unfilled: {shown}");
}

#[test]
fn a_german_domains_user_reads_moat_in_german_until_they_choose_english_and_a_language_not_shipped_is_refused() {
    let setup = start();
    send_prize_spam(&setup.moat, ANNA, "Gewinnspiel", "lang");
    let held = setup.moat.wait_quarantined(1).remove(0).item;
    let axe = axe_core();

    // The digest: subject, text part and HTML part in German, the score with a decimal comma.
    let Digest { subject, text: digest, html } = next_digest(&setup.moat, &setup.capture, ANNA);
    assert_eq!(subject, "Quarantäne-Übersicht: 1 Nachricht für Sie zurückgehalten");
    assert!(digest.starts_with("Quarantäne-Übersicht für anna@de.test"), "{digest}");
    assert!(
        digest.contains("wurde 1 Nachricht für Sie zurückgehalten. Zurückgehaltene Nachrichten werden nach 30 Tagen gelöscht."),
        "{digest}"
    );
    assert!(digest.contains("1. Betreff:       Gewinnspiel"), "the labels line up: {digest}");
    let berlin = moat::clock::minute_in(held.date, "Europe/Berlin");
    assert!(digest.contains(&format!("   Empfangen:     {berlin}")), "{digest}");
    assert!(digest.contains("   Spamwert 12,0: Claims you won a prize"), "the rule's own words stay the admin's: {digest}");
    assert!(digest.contains("Sieht nach einem Lotteriebetrug aus.") && !digest.contains("lottery scam"), "the German reason: {digest}");
    assert!(digest.contains("\nDiese Übersichten abbestellen: http"), "the opt-out link: {digest}");
    assert_german("digest text", &digest.replace("Claims you won a prize", ""));
    assert!(
        html.contains("<html lang=\"de\">") && html.contains(">Freigeben</a>") && html.contains("Ihr Nachrichtencenter öffnen</a>"),
        "{html}"
    );
    assert!(
        html.contains("Beispiel GmbH <span") && html.contains("E-Mail-Filter") && html.contains("Diese Übersichten abbestellen</a>"),
        "{html}"
    );
    assert!(!html.contains("<img"), "no tracking pixel: {html}");
    assert_german("digest HTML", &html.replace("Claims you won a prize", ""));

    // The page behind the digest's View link.
    let view = http(setup.web, "GET", &link_path(&url_after(&digest, "   Ansehen: ")), "");
    assert_eq!(view.status, 200, "{view:?}");
    assert!(view.body.contains("<html lang=\"de\">") && view.body.contains("<h1>Zurückgehaltene Nachricht</h1>"), "{}", view.body);
    assert!(view.body.contains(">Freigeben</button>") && view.body.contains("(Spamwert 12,0)"), "{}", view.body);

    // The digest's HTML part and the Message Center from the digest's link, on a phone: German,
    // fitting the width, accessible (axe-core).
    let browser = Browser::start(375, 740);
    let dir = temp_dir();
    let digest_path = dir.path().join("digest.html");
    fs::write(&digest_path, &html).unwrap();
    browser.goto(&format!("file://{}", digest_path.display()));
    assert!(
        browser.body_text().starts_with("Beispiel GmbH E-Mail-Filter\nQuarantäne-Übersicht für anna@de.test"),
        "{}",
        browser.body_text()
    );
    assert_fits(&browser, "the German digest on a phone");
    assert_accessible(&browser, &axe, "the German digest");
    screenshot(&browser, "digest-de-phone");
    browser.goto(&url_after(&digest, CENTER_DE));
    browser.wait_title("Ihre Quarantäne");
    assert_eq!(browser.script("return document.documentElement.lang").as_str(), Some("de"));
    let list = browser.body_text();
    for german in ["1 Nachricht.", "Kein Spam: freigeben", "Angemeldet als anna@de.test", "Abmelden", &berlin] {
        assert!(list.contains(german), "{german:?} in {list}");
    }
    assert_eq!(browser.script("return document.querySelector('a.skip').textContent").as_str(), Some("Zum Inhalt springen"));
    assert_german("Message Center list", &list.replace("Claims you won a prize", ""));
    assert!(list.contains("Sieht nach einem Lotteriebetrug aus."), "the German reason: {list}");
    assert_fits(&browser, "the German list on a phone");
    assert_accessible(&browser, &axe, "the German list");
    screenshot(&browser, "center-de-phone");

    browser.click(&browser.find("nav a[href=\"/mc/prefs\"]"));
    browser.wait_title("Einstellungen");
    let prefs = browser.body_text();
    assert_german("preferences", &prefs);
    assert!(browser.selected(&browser.find("#language option[value=\"\"]")), "the domain's language until one is chosen");
    assert_eq!(browser.text_of(&browser.find("#language option[value=\"\"]")), "Wie Ihre Domain (Deutsch)");
    assert_eq!(browser.text_of(&browser.find("#language option[value=\"en\"]")), "English");
    assert_accessible(&browser, &axe, "the German preferences");

    // A language moat does not ship (sent by a tampered form) is refused next to the field, in
    // German, and nothing on the form is saved.
    browser.click(&browser.find("#digest option[value=\"weekly\"]"));
    browser.script("const s = document.getElementById('language'); s.add(new Option('Klingon', 'tlh')); s.value = 'tlh'; return true;");
    browser.click(&browser.find("form[action=\"/mc/prefs\"] button[type=\"submit\"]"));
    let page = browser.wait_text("keine der angebotenen Sprachen");
    assert!(
        page.contains(
            "\u{201e}tlh\u{201c} ist keine der angebotenen Sprachen. Wählen Sie eine aus der Liste. Es wurde nichts gespeichert."
        ),
        "{page}"
    );
    assert_eq!(browser.title(), "Einstellungen", "the form again, with the error");
    assert_eq!(browser.script("return document.getElementById('language').getAttribute('aria-invalid')").as_str(), Some("true"));
    assert!(browser.script("return document.getElementById('language-error').getBoundingClientRect().height > 0").as_bool().unwrap());
    assert!(browser.selected(&browser.find("#digest option[value=\"weekly\"]")), "the form keeps what was chosen");
    let stored = setup.moat.store().get_preferences_blocking(ANNA);
    assert_eq!((stored.language.as_str(), stored.digest), ("", None), "nothing saved: {stored:?}");
    assert_accessible(&browser, &axe, "the refused form");

    // The same over HTTP with markup as the value: 400, the value escaped in the error.
    let cookie = session_from_link(setup.web, &url_after(&digest, CENTER_DE));
    let csrf = csrf_of(&http_with(setup.web, "GET", "/mc/prefs", &[&format!("Cookie: {cookie}")], "").body);
    let refused = http_with(
        setup.web,
        "POST",
        "/mc/prefs",
        &[&format!("Cookie: {cookie}")],
        &format!("csrf={csrf}&emails=on&language=%3Cscript%3Ex%3C%2Fscript%3E"),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.contains("\u{201e}&lt;script&gt;x&lt;/script&gt;\u{201c} ist keine") && !refused.body.contains("<script"),
        "{}",
        refused.body
    );
    assert_eq!(setup.moat.store().get_preferences_blocking(ANNA).language, "");

    // English, chosen: saved, and the answer is already in English.
    browser.click(&browser.find("#language option[value=\"en\"]"));
    browser.click(&browser.find("form[action=\"/mc/prefs\"] button[type=\"submit\"]"));
    browser.wait_text("Your preferences are saved.");
    assert_eq!(browser.script("return document.documentElement.lang").as_str(), Some("en"));
    let stored = setup.moat.store().get_preferences_blocking(ANNA);
    assert_eq!((stored.language.as_str(), stored.digest), ("en", Some(moat::store::DigestFrequency::Weekly)), "{stored:?}");
    browser.click(&browser.find("nav a[href=\"/mc\"]"));
    browser.wait_title("Your quarantine");
    let list = browser.body_text();
    assert!(list.contains("1 message.") && list.contains("Not spam: release") && list.contains("Signed in as anna@de.test"), "{list}");
    assert!(!list.contains("Nachricht") && !list.contains("Abmelden") && list.contains("Looks like a lottery scam."), "{list}");
    assert_accessible(&browser, &axe, "the English list");

    // Their next digest is English too; the domain still names itself.
    send_prize_spam(&setup.moat, ANNA, "Second prize", "lang");
    setup.moat.wait_quarantined(2);
    let Digest { subject, text: digest, html } = next_digest(&setup.moat, &setup.capture, ANNA);
    assert_eq!(subject, "Quarantine digest: 1 message held for you");
    assert!(digest.starts_with("Quarantine digest for anna@de.test") && digest.contains("1. Subject:  Second prize"), "{digest}");
    assert!(digest.contains("   Score 12.0: Claims you won a prize") && digest.contains(CENTER_EN), "{digest}");
    assert!(digest.contains("Looks like a lottery scam.") && !digest.contains("Lotteriebetrug"), "the reason without a language: {digest}");
    assert!(html.contains("<html lang=\"en\">") && html.contains(">Release</a>") && html.contains("Beispiel GmbH"), "{html}");
    assert!(!digest.contains("Übersicht") && !html.contains("Freigeben"), "{digest}\n{html}");
}

#[test]
fn the_login_email_follows_the_users_language_and_the_sign_in_page_the_browsers() {
    let setup = start();
    // The sign-in page cannot tell whose it is: the browser's language.
    let german = http_with(setup.web, "GET", "/login", &["Accept-Language: de-DE,de;q=0.9,en;q=0.5"], "");
    assert!(german.body.contains("<html lang=\"de\">") && german.body.contains(">Link anfordern</button>"), "{}", german.body);
    assert_german("sign-in page", german.body.split_once("</style>").map_or("", |(_, page)| page));
    let english = http_with(setup.web, "GET", "/login", &["Accept-Language: fr-FR, en;q=0.8"], "");
    assert!(english.body.contains("<html lang=\"en\">") && english.body.contains(">Send me a link</button>"), "{}", english.body);

    // The email is in the user's language, whatever the browser's: their domain's (German) for
    // bert, English for example.test's alice.
    let asked = http_with(setup.web, "POST", "/login", &["Accept-Language: en"], "address=bert%40de.test");
    assert!(asked.body.contains("Check your mail"), "{}", asked.body);
    let email = setup.capture.wait_for(1, DEADLINE).remove(0);
    let parsed = mail_parser::MessageParser::default().parse(&email.data).expect("the email parses");
    assert_eq!(parsed.subject(), Some("Ihr Anmeldelink für die Quarantäne"));
    let body = parsed.body_text(0).expect("a text part").into_owned();
    assert!(body.contains("Hier öffnen (der Link ist 60 Minuten lang gültig):"), "{body}");
    assert!(body.contains("Keine E-Mails mehr zu Ihrer Quarantäne erhalten: http"), "the opt-out link: {body}");
    assert_german("login email", &body);
    let opened = http(setup.web, "GET", &link_path(&url_after(&body, "gültig):")), "");
    assert_eq!(opened.status, 303, "the link signs bert in: {opened:?}");

    http(setup.web, "POST", "/login", "address=alice%40example.test");
    let email = setup.capture.wait_for(2, DEADLINE).remove(1);
    let parsed = mail_parser::MessageParser::default().parse(&email.data).expect("the email parses");
    assert_eq!(parsed.subject(), Some("Your quarantine login link"));
}
