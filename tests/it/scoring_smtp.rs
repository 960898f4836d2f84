//! Scoring through SMTP, end to end: rule files and DNS lists produce symbols, the recipient's
//! policy turns them into an action, and what the downstream (or the quarantine) receives shows
//! it: X-Spam headers on tagged mail, forged ones removed, held copies, 5xx at DATA or at RCPT,
//! per-recipient splits, allow/block lists, pregreeting clients, and rule reloads.

use crate::support::dns::DnsZone;
use crate::support::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// A rule directory with one file, `local.cf`.
fn rules_dir(text: &str) -> tempfile::TempDir {
    let dir = temp_dir();
    fs::write(dir.path().join("local.cf"), text).unwrap();
    dir
}

const PILLS_RULE: &str = "body LOCAL_PILLS /cheap pills/i\nscore LOCAL_PILLS 6.5\ndescribe LOCAL_PILLS Offers cheap pills\n";

fn with_rules(downstream: u16, rules: &Path) -> MoatConfig {
    MoatConfig::new(downstream).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.display()))
}

fn pills_message(marker: &str) -> Vec<u8> {
    format!(
        "From: <seller@remote.example>\r\nTo: <user@{DOMAIN}>\r\nSubject: offer {marker}\r\nX-Spam-Flag: NO\r\nX-Spam-Status: No, score=-50\r\n\r\nBuy cheap pills now {marker}\r\n"
    )
    .into_bytes()
}

/// The `n` messages held in moat's quarantine: (recipient, opened contents).
fn quarantined(moat: &Moat, n: usize) -> Vec<(String, Vec<u8>)> {
    moat.wait_quarantined(n).into_iter().map(|h| (h.item.recipient, h.contents)).collect()
}

fn header_lines(data: &[u8]) -> String {
    let text = text(data);
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

#[test]
fn spam_over_the_tag_threshold_is_delivered_with_spam_headers_and_forged_ones_removed() {
    let rules = rules_dir(PILLS_RULE);
    let capture = Capture::new();
    let moat = Moat::start(with_rules(capture.port, rules.path()).append("\n[policy]\nsubject_prefix = \"[SPAM] \"\n"));
    let id = marker("tag");
    let reply = moat.smtp_ehlo().send_mail("seller@remote.example", &["user@example.test"], &pills_message(&id));
    assert_reply(&reply, 250, "2.0.0", "queued");
    let mail = &capture.wait_for(1, DEADLINE)[0];
    let headers = header_lines(&mail.data);
    assert!(headers.contains("X-Spam-Flag: YES\r\n"), "{headers}");
    assert!(headers.contains("X-Spam-Score: 6.5\r\n"), "{headers}");
    assert!(headers.contains("LOCAL_PILLS=6.5"), "the status lists the symbol with its score: {headers}");
    assert!(headers.contains(&format!("Subject: [SPAM] offer {id}")), "{headers}");
    assert!(!headers.contains("X-Spam-Flag: NO") && !headers.contains("score=-50"), "forged headers removed: {headers}");
    assert!(text(&mail.data).ends_with(&format!("\r\n\r\nBuy cheap pills now {id}\r\n")), "body untouched");
    moat.assert_log_lacks("Buy cheap pills");
    assert!(moat.log().contains("symbols=\"LOCAL_PILLS\""), "the verdict is logged with its symbols");
}

#[test]
fn clean_mail_passes_untouched_but_forged_spam_headers_are_still_removed() {
    let rules = rules_dir(PILLS_RULE);
    let capture = Capture::new();
    let moat = Moat::start(with_rules(capture.port, rules.path()));
    let id = marker("clean");
    let message = format!("From: <a@remote.example>\r\nSubject: lunch {id}\r\nX-Spam-Flag: NO\r\n\r\nSee you at noon\r\n");
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let mail = &capture.wait_for(1, DEADLINE)[0];
    let expected = format!("From: <a@remote.example>\r\nSubject: lunch {id}\r\n\r\nSee you at noon\r\n");
    assert_one_received_then(&mail.data, expected.as_bytes());
}

#[test]
fn recipients_with_different_policies_each_get_their_own_outcome() {
    let rules = rules_dir(PILLS_RULE);
    let capture = Capture::new();
    let config = with_rules(capture.port, rules.path()).append(
        "\n[[domain]]\nname = \"strict.test\"\npolicy = { tag_at = 2.0, quarantine_at = 6.0 }\n\
         \n[[domain]]\nname = \"optout.test\"\n\
         \n[[lists.domain]]\nname = \"optout.test\"\nfiltering = false\n",
    );
    let moat = Moat::start(config);
    let id = marker("split");
    let reply = moat.smtp_ehlo().send_mail(
        "seller@remote.example",
        &["tagme@example.test", "holdme@strict.test", "leaveme@optout.test"],
        &pills_message(&id),
    );
    assert_reply(&reply, 250, "2.0.0", "queued");
    let mails = capture.wait_for(2, DEADLINE);
    assert_eq!(mails.len(), 2, "one copy for the tagged recipient, one for the untouched one");
    let tagged = mails.iter().find(|m| m.recipients == ["tagme@example.test"]).expect("tagged copy");
    let untouched = mails.iter().find(|m| m.recipients == ["leaveme@optout.test"]).expect("untagged copy");
    assert!(header_lines(&tagged.data).contains("X-Spam-Flag: YES"));
    assert!(!header_lines(&untouched.data).contains("X-Spam-"), "filtering is off for optout.test");
    let held = quarantined(&moat, 1);
    assert_eq!(held[0].0, "holdme@strict.test", "the strict domain's copy is held");
    assert!(header_lines(&held[0].1).contains("LOCAL_PILLS"), "the held copy keeps its explanation");
    assert!(mails.iter().all(|m| !m.recipients.contains(&"holdme@strict.test".to_string())), "never delivered");
}

#[test]
fn a_reject_score_is_refused_at_data_and_a_split_reject_is_held_instead() {
    let rules = rules_dir("body LOCAL_FRAUD /wire the money/i\nscore LOCAL_FRAUD 25\n");
    let capture = Capture::new();
    let config = with_rules(capture.port, rules.path())
        .append("\n[[domain]]\nname = \"lenient.test\"\npolicy = { reject_at = 100.0, quarantine_at = 50.0 }\n");
    let moat = Moat::start(config);
    let message = b"Subject: urgent\r\n\r\nPlease wire the money today\r\n";
    let reply = moat.smtp_ehlo().send_mail("x@remote.example", &["a@example.test"], message);
    assert_reply(&reply, 550, "5.7.1", "spam");
    let reply = moat.smtp_ehlo().send_mail("x@remote.example", &["b@example.test", "c@lenient.test"], message);
    assert_reply(&reply, 250, "2.0.0", "queued");
    let mails = capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["c@lenient.test"], "the lenient recipient gets it tagged");
    assert!(header_lines(&mails[0].data).contains("X-Spam-Flag: YES"));
    let held = quarantined(&moat, 1);
    assert_eq!(held[0].0, "b@example.test", "the recipient who wanted a reject has it held, not lost");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 1, "nothing else was delivered");
}

#[test]
fn a_client_on_a_dns_blocklist_is_refused_at_rcpt_unless_allow_listed() {
    let dns = DnsZone::new().a("66.2.0.192.zen.test", "127.0.0.2").start();
    let rules = rules_dir("score RCVD_IN_ZEN_SBL 25\ndescribe RCVD_IN_ZEN_SBL Listed in the test SBL\n");
    let capture = Capture::new();
    let config = with_rules(capture.port, rules.path()).proxy_protocol().append(&format!(
        "\n{}\n[reputation]\nrdns = false\ndnsbl = [{{ zone = \"zen.test\", symbol = \"RCVD_IN_ZEN\", codes = {{ \"127.0.0.2\" = \"RCVD_IN_ZEN_SBL\" }} }}]\n\
         \n[[lists.user]]\naddress = \"friend@example.test\"\nallow = [\"192.0.2.66\"]\n",
        dns.config_section()
    ));
    let moat = Moat::start(config);
    let connect_as = |ip: &str| {
        let mut smtp = Smtp::connect(moat.port);
        smtp.send(format!("PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n").as_bytes());
        assert_eq!(smtp.reply().code, 220);
        assert_eq!(smtp.cmd("EHLO mail.remote.example").code, 250);
        smtp
    };
    let mut listed = connect_as("192.0.2.66");
    assert_eq!(listed.cmd("MAIL FROM:<x@remote.example>").code, 250);
    assert_reply(&listed.cmd("RCPT TO:<user@example.test>"), 550, "5.7.1", "RCVD_IN_ZEN_SBL");
    assert_eq!(listed.cmd("RCPT TO:<friend@example.test>").code, 250, "the allow list wins for its user");
    let reply = listed.cmd("DATA");
    assert_eq!(reply.code, 354);
    listed.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert_eq!(listed.reply().code, 250);
    let mails = capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["friend@example.test"]);

    let mut clean = connect_as("192.0.2.1");
    let reply = clean.send_mail("x@remote.example", &["user@example.test"], b"Subject: hi\r\n\r\nhello\r\n");
    assert_eq!(reply.code, 250, "an unlisted client is accepted: {reply}");
    let log = moat.log();
    assert!(log.contains("event=\"rcpt_refused\"") && log.contains("RCVD_IN_ZEN_SBL"), "{log}");
}

#[test]
fn block_listed_senders_are_refused_at_rcpt_and_allow_listed_spam_is_delivered_plain() {
    let rules = rules_dir("body LOCAL_FRAUD /wire the money/i\nscore LOCAL_FRAUD 25\n");
    let capture = Capture::new();
    let config = with_rules(capture.port, rules.path()).append("\n[lists]\nblock = [\"spammer.test\"]\nallow = [\"boss@partner.test\"]\n");
    let moat = Moat::start(config);
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<anyone@spammer.test>").code, 250);
    assert_reply(&smtp.cmd("RCPT TO:<user@example.test>"), 550, "5.7.1", "BLOCK_LIST");
    assert_eq!(smtp.cmd("RSET").code, 250);
    let reply = smtp.send_mail("boss@partner.test", &["user@example.test"], b"Subject: x\r\n\r\nPlease wire the money\r\n");
    assert_eq!(reply.code, 250, "the allow list overrides the score: {reply}");
    let mails = capture.wait_for(1, DEADLINE);
    assert!(!header_lines(&mails[0].data).contains("X-Spam-"), "delivered as accepted, not tagged");
}

#[test]
fn a_client_that_talks_before_the_greeting_is_scored() {
    let rules = rules_dir("score PREGREET 6\n");
    let capture = Capture::new();
    let moat = Moat::start(with_rules(capture.port, rules.path()).timeout("pregreet", "1s"));
    let mut smtp = Smtp::connect(moat.port);
    smtp.send(b"EHLO impatient.example\r\n");
    assert_eq!(smtp.reply().code, 220, "the greeting still comes");
    assert_eq!(smtp.reply().code, 250, "and the early EHLO is answered after it");
    let reply = smtp.send_mail("x@remote.example", &["user@example.test"], b"Subject: hi\r\n\r\nhello\r\n");
    assert_eq!(reply.code, 250);
    let mails = capture.wait_for(1, DEADLINE);
    assert!(header_lines(&mails[0].data).contains("PREGREET=6"), "{}", header_lines(&mails[0].data));

    let patient = moat.smtp_ehlo().send_mail("x@remote.example", &["user@example.test"], b"Subject: hi\r\n\r\nhello\r\n");
    assert_eq!(patient.code, 250);
    let mails = capture.wait_for(2, DEADLINE);
    assert!(!header_lines(&mails[1].data).contains("X-Spam"), "a client that waits is not scored");
}

/// Sends one pills message and returns the header section the downstream got for it.
fn send_pills(moat: &Moat, capture: &Capture) -> String {
    let before = capture.messages().len();
    let reply = moat.smtp_ehlo().send_mail("s@remote.example", &["user@example.test"], &pills_message(&marker("reload")));
    assert_eq!(reply.code, 250, "{reply}");
    let mails = capture.wait_for(before + 1, DEADLINE);
    header_lines(&mails[before].data)
}

fn loads(moat: &Moat) -> usize {
    moat.log().matches("event=\"rules_loaded\"").count()
}

#[test]
fn sighup_reloads_rules_and_a_broken_file_keeps_the_old_set() {
    let rules = rules_dir(PILLS_RULE);
    let capture = Capture::new();
    let config = MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\nwatch = \"0s\"\n", rules.path().display()));
    let moat = Moat::start(config);
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 6.5"));
    assert_eq!(loads(&moat), 1);

    fs::write(rules.path().join("local.cf"), PILLS_RULE.replace("6.5", "7.5")).unwrap();
    moat.sighup();
    wait_until("the rules reloaded after SIGHUP", DEADLINE, || (loads(&moat) == 2).then_some(()));
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 7.5"));

    fs::write(rules.path().join("broken.cf"), "body BROKEN /unclosed(/\nscore LOCAL_PILLS 1.0\n").unwrap();
    moat.sighup();
    wait_until("the refused reload, naming the file", DEADLINE, || moat.log().contains("broken.cf:1").then_some(()));
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 7.5"), "the old rules stay in force");
    assert_eq!(loads(&moat), 2);
}

#[test]
fn changed_rule_files_are_picked_up_without_a_signal() {
    let rules = rules_dir(PILLS_RULE);
    let capture = Capture::new();
    let config = MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\nwatch = \"1s\"\n", rules.path().display()));
    let moat = Moat::start(config);
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 6.5"));
    fs::write(rules.path().join("broken.cf"), "body BROKEN /unclosed(/\n").unwrap();
    wait_until("the change noticed and refused", DEADLINE, || moat.log().contains("broken.cf:1").then_some(()));
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 6.5"), "the old rules stay in force");
    fs::remove_file(rules.path().join("broken.cf")).unwrap();
    fs::write(rules.path().join("local.cf"), PILLS_RULE.replace("6.5", "8.5")).unwrap();
    wait_until("the fixed rules loaded", DEADLINE, || (loads(&moat) >= 2).then_some(()));
    assert!(send_pills(&moat, &capture).contains("X-Spam-Score: 8.5"));
}

#[test]
fn moat_scan_explains_the_verdict_like_the_server_would() {
    let rules = rules_dir(PILLS_RULE);
    let dir = temp_dir();
    let config = with_rules(2526, rules.path()).render();
    fs::write(dir.path().join("moat.toml"), config).unwrap();
    fs::write(dir.path().join("m.eml"), pills_message("scan")).unwrap();
    let out = moat_cli(&["scan", "-c", "moat.toml", "--rcpt", "user@example.test", "m.eml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("user@example.test: tag (score 6.5"), "{report}");
    assert!(report.contains("LOCAL_PILLS") && report.contains("Offers cheap pills"), "{report}");
    let out = moat_cli(&["scan", "-c", "moat.toml", "--json", "--rcpt", "user@example.test", "m.eml"], dir.path());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let verdict = &json["report"]["recipients"][0];
    assert_eq!(verdict["action"], "tag");
    assert_eq!(verdict["symbols"][0]["name"], "LOCAL_PILLS");
    assert_eq!(verdict["symbols"][0]["score"], 6.5);
}

fn connect_as(moat: &Moat, ip: &str, helo: &str) -> Smtp {
    let mut smtp = Smtp::connect(moat.port);
    smtp.send(format!("PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n").as_bytes());
    assert_eq!(smtp.reply().code, 220);
    assert_eq!(smtp.cmd(&format!("EHLO {helo}")).code, 250);
    smtp
}

#[test]
fn authentication_results_are_added_forgeries_removed_and_dmarc_reject_is_honoured() {
    let dns = DnsZone::new().txt("remote.test", "v=spf1 ip4:192.0.2.10 -all").txt("_dmarc.remote.test", "v=DMARC1; p=reject").start();
    let capture = Capture::new();
    let config = MoatConfig::new(capture.port)
        .proxy_protocol()
        .auth("enabled", "true")
        .auth("dmarc_reject", "\"reject\"")
        .append(&format!("\n{}\n[reputation]\nrdns = false\nhelo_checks = false\n", dns.config_section()));
    let moat = Moat::start(config);
    let message = "From: <a@remote.test>\r\nAuthentication-Results: MX.example.test; spf=pass smtp.mailfrom=a@remote.test; dmarc=pass\r\nAuthentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n\r\nhello\r\n";

    let mut good = connect_as(&moat, "192.0.2.10", "mail.remote.test");
    let reply = good.send_mail("a@remote.test", &["user@example.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let mails = capture.wait_for(1, DEADLINE);
    let headers = header_lines(&mails[0].data);
    let ours: Vec<&str> = headers.split("\r\n").filter(|l| l.starts_with("Authentication-Results: mx.example.test")).collect();
    assert_eq!(ours.len(), 1, "exactly one result from us, the forged one removed:\n{headers}");
    assert!(headers.contains("spf=pass") && headers.contains("dmarc=pass"), "{headers}");
    assert!(headers.contains("Authentication-Results: other.example; dkim=pass"), "other hosts' results are kept");
    assert!(!headers.contains("MX.example.test; spf=pass"), "the forgery is gone:\n{headers}");

    let mut forger = connect_as(&moat, "192.0.2.99", "mail.elsewhere.test");
    let reply = forger.send_mail("a@remote.test", &["user@example.test"], message.as_bytes());
    assert_reply(&reply, 550, "5.7.1", "DMARC_POLICY_REJECT");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(capture.messages().len(), 1, "the forged message is not delivered");
}

#[test]
fn a_fail_closed_dns_outage_tempfails_instead_of_guessing() {
    let capture = Capture::new();
    let dead = free_port();
    let config = MoatConfig::new(capture.port)
        .auth("enabled", "true")
        .auth("dns_failure", "\"fail_closed\"")
        .auth("timeout", "\"1s\"")
        .append(&format!("\n[dns]\nnameservers = [\"127.0.0.1:{dead}\"]\ntimeout = \"1s\"\nattempts = 1\n"));
    let moat = Moat::start(config);
    let reply = moat.smtp_ehlo().send_mail("a@remote.test", &["user@example.test"], b"From: <a@remote.test>\r\n\r\nhello\r\n");
    assert_reply(&reply, 451, "4.7.1", "try again");
    std::thread::sleep(Duration::from_millis(300));
    assert!(capture.messages().is_empty(), "nothing is delivered while the sender retries");
}

#[test]
fn moat_scan_with_jobs_reports_every_file_in_order() {
    let rules = rules_dir(PILLS_RULE);
    let dir = temp_dir();
    fs::write(dir.path().join("moat.toml"), with_rules(2526, rules.path()).render()).unwrap();
    // A big spam message first, so a parallel scan finishes later files before it.
    let mut big = pills_message("big");
    for _ in 0..20_000 {
        big.extend_from_slice(b"more cheap pills and filler text for a longer scan\r\n");
    }
    fs::write(dir.path().join("a.eml"), big).unwrap();
    fs::write(dir.path().join("b.eml"), simple_message("ham")).unwrap();
    fs::write(dir.path().join("d.eml"), pills_message("small")).unwrap();
    let args = |jobs: &'static str| ["scan", "-c", "moat.toml", "--jobs", jobs, "a.eml", "b.eml", "missing.eml", "d.eml"];
    let one = moat_cli(&args("1"), dir.path());
    let three = moat_cli(&args("3"), dir.path());
    let report = text(&three.stdout);
    assert_eq!(report, text(&one.stdout), "--jobs changes nothing but speed");
    assert!(!one.status.success() && !three.status.success(), "a missing file is a failure");
    assert!(text(&three.stderr).contains("missing.eml"), "{}", text(&three.stderr));
    let order: Vec<&str> = report.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(order, ["== a.eml", "== b.eml", "== d.eml"], "{report}");
    let tagged: Vec<bool> = report.split("== ").skip(1).map(|r| r.contains("LOCAL_PILLS")).collect();
    assert_eq!(tagged, [true, false, true], "{report}");
}

/// SpamAssassin-style DNS-list rules (`check_rbl`, `check_rbl_sub`, `check_uridnsbl` with its
/// `urirhssub` line) read what moat's own `[reputation]` lists answered — the client's lookup
/// at connect, the links' at end of data — through SMTP (a PROXY-protocol client address) and
/// through `moat scan --ip`, against a real DNS server on loopback.
#[test]
fn stock_style_dns_list_rules_read_the_answers_of_moats_own_lists() {
    let dns = DnsZone::new()
        .a("66.2.0.192.zen.test", "127.0.0.4")
        .a("spam-links.test.dbl.test", "127.0.1.2")
        .a("harmless.test.dbl.test", "127.0.1.255")
        .start();
    let rules = rules_dir(
        r"header __RCVD_IN_ZEN eval:check_rbl('zen-lastexternal', 'zen.test.')
header RCVD_IN_XBL eval:check_rbl_sub('zen-lastexternal', '^127\.0\.0\.[4567]$')
urirhssub URIBL_DBL_SPAM dbl.test. A 127.0.1.2
body URIBL_DBL_SPAM eval:check_uridnsbl('URIBL_DBL_SPAM')
meta LISTED_CLIENT_AND_LINK RCVD_IN_XBL && URIBL_DBL_SPAM
score LISTED_CLIENT_AND_LINK 6.5
meta CLIENT_NOT_LISTED !__RCVD_IN_ZEN
score CLIENT_NOT_LISTED 5.5
",
    );
    let capture = Capture::new();
    let config = with_rules(capture.port, rules.path()).proxy_protocol().append(&format!(
        "\n{}\n[reputation]\nrdns = false\nhelo_checks = false\n\
         dnsbl = [{{ zone = \"zen.test\", symbol = \"RCVD_IN_ZEN\" }}]\nuribl = [{{ zone = \"dbl.test\", symbol = \"URIBL_DBL\" }}]\n",
        dns.config_section()
    ));
    let moat = Moat::start(config.clone());
    let message = |link: &str| format!("From: <a@remote.example>\r\nSubject: offer\r\n\r\nSee http://www.{link}/offer today.\r\n");
    let sent = std::cell::Cell::new(0);
    let status = |client: &str, link: &str| {
        let mut smtp = connect_as(&moat, client, "mail.remote.example");
        let reply = smtp.send_mail("a@remote.example", &["user@example.test"], message(link).as_bytes());
        assert_eq!(reply.code, 250, "{reply}");
        sent.set(sent.get() + 1);
        let mails = capture.wait_for(sent.get(), DEADLINE);
        let headers = header_lines(&mails[sent.get() - 1].data);
        // The X-Spam-Status field with its folded lines ("" when the message was not tagged).
        let mut lines = headers.split("\r\nX-Spam-Status:").nth(1).unwrap_or_default().split("\r\n");
        let first = lines.next().unwrap_or_default().to_string();
        first + &lines.take_while(|l| l.starts_with([' ', '\t'])).collect::<String>()
    };
    let listed = status("192.0.2.66", "spam-links.test");
    assert!(listed.contains("LISTED_CLIENT_AND_LINK=6.5"), "listed client (127.0.0.4) and listed link (127.0.1.2): {listed}");
    assert!(!listed.contains("CLIENT_NOT_LISTED"), "{listed}");
    assert!(
        !listed.contains("RCVD_IN_XBL") && !listed.contains("URIBL_DBL_SPAM"),
        "the list rules themselves echo moat's own symbols: {listed}"
    );
    let other_answer = status("192.0.2.66", "harmless.test");
    assert!(!other_answer.contains("LISTED_CLIENT_AND_LINK"), "127.0.1.255 is not the subtest's answer: {other_answer}");
    let unlisted = status("192.0.2.1", "spam-links.test");
    assert!(unlisted.contains("CLIENT_NOT_LISTED=5.5") && !unlisted.contains("LISTED_CLIENT_AND_LINK"), "{unlisted}");

    let dir = temp_dir();
    fs::write(dir.path().join("moat.toml"), config.render()).unwrap();
    fs::write(dir.path().join("m.eml"), message("spam-links.test")).unwrap();
    let names = |client: &str| {
        let out = moat_cli(&["scan", "-c", "moat.toml", "--json", "--ip", client, "--rcpt", "user@example.test", "m.eml"], dir.path());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let symbols = json["report"]["recipients"][0]["symbols"].as_array().cloned().unwrap_or_default();
        symbols.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect::<Vec<_>>()
    };
    let listed = names("192.0.2.66");
    assert!(listed.contains(&"LISTED_CLIENT_AND_LINK".to_string()) && listed.contains(&"URIBL_DBL".to_string()), "{listed:?}");
    assert!(
        names("127.0.0.1").iter().all(|n| n != "LISTED_CLIENT_AND_LINK" && n != "CLIENT_NOT_LISTED"),
        "a loopback client is not looked up: unknown"
    );
}
