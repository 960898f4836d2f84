//! The learning classifier end to end, on loopback with the shipped score table (rules/):
//! `moat learn` teaches a running server (it uses the new model within seconds) and the model
//! survives a restart with the same probabilities; learning twice is a no-op, relabelling moves a
//! message, `--forget`/`--forget-by` unlearn, `--export`/`--import` move a model; releasing a
//! held message teaches it as ham, once however often the same message is released.

use crate::support::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

const SPAM_WORDS: &[&str] =
    &["viagra", "casino", "winner", "lottery", "pills", "discount", "bitcoin", "prize", "unclaimed", "inheritance", "pharmacy", "jackpot"];
const HAM_WORDS: &[&str] =
    &["meeting", "project", "review", "minutes", "schedule", "deploy", "budget", "agenda", "quarterly", "roadmap", "standup", "invoice"];

/// The `i`th synthetic message of a kind: a few words of its vocabulary and a unique id.
fn message(words: &[&str], kind: &str, i: usize) -> String {
    let body: Vec<&str> = (0..8).map(|k| words[(i * 5 + k * 7) % words.len()]).collect();
    format!(
        "From: {kind}{i}@sender.example\r\nTo: someone@example.test\r\nSubject: {} {}\r\nMessage-ID: <{kind}-{i}@sender.example>\r\n\r\n{}\r\nref {kind}{i}\r\n",
        body[0],
        body[1],
        body.join(" ")
    )
}

pub(crate) fn spam(i: usize) -> String {
    message(SPAM_WORDS, "spam", i)
}

pub(crate) fn ham(i: usize) -> String {
    message(HAM_WORDS, "ham", i)
}

/// Writes `n` messages made by `make` into a new directory `name` under `dir`.
pub(crate) fn corpus(dir: &Path, name: &str, n: usize, make: fn(usize) -> String) -> String {
    let path = dir.join(name);
    fs::create_dir_all(&path).unwrap();
    for i in 0..n {
        fs::write(path.join(format!("{i:03}.eml")), make(i)).unwrap();
    }
    path.to_str().unwrap().to_string()
}

/// A moat with the shipped rules and a classifier that needs 20 of each kind and syncs each second.
fn moat_config(downstream: u16, extra: &str) -> MoatConfig {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    MoatConfig::new(downstream)
        .append(&format!("\n[rules]\ndirs = [\"{}\"]\n[classifier]\nmin_learned = 20\nsync = \"1s\"\n{extra}", rules.display()))
}

fn cli_ok(moat: &Moat, args: &[&str]) -> String {
    let out = moat.cli(args);
    assert!(out.status.success(), "moat {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn config_of(moat: &Moat) -> String {
    moat.config_path().to_str().unwrap().to_string()
}

/// The classifier's probability for the message in `file`, from `moat scan --json`.
fn probability(moat: &Moat, file: &Path) -> f64 {
    let out = cli_ok(moat, &["scan", "--json", "-c", &config_of(moat), file.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let found = &report["report"]["classifier"];
    found["probability"].as_f64().unwrap_or_else(|| panic!("no probability: {out}"))
}

/// Verdict log lines (envelope metadata and symbol names) naming `symbol` (the log is kept across restarts).
pub(crate) fn verdicts_with(moat: &Moat, symbol: &str) -> usize {
    moat.log().lines().filter(|l| l.contains("event=\"verdict\"") && l.contains(symbol)).count()
}

#[test]
fn moat_learn_teaches_the_running_server_and_the_model_survives_a_restart() {
    let capture = Capture::new();
    let mut moat = Moat::start(moat_config(capture.port, ""));
    let dir = temp_dir();
    let new_spam = dir.path().join("new-spam.eml");
    fs::write(&new_spam, spam(500)).unwrap();
    let cold = cli_ok(&moat, &["scan", "-c", &config_of(&moat), new_spam.to_str().unwrap()]);
    assert!(cold.contains("classifier: not used yet (learned 0 spam and 0 ham"), "{cold}");

    let (spam_dir, ham_dir) = (corpus(dir.path(), "spam", 30, spam), corpus(dir.path(), "ham", 30, ham));
    let summary = cli_ok(&moat, &["learn", "-c", &config_of(&moat), "--spam", &spam_dir, "--ham", &ham_dir]);
    assert!(summary.contains("learned 60, relabelled 0, skipped as already learned 0, unreadable 0"), "{summary}");
    assert!(summary.contains("the model now holds 30 spam and 30 ham"), "{summary}");

    wait_until("the server puts the learned model in force", Duration::from_secs(10), || {
        moat.log().contains("event=\"classifier_model_loaded\"").then_some(())
    });
    let reply = moat.smtp_ehlo().send_mail("friend@remote.example", &["bob@example.test"], ham(700).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    capture.wait_for(1, DEADLINE);
    assert_eq!(verdicts_with(&moat, "MOAT_CLASSIFIER_00"), 1, "new ham scored as ham: {}", moat.log());
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &["bob@example.test"], spam(500).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    wait_until("the new spam is held by the classifier", DEADLINE, || {
        let log = moat.log();
        log.lines().any(|l| l.contains("event=\"verdict\"") && l.contains("MOAT_CLASSIFIER_99") && l.contains("quarantine")).then_some(())
    });

    let before = probability(&moat, &new_spam);
    assert!(before > 0.99, "{before}");
    moat.restart();
    assert_eq!(probability(&moat, &new_spam), before, "the same model after a restart gives the same probability");
    let reply = moat.smtp_ehlo().send_mail("friend@remote.example", &["bob@example.test"], ham(701).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    capture.wait_for(2, DEADLINE);
    assert_eq!(verdicts_with(&moat, "MOAT_CLASSIFIER_00"), 2, "the restarted server classifies with the stored model: {}", moat.log());
}

#[test]
fn learning_twice_changes_nothing_relabelling_moves_forgetting_unlearns_and_models_move() {
    let capture = Capture::new();
    let moat = Moat::start(moat_config(capture.port, ""));
    let dir = temp_dir();
    let (spam_dir, ham_dir) = (corpus(dir.path(), "spam", 25, spam), corpus(dir.path(), "ham", 25, ham));
    let config = config_of(&moat);
    cli_ok(&moat, &["learn", "-c", &config, "--spam", &spam_dir, "--ham", &ham_dir]);
    let again = cli_ok(&moat, &["learn", "-c", &config, "--spam", &spam_dir]);
    assert!(again.contains("learned 0, relabelled 0, skipped as already learned 25"), "{again}");
    assert!(again.contains("holds 25 spam and 25 ham"), "{again}");

    // Five of the spam were mistakes: teach them as ham, and they move.
    let mistaken = corpus(dir.path(), "mistaken", 5, spam);
    let moved = cli_ok(&moat, &["learn", "-c", &config, "--ham", &mistaken]);
    assert!(moved.contains("relabelled 5") && moved.contains("holds 20 spam and 30 ham"), "{moved}");
    let forgot = cli_ok(&moat, &["learn", "-c", &config, "--forget", "--ham", &mistaken]);
    assert!(forgot.contains("forgotten 5") && forgot.contains("holds 20 spam and 25 ham"), "{forgot}");

    let probe = dir.path().join("probe.eml");
    fs::write(&probe, spam(900)).unwrap();
    let p = probability(&moat, &probe);
    let exported = dir.path().join("model.bin");
    cli_ok(&moat, &["learn", "-c", &config, "--export", exported.to_str().unwrap()]);
    let bytes = fs::read(&exported).unwrap();
    for word in SPAM_WORDS.iter().chain(HAM_WORDS) {
        assert!(!bytes.windows(word.len()).any(|w| w == word.as_bytes()), "the model holds no text ({word})");
    }

    let other = Moat::start(moat_config(capture.port, ""));
    // What the other installation learned itself is hashed with its own seed: dropped on import.
    let own = corpus(dir.path(), "own", 3, ham);
    cli_ok(&other, &["learn", "-c", &config_of(&other), "--ham", &own]);
    let imported = cli_ok(&other, &["learn", "-c", &config_of(&other), "--import", exported.to_str().unwrap()]);
    assert!(imported.contains("learned 20 spam and 25 ham"), "{imported}");
    assert!(imported.contains("holds 20 spam and 25 ham"), "its own lessons are not folded into the import: {imported}");
    assert_eq!(probability(&other, &probe), p, "the imported model scores as the exported one did");

    let aged = cli_ok(&other, &["learn", "-c", &config_of(&other), "--age", "0.5"]);
    assert!(aged.contains("it now counts 10 spam and 12 ham"), "{aged}");
    assert!(!other.cli(&["learn", "-c", &config_of(&other), "--age", "1.5"]).status.success(), "a factor must be below 1");

    let everything = cli_ok(&moat, &["learn", "-c", &config, "--forget-by", "root"]);
    assert!(everything.contains("forgotten 45") && everything.contains("holds 0 spam and 0 ham"), "{everything}");
}

#[test]
fn releasing_a_held_message_teaches_it_as_ham_once() {
    let capture = Capture::new();
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\n").unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let moat = Moat::start(MoatConfig::new(capture.port).append(&format!(
        "\n[rules]\ndirs = [\"{}\", \"{}\"]\n[classifier]\nmin_learned = 20\nsync = \"1s\"\n",
        shipped.display(),
        rules.path().display()
    )));
    let prize = b"Subject: club news\r\nMessage-ID: <club-1@remote.example>\r\n\r\nYou have won the club's raffle\r\n";
    let reply = moat.smtp_ehlo().send_mail("club@remote.example", &["alice@example.test", "bob@example.test"], prize);
    assert_eq!(reply.code, 250, "{reply}");
    let config = config_of(&moat);
    let ids = wait_until("both copies held", DEADLINE, || {
        let out = moat.cli(&["quarantine", "list", "--json", "-c", &config]);
        let ids: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        (ids.len() == 2).then_some(ids)
    });
    for id in &ids {
        let out = cli_ok(&moat, &["quarantine", "release", id, "-c", &config]);
        assert!(out.contains("queued as"), "{out}");
    }
    capture.wait_for(2, DEADLINE);
    let status = cli_ok(&moat, &["learn", "-c", &config]);
    assert!(status.contains("the model now holds 0 spam and 1 ham"), "two releases of one message teach it once: {status}");
}

/// A report from `from`: a note and, when `attach`, the message attached as message/rfc822.
fn report(from: &str, attached: &str) -> String {
    format!(
        "From: {from}\r\nTo: spam@example.test\r\nSubject: Fwd: spam\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThis got through.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{attached}\r\n--b--\r\n"
    )
}

#[test]
fn the_report_address_learns_attached_spam_from_our_own_users_only_within_a_daily_bound() {
    let capture = Capture::new();
    let moat = Moat::start(moat_config(
        capture.port,
        "report_local_part = \"spam\"\nreport_networks = [\"127.0.0.0/8\"]\nuser_lessons_per_day = 3\n",
    ));
    let config = config_of(&moat);
    let model = || cli_ok(&moat, &["learn", "-c", &config]);

    let mut outsider = moat.smtp_ehlo();
    outsider.expect_enhanced(&[("MAIL FROM:<lottery@remote.example>", 250, "2.1.0"), ("RCPT TO:<spam@example.test>", 550, "5.7.1")]);

    let reply = moat.smtp_ehlo().send_mail("alice@example.test", &["spam@example.test"], report("alice@example.test", &spam(1)).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    assert!(reply.to_string().contains("1 message(s) learned as spam"), "{reply}");
    assert!(model().contains("holds 1 spam and 0 ham"), "the attached message was learned");
    let inline = format!("From: alice@example.test\r\nSubject: Fwd: spam\r\n\r\n---- Forwarded ----\r\n{}", spam(2));
    let reply = moat.smtp_ehlo().send_mail("alice@example.test", &["spam@example.test"], inline.as_bytes());
    assert!(reply.code == 250 && reply.to_string().contains("0 message(s) learned"), "an inline forward is not a message: {reply}");

    // A report copied to a real recipient: the report is learned, the recipient gets the mail.
    let reply = moat.smtp_ehlo().send_mail(
        "alice@example.test",
        &["spam@example.test", "bob@example.test"],
        report("alice@example.test", &spam(3)).as_bytes(),
    );
    assert_eq!(reply.code, 250, "{reply}");
    let delivered = capture.wait_for(1, DEADLINE);
    assert_eq!(delivered[0].recipients, ["bob@example.test"], "only bob's copy goes downstream");
    assert!(model().contains("holds 2 spam and 0 ham"));

    // Alice's daily bound is 3 lessons: the fourth is not learned.
    for i in 4..6 {
        moat.smtp_ehlo().send_mail("alice@example.test", &["spam@example.test"], report("alice@example.test", &spam(i)).as_bytes());
    }
    assert!(model().contains("holds 3 spam and 0 ham"), "the daily bound held");
    let undone = cli_ok(&moat, &["learn", "-c", &config, "--forget-by", "alice@example.test"]);
    assert!(undone.contains("forgotten 3") && undone.contains("holds 0 spam and 0 ham"), "{undone}");
}

#[test]
fn autolearn_teaches_what_the_rules_alone_find_far_from_the_thresholds() {
    let capture = Capture::new();
    let rules = temp_dir();
    fs::write(
        rules.path().join("local.cf"),
        "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 30\nbody LOCAL_MINUTES /minutes of the board/i\nscore LOCAL_MINUTES -10\n",
    )
    .unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let moat = Moat::start(MoatConfig::new(capture.port).append(&format!(
        "\n[rules]\ndirs = [\"{}\", \"{}\"]\n[classifier]\nautolearn = true\nautolearn_spam_at = 25.0\nautolearn_ham_at = -2.0\n",
        shipped.display(),
        rules.path().display()
    )));
    let config = config_of(&moat);
    let send = |from: &str, body: &str| moat.smtp_ehlo().send_mail(from, &["bob@example.test"], body.as_bytes());
    let rejected = send("lottery@remote.example", "Subject: prize\r\n\r\nYou have won a car\r\n");
    assert_eq!(rejected.code, 550, "scored 30: rejected, and learned as spam: {rejected}");
    assert_eq!(send("clerk@remote.example", "Subject: board\r\n\r\nThe minutes of the board meeting\r\n").code, 250);
    assert_eq!(send("friend@remote.example", "Subject: lunch\r\n\r\nNoon at the usual place?\r\n").code, 250);
    let mut last = String::new();
    let recorded = (0..100).any(|_| {
        last = cli_ok(&moat, &["learn", "-c", &config]);
        std::thread::sleep(Duration::from_millis(100));
        last.contains("holds 1 spam and 1 ham")
    });
    assert!(recorded, "{last}\n{}", moat.log());
    let status = last;
    assert!(status.contains("holds 1 spam and 1 ham"), "the unremarkable lunch message teaches nothing: {status}");
}
