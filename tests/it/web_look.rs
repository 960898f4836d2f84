//! How the digest and the Message Center look in a real browser (headless Chromium through
//! ChromeDriver), against the real binary, with the subjects spam really carries: a
//! right-to-left override, a 500-character word, zero-width and control characters, combining
//! marks piled up, markup. At a phone's size (375×740) and a desktop's (1280×900): no sideways
//! scrolling, every link and button within the width, the deceptive characters shown as
//! escapes, and no serious or critical accessibility violation found by axe-core (run inside the
//! page; scripts/test installs it with npm).
//!
//! With `MOAT_SCREENSHOTS=DIR` the test also writes screenshots of the digest and the Message
//! Center at both sizes into DIR (`scripts/screenshots` runs it so, for the README).

use crate::support::browser::Browser;
use crate::support::*;
use std::fs;
use std::path::PathBuf;

const RULES: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims you won a prize\n\
    body LOCAL_PARCEL /parcel is waiting/i\nscore LOCAL_PARCEL 10.5\ndescribe LOCAL_PARCEL Fake parcel delivery notice\n\
    body LOCAL_INVOICE /open the invoice/i\nscore LOCAL_INVOICE 11\ndescribe LOCAL_INVOICE Asks you to open an unexpected invoice\n\
    body LOCAL_NEWSY /unsubscribe from our list/i\nscore LOCAL_NEWSY 10.1\ndescribe LOCAL_NEWSY Bulk mail from a list you may not know\n";

/// The sample mail: sender, subject, body (which decides the score).
fn samples() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("news@club.example", "Club newsletter: summer outing".into(), "Unsubscribe from our list at any time."),
        ("billing@remote.example", "Invoice \u{202E}gnp.exe".into(), "Please open the invoice attached."),
        (
            "parcel@remote.example",
            "Your D\u{0425}L parcel is wait\u{200B}ing\u{FEFF} for you".into(),
            "Your parcel is waiting at the depot.",
        ),
        ("lottery@remote.example", format!("WINNER{}", "!".repeat(500)), "You have won a prize."),
        ("z@remote.example", "Z\u{336}\u{336}\u{336}\u{336}\u{336}\u{336}algo \x1b[31mred\x07 alert".into(), "You have won twice."),
        ("markup@remote.example", "<b>Urgent</b> <script>alert(1)</script>".into(), "You have won again."),
        (NEWSLETTER_BOUNCE, "Your account news".into(), "Unsubscribe from our list at the bottom of this page."),
    ]
}

/// The envelope sender of the sample whose From field carries a hostile display name.
const NEWSLETTER_BOUNCE: &str = "bounce-8f3a91@mailer.example";

/// The hostile display name: a right-to-left override, then a 600-character word.
fn hostile_name() -> String {
    format!("PayPal \u{202E}ecivreS {}", "W".repeat(600))
}

/// The From field of a sample: the envelope sender, or for the newsletter a hostile name.
fn from_field(sender: &str) -> String {
    if sender == NEWSLETTER_BOUNCE { format!("\"{}\" <service@paypal.example>", hostile_name()) } else { format!("<{sender}>") }
}

/// The user, of a domain with a display name.
const USER: &str = "alice@isp.test";
const DOMAIN: &str = concat!(
    "\n[[domain]]\nname = \"isp.test\"\nrecipient_check = \"any\"\ndisplay_name = \"Example ISP\"\nlogo = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/support/logo.png\"\n"
);

/// The deceptive subject as it must show: the override as an escape, never live.
const SHOWN_OVERRIDE: &str = "Invoice [U+202E]gnp.exe";
const SHOWN_ZERO_WIDTH: &str = "wait[U+200B]ing[U+FEFF]";
/// A word mixing scripts: its Cyrillic look-alike letter (Х for X) shows as an escape.
const SHOWN_MIXED: &str = "D[U+0425]L parcel";

struct Setup {
    moat: Moat,
    capture: Capture,
    admin: u16,
    _rules: tempfile::TempDir,
}

/// moat with the sample mail held for [`USER`].
fn start_with_samples() -> Setup {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), RULES).unwrap();
    let capture = Capture::new();
    let admin = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display()))
            .append(DOMAIN)
            .append(&web_section(free_port()))
            .append(&format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n")),
    );
    let samples = samples();
    for (n, (sender, subject, body)) in samples.iter().enumerate() {
        let message = format!(
            "From: {}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
            from_field(sender)
        );
        let reply = moat.smtp_ehlo().send_mail(sender, &[USER], message.as_bytes());
        assert_eq!(reply.code, 250, "{reply}");
        moat.wait_quarantined(n + 1);
    }
    Setup { moat, capture, admin, _rules: rules }
}

/// The user's digest, sent through moat's relay: its text part and its HTML part.
fn digest(setup: &Setup) -> (String, String) {
    let config = setup.moat.config_path().to_str().unwrap().to_string();
    let run = setup.moat.cli(&["digest", "run", "--now", "--user", USER, "-c", &config]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mail = setup.capture.wait_for(1, DEADLINE).remove(0);
    let parsed = mail_parser::MessageParser::default().parse(&mail.data).expect("the digest parses");
    (parsed.body_text(0).expect("a text part").into_owned(), parsed.body_html(0).expect("an HTML part").into_owned())
}

/// Where axe-core's script is: `MOAT_AXE_CORE`, or where scripts/test installs it.
pub(crate) fn axe_core() -> String {
    let path = std::env::var_os("MOAT_AXE_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/axe-core/node_modules/axe-core/axe.min.js"));
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("axe-core is not at {} ({e}): run scripts/test, which installs it with npm", path.display()))
}

/// The page fits the window: no sideways scrolling, and every link and button lies within the
/// window's width (the skip link, off-screen until focused, aside).
pub(crate) fn assert_fits(browser: &Browser, what: &str) {
    let found = browser.script(
        "const width = window.innerWidth;
         const outside = [...document.querySelectorAll('a[href], button, input, select')]
            .filter(e => !e.classList.contains('skip') && e.type !== 'hidden')
            .map(e => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect()])
            .filter(([, r]) => r.left < 0 || r.right > width + 1 || r.width === 0)
            .map(([name, r]) => `${name}: ${Math.round(r.left)}..${Math.round(r.right)}`);
         return [document.documentElement.scrollWidth - width, outside, width];",
    );
    assert!(found[0].as_i64().is_some_and(|px| px <= 0), "{what}: sideways scrolling by {} px at width {}", found[0], found[2]);
    assert_eq!(found[1], serde_json::json!([]), "{what}: controls outside the window's width {}", found[2]);
}

/// No serious or critical accessibility violation in the page, by axe-core's rules.
pub(crate) fn assert_accessible(browser: &Browser, axe: &str, what: &str) {
    browser.script(&format!("{axe}\n;return true;"));
    let violations = browser.script_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {resultTypes: ['violations']})
           .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)))
           .catch(e => done([`axe failed: ${e}`]));",
    );
    assert_eq!(violations, serde_json::json!([]), "{what}: accessibility violations");
}

/// The deceptive text shows as escapes, nothing from the mail is live.
fn assert_shown_safely(browser: &Browser, what: &str) {
    let shown = browser.body_text();
    assert!(
        shown.contains(SHOWN_OVERRIDE) && shown.contains(SHOWN_ZERO_WIDTH) && shown.contains(SHOWN_MIXED),
        "{what}: the escapes are shown: {shown}"
    );
    assert!(!shown.contains('\u{202E}') && !shown.contains('\u{200B}'), "{what}: a live control character is shown");
    assert!(shown.contains("<b>Urgent</b> <script>alert(1)</script>"), "{what}: markup shows as text");
    assert_eq!(browser.alert(), None, "{what}: a script from the mail ran");
    assert!(shown.contains("PayPal [U+202E]ecivreS W"), "{what}: the From name's override is shown as an escape: {shown}");
}

/// A list (digest, Message Center) shows the hostile From name cut, with its address and the
/// envelope sender after it.
fn assert_author_cut(browser: &Browser, what: &str) {
    let shown = browser.body_text();
    assert!(!shown.contains(&"W".repeat(100)), "{what}: the 600-character name is cut");
    assert!(shown.contains("W… <service@paypal.example>"), "{what}: cut with an ellipsis, the address after it: {shown}");
    assert!(shown.contains(&format!("via {NEWSLETTER_BOUNCE}")), "{what}: the envelope sender as a detail");
}

pub(crate) fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("MOAT_SCREENSHOTS") {
        browser.screenshot(&PathBuf::from(dir).join(format!("{name}.png")));
    }
}

#[test]
fn hostile_subjects_break_no_layout_in_the_digest_or_the_message_center_on_a_phone_or_a_desktop() {
    let setup = start_with_samples();
    let (text_part, html_part) = digest(&setup);
    assert!(text_part.contains(SHOWN_OVERRIDE) && !text_part.contains('\u{202E}'), "{text_part}");
    let digest_file = temp_dir();
    let digest_path = digest_file.path().join("digest.html");
    fs::write(&digest_path, &html_part).unwrap();
    let center = url_after(&text_part, "Your whole quarantine, preferences and allow/block lists: ");
    let axe = axe_core();

    for (size, width, height) in [("phone", 375, 740), ("desktop", 1280, 900)] {
        let browser = Browser::start(width, height);
        browser.goto(&format!("file://{}", digest_path.display()));
        assert_fits(&browser, &format!("the digest ({size})"));
        assert_shown_safely(&browser, &format!("the digest ({size})"));
        assert_author_cut(&browser, &format!("the digest ({size})"));
        assert!(browser.body_text().starts_with("Example ISP"), "the digest's header names the domain");
        let links = browser.find_all("a[href]").len();
        assert_eq!(links, 3 * samples().len() + 2, "every message's three links and the two at the end");
        assert_accessible(&browser, &axe, &format!("the digest ({size})"));
        screenshot(&browser, &format!("digest-{size}"));

        browser.goto(&center);
        assert_eq!(browser.title(), "Your quarantine");
        assert_fits(&browser, &format!("the Message Center ({size})"));
        assert_shown_safely(&browser, &format!("the Message Center ({size})"));
        assert_author_cut(&browser, &format!("the Message Center ({size})"));
        assert!(browser.text_of(&browser.find("header")).contains("Example ISP"), "the header names the domain");
        let logo = browser.script(
            "const i = document.querySelector('header img.logo'); return i && [i.complete, i.naturalWidth, i.getAttribute('src')];",
        );
        assert_eq!(logo, serde_json::json!([true, 64, "/logo/isp.test"]), "the domain's logo, served by moat, shows in the header");
        assert!(browser.find_all("button[value=release]").len() == 1 && browser.find_all("input[type=checkbox]").len() == samples().len());
        assert_accessible(&browser, &axe, &format!("the Message Center ({size})"));
        screenshot(&browser, &format!("center-{size}"));

        let held = setup.moat.quarantine();
        let long = held.iter().find(|h| h.item.subject.starts_with("WINNER")).expect("the long subject").item.id.clone();
        browser.goto(&center.replace(&link_path(&center), &format!("/mc/m/{long}")));
        browser.wait_title("Held message");
        assert_fits(&browser, &format!("the view page ({size})"));
        assert!(browser.body_text().contains(&format!("WINNER{}", "!".repeat(400))), "the view page shows the whole subject, wrapped");
        assert_accessible(&browser, &axe, &format!("the view page ({size})"));

        // The newsletter's view page: its From name as kept (the first 200 characters), wrapped,
        // the override an escape.
        let newsletter = held.iter().find(|h| h.item.sender == NEWSLETTER_BOUNCE).expect("the newsletter").item.id.clone();
        browser.goto(&center.replace(&link_path(&center), &format!("/mc/m/{newsletter}")));
        browser.wait_title("Held message");
        assert_fits(&browser, &format!("the newsletter's view page ({size})"));
        let shown = browser.body_text();
        let kept = format!("PayPal [U+202E]ecivreS {} <service@paypal.example>", "W".repeat(moat::headers::MAX_AUTHOR_NAME - 16));
        assert!(shown.contains(&kept) && !shown.contains('\u{202E}'), "{shown}");

        browser.goto(&center.replace(&link_path(&center), "/mc/prefs"));
        browser.wait_title("Preferences");
        assert_fits(&browser, &format!("the preferences ({size})"));
        assert_accessible(&browser, &axe, &format!("the preferences ({size})"));

        // The admin console's quarantine list: metadata of every user's items, as cards on a phone.
        let token = fs::read_to_string(setup.moat.state_dir().join("admin.token")).unwrap();
        browser.goto(&format!("http://127.0.0.1:{}/login", setup.admin));
        browser.type_into(&browser.find("#token"), token.trim());
        browser.click(&browser.find("button[type=submit]"));
        browser.wait_text("Rule set in force");
        browser.goto(&format!("http://127.0.0.1:{}/quarantine", setup.admin));
        assert_eq!(browser.find_all("input[name=id]").len(), samples().len());
        assert_fits(&browser, &format!("the admin console ({size})"));
        assert_accessible(&browser, &axe, &format!("the admin console ({size})"));
    }
}
