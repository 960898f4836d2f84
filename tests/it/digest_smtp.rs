//! The digest end to end with the real binary: spam arrives over SMTP and is held, `moat digest
//! run --now` sends the user's digest through moat's own relay to the downstream, the digest lists
//! the item (escaped, with a reason) and carries a one-click opt-out, its release link's page
//! (GET) releases nothing, the button (POST) delivers the original held copy byte for byte, a
//! second press and a second digest run do nothing, and `moat digest preview` prints the email.

use crate::support::*;
use std::fs;
use std::time::Duration;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\ndescribe LOCAL_PRIZE Claims you won a prize\n";

#[test]
fn spam_held_then_listed_in_a_digest_whose_link_releases_the_original_once() {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display())).append(&web_section(web)),
    );
    let config = moat.config_path().to_str().unwrap().to_string();
    let id = marker("digest");
    let subject = format!("<b>Prize</b> {id}");
    let message = format!("From: <lottery@remote.example>\r\nSubject: {subject}\r\n\r\nYou have won {id}\r\n");
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test"], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let held = moat.wait_quarantined(1).remove(0);

    let preview = moat.cli(&["digest", "preview", "alice@example.test", "-c", &config]);
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    assert!(text(&preview.stdout).contains("List-Unsubscribe"), "the preview is the email");
    std::thread::sleep(Duration::from_millis(200));
    assert!(capture.messages().is_empty(), "a preview sends nothing");

    let run = moat.cli(&["digest", "run", "--now", "--user", "alice@example.test", "-c", &config]);
    assert!(text(&run.stdout).contains("1 digest(s) queued"), "{}{}", text(&run.stdout), text(&run.stderr));
    let digest = capture.wait_for(1, DEADLINE).remove(0);
    assert_eq!((digest.sender.as_str(), digest.recipients.as_slice()), ("", ["alice@example.test".to_string()].as_slice()));
    let parsed = mail_parser::MessageParser::default().parse(&digest.data).expect("the digest parses");
    let body = parsed.body_text(0).expect("a text part").into_owned();
    let html = parsed.body_html(0).expect("an HTML part").into_owned();
    assert!(body.contains(&subject) && body.contains("lottery@remote.example"), "{body}");
    assert!(body.contains("Score 12.0: Claims you won a prize"), "a plain-language reason: {body}");
    assert!(html.contains("&lt;b&gt;Prize&lt;/b&gt;") && !html.contains("<b>Prize</b>"), "the subject is escaped: {html}");
    assert!(!html.contains("<img") && !html.contains("<script"), "no images, no scripts");
    assert!(!text(&digest.data).contains(&format!("You have won {id}")), "the digest never carries the message");
    assert_eq!(parsed.header_raw("List-Unsubscribe-Post").map(str::trim), Some("List-Unsubscribe=One-Click"));
    assert!(body.contains("To stop these digests: http://127.0.0.1:"), "{body}");

    let view = http(web, "GET", &link_path(&url_after(&body, "View: ")), "");
    assert_eq!(view.status, 200, "{view:?}");
    assert!(view.body.contains(&format!("You have won {id}")), "the user sees their message: {}", view.body);
    assert!(view.body.contains("&lt;b&gt;Prize&lt;/b&gt;") && view.body.contains("Claims you won a prize"), "{}", view.body);
    let release = url_after(&body, "Release: ");
    let page = http(web, "GET", &link_path(&release), "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form method=\"post\">"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(capture.messages().len(), 1, "opening the link (as a mail scanner would) releases nothing");

    let done = http(web, "POST", &link_path(&release), "");
    assert_eq!(done.status, 200, "{done:?}");
    let mails = capture.wait_for(2, DEADLINE);
    let released = mails.iter().find(|m| m.sender == "lottery@remote.example").expect("the released message");
    assert_eq!(released.recipients, ["alice@example.test"]);
    assert_eq!(released.data, held.contents, "the original held copy, byte for byte");
    assert!(http(web, "POST", &link_path(&release), "").body.contains("already released"));

    let again = moat.cli(&["digest", "run", "--now", "--user", "alice@example.test", "-c", &config]);
    assert!(text(&again.stdout).contains("0 digest(s)"), "nothing new, no digest: {}", text(&again.stdout));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 2, "no second release, no second digest");
    moat.assert_log_lacks(&format!("You have won {id}"));
    moat.assert_log_lacks("<b>Prize</b>");
}

#[test]
fn a_held_item_leads_with_the_rule_files_plain_reason_which_reloads_with_the_rules() {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), HOLD_RULE).unwrap();
    fs::write(rules.path().join("reasons.cf"), "reason LOCAL_* Looks like a lottery scam.\n").unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\nwatch = \"1s\"\n", rules.path().display()))
            .append(&web_section(web)),
    );
    let config = moat.config_path().to_str().unwrap().to_string();
    let message = "From: <lottery@remote.example>\r\nSubject: Prize\r\n\r\nYou have won\r\n";
    assert_eq!(moat.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test"], message.as_bytes()).code, 250);
    moat.wait_quarantined(1);

    let run = moat.cli(&["digest", "run", "--now", "--user", "alice@example.test", "-c", &config]);
    assert!(text(&run.stdout).contains("1 digest(s) queued"), "{}{}", text(&run.stdout), text(&run.stderr));
    let digest = capture.wait_for(1, DEADLINE).remove(0);
    let parsed = mail_parser::MessageParser::default().parse(&digest.data).expect("the digest parses");
    let body = parsed.body_text(0).expect("a text part").into_owned();
    let html = parsed.body_html(0).expect("an HTML part").into_owned();
    assert!(
        body.contains("Why:      Looks like a lottery scam.\r\n   Score 12.0: Claims you won a prize"),
        "sentence, then details: {body}"
    );
    assert!(html.contains("<strong>Looks like a lottery scam.</strong>"), "{html}");

    // The admin rewrites the sentence: the running server picks it up with the rules.
    let view = link_path(&url_after(&body, "View: "));
    fs::write(rules.path().join("reasons.cf"), "reason LOCAL_PRIZE Claims you won a prize you never entered for.\n").unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let page = http(web, "GET", &view, "");
        if page.body.contains("<strong>Claims you won a prize you never entered for.</strong>") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new reason never showed: {}", page.body);
        std::thread::sleep(Duration::from_millis(300));
    }

    // A bad line is an error with file and line, and the sentence in force stays.
    fs::write(rules.path().join("reasons.cf"), "reason LOCAL_PRIZE Fine.\nreason BAD NAME\nreason EMPTY\n").unwrap();
    let check = moat.cli(&["rules", "check", "-c", &config]);
    assert!(!check.status.success());
    let errors = text(&check.stderr) + &text(&check.stdout);
    assert!(errors.contains("reasons.cf:3") && errors.contains("no sentence for EMPTY"), "{errors}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(http(web, "GET", &view, "").body.contains("you never entered for."), "nothing half-applied");
}

#[test]
fn the_digest_lists_the_lowest_scores_first() {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), format!("{HOLD_RULE}body LOCAL_CASINO /casino/i\nscore LOCAL_CASINO 5\n")).unwrap();
    let capture = Capture::new();
    let web = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port).append(&format!("\n[rules]\ndirs = [\"{}\"]\n", rules.path().display())).append(&web_section(web)),
    );
    let config = moat.config_path().to_str().unwrap().to_string();
    // The surer spam arrives first; the likelier false positive must still come first in the digest.
    for (n, (subject, body)) in
        [("Casino win", "You have won at the casino"), ("Club raffle", "You have won the raffle")].into_iter().enumerate()
    {
        let message = format!("From: <club@remote.example>\r\nSubject: {subject}\r\n\r\n{body}\r\n");
        assert_eq!(moat.smtp_ehlo().send_mail("club@remote.example", &["bob@example.test"], message.as_bytes()).code, 250);
        moat.wait_quarantined(n + 1);
        std::thread::sleep(Duration::from_millis(1100)); // a later second: arrival order is definite
    }
    let preview = text(&moat.cli(&["digest", "preview", "bob@example.test", "-c", &config]).stdout);
    let (raffle, casino) = (preview.find("Club raffle"), preview.find("Casino win"));
    assert!(raffle.is_some() && casino.is_some(), "{preview}");
    assert!(raffle < casino, "lowest score first: {preview}");
}
