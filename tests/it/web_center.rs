//! The Message Center and the admin console/API over HTTP, against the real binary: a session
//! from the link in a real digest, the list (own items only, search, filters), the safe view,
//! actions with CSRF, preferences, the login-link form; and the security promises: hostile
//! subjects and HTML inert everywhere, user A cannot see or touch user B's items, POSTs without
//! the CSRF token or from another site are refused, tampered or foreign sessions are refused, the
//! admin API refuses requests without the token, admin actions are audited and a broken rule
//! file is reported with file:line and not applied.

use crate::support::*;
use moat::html::LIST_TEXT;
use std::fs;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims you won a prize\n";
const HOSTILE_SUBJECT: &str = "<script>alert('subject')</script><img src=x onerror=alert(1)>";

struct Setup {
    moat: Moat,
    capture: Capture,
    web: u16,
    admin: u16,
    rules: tempfile::TempDir,
}

fn start() -> Setup {
    start_with("", "")
}

/// [`start`] with more `[web]` keys and more configuration after the `[admin]` section.
fn start_with(web_keys: &str, extra: &str) -> Setup {
    start_configured(|config| config, web_keys, extra)
}

/// [`start_with`], the configuration first passed through `configure`.
fn start_configured(configure: impl FnOnce(MoatConfig) -> MoatConfig, web_keys: &str, extra: &str) -> Setup {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let (web, admin) = (free_port(), free_port());
    let moat = Moat::start(
        configure(MoatConfig::new(capture.port))
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display()))
            .append(&web_section(web))
            .append(web_keys)
            .append(&format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"))
            .append(extra),
    );
    Setup { moat, capture, web, admin, rules }
}

/// Holds a prize spam for `to`; returns the marker in its body.
fn hold(setup: &Setup, to: &str, subject: &str, html: bool) -> String {
    let id = marker("mc");
    let message = if html {
        format!(
            "From: <lottery@remote.example>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nYou have won {id}\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n<p>You have won <b>{id}</b></p><script>document.title='pwned'</script>\
             <img src=\"http://127.0.0.1:9/track.gif\" onerror=\"document.title='pwned'\"><a href=\"javascript:alert(2)\">claim</a>\r\n--b--\r\n"
        )
    } else {
        format!("From: <lottery@remote.example>\r\nSubject: {subject}\r\n\r\nYou have won {id}\r\n")
    };
    let reply = setup.moat.smtp_ehlo().send_mail("lottery@remote.example", &[to], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    id
}

/// The Message Center link of `user`'s digest, sent through moat to the capture.
fn digest_center_link(setup: &Setup, user: &str) -> String {
    let before = setup.capture.messages().len();
    let config = setup.moat.config_path().to_str().unwrap().to_string();
    let run = setup.moat.cli(&["digest", "run", "--now", "--user", user, "-c", &config]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let digest = setup.capture.wait_for(before + 1, DEADLINE).remove(before);
    url_after(&text_part(&digest.data), "Your whole quarantine, preferences and allow/block lists: ")
}

fn get(setup: &Setup, cookie: &str, path: &str) -> HttpResponse {
    http_with(setup.web, "GET", path, &[&format!("Cookie: {cookie}")], "")
}

fn post(setup: &Setup, cookie: &str, path: &str, body: &str) -> HttpResponse {
    http_with(setup.web, "POST", path, &[&format!("Cookie: {cookie}")], body)
}

fn state_of(setup: &Setup, id: &str) -> String {
    setup.moat.quarantine().into_iter().find(|h| h.item.id == id).map(|h| h.item.state.as_str().to_string()).unwrap_or_default()
}

#[test]
fn message_center_lists_views_and_acts_for_its_own_user_only() {
    let setup = start();
    let alice_marker = hold(&setup, "alice@example.test", HOSTILE_SUBJECT, true);
    let plain_marker = hold(&setup, "alice@example.test", "Quiet offer", false);
    let bob_marker = hold(&setup, "bob@example.test", "Bob's prize", false);
    let block_marker = hold(&setup, "alice@example.test", "Block me", false);
    let delete_marker = hold(&setup, "alice@example.test", "Delete me", false);
    let held = setup.moat.wait_quarantined(5);
    let id_of = |m: &str| held.iter().find(|h| String::from_utf8_lossy(&h.contents).contains(m)).unwrap().item.id.clone();
    let (alice_html, alice_plain, bob_item) = (id_of(&alice_marker), id_of(&plain_marker), id_of(&bob_marker));
    let (alice_block, alice_delete) = (id_of(&block_marker), id_of(&delete_marker));

    // A session from the digest's link; the list shows Alice's items only, escaped.
    let alice = session_from_link(setup.web, &digest_center_link(&setup, "alice@example.test"));
    let list = get(&setup, &alice, "/mc");
    assert_eq!(list.status, 200, "{list:?}");
    assert!(list.header("Content-Security-Policy").is_some_and(|csp| csp.contains("default-src 'none'") && !csp.contains("script-src")));
    assert!(list.body.contains(&alice_html) && list.body.contains(&alice_plain), "{}", list.body);
    assert!(!list.body.contains(&bob_item) && !list.body.contains("Bob&#39;s prize"), "another user's item is not listed");
    assert!(list.body.contains("&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;"), "the subject is shown escaped");
    assert!(!list.body.contains("<script") && !list.body.contains("<img"), "no markup from the mail: {}", list.body);
    assert!(list.body.contains("Claims you won a prize"), "the reason is explained");
    // Search and filters.
    let found = get(&setup, &alice, "/mc?q=quiet");
    assert!(found.body.contains(&alice_plain) && !found.body.contains(&alice_html), "{}", found.body);
    assert!(get(&setup, &alice, "/mc?category=virus").body.contains("0 messages."));

    // The view: text, sanitised HTML in a sandboxed frame, actions.
    let view = get(&setup, &alice, &format!("/mc/m/{alice_html}"));
    assert_eq!(view.status, 200);
    assert!(view.body.contains(&format!("You have won {alice_marker}")), "{}", view.body);
    assert!(view.body.contains("<iframe sandbox=\"\""), "{}", view.body);
    let frame = get(&setup, &alice, &format!("/mc/m/{alice_html}/html"));
    assert_eq!(frame.status, 200);
    assert!(frame.header("Content-Security-Policy").is_some_and(|csp| csp.contains("sandbox") && csp.contains("default-src 'none'")));
    assert!(frame.body.contains(&format!("<b>{alice_marker}</b>")), "formatting kept: {}", frame.body);
    for banned in ["<script", "pwned", "<img", "track.gif", "javascript:", "href"] {
        assert!(!frame.body.contains(banned), "{banned} in the sanitised HTML: {}", frame.body);
    }

    // Bob's item through Alice's session: not found, not changed.
    assert_eq!(get(&setup, &alice, &format!("/mc/m/{bob_item}")).status, 404);
    assert_eq!(get(&setup, &alice, &format!("/mc/m/{bob_item}/html")).status, 404);
    let csrf = csrf_of(&list.body);
    let swapped = post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=release&id={bob_item}"));
    assert!(swapped.body.contains("1 message could not be changed"), "{}", swapped.body);
    assert_eq!(state_of(&setup, &bob_item), "held");

    // POSTs without the CSRF token, with another's, or from another site change nothing.
    assert_eq!(post(&setup, &alice, "/mc/act", &format!("action=release&id={alice_plain}")).status, 403);
    assert_eq!(post(&setup, &alice, "/mc/act", &format!("csrf=forged&action=release&id={alice_plain}")).status, 403);
    let cross = http_with(
        setup.web,
        "POST",
        "/mc/act",
        &[&format!("Cookie: {alice}"), "Origin: https://evil.example"],
        &format!("csrf={csrf}&action=release&id={alice_plain}"),
    );
    assert_eq!(cross.status, 403);
    assert_eq!(state_of(&setup, &alice_plain), "held");
    // A tampered or missing session is sent to the login page.
    let tampered = format!("{}x", alice);
    assert_eq!(get(&setup, &tampered, "/mc").status, 303);
    assert_eq!(http(setup.web, "GET", "/mc", "").header("Location").as_deref(), Some("/login"));
    assert_eq!(post(&setup, &tampered, "/mc/act", &format!("csrf={csrf}&action=release&id={alice_plain}")).status, 303);

    // Bulk release of both of Alice's items: the downstream gets the originals.
    let before = setup.capture.messages().len();
    let done = post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=release&id={alice_html}&id={alice_plain}"));
    assert!(done.body.contains("2 messages released"), "{}", done.body);
    let mails = setup.capture.wait_for(before + 2, DEADLINE);
    for id in [&alice_html, &alice_plain] {
        let original = held.iter().find(|h| &h.item.id == id).unwrap();
        assert!(mails.iter().any(|m| m.data == original.contents), "released byte for byte");
        assert_eq!(state_of(&setup, id), "released");
    }
    let again = post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=release&id={alice_html}"));
    assert!(again.body.contains("could not be changed"), "a second release does nothing");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(setup.capture.messages().len(), before + 2, "released once");

    // Block the sender of one (it is deleted, the sender goes on the block list), delete another.
    assert!(
        post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=block&id={alice_block}"))
            .body
            .contains("1 message deleted (sender blocked)")
    );
    assert_eq!(state_of(&setup, &alice_block), "deleted");
    let blocked = setup.moat.store().get_preferences_blocking("alice@example.test").block;
    assert_eq!(blocked.iter().map(ToString::to_string).collect::<Vec<_>>(), ["lottery@remote.example"]);
    assert!(post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=delete&id={alice_delete}")).body.contains("1 message deleted."));
    assert_eq!(state_of(&setup, &alice_delete), "deleted");
    assert_eq!(get(&setup, &alice, &format!("/mc/m/{alice_delete}")).status, 404, "a deleted message cannot be viewed");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(setup.capture.messages().len(), before + 2, "blocked and deleted messages are not delivered");
    post(&setup, &alice, "/mc/lists", &format!("csrf={csrf}&op=remove&kind=block&entry=lottery%40remote.example"));

    // Preferences: opt out, weekly, a block entry; then the entry removed.
    let prefs = get(&setup, &alice, "/mc/prefs");
    assert_eq!(prefs.status, 200);
    let saved = post(&setup, &alice, "/mc/prefs", &format!("csrf={csrf}&digest=weekly&filtering="));
    assert!(saved.body.contains("saved"), "{}", saved.body);
    let stored = setup.moat.store().get_preferences_blocking("alice@example.test");
    assert!(stored.opt_out, "the unchecked box opts out");
    assert_eq!(stored.digest, Some(moat::store::DigestFrequency::Weekly));
    assert!(post(&setup, &alice, "/mc/lists", &format!("csrf={csrf}&op=add&kind=block&entry=%40spam.example")).body.contains("changed"));
    assert_eq!(setup.moat.store().get_preferences_blocking("alice@example.test").block.len(), 1);
    assert!(get(&setup, &alice, "/mc/prefs").body.contains("@spam.example"));
    assert_eq!(post(&setup, &alice, "/mc/lists", &format!("csrf={csrf}&op=add&kind=block&entry=%3Cscript%3E")).status, 400);
    post(&setup, &alice, "/mc/lists", &format!("csrf={csrf}&op=remove&kind=block&entry=%40spam.example"));
    assert!(setup.moat.store().get_preferences_blocking("alice@example.test").block.is_empty());

    // Bob's session sees his item and none of Alice's.
    let bob = session_from_link(setup.web, &digest_center_link(&setup, "bob@example.test"));
    let bob_list = get(&setup, &bob, "/mc?state=all");
    assert!(bob_list.body.contains(&bob_item) && !bob_list.body.contains(&alice_html), "{}", bob_list.body);
    // Signing out ends the session in the browser.
    let out = post(&setup, &bob, "/mc/logout", &format!("csrf={}", csrf_of(&bob_list.body)));
    assert!(out.header("Set-Cookie").is_some_and(|c| c.contains("Max-Age=0")));
    // ... and on the server: the old cookie, kept or copied, no longer opens anything.
    let after = get(&setup, &bob, "/mc");
    assert_eq!((after.status, after.header("Location").as_deref()), (303, Some("/login")), "a signed-out session is refused");
    assert_eq!(post(&setup, &bob, "/mc/act", &format!("csrf={}&action=release&id={bob_item}", csrf_of(&bob_list.body))).status, 303);

    for marker in [&alice_marker, &plain_marker, &bob_marker, &block_marker, &delete_marker] {
        setup.moat.assert_log_lacks(&format!("You have won {marker}"));
    }
}

#[test]
fn a_domain_logo_is_served_by_moat_as_the_image_it_is_and_nothing_else() {
    let dir = temp_dir();
    let logo = dir.path().join("logo.png");
    fs::write(&logo, include_bytes!("support/logo.png")).unwrap();
    let domain = format!("\n[[domain]]\nname = \"logo.test\"\nrecipient_check = \"any\"\nlogo = \"{}\"\n", logo.display());
    let setup = start_with("", &domain);
    let served = http(setup.web, "GET", "/logo/LOGO.test", "");
    assert_eq!(served.status, 200, "{served:?}");
    assert_eq!(served.header("Content-Type").as_deref(), Some("image/png"));
    assert_eq!(served.header("X-Content-Type-Options").as_deref(), Some("nosniff"));
    assert_eq!(served.header("Content-Security-Policy").as_deref(), Some("default-src 'none'"));
    assert!(served.body.contains("PNG") && served.body.contains("IHDR"), "the file's bytes");
    assert_eq!(http(setup.web, "GET", "/logo/example.test", "").status, 404, "a domain without a logo");
    assert_eq!(http(setup.web, "GET", "/logo/elsewhere.test", "").status, 404, "not our domain");
    fs::write(&logo, "<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>").unwrap();
    assert_eq!(http(setup.web, "GET", "/logo/logo.test", "").status, 404, "a file replaced by something else is not served");
    let login = http(setup.web, "GET", "/login", "");
    assert!(
        login.header("Content-Security-Policy").is_some_and(|csp| csp.contains("img-src 'self'") && csp.contains("default-src 'none'"))
    );
}

#[test]
fn the_login_form_emails_a_working_link_to_our_users_only() {
    let setup = start();
    let form = http(setup.web, "GET", "/login", "");
    assert!(form.body.contains("<label for=\"address\">"), "{}", form.body);
    let sent = http(setup.web, "POST", "/login", "address=Alice%40example.test");
    assert!(sent.body.contains("on its way"), "{}", sent.body);
    let email = setup.capture.wait_for(1, DEADLINE).remove(0);
    assert_eq!((email.sender.as_str(), email.recipients.as_slice()), ("", ["alice@example.test".to_string()].as_slice()));
    let parsed = mail_parser::MessageParser::default().parse(&email.data).unwrap();
    assert!(parsed.header_raw("List-Unsubscribe").is_some(), "every email carries an opt-out");
    let link = url_after(&text_part(&email.data), "Open it here (the link works for 60 minutes):");
    let cookie = session_from_link(setup.web, &link);
    assert!(get(&setup, &cookie, "/mc").body.contains("Signed in as alice@example.test"));
    assert_eq!(http_with(setup.web, "POST", "/login", &["Sec-Fetch-Site: cross-site"], "address=alice%40example.test").status, 403);
}

/// Asks for a login link for `address`; the answer never says whether one was sent.
fn ask_login(web: u16, address: &str) {
    let answer = http(web, "POST", "/login", &format!("address={}", address.replace('@', "%40")));
    assert!(answer.body.contains("on its way"), "the same answer for every address: {}", answer.body);
}

/// Waits for the login log lines of `n` requests and returns their outcomes in order.
fn login_outcomes(moat: &Moat, n: usize) -> Vec<String> {
    wait_until("login log lines", DEADLINE, || {
        let outcomes: Vec<String> = moat
            .log()
            .lines()
            .filter(|l| l.contains("login_link") && l.contains("client_ip="))
            .filter_map(|l| l.split("outcome=").nth(1).map(|o| o.split_whitespace().next().unwrap_or("").trim_matches('"').to_string()))
            .collect();
        (outcomes.len() >= n).then_some(outcomes)
    })
}

#[test]
fn login_links_cannot_mail_bomb_users_unknown_addresses_or_those_who_opted_out() {
    let Setup { moat, capture, web, rules: _rules, .. } = start_with("login_requests_per_client = 13\nlogin_emails_per_hour = 6\n", "");
    // Our user gets one; then the user opts out with the login email's own opt-out link.
    ask_login(web, "optout@example.test");
    let first = capture.wait_for(1, DEADLINE).remove(0);
    let unsubscribe = url_after(&text_part(&first.data), "To stop emails about your quarantine: ");
    assert_eq!(http(web, "POST", &link_path(&unsubscribe), "List-Unsubscribe=One-Click").status, 200);
    assert!(moat.store().get_preferences_blocking("optout@example.test").opt_out);
    ask_login(web, "optout@example.test");
    // Not ours, and ours but unknown to the recipient check (the list domain knows one user).
    ask_login(web, "victim@elsewhere.example");
    ask_login(web, &format!("nobody@{LIST_DOMAIN}"));
    ask_login(web, LIST_USER);
    // One address asking again and again: three per hour.
    for _ in 0..4 {
        ask_login(web, "alice@example.test");
    }
    // Many addresses from one client: the global hourly bound (6 emails), then the client's (13 requests).
    for n in 0..4 {
        ask_login(web, &format!("user{n}@example.test"));
    }
    ask_login(web, "last@example.test");
    let outcomes = login_outcomes(&moat, 14);
    assert_eq!(
        outcomes,
        [
            "sent",
            "opted_out",
            "not_a_recipient",
            "not_a_recipient",
            "sent",
            "sent",
            "sent",
            "sent",
            "address_rate_limited",
            "sent",
            "global_rate_limited",
            "global_rate_limited",
            "global_rate_limited",
            "client_rate_limited"
        ]
    );
    std::thread::sleep(std::time::Duration::from_millis(800));
    let mut recipients: Vec<String> = capture.messages().into_iter().flat_map(|m| m.recipients).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["alice@example.test", "alice@example.test", "alice@example.test", LIST_USER, "optout@example.test", "user0@example.test"]
    );
    assert!(moat.log().contains("client_ip=127.0.0.1"), "refusals are logged with the client's address");
}

#[test]
fn users_of_a_domain_without_opt_out_cannot_allow_everyone() {
    let Setup { moat, capture, web, rules: _rules, .. } =
        start_with("", "\n[[lists.domain]]\nname = \"example.test\"\nuser_opt_out = false\n");
    ask_login(web, "alice@example.test");
    let email = capture.wait_for(1, DEADLINE).remove(0);
    let alice = session_from_link(web, &url_after(&text_part(&email.data), "Open it here (the link works for 60 minutes):"));
    let csrf = csrf_of(&http_with(web, "GET", "/mc/prefs", &[&format!("Cookie: {alice}")], "").body);
    let add = |entry: &str| {
        http_with(web, "POST", "/mc/lists", &[&format!("Cookie: {alice}")], &format!("csrf={csrf}&op=add&kind=allow&entry={entry}"))
    };

    // Networks and subdomain patterns are refused with a reason in the page; nothing is stored.
    for entry in ["0.0.0.0%2F0", "%3A%3A%2F0", "203.0.113.5", ".remote.example", "*.remote.example"] {
        let refused = add(entry);
        assert_eq!(refused.status, 400, "{entry}: {}", refused.body);
        assert!(refused.body.contains("one sender address or one domain"), "{}", refused.body);
    }
    assert!(moat.store().get_preferences_blocking("alice@example.test").allow.is_empty());

    // Entries that reached the store anyway (before this check existed) do not let spam through.
    let store = moat.store();
    for entry in ["0.0.0.0/0", "::/0", ".remote.example"] {
        store.add_list_entry_blocking("alice@example.test", moat::store::ListKind::Allow, entry);
    }
    moat.sighup();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let spam = "From: <prize@remote.example>\r\nSubject: prize\r\n\r\nYou have won a car\r\n";
    assert_eq!(moat.smtp_ehlo().send_mail("prize@remote.example", &["alice@example.test"], spam.as_bytes()).code, 250);
    let held = moat.wait_quarantined(1);
    assert!(held[0].item.symbols.iter().all(|s| s.name != "ALLOW_LIST"), "{:?}", held[0].item.symbols);

    // One sender is still the user's to allow.
    assert!(add("friend%40remote.example").body.contains("changed"));
    let mail = "From: <friend@remote.example>\r\nSubject: hi\r\n\r\nYou have won my respect\r\n";
    assert_eq!(moat.smtp_ehlo().send_mail("friend@remote.example", &["alice@example.test"], mail.as_bytes()).code, 250);
    let delivered = capture.wait_for(2, DEADLINE);
    assert!(text(&delivered[1].data).contains("my respect"));
    moat.assert_quarantine_stays(1);
}

#[test]
fn deceptive_and_overlong_subjects_are_shown_as_what_they_are() {
    let setup = start_with("", "\n[[domain]]\nname = \"open.test\"\nrecipient_check = \"any\"\nadmin_sees_subjects = true\n");
    hold(&setup, "alice@example.test", "Invoice \u{202E}gnp.exe", false);
    let long = format!("Win{}", "x".repeat(600));
    hold(&setup, "alice@example.test", &long, false);
    // An encoded-word subject with an override and an attachment whose name hides its type.
    let message = "From: <lottery@remote.example>\r\nSubject: =?UTF-8?B?UGF5bWVudCDigK5mZHAuZXhl?=\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nYou have won\r\n\
                   --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe\r\n\r\nAA==\r\n--b--\r\n";
    let reply = setup.moat.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test", "carol@open.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let held = setup.moat.wait_quarantined(4);
    let digest_link = digest_center_link(&setup, "alice@example.test");
    let digest = setup.capture.messages().into_iter().last().expect("the digest");
    let digest_text = text_part(&digest.data);
    assert!(digest_text.contains("Invoice [U+202E]gnp.exe"), "the override is visible in the digest: {digest_text}");
    assert!(digest_text.contains("Payment [U+202E]fdp.exe"), "decoded, then made visible: {digest_text}");
    assert!(!digest_text.contains('\u{202E}'));
    assert!(!digest_text.contains(&"x".repeat(200)), "a 600-character subject is cut in the digest");
    let digest_html =
        mail_parser::MessageParser::default().parse(&digest.data).and_then(|m| m.body_html(0).map(|h| h.into_owned())).unwrap();
    assert!(digest_html.contains("<bdi>Invoice [U+202E]gnp.exe</bdi>") && !digest_html.contains('\u{202E}'), "{digest_html}");
    assert!(digest_html.contains(&format!("Win{}…", "x".repeat(LIST_TEXT - 3))), "cut in the HTML part too");

    let alice = session_from_link(setup.web, &digest_link);
    let list = get(&setup, &alice, "/mc");
    assert!(list.body.contains("<bdi>Invoice [U+202E]gnp.exe</bdi>"), "{}", list.body);
    assert!(!list.body.contains('\u{202E}'), "no live override in the Message Center");
    assert!(list.body.contains(&format!("Win{}…", "x".repeat(LIST_TEXT - 3))), "long subjects end in an ellipsis in the list");
    let id_of = |subject: &str| {
        held.iter().find(|h| h.item.recipient == "alice@example.test" && h.item.subject.starts_with(subject)).unwrap().item.id.clone()
    };
    let view = get(&setup, &alice, &format!("/mc/m/{}", id_of("Win")));
    let stored = &held.iter().find(|h| h.item.subject.starts_with("Win")).unwrap().item.subject;
    assert!(stored.chars().count() > LIST_TEXT);
    assert!(view.body.contains(&format!("<bdi>{stored}</bdi>")), "the view page shows the whole subject: {}", view.body);
    let view = get(&setup, &alice, &format!("/mc/m/{}", id_of("Payment")));
    assert!(view.body.contains("<bdi>invoice[U+202E]fdp.exe</bdi>") && !view.body.contains('\u{202E}'), "{}", view.body);

    // The admin console, for the domain whose subjects admins may see.
    let signed = http(setup.admin, "POST", "/login", &format!("token={}", admin_token(&setup)));
    let cookie = signed.header("Set-Cookie").unwrap().split(';').next().unwrap().to_string();
    let console = http_with(setup.admin, "GET", "/quarantine?recipient=carol%40open.test", &[&format!("Cookie: {cookie}")], "");
    assert!(console.body.contains("<bdi>Payment [U+202E]fdp.exe</bdi>") && !console.body.contains('\u{202E}'), "{}", console.body);
}

fn admin_token(setup: &Setup) -> String {
    fs::read_to_string(setup.moat.state_dir().join("admin.token")).expect("the admin token file").trim().to_string()
}

fn api(setup: &Setup, method: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let response = http_with(setup.admin, method, path, &headers, "");
    (response.status, serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn the_admin_api_needs_the_token_shows_metadata_only_and_audits_actions() {
    let setup = start_with("", "\n[[domain]]\nname = \"open.test\"\nrecipient_check = \"any\"\nadmin_sees_subjects = true\n");
    let spam_marker = hold(&setup, "alice@example.test", HOSTILE_SUBJECT, true);
    let item = setup.moat.wait_quarantined(1).remove(0).item.id;
    let token = admin_token(&setup);

    for path in ["/api/v1/status", "/api/v1/quarantine", "/api/v1/queue", "/api/v1/audit", "/api/v1/domains"] {
        assert_eq!(api(&setup, "GET", path, None).0, 401, "{path} without a token");
        assert_eq!(api(&setup, "GET", path, Some("wrong-token-wrong-token")).0, 401, "{path} with a wrong token");
    }
    assert_eq!(api(&setup, "POST", &format!("/api/v1/quarantine/{item}/release"), None).0, 401);
    assert_eq!(api(&setup, "POST", "/api/v1/reload", None).0, 401);
    assert_eq!(state_of(&setup, &item), "held", "nothing done without credentials");
    assert_eq!(http(setup.admin, "GET", "/", "").header("Location").as_deref(), Some("/login"), "the console asks to sign in");

    let (status, body) = api(&setup, "GET", "/api/v1/status", Some(&token));
    assert_eq!(status, 200);
    assert!(body["rules_hash"].as_str().is_some_and(|h| !h.is_empty()), "{body}");
    assert_eq!(body["last_24h"]["quarantined"], 1, "{body}");
    assert_eq!(body["quarantine_held"], 1);

    let (status, list) = api(&setup, "GET", "/api/v1/quarantine?recipient=alice%40example.test", Some(&token));
    assert_eq!(status, 200);
    assert_eq!((list["total"].as_u64(), list["page"].as_u64()), (Some(1), Some(1)), "pages count from 1: {list}");
    let (_, first_page) = api(&setup, "GET", "/api/v1/quarantine?recipient=alice%40example.test&page=1", Some(&token));
    assert_eq!(first_page["items"], list["items"], "page=1 is the first page");
    let (_, second_page) = api(&setup, "GET", "/api/v1/quarantine?recipient=alice%40example.test&page=2", Some(&token));
    assert_eq!(second_page["items"].as_array().map(Vec::len), Some(0));
    let raw = http_with(setup.admin, "GET", "/api/v1/status", &[&format!("Authorization: Bearer {token}")], "");
    assert_eq!(raw.header("Cache-Control").as_deref(), Some("no-store"), "admin API answers are never cached");
    assert!(list["items"][0].get("subject").is_none(), "admins see no subject unless the domain allows it: {list}");
    assert_eq!(list["items"][0]["symbols"][0]["name"], "LOCAL_PRIZE", "{list}");
    assert!(!list.to_string().contains(&spam_marker), "no message contents for admins");
    let (status, queue) = api(&setup, "GET", "/api/v1/queue", Some(&token));
    assert_eq!(status, 200);
    assert!(queue["messages"].is_array(), "{queue}");
    let (_, domains) = api(&setup, "GET", "/api/v1/domains", Some(&token));
    assert_eq!(domains["domains"][0]["name"], "example.test", "{domains}");

    let (status, released) = api(&setup, "POST", &format!("/api/v1/quarantine/{item}/release"), Some(&token));
    assert_eq!(status, 200, "{released}");
    setup.capture.wait_for(1, DEADLINE);
    assert_eq!(api(&setup, "POST", &format!("/api/v1/quarantine/{item}/release"), Some(&token)).0, 409, "released once");
    let (_, audit) = api(&setup, "GET", "/api/v1/audit", Some(&token));
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{audit}");
    assert!(records.iter().any(|r| r["action"] == "release"
        && r["outcome"] == "done"
        && r["actor"] == "admin (api)"
        && r["recipient"] == "alice@example.test"));
    assert!(records.iter().any(|r| r["outcome"].as_str().is_some_and(|o| o.starts_with("refused"))));
    // Delete, through the API: the item is gone from the user's view, and audited.
    hold(&setup, "bob@example.test", "Another", false);
    let other = setup.moat.wait_quarantined(2).into_iter().find(|h| h.item.id != item).unwrap().item.id;
    assert_eq!(api(&setup, "POST", &format!("/api/v1/quarantine/{other}/delete"), None).0, 401);
    assert_eq!(api(&setup, "POST", &format!("/api/v1/quarantine/{other}/delete"), Some(&token)).0, 200);
    assert_eq!(state_of(&setup, &other), "deleted");
    let (_, audit) = api(&setup, "GET", "/api/v1/audit", Some(&token));
    assert!(audit["records"].as_array().unwrap().iter().any(|r| r["action"] == "delete" && r["target"] == other.as_str()), "{audit}");

    // A domain whose policy lets admins see subjects: its subjects are shown, the others' not.
    hold(&setup, "carol@open.test", HOSTILE_SUBJECT, false);
    let open_item = setup.moat.wait_quarantined(3).into_iter().find(|h| h.item.recipient == "carol@open.test").unwrap().item.id;
    let (_, open_list) = api(&setup, "GET", "/api/v1/quarantine?recipient=carol%40open.test", Some(&token));
    assert_eq!(
        (open_list["items"][0]["id"].as_str(), open_list["items"][0]["subject"].as_str()),
        (Some(open_item.as_str()), Some(HOSTILE_SUBJECT))
    );

    // The console: sign in with the token; pages show the allowed hostile subject inert, hide the others.
    let signed = http(setup.admin, "POST", "/login", &format!("token={token}"));
    assert_eq!(signed.status, 303);
    let cookie = signed.header("Set-Cookie").unwrap().split(';').next().unwrap().to_string();
    let page = http_with(setup.admin, "GET", "/quarantine", &[&format!("Cookie: {cookie}")], "");
    assert!(page.body.contains("&lt;script&gt;") && !page.body.contains("<script") && !page.body.contains(&spam_marker), "{}", page.body);
    assert_eq!(page.body.matches("&lt;script&gt;").count(), 1, "only open.test's subject is shown: {}", page.body);
    assert!(page.body.contains("(hidden)"), "{}", page.body);
    assert_eq!(http(setup.admin, "POST", "/login", "token=nope").status, 401);
    let dashboard = http_with(setup.admin, "GET", "/", &[&format!("Cookie: {cookie}")], "");
    assert!(dashboard.body.contains("Rule set in force"), "{}", dashboard.body);
    let chart = http_with(setup.admin, "GET", "/chart.svg", &[&format!("Cookie: {cookie}")], "");
    assert_eq!(chart.header("Content-Type").as_deref(), Some("image/svg+xml"));
    assert!(chart.body.contains("<polyline") && chart.body.contains("quarantined"), "{}", chart.body);
    assert_eq!(http(setup.admin, "GET", "/chart.svg", "").status, 303, "the chart needs a session too");
    // A reload without the console's CSRF token does nothing.
    assert_eq!(http_with(setup.admin, "POST", "/reload", &[&format!("Cookie: {cookie}")], "").status, 403);

    // A broken rule file: the reload is refused with file:line, the running rules stay.
    fs::write(setup.rules.path().join("broken.cf"), "body BROKEN /unclosed(/\nscore BROKEN 1\n").unwrap();
    let (status, refused) = api(&setup, "POST", "/api/v1/reload", Some(&token));
    assert_eq!(status, 422, "{refused}");
    assert!(refused["errors"].to_string().contains("broken.cf:1"), "{refused}");
    let (_, after) = api(&setup, "GET", "/api/v1/status", Some(&token));
    assert_eq!(after["rules_hash"], body["rules_hash"], "the old rules stay in force");
    fs::remove_file(setup.rules.path().join("broken.cf")).unwrap();
    assert_eq!(api(&setup, "POST", "/api/v1/reload", Some(&token)).0, 200);
}

#[test]
fn not_spam_teaches_ham_and_spam_after_all_relabels_a_released_message() {
    let setup = start();
    let marker = hold(&setup, "carol@example.test", "Club raffle", false);
    let held = setup.moat.wait_quarantined(1);
    let id = held[0].item.id.clone();
    assert!(String::from_utf8_lossy(&held[0].contents).contains(&marker));
    let config = setup.moat.config_path().to_str().unwrap().to_string();
    let model = || {
        let out = setup.moat.cli(&["learn", "-c", &config]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };

    let carol = session_from_link(setup.web, &digest_center_link(&setup, "carol@example.test"));
    let list = get(&setup, &carol, "/mc");
    assert!(list.body.contains("Not spam: release"), "{}", list.body);
    let csrf = csrf_of(&list.body);
    let done = post(&setup, &carol, "/mc/act", &format!("csrf={csrf}&action=release&id={id}"));
    assert!(done.body.contains("1 message released."), "{}", done.body);
    assert!(model().contains("holds 0 spam and 1 ham"), "releasing taught the message as ham");

    // Spam after all: only a released message of her own, and it moves to spam.
    let released = get(&setup, &carol, "/mc?state=released");
    assert!(released.body.contains(&format!("value=\"{id}\"")), "a released item can be selected: {}", released.body);
    let done = post(&setup, &carol, "/mc/act", &format!("csrf={csrf}&action=spam&id={id}"));
    assert!(done.body.contains("1 message reported as spam"), "{}", done.body);
    assert!(model().contains("holds 1 spam and 0 ham"), "the lesson moved from ham to spam");
    let bob_marker = hold(&setup, "bob@example.test", "Not carol's", false);
    let bob_item = setup.moat.wait_quarantined(2).into_iter().find(|h| String::from_utf8_lossy(&h.contents).contains(&bob_marker)).unwrap();
    let refused = post(&setup, &carol, "/mc/act", &format!("csrf={csrf}&action=spam&id={}", bob_item.item.id));
    assert!(refused.body.contains("could not be changed"), "another user's item teaches nothing: {}", refused.body);
    assert!(model().contains("holds 1 spam and 0 ham"));
}

#[test]
fn a_user_gets_their_own_data_and_messages_and_never_anyone_elses() {
    use std::os::unix::fs::PermissionsExt;
    let setup = start();
    let alice_marker = hold(&setup, "alice@example.test", "Alice export", false);
    let bob_marker = hold(&setup, "bob@example.test", "Bob export", false);
    setup.moat.wait_quarantined(2);
    let config = setup.moat.config_path().to_str().unwrap().to_string();

    let out = temp_dir();
    let run = setup.moat.cli(&["user", "export", "alice@example.test", "--out", out.path().to_str().unwrap(), "-c", &config]);
    assert!(run.status.success(), "{}{}", text(&run.stdout), text(&run.stderr));
    assert!(text(&run.stdout).contains("(1 message(s))"), "{}", text(&run.stdout));
    let json = std::fs::read_to_string(out.path().join("alice@example.test.json")).unwrap();
    let mbox = std::fs::read_to_string(out.path().join("alice@example.test.mbox")).unwrap();
    assert!(json.contains("Alice export") && !json.contains("Bob export"), "{json}");
    assert!(mbox.contains(&format!("You have won {alice_marker}")) && !mbox.contains(&bob_marker), "{mbox}");
    let mode = std::fs::metadata(out.path().join("alice@example.test.mbox")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the user's mail is readable by the owner only");

    let alice = session_from_link(setup.web, &digest_center_link(&setup, "alice@example.test"));
    assert!(get(&setup, &alice, "/mc/prefs").body.contains("/mc/export/messages.mbox"), "the preferences page offers it");
    let download = get(&setup, &alice, "/mc/export/messages.mbox");
    assert_eq!(download.status, 200);
    assert!(download.header("Content-Disposition").is_some_and(|d| d.starts_with("attachment")));
    assert!(download.body.contains(&format!("You have won {alice_marker}")) && !download.body.contains(&bob_marker));
    let data = get(&setup, &alice, "/mc/export/data.json");
    assert!(data.body.contains("Alice export") && !data.body.contains("Bob export"), "{}", data.body);
    let anonymous = get(&setup, "", "/mc/export/messages.mbox");
    assert!(!anonymous.body.contains(&alice_marker), "no session, no data: {}", anonymous.status);
}

#[test]
fn the_admin_api_purges_a_leaving_domain_only_when_told_and_audits_it() {
    let setup = start();
    let list_marker = hold(&setup, LIST_USER, "Listed user's prize", false);
    hold(&setup, "alice@example.test", "Alice keeps this", false);
    setup.moat.wait_quarantined(2);
    let token = admin_token(&setup);
    let path = format!("/api/v1/domains/{LIST_DOMAIN}/purge");
    assert_eq!(api(&setup, "POST", &path, None).0, 401, "the token is needed");
    let (status, refused) = api(&setup, "POST", &path, Some(&token));
    assert_eq!(status, 409, "a configured domain is refused without force: {refused}");
    assert_eq!(setup.moat.quarantine().len(), 2);

    let (status, purged) = api(&setup, "POST", &format!("{path}?force=true"), Some(&token));
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["quarantined_items"], 1, "{purged}");
    let left: Vec<String> = setup.moat.quarantine().into_iter().map(|h| h.item.recipient).collect();
    assert_eq!(left, ["alice@example.test"], "only the leaving domain's data is gone");
    let (_, audit) = api(&setup, "GET", "/api/v1/audit", Some(&token));
    assert!(audit.to_string().contains("domain_purge"), "{audit}");
    setup.moat.assert_log_lacks(&list_marker);
}

#[test]
fn times_are_shown_in_the_domains_time_zone_with_the_zone_named() {
    let setup = start_with("", "\n[digest]\ntimezone = \"Europe/Berlin\"\n");
    hold(&setup, "alice@example.test", "Zoned", false);
    let held = setup.moat.wait_quarantined(1);
    let berlin = moat::clock::minute_in(held[0].item.date, "Europe/Berlin");
    assert!(berlin.ends_with(" CET") || berlin.ends_with(" CEST"), "{berlin}");
    assert_ne!(berlin, moat::clock::minute_utc(held[0].item.date));

    let alice = session_from_link(setup.web, &digest_center_link(&setup, "alice@example.test"));
    let digest = text(&setup.capture.messages().last().unwrap().data);
    assert!(digest.contains(&berlin), "the digest shows Berlin time: {digest}");
    assert!(get(&setup, &alice, "/mc").body.contains(&berlin), "the Message Center list too");
    assert!(get(&setup, &alice, &format!("/mc/m/{}", held[0].item.id)).body.contains(&berlin), "and the message page");

    // A time zone that is not one, hostile or not, is refused (escaped in the error), nothing saved.
    let csrf = csrf_of(&get(&setup, &alice, "/mc/prefs").body);
    let refused = post(&setup, &alice, "/mc/prefs", &format!("csrf={csrf}&emails=on&time_zone=%3Cscript%3Ex%3C%2Fscript%3E"));
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.contains("&lt;script&gt;x&lt;/script&gt;\u{201d} is not a time zone") && !refused.body.contains("<script"),
        "{}",
        refused.body
    );
    assert_eq!(setup.moat.store().get_preferences_blocking("alice@example.test").time_zone, "");
    // A real one, saved by its name, is what the pages use from then on.
    assert_eq!(post(&setup, &alice, "/mc/prefs", &format!("csrf={csrf}&emails=on&time_zone=America%2FNew_York")).status, 200);
    assert_eq!(setup.moat.store().get_preferences_blocking("alice@example.test").time_zone, "America/New_York");
    let new_york = moat::clock::minute_in(held[0].item.date, "America/New_York");
    assert!(get(&setup, &alice, "/mc").body.contains(&new_york), "{new_york}");
    // Emptied: the domain's zone again.
    assert_eq!(post(&setup, &alice, "/mc/prefs", &format!("csrf={csrf}&emails=on&time_zone=")).status, 200);
    assert!(get(&setup, &alice, "/mc").body.contains(&berlin));
}

/// A newsletter as bulk senders send it: a one-off bounce address as the envelope sender, the
/// brand in the From field, DKIM-signed by the brand's domain with `dkim_pkcs8` when given.
fn newsletter(dkim_pkcs8: Option<&[u8]>, marker: &str) -> Vec<u8> {
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    let message = format!(
        "From: =?UTF-8?Q?PayPal_Service?= <service@paypal.test>\r\nTo: alice@example.test\r\nSubject: Your monthly news {marker}\r\n\
         Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{marker}@paypal.test>\r\n\r\nYou have won our attention {marker}\r\n"
    );
    let mut data = Vec::new();
    if let Some(pkcs8) = dkim_pkcs8 {
        let signature = mail_auth::dkim::DkimSigner::from_key(Ed25519Key::from_pkcs8_der(pkcs8).expect("key"))
            .domain("paypal.test")
            .selector("s1")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(message.as_bytes())
            .expect("sign");
        data.extend_from_slice(signature.to_header().as_bytes());
    }
    data.extend_from_slice(message.as_bytes());
    data
}

#[test]
fn a_newsletter_shows_its_from_name_and_allow_or_block_follow_its_from_not_its_bounce_address() {
    use mail_auth::common::crypto::Ed25519Key;
    let pkcs8 = Ed25519Key::generate_pkcs8().expect("ed25519 key");
    let public = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap().public_key();
    let dns = crate::support::dns::DnsZone::new()
        .txt("mailer.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.paypal.test", "v=DMARC1; p=none")
        .dkim_key("s1", "paypal.test", "ed25519", &public)
        .start();
    let setup = start_configured(
        |config| {
            config.auth("enabled", "true").append(&format!("\n{}\n[reputation]\nrdns = false\nhelo_checks = false\n", dns.config_section()))
        },
        "",
        "",
    );
    let send = |bounce: &str, signed: bool, marker: &str| {
        let data = newsletter(signed.then_some(pkcs8.as_slice()), marker);
        let reply = setup.moat.smtp_ehlo().send_mail(bounce, &["alice@example.test"], &data);
        assert_eq!(reply.code, 250, "{reply}");
    };

    // Held: the digest and the Message Center name "PayPal Service", the bounce address is a detail.
    send("bounce-8f3a91@mailer.test", true, "first");
    let held = setup.moat.wait_quarantined(1);
    assert_eq!((held[0].item.from_name.as_str(), held[0].item.from_address.as_str()), ("PayPal Service", "service@paypal.test"));
    let link = digest_center_link(&setup, "alice@example.test");
    let digest = setup.capture.messages().into_iter().last().expect("the digest");
    let digest_text = text_part(&digest.data);
    assert!(
        digest_text.contains("   From:     PayPal Service <service@paypal.test>\r\n   Sent via: bounce-8f3a91@mailer.test"),
        "{digest_text}"
    );
    let digest_html =
        mail_parser::MessageParser::default().parse(&digest.data).and_then(|m| m.body_html(0).map(|h| h.into_owned())).unwrap();
    assert!(digest_html.contains("From <bdi>PayPal Service</bdi> &lt;<bdi>service@paypal.test</bdi>&gt;"), "{digest_html}");
    assert!(digest_html.contains("via <bdi>bounce-8f3a91@mailer.test</bdi>"), "{digest_html}");
    let alice = session_from_link(setup.web, &link);
    let list = get(&setup, &alice, "/mc");
    assert!(
        list.body.contains("<bdi>PayPal Service</bdi> <span class=\"addr\">&lt;<bdi>service@paypal.test</bdi>&gt;</span>"),
        "{}",
        list.body
    );
    assert!(list.body.contains("via <bdi>bounce-8f3a91@mailer.test</bdi>"), "{}", list.body);
    assert!(get(&setup, &alice, "/mc?q=paypal+service").body.contains("1 message."), "found by the From name");
    let view = get(&setup, &alice, &format!("/mc/m/{}", held[0].item.id));
    assert!(view.body.contains("<bdi>PayPal Service</bdi>") && view.body.contains("via <bdi>bounce-8f3a91@mailer.test</bdi>"));

    // "Release and allow sender" lists the From address, not the bounce address.
    let csrf = csrf_of(&list.body);
    let done = post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=release_allow&id={}", held[0].item.id));
    assert!(done.body.contains("1 message released (sender allowed)"), "{}", done.body);
    let allow = setup.moat.store().get_preferences_blocking("alice@example.test").allow;
    assert_eq!(allow.iter().map(ToString::to_string).collect::<Vec<_>>(), ["service@paypal.test"]);
    let delivered = setup.capture.wait_for(2, DEADLINE);
    assert!(text(&delivered[1].data).contains("our attention first"));

    // The next newsletter, from another bounce address, signed by paypal.test: delivered.
    send("bounce-77c2e0@mailer.test", true, "second");
    let delivered = setup.capture.wait_for(3, DEADLINE);
    assert!(text(&delivered[2].data).contains("our attention second"), "the allow entry let it through");
    setup.moat.assert_quarantine_stays(1);

    // A forged one (the same From, not signed: only the bounce domain's SPF passes): held.
    send("bounce-0bad00@mailer.test", false, "forged");
    let held = setup.moat.wait_quarantined(2);
    let forged = held.iter().find(|h| h.item.subject.contains("forged")).expect("the forgery is held");
    assert!(forged.item.symbols.iter().all(|s| s.name != "ALLOW_LIST"), "{:?}", forged.item.symbols);
    assert_eq!(setup.capture.messages().len(), 3);
    assert!(!setup.moat.log().contains("PayPal Service"), "the From name stays out of the logs");

    // "Block sender" lists the From address too: the next one, from another bounce address
    // and unsigned (a block entry needs no authentication), is refused.
    let shady = |marker: &str| format!("From: Shady Deals <deals@shady.test>\r\nSubject: deal {marker}\r\n\r\nYou have won {marker}\r\n");
    let reply = setup.moat.smtp_ehlo().send_mail("bounce-1@bulk.test", &["alice@example.test"], shady("one").as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let held = setup.moat.wait_quarantined(3);
    let deal = held.iter().find(|h| h.item.subject.contains("deal one")).expect("the deal is held");
    let csrf = csrf_of(&get(&setup, &alice, "/mc").body);
    let done = post(&setup, &alice, "/mc/act", &format!("csrf={csrf}&action=block&id={}", deal.item.id));
    assert!(done.body.contains("deleted (sender blocked)"), "{}", done.body);
    let block = setup.moat.store().get_preferences_blocking("alice@example.test").block;
    assert_eq!(block.iter().map(ToString::to_string).collect::<Vec<_>>(), ["deals@shady.test"], "the From address, not bounce-1");
    let reply = setup.moat.smtp_ehlo().send_mail("bounce-2@bulk.test", &["alice@example.test"], shady("two").as_bytes());
    assert_eq!(reply.code / 100, 5, "blocked through its From field: {reply}");
    assert_eq!(setup.capture.messages().len(), 3, "nothing more delivered");
}
