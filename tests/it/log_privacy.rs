//! Logs carry the envelope, never the contents. moat runs at its most verbose (`MOAT_LOG=trace`:
//! every event of moat and of every library it uses) while mail whose subject, body and link
//! carry known markers goes through every path that logs: relayed clean, tagged, held then
//! released (command line and signed link) and listed in a digest, refused by score and by a
//! forced rule, a virus refused and a virus held with its notice, a downstream that tempfails,
//! a downstream that refuses (a bounce to the sender), an unknown recipient, an oversized
//! message, a URI list that answers and one that fails, the Message Center (searched by the
//! subject, a message viewed with its HTML frame) and the admin API (searched by the subject). No marker may appear anywhere in moat's
//! log (or in the commands' output on stderr), while every sender and recipient does. The same
//! again with the quarantine on PostgreSQL, whose client library logs query parameters.

use crate::support::clamd::{self, Clamd};
use crate::support::dns::DnsZone;
use crate::support::postgres::PgServer;
use crate::support::*;
use std::fs;
use std::time::Duration;

/// The words every marker starts with; none of them may appear in a log, in any case.
const MARKER_WORDS: [&str; 3] = ["subjmark", "bodymark", "linkmark"];

const RULES: &str = "\
body LOCAL_TAG /tag-trigger/\nscore LOCAL_TAG 6\n\
body LOCAL_HOLD /hold-trigger/\nscore LOCAL_HOLD 12\n\
body LOCAL_SPAM /spam-trigger/\nscore LOCAL_SPAM 30\n\
body LOCAL_FORCED /forced-trigger/\nscore LOCAL_FORCED 0.1\n";

/// A message whose subject, body and one link carry markers (`unique` keeps runs apart);
/// `trigger` is a word for one of [`RULES`] (or anything else for clean mail).
fn message(unique: &str, trigger: &str, extra_body: &str) -> Vec<u8> {
    format!(
        "From: <someone@remote.example>\r\nTo: <someone@example.test>\r\nSubject: subjmark-{unique} about {trigger}\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <{unique}-{trigger}@remote.example>\r\n\r\n\
         bodymark-{unique} {trigger}\r\nsee http://linkmark-{unique}.example/page\r\n{extra_body}"
    )
    .into_bytes()
}

/// Panics if any marker word appears in `log` (case-insensitively).
#[track_caller]
fn assert_no_marker(log: &str, whose: &str) {
    let lower = log.to_ascii_lowercase();
    for word in MARKER_WORDS {
        if let Some(at) = lower.find(word) {
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
            panic!("{whose} contains message content ({word}) in this line:\n{}", &log[start..end]);
        }
    }
}

#[track_caller]
fn assert_logged(log: &str, needles: &[&str]) {
    for needle in needles {
        assert!(log.contains(needle), "the log should contain {needle:?}:\n{log}");
    }
}

/// Runs a moat command, keeping its stderr (its own log) for the marker check.
fn cli(moat: &Moat, args: &[&str], stderr: &mut String) -> String {
    let config = moat.config_path();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-c", config.to_str().unwrap()]);
    let out = moat.cli(&all);
    stderr.push_str(&text(&out.stderr));
    assert!(out.status.success(), "moat {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn no_subject_body_or_link_reaches_the_log_on_any_path_at_trace_level() {
    let unique = marker("p").to_ascii_lowercase();
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), RULES).unwrap();
    let sink = Sink::new();
    let tempfail = Sink::with_args(&["-r", "RCPT"]);
    let refusing = Sink::with_args(&["-f", "."]);
    let bounces = Capture::new();
    let clamd = Clamd::start();
    let dns = DnsZone::new()
        .txt("remote.example", "v=spf1 ip4:127.0.0.1 -all")
        .a(&format!("linkmark-{unique}.example.uribl.test"), "127.0.0.2")
        .refused("broken-uribl.test")
        .start();
    let (web, admin) = (free_port(), free_port());
    let route = |port: u16| format!("{{ host = \"127.0.0.1\", port = {port}, tls = \"none\" }}");
    let moat = Moat::start(
        MoatConfig::new(sink.port)
            .env("MOAT_LOG", "trace")
            .auth("enabled", "true")
            .limit("max_message_size", 20_000)
            .delivery("dsn_route", route(bounces.port))
            .append(&format!(
                "\n[rules]\ndirs = [\"{rules}\"]\n\n[policy]\nforced = {{ LOCAL_FORCED = \"reject\" }}\n\n{dns}\n\
                 [reputation]\nuribl = [{{ zone = \"uribl.test\", symbol = \"URIBL_TEST\" }}, {{ zone = \"broken-uribl.test\", symbol = \"URIBL_BROKEN\" }}]\n\n\
                 [clamav]\naddress = \"127.0.0.1:{clamd}\"\n{web}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
                 [[domain]]\nname = \"tempfail.test\"\nroute = {tempfail}\n\n\
                 [[domain]]\nname = \"bounce.test\"\nroute = {refusing}\n\n\
                 [[domain]]\nname = \"hold.test\"\npolicy = {{ forced = {{ CLAMAV_VIRUS = \"quarantine\" }} }}\n",
                rules = rules.path().display(),
                dns = dns.config_section(),
                clamd = clamd.port,
                web = web_section(web),
                tempfail = route(tempfail.port),
                refusing = route(refusing.port),
            )),
    );
    let mut cli_stderr = String::new();
    let send = |from: &str, to: &str, data: &[u8]| moat.smtp_ehlo().send_mail(from, &[to], data);
    let virus = format!("{}\r\n", clamd::eicar());

    assert_reply(&send("clean@remote.example", "alice@example.test", &message(&unique, "hello", "")), 250, "2.0.0", "clean");
    assert_reply(&send("tagger@remote.example", "bob@example.test", &message(&unique, "tag-trigger", "")), 250, "2.0.0", "tagged");
    assert_reply(&send("holder@remote.example", "carol@example.test", &message(&unique, "hold-trigger", "")), 250, "2.0.0", "held");
    assert_reply(&send("holder2@remote.example", "kate@example.test", &message(&unique, "hold-trigger", "")), 250, "2.0.0", "held");
    assert_reply(&send("spammer@remote.example", "dave@example.test", &message(&unique, "spam-trigger", "")), 550, "5.7.1", "spam");
    assert_reply(&send("blocked@remote.example", "erin@example.test", &message(&unique, "forced-trigger", "")), 550, "5.7.1", "forced");
    assert_reply(&send("virus@remote.example", "frank@example.test", &message(&unique, "virus", &virus)), 550, "5.7.1", "virus");
    assert_reply(&send("virus2@remote.example", "grace@hold.test", &message(&unique, "virus", &virus)), 250, "2.0.0", "held virus");
    assert_reply(&send("slow@remote.example", "heidi@tempfail.test", &message(&unique, "hello", "")), 250, "2.0.0", "tempfail");
    assert_reply(&send("bounced@remote.example", "ivan@bounce.test", &message(&unique, "hello", "")), 250, "2.0.0", "bounce");
    let big = message(&unique, "big", &format!("bodymark-{unique}\r\n").repeat(2_000));
    assert_reply(&send("big@remote.example", "judy@example.test", &big), 552, "5.3.4", "oversized");
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<stranger@remote.example>").code, 250);
    assert_reply(&smtp.cmd("RCPT TO:<nobody@list.example.test>"), 550, "5.1.1", "unknown recipient");
    assert_eq!(smtp.cmd("QUIT").code, 221);

    // Held: carol's released from the command line, kate's listed in a digest and released
    // through its signed link.
    let held = moat.wait_quarantined(3);
    let carol = held.iter().find(|h| h.item.recipient == "carol@example.test").expect("carol's item");
    assert!(cli(&moat, &["quarantine", "release", &carol.item.id], &mut cli_stderr).contains("queued as"));
    assert!(cli(&moat, &["digest", "run", "--now", "--user", "kate@example.test"], &mut cli_stderr).contains("1 digest(s) queued"));
    let digest = wait_until("kate's digest", DEADLINE, || {
        sink.messages().into_iter().find(|m| m.sender.is_empty() && m.recipients == ["kate@example.test"])
    });
    let digest = mail_parser::MessageParser::default().parse(&digest.data).expect("the digest parses");
    let digest = digest.body_text(0).expect("a text part").into_owned();
    // The Message Center from the digest: searched by the subject, kate's message viewed.
    let cookie =
        format!("Cookie: {}", session_from_link(web, &url_after(&digest, "Your whole quarantine, preferences and allow/block lists: ")));
    let kate = held.iter().find(|h| h.item.recipient == "kate@example.test").expect("kate's item");
    let search = http_with(web, "GET", &format!("/mc?q=subjmark-{unique}"), &[&cookie], "");
    assert!(search.body.contains(&kate.item.id), "found by its subject: {}", search.body);
    assert_eq!(http_with(web, "GET", &format!("/mc/m/{}", kate.item.id), &[&cookie], "").status, 200);
    assert_eq!(http_with(web, "GET", &format!("/mc/m/{}/html", kate.item.id), &[&cookie], "").status, 200);
    // The admin API and console: admins can neither search by the subject nor see it.
    let token = fs::read_to_string(moat.state_dir().join("admin.token")).expect("the admin token").trim().to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let searched = http_with(admin, "GET", &format!("/api/v1/quarantine?q=subjmark-{unique}"), &[&bearer], "");
    assert!(searched.status == 200 && !searched.body.contains(&kate.item.id), "{}", searched.body);
    let listed = http_with(admin, "GET", "/api/v1/quarantine?recipient=kate%40example.test", &[&bearer], "");
    assert!(listed.body.contains(&kate.item.id), "{}", listed.body);
    for word in MARKER_WORDS {
        assert!(!listed.body.contains(word), "the admin API shows no subject: {}", listed.body);
    }
    let release = digest.split("Release: ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a release link");
    assert_eq!(http(web, "POST", &link_path(release), "").status, 200);

    // Delivered: clean, tagged, carol's and kate's releases, the virus notice, the digest.
    let mails = sink.wait_for(6, Duration::from_secs(30));
    let to = |rcpt: &str| mails.iter().filter(|m| m.recipients == [rcpt]).count();
    for rcpt in ["alice@example.test", "bob@example.test", "carol@example.test", "grace@hold.test"] {
        assert_eq!(to(rcpt), 1, "one message to {rcpt}");
    }
    assert_eq!(to("kate@example.test"), 2, "kate's digest and her released message");
    let dsn = bounces.wait_for(1, Duration::from_secs(30)).remove(0);
    assert_eq!(dsn.recipients, ["bounced@remote.example"]);
    let log = wait_until("the tempfailing downstream's deferral in the log", Duration::from_secs(30), || {
        let log = moat.log();
        log.lines()
            .any(|l| l.contains("event=\"delivery\"") && l.contains("heidi@tempfail.test") && l.contains("outcome=\"deferred\""))
            .then_some(log)
    });

    // Every path was taken and logged with its envelope.
    assert_logged(&log, &[" DEBUG ", "event=\"auth\""]);
    assert_logged(
        &log,
        &[
            "event=\"message\"",
            "event=\"verdict\"",
            "action=\"accept\"",
            "action=\"tag\"",
            "action=\"quarantine\"",
            "action=\"reject\"",
            "URIBL_TEST",
            "event=\"dnsbl_temperror\"",
            "event=\"virus_found\"",
            "event=\"quarantined\"",
            "event=\"virus_notice\"",
            "event=\"released\"",
            "via=\"link\"",
            "event=\"digest_sent\"",
            "event=\"web_session\"",
            "event=\"rcpt_refused\"",
            "552 5.3.4",
            "event=\"dsn_queued\"",
        ],
    );
    for address in [
        "clean@remote.example",
        "alice@example.test",
        "tagger@remote.example",
        "bob@example.test",
        "holder@remote.example",
        "carol@example.test",
        "kate@example.test",
        "spammer@remote.example",
        "dave@example.test",
        "blocked@remote.example",
        "erin@example.test",
        "virus@remote.example",
        "frank@example.test",
        "virus2@remote.example",
        "grace@hold.test",
        "slow@remote.example",
        "heidi@tempfail.test",
        "bounced@remote.example",
        "ivan@bounce.test",
        "big@remote.example",
        "judy@example.test",
        "stranger@remote.example",
        "nobody@list.example.test",
    ] {
        assert!(log.contains(address), "the log names {address}:\n{log}");
    }
    assert_no_marker(&log, "moat's log");
    assert_no_marker(&cli_stderr, "the commands' stderr");
}

#[test]
fn no_subject_or_body_reaches_the_log_with_the_quarantine_on_postgresql() {
    let pg = PgServer::shared();
    let url = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(pg.create_database());
    let unique = marker("pg").to_ascii_lowercase();
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), RULES).unwrap();
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).env("MOAT_LOG", "trace").append(&format!(
        "\n[rules]\ndirs = [\"{dir}\"]\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nkey_file = \"{dir}/vault.key\"\n",
        dir = rules.path().display()
    )));
    let mut cli_stderr = String::new();
    let reply = moat.smtp_ehlo().send_mail("holder@remote.example", &["carol@example.test"], &message(&unique, "hold-trigger", ""));
    assert_reply(&reply, 250, "2.0.0", "held");
    let id = wait_until("the item in PostgreSQL", DEADLINE, || {
        let listing = cli(&moat, &["quarantine", "list", "--json"], &mut cli_stderr);
        let line = listing.lines().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())?;
        line["id"].as_str().map(str::to_string)
    });
    cli(&moat, &["quarantine", "release", &id], &mut cli_stderr);
    let mails = sink.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["carol@example.test"]);
    let log = moat.log();
    assert_logged(&log, &[" DEBUG ", "event=\"quarantined\"", "event=\"released\"", "holder@remote.example", "carol@example.test"]);
    assert_no_marker(&log, "moat's log");
    assert_no_marker(&cli_stderr, "the commands' stderr");
}
